//! The WebGPU kernels compiled to wasm32, in headless Chromium (WebGPU on SwiftShader: no
//! shader-f16 and no subgroups, so the f32 paths run): dequantization and matvec (every format,
//! every block layout), matmat (every format), rmsnorm, RoPE, attention (single-pass and
//! split-K), argmax, sampling, penalties and min-p against the CPU reference, and the tiny
//! model's 8 greedy tokens (batched prefill through matmat, then `step_argmax`) against the
//! golden ids, plus `step_sample`, token-by-token prefill and the f16 KV cache on it.
//!
//! Run:
//! `CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner
//! CHROMEDRIVER=/usr/bin/chromedriver WASM_BINDGEN_TEST_TIMEOUT=600 cargo test --release
//! --no-default-features --target wasm32-unknown-unknown --test wasm_gpu`
#![cfg(target_arch = "wasm32")]

use wasm_bindgen_test::*;
use wasm_chord::cpu::matmul::{matmul, Kernel};
use wasm_chord::cpu::ops;
use wasm_chord::gpu::kernels::{
    groups_2d, layouts, unit_weights, PipelineKey, Shader, GPU_TYPES, SPLIT_CHUNK,
};
use wasm_chord::gpu::model::{matmat_once, matvec_once, penalties_once, sample_once};
use wasm_chord::gpu::token_mask::token_mask_once;
use wasm_chord::gpu::{GpuContext, GpuMatrix, GpuModel, GpuSampling};
use wasm_chord::quant;
use wasm_chord::sampling::{apply_token_mask, Rng as SamplingRng, Sampler, SamplerConfig};

wasm_bindgen_test_configure!(run_in_browser);

#[path = "common/data.rs"]
mod data;
use data::{cols_for, nmse, random_matrix, Rng};

// `make models` (scripts/fetch-models) puts the model here; without it this file does not compile.
static MODEL: &[u8] = include_bytes!("../models/tiny-random-llama-q4_k_m.gguf");
static GOLDEN: &str = include_str!("goldens/forward/tiny-random-llama-q4_k_m.json");

async fn context() -> GpuContext {
    let c = GpuContext::new()
        .await
        .unwrap_or_else(|e| panic!("{e}: start Chromium with --enable-unsafe-webgpu"));
    web_log(&format!("adapter: {}", c.describe()));
    c
}

fn web_log(s: &str) {
    wasm_bindgen_test::console_log!("{}", s);
}

fn assert_nmse(what: &str, got: &[f32], want: &[f32], max: f64) {
    let e = nmse(got, want);
    web_log(&format!("{what}: NMSE {e:.3e}"));
    assert!(e <= max, "{what}: NMSE {e:.3e} > {max:.1e}");
}

#[wasm_bindgen_test]
async fn dequantize_matches_the_reference() {
    // Every format, in every layout it is uploaded in.
    let ctx = context().await;
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let (rows, cols) = (3, cols_for(ty));
        let m = random_matrix(ty, rows, cols, 11 + i as u64);
        let mut want = vec![0f32; rows * cols];
        quant::dequantize(ty, &m.data, &mut want).unwrap();
        for layout in layouts(ty) {
            let g = GpuMatrix::upload_as(&ctx, &m, layout).unwrap();
            let y = ctx.storage_f32("y", rows * cols);
            let n_units = rows * cols / unit_weights(ty);
            let p = ctx.params("p", &[n_units as u32, 0, 0, 1f32.to_bits()]);
            ctx.run_once(
                PipelineKey::new(Shader::Dequant(ty, layout)),
                &[&g.chunks[0].buffer, &y, &p],
                groups_2d(n_units.div_ceil(64)),
            )
            .unwrap();
            let got = ctx.read_f32(&y, rows * cols).await.unwrap();
            // SwiftShader may flush or round differently from the CPU by an ulp: NMSE, tight.
            assert_nmse(&format!("dequantize {ty} {layout:?}"), &got, &want, 1e-12);
        }
    }
}

#[wasm_bindgen_test]
async fn matvec_matches_the_reference() {
    // Every format, in every layout it is uploaded in.
    let ctx = context().await;
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let (rows, cols) = (37, cols_for(ty));
        let m = random_matrix(ty, rows, cols, 21 + i as u64);
        let x = Rng(121 + i as u64).vec(cols);
        let mut want = vec![0f32; rows];
        matmul(&m, &x, &mut want, 1, Kernel::Reference).unwrap();
        for layout in layouts(ty) {
            let g = GpuMatrix::upload_as(&ctx, &m, layout).unwrap();
            let xb = ctx.storage_with("x", bytemuck::cast_slice(&x));
            let y = ctx.storage_f32("y", rows);
            matvec_once(&ctx, &g, &xb, &y).unwrap();
            let got = ctx.read_f32(&y, rows).await.unwrap();
            assert_nmse(&format!("matvec {ty} {layout:?}"), &got, &want, 1e-10);
        }
    }
}

#[wasm_bindgen_test]
async fn matmat_matches_the_reference() {
    // Every format, 37 rows × 13 tokens (neither a multiple of the workgroup's rows nor of its
    // 8 tokens).
    let ctx = context().await;
    let (rows, n_tok) = (37, 13);
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let cols = cols_for(ty);
        let m = random_matrix(ty, rows, cols, 31 + i as u64);
        let x = Rng(231 + i as u64).vec(cols * n_tok);
        let mut want = vec![0f32; rows * n_tok];
        matmul(&m, &x, &mut want, n_tok, Kernel::Reference).unwrap();
        let g = GpuMatrix::upload(&ctx, &m).unwrap();
        let xb = ctx.storage_with("x", bytemuck::cast_slice(&x));
        let y = ctx.storage_f32("y", rows * n_tok);
        matmat_once(&ctx, &g, &xb, &y, n_tok).unwrap();
        let got = ctx.read_f32(&y, rows * n_tok).await.unwrap();
        assert_nmse(&format!("matmat {ty} ({n_tok} tokens)"), &got, &want, 1e-10);
    }
}

#[wasm_bindgen_test]
async fn penalties_and_min_p_match_the_cpu_sampler() {
    let ctx = context().await;
    let n = 1000;
    let mut v: Vec<f32> = Rng(43).vec(n).into_iter().map(|x| x * 2.0).collect();
    for (i, id) in [7usize, 900, 901, 33].into_iter().enumerate() {
        v[id] = 9.0 - i as f32 * 0.5;
    }
    let history = [11u32, 7, 13, 3, 900, 3, 999, 2000, 7, 3];
    let cfg = SamplerConfig {
        temperature: 0.9,
        min_p: 0.1,
        repeat_penalty: 1.3,
        presence_penalty: 0.5,
        frequency_penalty: 0.2,
        penalty_last_n: 8,
        seed: 5,
        ..Default::default()
    };
    let mut cpu = Sampler::new(cfg.clone());
    let mut want_logits = v.clone();
    cpu.apply_penalties(&mut want_logits, &history);
    let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
    let s = GpuSampling::new(&cfg, 0.0);
    penalties_once(&ctx, &vb, n, &s, &history).unwrap();
    let got = ctx.read_f32(&vb, n).await.unwrap();
    assert_nmse("penalties", &got, &want_logits, 1e-12);
    // min-p over every token (top_k 0): decided among the candidates.
    let mut rng = SamplingRng::new(cfg.seed);
    for _ in 0..20 {
        let want = cpu.sample(&mut v.clone(), &history);
        let s = GpuSampling::new(&cfg, rng.next_f64());
        assert_eq!(sample_once(&ctx, &vb, n, &s).await.unwrap(), want);
    }
}

#[wasm_bindgen_test]
async fn rmsnorm_and_rope_match_the_reference() {
    let ctx = context().await;
    let (n, rows) = (576, 3);
    let mut r = Rng(7);
    let x = r.vec(n * rows);
    let w = r.vec(n);
    let mut want = vec![0f32; n * rows];
    for (o, xi) in want.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        ops::rmsnorm(o, xi, &w, 1e-5);
    }
    let xb = ctx.storage_with("x", bytemuck::cast_slice(&x));
    let wb = ctx.storage_with("w", bytemuck::cast_slice(&w));
    let y = ctx.storage_f32("y", n * rows);
    let p = ctx.params("p", &[n as u32, 1e-5f32.to_bits()]);
    ctx.run_once(
        PipelineKey::new(Shader::RmsNorm),
        &[&xb, &wb, &y, &p],
        [rows as u32, 1, 1],
    )
    .unwrap();
    let got = ctx.read_f32(&y, n * rows).await.unwrap();
    assert_nmse("rmsnorm", &got, &want, 1e-12);

    let (heads, hd) = (3, 64);
    for (neox, n_rot) in [(false, 64), (true, 48)] {
        let pos = 1234;
        let inv = ops::rope_inv_freq(n_rot, 10000.0, 1.0, None);
        let x = Rng(9).vec(heads * hd);
        let mut want = x.clone();
        for h in want.chunks_exact_mut(hd) {
            ops::rope(h, pos, &inv, neox);
        }
        let cs: Vec<f32> = inv
            .iter()
            .flat_map(|f| {
                let t = pos as f64 * f;
                [t.cos() as f32, t.sin() as f32]
            })
            .collect();
        let v = ctx.storage_with("v", bytemuck::cast_slice(&x));
        let csb = ctx.storage_with("cs", bytemuck::cast_slice(&cs));
        let words = [
            heads as u32,
            hd as u32,
            n_rot as u32,
            u32::from(neox),
            0,
            1f32.to_bits(),
        ];
        let p = ctx.params("p", &words);
        let groups = [((heads * hd / 2).div_ceil(64)) as u32, 1, 1];
        ctx.run_once(PipelineKey::new(Shader::Rope), &[&v, &csb, &p], groups)
            .unwrap();
        let got = ctx.read_f32(&v, heads * hd).await.unwrap();
        assert_nmse(
            &format!("rope neox={neox} n_rot={n_rot}"),
            &got,
            &want,
            1e-12,
        );
    }
}

#[wasm_bindgen_test]
async fn attention_single_pass_and_split_k_match_the_reference() {
    let ctx = context().await;
    let (n_head, n_kv_head, hd, n_ctx) = (6usize, 2usize, 64usize, 768usize);
    let group = n_head / n_kv_head;
    let kv_dim = n_kv_head * hd;
    let n_split = n_ctx.div_ceil(SPLIT_CHUNK);
    let mut r = Rng(13);
    let q = r.vec(n_head * hd);
    let kc = r.vec(n_ctx * kv_dim);
    let vc = r.vec(n_ctx * kv_dim);
    let b = |l, v: &[f32]| ctx.storage_with(l, bytemuck::cast_slice(v));
    let (qb, kb, vb) = (b("q", &q), b("k", &kc), b("v", &vc));
    for n_kv in [300usize, 600] {
        let mut want = vec![0f32; n_head * hd];
        for h in 0..n_head {
            let kvh = h / group;
            let qh = &q[h * hd..(h + 1) * hd];
            let mut s: Vec<f32> = (0..n_kv)
                .map(|j| {
                    let k = &kc[j * kv_dim + kvh * hd..j * kv_dim + (kvh + 1) * hd];
                    qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * 0.125
                })
                .collect();
            ops::softmax(&mut s);
            for (j, a) in s.iter().enumerate() {
                for d in 0..hd {
                    want[h * hd + d] += a * vc[j * kv_dim + kvh * hd + d];
                }
            }
        }
        let words = [
            n_ctx as u32,
            group as u32,
            hd as u32,
            hd as u32,
            kv_dim as u32,
            kv_dim as u32,
            0,
            n_kv as u32,
            0.125f32.to_bits(),
            0,
            n_split as u32,
        ];
        let p = ctx.params("p", &words);
        let o = ctx.storage_f32("o", n_head * hd);
        let sc = ctx.storage_f32("scores", n_head * n_ctx);
        let nh = n_head as u32;
        ctx.run_once(
            PipelineKey::new(Shader::Attention),
            &[&qb, &kb, &vb, &o, &sc, &p],
            [nh, 1, 1],
        )
        .unwrap();
        let got = ctx.read_f32(&o, n_head * hd).await.unwrap();
        assert_nmse(&format!("attention n_kv={n_kv}"), &got, &want, 1e-10);

        let part = ctx.storage_f32("part", n_head * n_split * (2 + hd));
        let o2 = ctx.storage_f32("o2", n_head * hd);
        ctx.run_once(
            PipelineKey::new(Shader::AttentionSplit),
            &[&qb, &kb, &vb, &part, &p],
            [nh, n_split as u32, 1],
        )
        .unwrap();
        ctx.run_once(
            PipelineKey::new(Shader::AttentionCombine),
            &[&part, &o2, &p],
            [nh, 1, 1],
        )
        .unwrap();
        let got = ctx.read_f32(&o2, n_head * hd).await.unwrap();
        assert_nmse(
            &format!("split-K attention n_kv={n_kv}"),
            &got,
            &want,
            1e-10,
        );
    }
}

#[wasm_bindgen_test]
async fn argmax_and_sampling_with_top_k_one() {
    let ctx = context().await;
    let n = 49152;
    let mut v = Rng(3).vec(n);
    v[31337] = 5.0;
    v[40000] = 5.0;
    let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
    let o = ctx.storage_f32("o", 1);
    let p = ctx.params("p", &[n as u32]);
    ctx.run_once(PipelineKey::new(Shader::Argmax), &[&vb, &o, &p], [1, 1, 1])
        .unwrap();
    assert_eq!(ctx.read_u32(&o, 1).await.unwrap()[0], 31337);
    let s = GpuSampling {
        temperature: 0.8,
        top_k: 1,
        top_p: 1.0,
        uniform: 0.99,
        ..Default::default()
    };
    assert_eq!(sample_once(&ctx, &vb, n, &s).await.unwrap(), 31337);
    // Two candidates of equal logit: u below ½ takes the smaller id, above ½ the other.
    for (u, want) in [(0.25f64, 31337u32), (0.75, 40000)] {
        let s = GpuSampling {
            temperature: 1.0,
            top_k: 2,
            top_p: 1.0,
            uniform: u,
            ..Default::default()
        };
        assert_eq!(sample_once(&ctx, &vb, n, &s).await.unwrap(), want);
    }
}

/// token_mask.wgsl in Chromium's shader compiler (Tint), which refuses what naga accepts: a
/// constant expression that evaluates to −∞ once made the pipeline invalid, so every masked
/// step did nothing and the stale token buffer ended constrained replies at once.
#[wasm_bindgen_test]
async fn token_mask_matches_the_reference() {
    let ctx = context().await;
    let mut rng = Rng(77);
    for n in [33usize, 49_152] {
        let words = n.div_ceil(32);
        let mask: Vec<u32> = (0..words).map(|_| rng.u32() & rng.u32()).collect();
        let logits = rng.vec(n);
        let mut want = logits.clone();
        apply_token_mask(&mut want, &mask);
        let buf = ctx.storage_with("logits", bytemuck::cast_slice(&logits));
        token_mask_once(&ctx, &buf, n, &mask).unwrap();
        let got = ctx.read_f32(&buf, n).await.unwrap();
        for i in 0..n {
            assert_eq!(got[i].to_bits(), want[i].to_bits(), "n {n}, token {i}");
        }
    }
}

/// Every kernel that is not a weight format's compiles in Chromium (the format kernels are
/// covered above), and so does the matvec family over Q4_K (read in unit pairs) and Q6_K with
/// the workgroup-memory reductions (reduce_wg.wgsl; the browser has no subgroups): a shader Tint
/// rejects is a typed error at the next readback, never a silent no-op.
#[wasm_bindgen_test]
async fn every_kernel_compiles_in_chromium() {
    let ctx = context().await;
    use quant::GgmlType::{Q4_K, Q6_K};
    for ty in [Q4_K, Q6_K] {
        for l in layouts(ty) {
            for (kernel, flag) in [
                (Shader::Matvec(ty, l), 0),
                (Shader::Matmat(ty, l), 0),
                (Shader::MatvecFused(ty, l), 0),
                (Shader::MatvecFused(ty, l), 1),
                (Shader::MatvecQkv([(ty, l), (ty, l), (Q6_K, l)]), 1),
                (Shader::MatvecGlu([(ty, l), (ty, l)]), 0),
            ] {
                let key = PipelineKey {
                    rows: 8,
                    norm: flag,
                    add: 1 - flag,
                    kv_f16: flag,
                    ..PipelineKey::new(kernel)
                };
                // wgpu's webgpu backend reports no SUBGROUP (were it to, reduce_sg.wgsl would
                // need `enable subgroups;` for Tint).
                assert!(!ctx.uses_subgroups(key), "{key:?}");
                if let Err(e) = ctx.pipeline(key) {
                    panic!("{key:?}: {e}");
                }
            }
        }
    }
    for k in Shader::FORMAT_FREE {
        for kv_f16 in [0, 1] {
            let key = PipelineKey {
                kv_f16,
                ..PipelineKey::new(k)
            };
            if let Err(e) = ctx.pipeline(key) {
                panic!("{k:?} (kv_f16 {kv_f16}): {e}");
            }
        }
    }
    let b = ctx.storage_f32("probe", 1);
    ctx.read_f32(&b, 1)
        .await
        .unwrap_or_else(|e| panic!("a kernel was rejected: {e}"));
}

#[wasm_bindgen_test]
async fn tiny_model_greedy_matches_the_golden_ids() {
    let g: serde_json::Value = serde_json::from_str(GOLDEN).unwrap();
    let case = &g["cases"][0];
    let ids = |v: &serde_json::Value| -> Vec<u32> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u32)
            .collect()
    };
    let prompt = ids(&case["prompt_ids"]);
    let want = ids(&case["greedy_ids"])[..8].to_vec();
    let mut gpu = GpuModel::load(context().await, &MODEL.to_vec(), 64).unwrap();
    let logits = gpu.forward(&prompt, 0).await.unwrap();
    let mut toks = vec![wasm_chord::sampling::argmax(&logits) as u32];
    let mut pos = prompt.len();
    while toks.len() < 8 {
        toks.push(gpu.step_argmax(*toks.last().unwrap(), pos).await.unwrap());
        pos += 1;
    }
    web_log(&format!("tiny greedy on WebGPU: {toks:?}"));
    assert_eq!(toks, want);

    // Sampling on the GPU with top_k = 1 is the greedy choice.
    let s = GpuSampling {
        temperature: 0.8,
        top_k: 1,
        top_p: 0.9,
        uniform: 0.5,
        ..Default::default()
    };
    let last = prompt[prompt.len() - 1];
    let n = prompt.len() - 1;
    assert_eq!(
        gpu.step_sample(last, n, &s, &prompt).await.unwrap(),
        want[0]
    );

    // Token by token (batches of 1) gives the batched prefill's logits.
    gpu.limit_batch(1);
    let one_by_one = gpu.forward(&prompt, 0).await.unwrap();
    assert_nmse(
        "tiny: batched prefill vs token by token",
        &logits,
        &one_by_one,
        1e-10,
    );

    // An f16 KV cache (pack2x16float: no shader-f16 needed) stays close.
    let ctx = context().await.with_kv_f16(true);
    let mut half = GpuModel::load(ctx, &MODEL.to_vec(), 64).unwrap();
    let l16 = half.forward(&prompt, 0).await.unwrap();
    assert_nmse("tiny: f16 KV cache vs f32", &l16, &logits, 1e-3);
}

/// The adapter self-test `backend: 'auto'` runs (src/gpu/selftest.rs) passes on SwiftShader
/// for every format with a GPU kernel: its known answers hold on a correct adapter.
#[wasm_bindgen_test]
async fn adapter_self_test_passes() {
    let ctx = context().await;
    let formats = wasm_chord::gpu::selftest::formats_to_test(GPU_TYPES.iter().copied());
    assert_eq!(formats.len(), GPU_TYPES.len());
    let report = wasm_chord::gpu::selftest::run(&ctx, &formats, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    web_log(&format!("self-test: {report:?}"));
    for (ty, e) in &report.formats {
        assert!(
            *e <= wasm_chord::gpu::selftest::MAX_NMSE,
            "{ty}: NMSE {e:e}"
        );
    }
    assert_eq!(report.formats.len(), formats.len());
}
