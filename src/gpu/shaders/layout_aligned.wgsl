// layout_aligned.wgsl: blocks that start on a word, with their fields on words, so every 32-bit
// read is one aligned load and every 16-bit field sits in one word. Q4_K (144 B), Q5_K (176 B),
// Q2_K (84 B), Q4_1 (20 B), Q5_1 (24 B), IQ4_XS (136 B) and IQ1_M (56 B) blocks are so in the
// file; the others are repacked at upload (src/gpu/weights.rs): ALIGN_LEAD zero bytes (from the
// fmt file: 2 for the formats led by one f16, 3 for MXFP4's one-byte scale), the GGUF block,
// zero bytes up to the next word. Q6_K 210 → 212 B (+1%), Q3_K 110 → 112 (+2%), Q8_0 34 → 36
// (+6%), Q5_0 22 → 24 (+9%), Q4_0 18 → 20 (+11%); IQ2_XXS 66 → 68, IQ2_XS 74 → 76, IQ2_S
// 82 → 84, IQ3_XXS 98 → 100, IQ3_S 110 → 112, IQ1_S 50 → 52, IQ4_NL 18 → 20, MXFP4 17 → 20.
const BLOCK_STRIDE: u32 = (ALIGN_LEAD + BLOCK_BYTES + 3u) & ~3u;
const BLOCK_LEAD: u32 = ALIGN_LEAD;

fn u16_at(off: u32) -> u32 {
    return (w[off >> 2u] >> ((off & 2u) << 3u)) & 0xffffu;
}

fn u32_at(off: u32) -> u32 {
    return w[off >> 2u];
}
