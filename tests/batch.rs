//! Continuous batching (`wasm_chord::batch`): every sequence's output in a shared batch equals
//! its output alone on the same path, requests that arrive mid-run join, finished ones leave,
//! and the batched step equals the single-sequence forward pass.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;
use wasm_chord::batch::{BatchOptions, Batcher, Event, Prompt};
use wasm_chord::chat::ChatMessage;
use wasm_chord::cpu::batch::BatchRow;
use wasm_chord::cpu::{CpuModel, Kernel, KvCache};
use wasm_chord::engine::{Control, Engine, FinishReason, GenerateOptions, Generation, LoadOptions};
use wasm_chord::sampling::SamplerConfig;
use wasm_chord::source::FileSource;

const MODEL: &str = "smollm2-135m-instruct-q4_k_m.gguf";

fn engine() -> Engine {
    let src = FileSource::open(common::model_path(MODEL).to_str().unwrap()).unwrap();
    Engine::load(&src, &LoadOptions::default()).unwrap()
}

/// Four different requests: greedy and sampled, with a stop string, of different lengths.
/// A scheduler over a fresh `engine()`.
fn batcher(parallel: usize, n_ctx: usize) -> Batcher {
    Batcher::start(engine(), BatchOptions { parallel, n_ctx }).unwrap()
}

fn requests() -> Vec<(Prompt, GenerateOptions)> {
    let chat = |m: &str| Prompt::Chat(vec![ChatMessage::user(m)]);
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
        (chat("What is the capital of France?"), greedy(24)),
        (chat("Write a haiku about the sea."), sampled(32, 7)),
        (Prompt::Text("Once upon a time".into()), greedy(12)),
        (
            chat("Count from one to twenty in words."),
            GenerateOptions {
                stop: vec!["4.".into()],
                ..greedy(40)
            },
        ),
        (chat("Name three colours."), sampled(20, 99)),
    ]
}

fn run_one(b: &Batcher, prompt: Prompt, opts: GenerateOptions) -> Generation {
    common::batch::run_one(b, prompt, opts, Duration::from_secs(300))
}

fn solo_outputs() -> Vec<Generation> {
    let b = batcher(1, 512);
    requests()
        .into_iter()
        .map(|(p, o)| run_one(&b, p, o))
        .collect()
}

#[test]
fn batched_outputs_equal_solo_outputs() {
    let solo = solo_outputs();
    assert!(
        solo.iter().any(|g| g.ids.len() >= 12),
        "the requests generate something"
    );
    assert!(
        matches!(
            solo[3].finish,
            FinishReason::StopString(_) | FinishReason::Eog
        ),
        "the stop-string request stops early: {:?}",
        solo[3].finish
    );

    let b = batcher(4, 512);
    let batched = common::batch::run_with_late_joiner(&b, requests(), Duration::from_secs(300));
    common::batch::assert_batched_equal_solo(&b, &batched, &solo);
}

/// The batched step gives the single-sequence forward pass's logits, row by row: on SmolLM2
/// (both kernels), on Gemma 3 with one sequence past its sliding window (the window, Q/K norms
/// and embedding scale), and on the tiny zoo models (Qwen 3, Gemma 4 with layers of different
/// sizes). Exactly where the kernels compute each token's row in one order whatever the batch:
/// the reference kernel, and the quantized models' formats (Q5_0, Q8_0, Q4_K, Q6_K) on the
/// i16 integer kernels (AVX-512 BW: `x86_i16`; AVX2: `x86_i16_avx2`). The f32 kernels' token
/// tiles (the float weights of the zoo models) sum in another order than their one-token dot
/// product: there the rows agree to 1e-5 of the row's largest logit, with the same arg-max.
#[test]
fn forward_batch_equals_forward_per_sequence() {
    let root = common::root();
    let zoo = |name: &str| root.join("tests/fixtures/zoo").join(name);
    #[cfg(target_arch = "x86_64")]
    let i16_kernels =
        std::is_x86_feature_detected!("avx512bw") || std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let i16_kernels = false;
    // (model, kernels, prompt lengths, quantized)
    let cases = [
        (
            common::model_path(MODEL),
            &[Kernel::Fast, Kernel::Reference][..],
            &[3usize, 7, 1][..],
            true,
        ),
        // 17 sequences: a step of 16 tokens or more, where prefill would take the AMX tiles
        // (x86_64 CPUs with AMX), still takes each sequence's one-token kernels.
        (
            common::model_path(MODEL),
            &[Kernel::Fast],
            &[2usize, 1, 3, 1, 2, 1, 1, 2, 3, 1, 2, 1, 1, 2, 1, 3, 1][..],
            true,
        ),
        (
            common::model_path("gemma-3-270m-q4_k_m.gguf"),
            &[Kernel::Fast],
            &[530, 5][..],
            true,
        ),
        (
            zoo("tiny-qwen3.gguf"),
            &[Kernel::Fast],
            &[4, 9, 2][..],
            false,
        ),
        (zoo("tiny-gemma4.gguf"), &[Kernel::Fast], &[6, 3][..], false),
        // A hybrid: each sequence's short-convolution state steps on its own.
        (
            zoo("tiny-lfm2.gguf"),
            &[Kernel::Fast],
            &[5, 2, 8][..],
            false,
        ),
        (zoo("tiny-qwen35.gguf"), &[Kernel::Fast], &[3, 6][..], false),
    ];
    for (path, kernels, lens, quantized) in cases {
        let src = FileSource::open(path.to_str().unwrap()).unwrap();
        for &kernel in kernels {
            let (_, model) = CpuModel::load(&src, kernel).unwrap();
            let v = model.cfg.n_vocab as u32;
            let what = format!("{} {kernel:?}", path.display());
            let prompts: Vec<Vec<u32>> = lens
                .iter()
                .enumerate()
                .map(|(s, &n)| {
                    (0..n as u32)
                        .map(|i| (i * 7919 + 13 + s as u32 * 104_729) % v)
                        .collect()
                })
                .collect();
            let next: Vec<u32> = (0..prompts.len() as u32)
                .map(|i| (i * 31 + 42) % v)
                .collect();
            let mut solo = vec![];
            let mut caches = vec![];
            for (p, &t) in prompts.iter().zip(&next) {
                let n_ctx = p.len() + 2;
                let mut c = KvCache::new(&model.cfg, n_ctx);
                model.forward(p, 0, &mut c).unwrap();
                let mut c2 = KvCache::new(&model.cfg, n_ctx);
                model.forward(p, 0, &mut c2).unwrap();
                solo.push(model.forward(&[t], p.len(), &mut c).unwrap());
                caches.push(c2);
            }
            let mut rows: Vec<BatchRow> = caches
                .iter_mut()
                .zip(prompts.iter().zip(&next))
                .map(|(cache, (p, &token))| BatchRow {
                    token,
                    pos: p.len(),
                    cache,
                })
                .collect();
            let batched = model.forward_batch(&mut rows).unwrap();
            let n_vocab = model.cfg.n_vocab;
            assert_eq!(batched.len(), prompts.len() * n_vocab, "{what}");
            let exact = kernel == Kernel::Reference || (quantized && i16_kernels);
            for (i, s) in solo.iter().enumerate() {
                let row = &batched[i * n_vocab..(i + 1) * n_vocab];
                if exact {
                    assert_eq!(
                        row,
                        &s[..],
                        "{what}: row {i} differs from the sequence's own forward pass"
                    );
                } else {
                    let scale = s.iter().fold(0f32, |m, v| m.max(v.abs()));
                    let diff = row
                        .iter()
                        .zip(s)
                        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                    assert!(
                        diff <= 1e-5 * scale,
                        "{what}: row {i} off by {diff} (scale {scale})"
                    );
                    assert_eq!(
                        wasm_chord::sampling::argmax(row),
                        wasm_chord::sampling::argmax(s),
                        "{what}: row {i}"
                    );
                }
            }
        }
    }
}

/// A batched step checks each sequence's room and tokens: a typed error, no panic.
#[test]
fn forward_batch_rejects_bad_rows() {
    let src = FileSource::open(common::model_path(MODEL).to_str().unwrap()).unwrap();
    let (_, model) = CpuModel::load(&src, Kernel::Fast).unwrap();
    let mut full = KvCache::new(&model.cfg, 2);
    let mut ok = KvCache::new(&model.cfg, 4);
    let mut rows = vec![
        BatchRow {
            token: 1,
            pos: 0,
            cache: &mut ok,
        },
        BatchRow {
            token: 1,
            pos: 2,
            cache: &mut full,
        },
    ];
    let e = model.forward_batch(&mut rows).unwrap_err();
    assert_eq!(e.code(), "context_full", "{e}");
    let mut ok = KvCache::new(&model.cfg, 4);
    let mut rows = vec![BatchRow {
        token: 9_999_999,
        pos: 0,
        cache: &mut ok,
    }];
    let e = model.forward_batch(&mut rows).unwrap_err();
    assert_eq!(e.code(), "bad_token", "{e}");
    assert!(model.forward_batch(&mut []).unwrap().is_empty());
}

/// The batcher's solo path is the engine's own generate loop: same tokens and text.
#[test]
fn solo_batcher_equals_engine_generate() {
    let mut e = engine();
    let solo = solo_outputs();
    for ((p, o), s) in requests().into_iter().zip(&solo) {
        let ids = match &p {
            Prompt::Chat(m) => e.chat_prompt_ids(m, &Default::default()).unwrap(),
            Prompt::Text(t) => e.tokenize(t, true, false).unwrap(),
            Prompt::Ids(ids) => ids.clone(),
        };
        let g = e.generate(&ids, &o, &mut |_| Control::Continue).unwrap();
        assert_eq!(g.ids, s.ids);
        assert_eq!(g.text, s.text);
        assert_eq!(g.finish, s.finish);
    }
}

/// A callback that answers Stop cancels its sequence and frees the slot; bad requests fail
/// with a typed error and do not disturb the others.
#[test]
fn cancel_and_bad_requests() {
    let b = batcher(2, 64);
    let (tx, rx) = mpsc::channel();
    let mut n = 0;
    b.submit(
        Prompt::Text("Hello".into()),
        GenerateOptions {
            max_tokens: 50,
            stop_at_eog: false,
            ..Default::default()
        },
        Box::new(move |ev| {
            if let Event::Token { .. } = ev {
                n += 1;
                if n == 3 {
                    return Control::Stop;
                }
            }
            if let Event::Done(g) = ev {
                let _ = tx.send(g);
            }
            Control::Continue
        }),
    )
    .unwrap();
    let g = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(g.finish, FinishReason::Cancelled);
    assert_eq!(g.ids.len(), 3);

    let fail = |prompt: Prompt, opts: GenerateOptions| {
        let (tx, rx) = mpsc::channel();
        b.submit(
            prompt,
            opts,
            Box::new(move |ev| {
                if let Event::Failed(e) = ev {
                    let _ = tx.send(e.to_string());
                }
                Control::Continue
            }),
        )
        .unwrap();
        rx.recv_timeout(Duration::from_secs(60)).unwrap()
    };
    let long = Prompt::Text("word ".repeat(200));
    assert!(fail(long, GenerateOptions::default()).contains("context"));
    let e = fail(Prompt::Ids(vec![1, 999_999]), GenerateOptions::default());
    assert!(e.contains("999999"), "{e}");
    let e = fail(Prompt::Ids(vec![]), GenerateOptions::default());
    assert!(e.contains("empty"), "{e}");
    // Still serving.
    let g = run_one(
        &b,
        Prompt::Text("Hi".into()),
        GenerateOptions {
            max_tokens: 2,
            ..Default::default()
        },
    );
    assert_eq!(g.ids.len(), 2);
    common::batch::assert_idle(&b.stats.active);
}

/// Each slot keeps its cache: a request that extends one of the conversations a slot served
/// prefills only the new part (`cached_tokens`), picks that slot over the other one, and
/// generates what an engine that prefills every prompt whole generates.
#[test]
fn slots_reuse_their_conversation_prefix() {
    let b = batcher(2, 512);
    let mut whole = engine();
    whole.set_prefix_reuse(false);
    let opts = GenerateOptions {
        max_tokens: 12,
        ..Default::default()
    };
    // Two conversations served by turns, alternating, while both slots stay warm.
    let mut convs = [
        vec![ChatMessage::user("What is the capital of France?")],
        vec![ChatMessage::user("Name a large animal.")],
    ];
    let follow = ["And of Spain?", "And a small one?"];
    let mut last_prompt = [0usize; 2];
    for turn in 0..3 {
        for c in 0..2 {
            let g = run_one(&b, Prompt::Chat(convs[c].clone()), opts.clone());
            let want = whole
                .generate(&g.prompt_ids, &opts, &mut |_| Control::Continue)
                .unwrap();
            assert_eq!(want.cached_tokens, 0);
            assert_eq!(g.ids, want.ids, "turn {turn}, conversation {c}: tokens");
            assert_eq!(g.text, want.text, "turn {turn}, conversation {c}");
            if turn == 0 {
                // The other conversation's template prefix at most (system prompt and such).
                assert!(g.cached_tokens < g.prompt_ids.len() / 2 + 8, "{turn} {c}");
            } else {
                // At least the previous turn's prompt came from this conversation's slot.
                assert!(
                    g.cached_tokens >= last_prompt[c],
                    "turn {turn}, conversation {c}: {} cached of {}, previous prompt {}",
                    g.cached_tokens,
                    g.prompt_ids.len(),
                    last_prompt[c]
                );
                assert!(g.cached_tokens < g.prompt_ids.len());
            }
            last_prompt[c] = g.prompt_ids.len();
            convs[c].push(ChatMessage::assistant(g.text.as_str()));
            convs[c].push(ChatMessage::user(follow[c]));
        }
    }
}

/// A constrained request in a shared batch follows its grammar exactly as `Engine::generate`
/// does, next to an unconstrained one; an unusable schema fails before any token.
#[test]
fn constrained_requests_in_a_batch() {
    use wasm_chord::constrain::Grammar;
    let b = batcher(2, 512);
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
        "required": ["city", "sunny"],
        "additionalProperties": false
    });
    let constrained = GenerateOptions {
        max_tokens: 40,
        grammar: Some(Grammar::JsonSchema(schema)),
        ..Default::default()
    };
    let free = GenerateOptions {
        max_tokens: 30,
        stop_at_eog: false,
        ..Default::default()
    };
    let msgs = |m: &str| vec![ChatMessage::user(m)];
    let reqs = [
        (msgs("Describe the weather in Paris as JSON."), constrained),
        (msgs("Tell me a story."), free),
    ];
    let (tx, rx) = mpsc::channel();
    for (i, (m, o)) in reqs.iter().enumerate() {
        let tx = tx.clone();
        b.submit(
            Prompt::Chat(m.clone()),
            o.clone(),
            Box::new(move |ev| {
                match ev {
                    Event::Done(g) => {
                        let _ = tx.send((i, Ok(g)));
                    }
                    Event::Failed(e) => {
                        let _ = tx.send((i, Err(e)));
                    }
                    _ => {}
                }
                Control::Continue
            }),
        )
        .unwrap();
    }
    let mut got: Vec<Option<Generation>> = vec![None, None];
    for _ in 0..2 {
        let (i, g) = rx.recv_timeout(Duration::from_secs(300)).unwrap();
        got[i] = Some(g.expect("generation"));
    }
    let mut e = engine();
    for ((m, o), g) in reqs.iter().zip(&got) {
        let g = g.as_ref().unwrap();
        let ids = e.chat_prompt_ids(m, &Default::default()).unwrap();
        let want = e.generate(&ids, o, &mut |_| Control::Continue).unwrap();
        assert_eq!(g.ids, want.ids);
        assert_eq!(g.text, want.text);
        assert_eq!(g.finish, want.finish);
    }
    let json: serde_json::Value = serde_json::from_str(&got[0].as_ref().unwrap().text)
        .expect("the constrained reply is JSON");
    assert!(
        json["city"].is_string() && json["sunny"].is_boolean(),
        "{json}"
    );
    assert_eq!(got[0].as_ref().unwrap().finish, FinishReason::Eog);
    assert!(
        b.stats.max_batch.load(Ordering::SeqCst) >= 2,
        "both shared a step"
    );

    // A schema llguidance cannot use: a typed error, and the batcher still serves.
    let (tx, rx) = mpsc::channel();
    b.submit(
        Prompt::Text("Hi".into()),
        GenerateOptions {
            grammar: Some(Grammar::Lark("start: ???".into())),
            ..Default::default()
        },
        Box::new(move |ev| {
            if let Event::Failed(e) = ev {
                let _ = tx.send(e);
            }
            Control::Continue
        }),
    )
    .unwrap();
    let err = rx.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(err.code(), "bad_grammar", "{err}");
}

/// A sequence is counted out of `Stats::active` before its last event reaches the caller:
/// inside the Done (or Failed) callback the count is already back to 0.
#[test]
fn a_sequence_is_not_active_when_its_last_event_arrives() {
    let b = batcher(2, 512);
    for max_tokens in [3, 0] {
        let stats = std::sync::Arc::clone(&b.stats);
        let (tx, rx) = mpsc::channel();
        let opts = GenerateOptions {
            max_tokens,
            ..Default::default()
        };
        b.submit(
            Prompt::Text("Once upon a time".into()),
            opts,
            Box::new(move |ev| {
                let last = match ev {
                    Event::Done(_) => "done",
                    Event::Failed(_) => "failed",
                    _ => return Control::Continue,
                };
                let _ = tx.send((last, stats.active.load(Ordering::SeqCst)));
                Control::Continue
            }),
        )
        .unwrap();
        let (last, active) = rx.recv_timeout(Duration::from_secs(300)).unwrap();
        let want = if max_tokens == 0 { "failed" } else { "done" };
        assert_eq!(last, want);
        assert_eq!(
            active, 0,
            "counted out before the {last} event (max_tokens {max_tokens})"
        );
    }
}
