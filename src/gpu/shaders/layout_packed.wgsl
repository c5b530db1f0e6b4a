// layout_packed.wgsl: the GGUF blocks as they are in the file, back to back. Q8_0 (34 B), Q6_K
// (210 B), Q3_K (110 B), Q5_0 (22 B) and Q4_0 (18 B) blocks then start at any byte, so
// multi-byte fields are read from arbitrary offsets. Block i of a row starts at
// i·BLOCK_STRIDE + BLOCK_LEAD.

const BLOCK_STRIDE: u32 = BLOCK_BYTES;
const BLOCK_LEAD: u32 = 0u;

fn u16_at(off: u32) -> u32 {
    return u8_at(off) | (u8_at(off + 1u) << 8u);
}

// Four bytes from any offset: one load when aligned, else two words funnel-shifted (buffers
// are padded to whole words, so the second word exists).
fn u32_at(off: u32) -> u32 {
    let i = off >> 2u;
    let s = (off & 3u) << 3u;
    if (s == 0u) {
        return w[i];
    }
    return (w[i] >> s) | (w[i + 1u] << (32u - s));
}
