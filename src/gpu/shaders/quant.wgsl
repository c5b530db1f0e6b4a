// quant.wgsl: value helpers over the quantized weights, prepended (with one layout_*.wgsl and
// one fmt_*.wgsl) to dequant.wgsl, matvec.wgsl and matmat.wgsl. The weights are bound as
// `array<u32>` (binding `w`, declared by the kernel) and read little-endian; the layout file
// gives `u16_at` / `u32_at` and where block `i` starts (`BLOCK_STRIDE`, `BLOCK_LEAD`).

fn u8_at(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 3u) << 3u)) & 0xffu;
}

fn i8_at(off: u32) -> i32 {
    return (i32(u8_at(off)) << 24u) >> 24u;
}

// The four bytes of `v` as f32, low byte first.
fn bytes4(v: u32) -> vec4<f32> {
    return vec4<f32>(f32(v & 0xffu), f32((v >> 8u) & 0xffu), f32((v >> 16u) & 0xffu), f32(v >> 24u));
}

// The four bytes of `v` as signed integers (as f32), low byte first.
fn sbytes4(v: u32) -> vec4<f32> {
    let s = bitcast<i32>(v);
    return vec4<f32>(f32((s << 24u) >> 24u), f32((s << 16u) >> 24u), f32((s << 8u) >> 24u),
                     f32(s >> 24u));
}

// Bits k..k+4 of `bits` spread to bit 4 of each byte (the 5th bit of Q5 weights).
fn hbits4(bits: u32, k: u32) -> u32 {
    let b = bits >> k;
    return ((b & 1u) << 4u) | ((b & 2u) << 11u) | ((b & 4u) << 18u) | ((b & 8u) << 25u);
}

// The dot product of four weights (scale `s.x`, offset `s.y`, integer parts `q`) with four
// activations: s.x·(q·x) + s.y·Σx. matvec.wgsl and matmat.wgsl both sum through this, in the
// same order, so batched and token-by-token products are equal bit for bit.
fn quad_dot(s: vec2<f32>, q: vec4<f32>, xv: vec4<f32>) -> f32 {
    return s.x * dot(q, xv) + s.y * ((xv.x + xv.y) + (xv.z + xv.w));
}

fn f16_at(off: u32) -> f32 {
    return unpack2x16float(u16_at(off)).x;
}

// ±1 for bits 0..4 of `s`, low bit first (a set bit is −1): the signs of IQ grid values.
fn signs4(s: u32) -> vec4<f32> {
    let bits = (vec4<u32>(s) >> vec4<u32>(0u, 1u, 2u, 3u)) & vec4<u32>(1u);
    return vec4<f32>(1.0) - 2.0 * vec4<f32>(bits);
}

// ggml's ksigns_iq2xs[i] (i < 128): the 7 sign bits of `i` and an 8th that makes the number of
// set bits even, computed instead of looked up.
fn ksigns(i: u32) -> u32 {
    return i | ((countOneBits(i) & 1u) << 7u);
}

// The i8 entries of a 16-entry table packed four to a word (`tab`), looked up by the four bytes
// of `n` (each < 16), as f32 (IQ4_NL / IQ4_XS / MXFP4 values).
fn lut16(tab: vec4<u32>, n: u32) -> vec4<f32> {
    let i = (vec4<u32>(n) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(0xffu);
    let words = vec4<u32>(tab[i.x >> 2u], tab[i.y >> 2u], tab[i.z >> 2u], tab[i.w >> 2u]);
    let s = bitcast<vec4<i32>>(words << (vec4<u32>(24u) - (i & vec4<u32>(3u)) * 8u)) >> vec4<u32>(24u);
    return vec4<f32>(s);
}
