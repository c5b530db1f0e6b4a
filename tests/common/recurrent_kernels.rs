//! The recurrent layers' CPU kernels, fast path against reference, run natively
//! (tests/cpu_kernels.rs: every ISA level) and in headless Chromium (tests/wasm_kernels.rs:
//! SIMD128): LFM2's and Qwen3.5's causal convolution (`cpu::short_conv`, the same bits) and
//! Qwen3.5's gated delta rule (`cpu::delta_net`, within f32 rounding: its sums are
//! reassociated).

use super::cpu_data::Rng;
use wasm_chord::cpu::delta_net::{delta_net_step, DeltaInputs, DeltaParams};
use wasm_chord::cpu::matmul::Kernel;
use wasm_chord::cpu::short_conv::{causal_conv_step, causal_conv_step_reference};
use wasm_chord::model::DeltaNetSpec;

fn values(rng: &mut Rng, n: usize, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-scale, scale)).collect()
}

/// The convolution over five tokens for LFM2's 3 taps, Qwen3.5's 4 and a single tap (no
/// state): output and state bit for bit.
pub fn conv_fast_equals_reference() {
    let mut rng = Rng(0x5eed_c0de_1234_5678);
    for (n, taps) in [(37usize, 3usize), (64, 4), (5, 1)] {
        let kernel = values(&mut rng, n * taps, 1.0);
        let mut fast = values(&mut rng, (taps - 1) * n, 1.0);
        let mut reference = fast.clone();
        for t in 0..5 {
            let x = values(&mut rng, n, 1.0);
            let (mut yf, mut yr) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            causal_conv_step(&mut fast, &kernel, &x, &mut yf, Kernel::Fast);
            causal_conv_step_reference(&mut reference, &kernel, &x, &mut yr);
            assert_eq!(yf, yr, "output, n {n} taps {taps} token {t}");
            assert_eq!(fast, reference, "state, n {n} taps {taps} token {t}");
        }
    }
}

/// The delta-net step over four tokens for head sizes with and without a lane tail, and more
/// value heads than key heads: state and output within 2e-6 of the reference's largest
/// magnitude.
pub fn delta_rule_fast_matches_reference() {
    let mut rng = Rng(0x0de1_7a5e_ed00_0001);
    for (s, kh, vh) in [(128usize, 2usize, 4usize), (24, 1, 3), (7, 2, 2)] {
        let spec = DeltaNetSpec {
            head_dim: s,
            k_heads: kh,
            v_heads: vh,
            conv_taps: 4,
        };
        let cd = spec.conv_dim();
        let conv = values(&mut rng, cd * 4, 0.5);
        let dt_bias = values(&mut rng, vh, 1.0);
        let a: Vec<f32> = values(&mut rng, vh, 1.0)
            .iter()
            .map(|v| -v.abs() - 0.1)
            .collect();
        let norm = values(&mut rng, s, 1.0);
        let p = DeltaParams {
            spec,
            conv: &conv,
            dt_bias: &dt_bias,
            a: &a,
            norm: &norm,
            eps: 1e-6,
        };
        let mut fast = values(&mut rng, 3 * cd + vh * s * s, 0.3);
        let mut reference = fast.clone();
        let mut scratch = vec![0f32; cd];
        for t in 0..4 {
            let (qkv, z) = (values(&mut rng, cd, 2.0), values(&mut rng, vh * s, 2.0));
            let (beta, alpha) = (values(&mut rng, vh, 3.0), values(&mut rng, vh, 3.0));
            let x = DeltaInputs {
                qkv: &qkv,
                z: &z,
                beta: &beta,
                alpha: &alpha,
            };
            let (mut of, mut or) = (vec![f32::NAN; vh * s], vec![f32::NAN; vh * s]);
            delta_net_step(&p, &x, &mut fast, &mut scratch, &mut of, Kernel::Fast);
            delta_net_step(
                &p,
                &x,
                &mut reference,
                &mut scratch,
                &mut or,
                Kernel::Reference,
            );
            for (what, f, r) in [("state", &fast, &reference), ("output", &of, &or)] {
                let mag = r.iter().fold(0f32, |m, v| m.max(v.abs()));
                let worst = f
                    .iter()
                    .zip(r.iter())
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    worst <= 2e-6 * mag && f.iter().all(|v| v.is_finite()),
                    "{what}: S {s}, token {t}: off by {worst} of {mag}"
                );
            }
        }
    }
}
