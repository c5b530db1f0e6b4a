//! Continuous batching on the GPU backend (`wasm_chord::gpu::GpuBatch` under
//! `wasm_chord::batch`): each sequence's output in a shared batched step equals its output
//! alone through the same step, bit for bit; requests that arrive mid-run join, finished ones
//! free their slot for the queue; slots keep their conversation's prefix. Run on Mesa lavapipe
//! in CI (WGPU_BACKEND=vulkan VK_ICD_FILENAMES=.../lvp_icd.x86_64.json).
//!
//! Why "alone through the same step" and not `Engine::generate`: the batched step runs every
//! matrix through matmat.wgsl (each weight read once for the batch), the single-sequence decode
//! step the fused matrix-vector kernels, which sum in another order; the logits of the two agree
//! to rounding (checked below), the tokens usually but not by construction.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;
use wasm_chord::batch::{BatchOptions, Batcher, Prompt};
use wasm_chord::engine::{Backend, Engine, GenerateOptions, Generation};
use wasm_chord::gpu::{BatchToken, GpuBatch};
use wasm_chord::sampling::SamplerConfig;

// The tiny random llama (512-token vocabulary, 4 layers): the scheduling and the per-slot
// caches are what is tested, and on lavapipe a real model's steps take minutes.
const MODEL: &str = "tiny-random-llama-q4_k_m.gguf";

fn engine() -> Engine {
    common::load_engine(MODEL, Backend::Gpu, Some(256))
}

fn requests() -> Vec<(Prompt, GenerateOptions)> {
    // It has no chat template: text prompts.
    let chat = |m: &str| Prompt::Text(m.into());
    let greedy = |n| GenerateOptions {
        max_tokens: n,
        ..Default::default()
    };
    let sampled = |n, seed| GenerateOptions {
        max_tokens: n,
        sampler: SamplerConfig {
            temperature: 0.9,
            top_k: 40,
            top_p: 0.95,
            repeat_penalty: 1.1,
            seed,
            ..Default::default()
        },
        ..Default::default()
    };
    vec![
        (chat("What is the capital of France?"), greedy(16)),
        (chat("Write a haiku about the sea."), sampled(20, 7)),
        (Prompt::Text("Once upon a time".into()), greedy(8)),
        (
            chat("Count from one to twenty in words."),
            GenerateOptions {
                stop: vec!["4.".into()],
                ..greedy(24)
            },
        ),
        (chat("Name three colours."), sampled(12, 99)),
    ]
}

fn run_one(b: &Batcher, prompt: Prompt, opts: GenerateOptions) -> Generation {
    common::batch::run_one(b, prompt, opts, Duration::from_secs(600))
}

/// Five requests (greedy and sampled, a stop string) on four slots, the fifth submitted while
/// the others run: each gives what it gives alone through the same batched step (a batcher with
/// the same slots, one request at a time), four shared a step, the fifth waited for a slot
/// that a finished sequence freed.
#[test]
fn gpu_batched_outputs_equal_solo_outputs() {
    let opts = BatchOptions {
        parallel: 4,
        n_ctx: 256,
    };
    let solo_b = Batcher::start(engine(), opts.clone()).unwrap();
    let solo: Vec<Generation> = requests()
        .into_iter()
        .map(|(p, o)| run_one(&solo_b, p, o))
        .collect();
    assert_eq!(
        solo_b.stats.max_batch.load(Ordering::SeqCst),
        1,
        "one at a time"
    );
    assert!(solo.iter().all(|g| !g.ids.is_empty()));

    let b = Batcher::start(engine(), opts).unwrap();
    let batched = common::batch::run_with_late_joiner(&b, requests(), Duration::from_secs(600));
    common::batch::assert_batched_equal_solo(&b, &batched, &solo);
}

/// The step itself: rows of a batch equal, bit for bit, the same tokens stepped alone and in
/// another order, and agree with the single-sequence path's logits (the fused kernels) to
/// rounding, with the same arg-max.
#[test]
fn gpu_batch_step_rows_equal_solo_steps() {
    let mut e = engine();
    let prompts: Vec<Vec<u32>> = ["The capital of France is", "Once upon a time", "1, 2, 3,"]
        .iter()
        .map(|t| e.tokenize(t, true, false).unwrap())
        .collect();
    // The single-sequence path's logits after each prompt and one more token.
    let next = [28u32, 314, 216];
    let want: Vec<Vec<f32>> = prompts
        .iter()
        .zip(next)
        .map(|(p, t)| {
            let mut ids = p.clone();
            ids.push(t);
            e.forget_prefix();
            e.logits(&ids).unwrap()
        })
        .collect();
    let m = e.gpu_model().unwrap();
    let b = GpuBatch::new(m, 4, 64).unwrap();
    let n_vocab = m.cfg.n_vocab;
    // Slots 3, 0, 1: not in order.
    let slots = [3usize, 0, 1];
    for (p, &s) in prompts.iter().zip(&slots) {
        wasm_chord::engine::block_on(b.prefill(m, s, p, 0)).unwrap();
    }
    let toks: Vec<BatchToken> = (0..3)
        .map(|i| BatchToken {
            token: next[i],
            slot: slots[i],
            pos: prompts[i].len(),
        })
        .collect();
    let step = |t: &[BatchToken]| wasm_chord::engine::block_on(b.decode(m, t)).unwrap();
    let all = step(&toks);
    assert_eq!(all.len(), 3 * n_vocab);
    let argmax = |v: &[f32]| (0..v.len()).max_by(|&a, &b| v[a].total_cmp(&v[b])).unwrap();
    for i in 0..3 {
        let row = &all[i * n_vocab..(i + 1) * n_vocab];
        let alone = step(&toks[i..i + 1]);
        assert!(
            row.iter()
                .zip(&alone)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "row {i} differs from the same token stepped alone"
        );
        let max = want[i].iter().fold(0f32, |a, v| a.max(v.abs()));
        let diff = row
            .iter()
            .zip(&want[i])
            .fold(0f32, |a, (x, y)| a.max((x - y).abs()));
        assert!(diff <= 2e-3 * max, "row {i}: {diff} off (max {max})");
        assert_eq!(argmax(row), argmax(&want[i]), "row {i}");
    }
    let rev: Vec<BatchToken> = toks.iter().rev().copied().collect();
    let r = step(&rev);
    for i in 0..3 {
        let a = &all[i * n_vocab..(i + 1) * n_vocab];
        let b = &r[(2 - i) * n_vocab..(3 - i) * n_vocab];
        assert!(
            a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "row {i} depends on its place in the batch"
        );
    }
    // Bad steps are errors, not panics.
    assert!(wasm_chord::engine::block_on(b.decode(m, &[])).is_err());
    let mut dup = toks.clone();
    dup[1].slot = dup[0].slot;
    assert!(wasm_chord::engine::block_on(b.decode(m, &dup)).is_err());
    let mut far = toks.clone();
    far[0].slot = 4;
    assert!(wasm_chord::engine::block_on(b.decode(m, &far)).is_err());
    let mut past = toks.clone();
    past[0].pos = 64;
    assert!(wasm_chord::engine::block_on(b.decode(m, &past)).is_err());
    let mut oov = toks;
    oov[2].token = n_vocab as u32;
    assert!(wasm_chord::engine::block_on(b.decode(m, &oov)).is_err());
}

/// Each slot keeps its conversation: a request that extends a conversation a slot served (its
/// prompt, the reply and a follow-up) picks that slot over the other one, prefills only the new
/// part, and generates what a fresh batcher (prefilling the whole prompt) generates.
#[test]
fn gpu_slots_reuse_their_conversation_prefix() {
    let opts_b = BatchOptions {
        parallel: 2,
        n_ctx: 128,
    };
    let e = engine();
    let tok = |t: &str| e.tokenize(t, true, false).unwrap();
    let mut convs = [
        tok("The capital of France is"),
        tok("My favourite animal is"),
    ];
    let follow = [tok(" And of Spain?"), tok(" And a small one?")];
    drop(e);
    let b = Batcher::start(engine(), opts_b.clone()).unwrap();
    let opts = GenerateOptions {
        max_tokens: 4,
        stop_at_eog: false,
        ..Default::default()
    };
    for turn in 0..2 {
        for c in 0..2 {
            let g = run_one(&b, Prompt::Ids(convs[c].clone()), opts.clone());
            if turn == 1 {
                // The slot holds the last prompt and the reply but its last token (never run).
                let held = convs[c].len() - follow[c].len() - 1;
                assert!(
                    g.cached_tokens == held,
                    "conversation {c}: {} cached of {}, the slot held {held}",
                    g.cached_tokens,
                    g.prompt_ids.len()
                );
                let fresh = Batcher::start(engine(), opts_b.clone()).unwrap();
                let want = run_one(&fresh, Prompt::Ids(convs[c].clone()), opts.clone());
                assert_eq!(want.cached_tokens, 0);
                assert_eq!(g.ids, want.ids, "conversation {c}: tokens");
            }
            convs[c].extend(&g.ids);
            convs[c].extend(&follow[c]);
        }
    }
}

/// Where the GPU cannot batch (a model with recurrent layers), the batcher says why and serves
/// one request at a time instead of failing or pretending to batch.
#[test]
fn gpu_batcher_without_batching_says_why_and_serves_serially() {
    let model = format!(
        "{}/tests/fixtures/zoo/tiny-lfm2.gguf",
        env!("CARGO_MANIFEST_DIR")
    );
    let e = common::load_engine(&model, Backend::Gpu, Some(64));
    let b = Batcher::start(
        e,
        BatchOptions {
            parallel: 4,
            n_ctx: 64,
        },
    )
    .unwrap();
    assert_eq!(b.parallel, 1, "recurrent layers are not batched on the GPU");
    let why = b
        .serial_reason
        .as_deref()
        .expect("a reason for serving serially");
    assert!(why.contains("recurrent"), "{why}");
    let g = run_one(
        &b,
        Prompt::Text("Once upon a time".into()),
        GenerateOptions {
            max_tokens: 4,
            ..Default::default()
        },
    );
    assert_eq!(g.ids.len(), 4, "the request ran to max_tokens");
    assert_eq!(
        b.stats.max_batch.load(Ordering::SeqCst),
        0,
        "no batched step ran"
    );
}
