//! token_mask.wgsl (constrained decoding on the GPU) against its CPU reference,
//! `sampling::apply_token_mask`, on Mesa's lavapipe: `WGPU_BACKEND=vulkan
//! VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::Rng;
use wasm_chord::engine::block_on;
use wasm_chord::gpu::token_mask::token_mask_once;
use wasm_chord::gpu::GpuContext;
use wasm_chord::sampling::apply_token_mask;

fn context() -> GpuContext {
    match block_on(GpuContext::new()) {
        Ok(c) => c,
        Err(e) => panic!(
            "{e}\nThe GPU tests need a WebGPU adapter: install `mesa-vulkan-drivers` and set \
             WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
        ),
    }
}

/// Bit-exact on vocabulary sizes that are and are not multiples of 32 (and of 256 words), with
/// sparse, dense, empty, full and short masks.
#[test]
fn token_mask_matches_the_reference() {
    let ctx = context();
    let mut rng = Rng(0x5eed);
    for n in [1usize, 31, 32, 33, 1000, 8192 + 5, 49_152, 151_936] {
        let words = n.div_ceil(32);
        let masks: Vec<Vec<u32>> = vec![
            (0..words)
                .map(|_| rng.u32() & rng.u32() & rng.u32())
                .collect(), // sparse
            (0..words).map(|_| rng.u32() | rng.u32()).collect(), // dense
            vec![0; words],
            vec![u32::MAX; words],
            vec![0b1011; 1], // shorter than the logits: the rest is disallowed
        ];
        for mask in masks {
            let logits = rng.vec(n);
            let mut want = logits.clone();
            apply_token_mask(&mut want, &mask);
            let buf = ctx.storage_with("logits", bytemuck::cast_slice(&logits));
            token_mask_once(&ctx, &buf, n, &mask).unwrap();
            let got = block_on(ctx.read_f32(&buf, n)).unwrap();
            for i in 0..n {
                assert_eq!(got[i].to_bits(), want[i].to_bits(), "n {n}, token {i}");
            }
        }
    }
}

/// A command the device rejects is a typed `gpu` error at the next readback (wgpu would panic
/// natively; a browser would only log it and leave the results stale), and the context works on.
#[test]
fn a_rejected_command_is_a_typed_error_at_the_next_readback() {
    let ctx = context();
    let a = ctx.storage_with("a", bytemuck::cast_slice(&[1f32, 2.0, 3.0, 4.0]));
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    // Past the end of a 16-byte buffer: invalid.
    enc.copy_buffer_to_buffer(&a, 0, &a, 8, 64);
    ctx.queue.submit([enc.finish()]);
    let e = block_on(ctx.read_f32(&a, 4)).unwrap_err();
    assert_eq!(e.code(), "gpu", "{e}");
    assert!(e.to_string().contains("rejected"), "{e}");
    assert_eq!(block_on(ctx.read_f32(&a, 4)).unwrap(), [1.0, 2.0, 3.0, 4.0]);
}
