//! Conversations that don't start over: the engine keeps the last sequence's KV cache and a
//! new request prefills only what follows the longest common prefix. Over a multi-turn chat
//! (with a Stop mid-reply, an edited earlier message and a regenerated reply) greedy output with
//! reuse equals, token for token, that of an engine that prefills every prompt whole (and, for
//! the last request, that of a freshly loaded engine), on the CPU and on the GPU; and
//! `cached_tokens` is exactly the common prefix of the prompt and what the cache holds.
//!
//! The CPU and GPU runs use the tiny random Llama (a conversation built at the token level: it
//! has no chat template), so the GPU test takes seconds on a software adapter; one CPU run goes
//! through SmolLM2's chat template with replies fed back as text. GPU tests run on any adapter
//! (CI: Mesa lavapipe, see the Makefile's `GPU_ENV`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use serde_json::{json, Value as Json};
use wasm_chord::chat::{messages_from_value, RenderOptions};
use wasm_chord::engine::{
    common_prefix, Backend, Control, Engine, FinishReason, GenerateOptions, Generation, LoadOptions,
};
use wasm_chord::source::FileSource;

const TINY: &str = "tiny-random-llama-q4_k_m.gguf";
const SMOL: &str = "smollm2-135m-instruct-q4_k_m.gguf";

fn load(model: &str, backend: Backend, n_ctx: Option<usize>) -> Engine {
    common::load_engine(model, backend, n_ctx)
}

/// One request of the conversation: its prompt and, optionally, a Stop after that many
/// streamed tokens.
struct Turn {
    what: &'static str,
    prompt: Vec<u32>,
    stop_after: Option<usize>,
}

/// The ids the cache holds after a generation: the prompt and every generated token but the
/// last (a token's keys and values are written when the next one is computed), or with the
/// last when pipelined GPU decoding ran one step past a stop (`ran_past`).
fn sequence_after(prompt: &[u32], generated: &[u32], ran_past: bool) -> Vec<u32> {
    let mut s = prompt.to_vec();
    let keep = if ran_past { 0 } else { 1 };
    s.extend(&generated[..generated.len().saturating_sub(keep)]);
    s
}

fn generate(
    e: &mut Engine,
    prompt: &[u32],
    max_tokens: usize,
    stop_after: Option<usize>,
) -> Generation {
    let opts = GenerateOptions {
        max_tokens,
        ..Default::default()
    };
    let mut streamed = 0;
    e.generate(prompt, &opts, &mut |_| {
        streamed += 1;
        if stop_after.is_some_and(|n| streamed >= n) {
            Control::Stop
        } else {
            Control::Continue
        }
    })
    .unwrap()
}

/// The six requests of the conversation, each built by `next(t, replies so far)`: turns 0-3
/// (turn 2 stopped after 3 tokens), an edit of the first question with the later turns kept
/// (4) and a regenerate of that reply (5).
type Script<'a> = dyn FnMut(&Engine, usize, &[Generation]) -> Turn + 'a;

/// Runs the conversation on an engine with reuse and on one without (the oracle); returns, per
/// turn, the cached token count and the prompt length.
fn check_conversation(
    model: &str,
    backend: Backend,
    max_tokens: usize,
    next: &mut Script,
) -> Vec<(usize, usize)> {
    let mut reuse = load(model, backend, None);
    let recurrent = reuse.config().has_recurrent();
    let mut whole = load(model, backend, None);
    whole.set_prefix_reuse(false);
    let mut held: Vec<u32> = vec![];
    let mut replies: Vec<Generation> = vec![];
    let mut counts = vec![];
    let mut last = None;
    for t in 0..6 {
        let turn = next(&reuse, t, &replies);
        let what = format!("{model} on {backend:?}, turn {t} ({})", turn.what);
        let prompt = &turn.prompt;
        let got = generate(&mut reuse, prompt, max_tokens, turn.stop_after);
        let want = generate(&mut whole, prompt, max_tokens, turn.stop_after);
        assert!(!want.ids.is_empty(), "{what}: nothing generated");
        assert_eq!(got.ids, want.ids, "{what}: greedy ids differ with reuse");
        assert_eq!(got.text, want.text, "{what}");
        assert_eq!(got.finish, want.finish, "{what}");
        let expected = common_prefix(&held, prompt).min(prompt.len() - 1);
        if recurrent {
            // A recurrent state resumes where it stands or from a checkpoint (each prompt's
            // last position but one), never past the common prefix.
            assert!(got.cached_tokens <= expected, "{what}: cached tokens");
        } else {
            assert_eq!(got.cached_tokens, expected, "{what}: cached tokens");
        }
        assert_eq!(want.cached_tokens, 0, "{what}: reuse off still reused");
        if turn.stop_after.is_some() {
            assert_eq!(got.finish, FinishReason::Cancelled, "{what}");
        }
        // Greedy decoding on the GPU is pipelined: a stop (not max_tokens) costs one step.
        let ran_past = backend == Backend::Gpu && got.finish != FinishReason::Length;
        held = sequence_after(prompt, &got.ids, ran_past);
        assert_eq!(
            reuse.cached_ids(),
            &held[..],
            "{what}: what the cache holds"
        );
        counts.push((got.cached_tokens, prompt.len()));
        replies.push(got);
        last = Some(turn);
    }
    // The last request on a freshly loaded engine: the same tokens.
    let last = last.unwrap();
    let mut fresh = load(model, backend, None);
    let a = generate(&mut fresh, &last.prompt, max_tokens, last.stop_after);
    assert_eq!(
        a.ids,
        replies.last().unwrap().ids,
        "{model} on {backend:?}: a fresh engine's reply differs"
    );
    assert!(reuse.kv_bytes() > 0);
    // Turns 1-3 reuse at least the whole previous prompt; the edit only the start before the
    // first question; the regenerate all but the last prompt token.
    for t in 1..4 {
        assert!(
            counts[t].0 >= counts[t - 1].1,
            "turn {t}: only {:?} cached, previous prompt {}",
            counts[t],
            counts[t - 1].1
        );
    }
    let (edited, len) = counts[4];
    if recurrent {
        // No checkpoint lies before the edited first question: it starts over.
        assert_eq!(edited, 0, "edit: {edited} of {len} cached");
    } else {
        assert!(
            edited >= 3 && edited < counts[0].1,
            "edit: {edited} of {len} cached"
        );
    }
    let (regen, len) = counts[5];
    assert_eq!(regen, len - 1, "regenerate");
    counts
}

/// The conversation at the token level (the tiny model has no chat template): a system prompt,
/// then each question and reply appended as ids, so every prompt extends the last one. Short
/// prompts: a software GPU adapter prefills some 20 tokens a second.
fn token_script() -> impl FnMut(&Engine, usize, &[Generation]) -> Turn {
    let mut pieces: Vec<Vec<u32>> = vec![];
    move |e: &Engine, t: usize, replies: &[Generation]| {
        let q = |s: &str| e.tokenize(s, false, false).unwrap();
        let questions = [" Q: France?", " Q: Italy?", " Q: Rivers?", " Q: Count?"];
        if t == 0 {
            pieces.push(e.tokenize("Be brief.", true, false).unwrap());
        }
        if (1..4).contains(&t) {
            pieces.push(replies[t - 1].ids.clone());
        }
        let what = match t {
            0..4 => {
                pieces.push(q(questions[t]));
                "next question"
            }
            4 => {
                // The first question edited, the later turns kept.
                pieces[1] = q(" Q: Spain?");
                "edited first question"
            }
            _ => "regenerate",
        };
        Turn {
            what,
            prompt: pieces.concat(),
            stop_after: (t == 2).then_some(3),
        }
    }
}

#[test]
fn cpu_multi_turn_greedy_with_reuse_equals_fresh() {
    check_conversation(TINY, Backend::Cpu, 12, &mut token_script());
}

/// LFM2 (a hybrid: short-convolution layers keep a recurrent state besides the KV cache of its
/// attention layers) on the tiny random model: the same conversation, resuming from the state
/// or a checkpoint.
#[test]
fn cpu_hybrid_multi_turn_greedy_with_reuse_equals_fresh() {
    let lfm2 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/zoo/tiny-lfm2.gguf"
    );
    let counts = check_conversation(lfm2, Backend::Cpu, 12, &mut token_script());
    assert!(
        counts[1].0 > 0,
        "the second turn reused nothing: {counts:?}"
    );
}

#[test]
fn cpu_delta_net_multi_turn_greedy_with_reuse_equals_fresh() {
    let qwen35 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/zoo/tiny-qwen35.gguf"
    );
    let counts = check_conversation(qwen35, Backend::Cpu, 12, &mut token_script());
    assert!(
        counts[1].0 > 0,
        "the second turn reused nothing: {counts:?}"
    );
}

#[test]
fn gpu_delta_net_multi_turn_greedy_with_reuse_equals_fresh() {
    let qwen35 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/zoo/tiny-qwen35.gguf"
    );
    let counts = check_conversation(qwen35, Backend::Gpu, 6, &mut token_script());
    assert!(
        counts[1].0 > 0,
        "the second turn reused nothing: {counts:?}"
    );
}

#[test]
fn gpu_hybrid_multi_turn_greedy_with_reuse_equals_fresh() {
    let lfm2 = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/zoo/tiny-lfm2.gguf"
    );
    let counts = check_conversation(lfm2, Backend::Gpu, 6, &mut token_script());
    assert!(
        counts[1].0 > 0,
        "the second turn reused nothing: {counts:?}"
    );
}

#[test]
fn gpu_multi_turn_greedy_with_reuse_equals_fresh() {
    check_conversation(TINY, Backend::Gpu, 6, &mut token_script());
}

/// The same on SmolLM2 through its chat template, the replies fed back as text (re-tokenized,
/// so the cache may hold a little more or less of a reply than the next prompt).
#[test]
fn cpu_chat_template_conversation_with_reuse_equals_fresh() {
    let system =
        json!({"role": "system", "content": "You are a helpful assistant. Answer briefly."});
    let questions = [
        "What is the capital of France?",
        "And of Italy?",
        "Name three rivers in Europe.",
        "Thanks. Now count from one to five.",
    ];
    let mut msgs = vec![system];
    let mut script = |e: &Engine, t: usize, replies: &[Generation]| {
        if (1..4).contains(&t) {
            msgs.push(json!({"role": "assistant", "content": replies[t - 1].text}));
        }
        let what = match t {
            0..4 => {
                msgs.push(json!({"role": "user", "content": questions[t]}));
                "next question"
            }
            4 => {
                msgs[1] = json!({"role": "user", "content": "What is the capital of Spain?"});
                "edited first question"
            }
            _ => "regenerate",
        };
        let m = messages_from_value(&Json::Array(msgs.clone())).unwrap();
        Turn {
            what,
            prompt: e.chat_prompt_ids(&m, &RenderOptions::default()).unwrap(),
            stop_after: (t == 2).then_some(3),
        }
    };
    let counts = check_conversation(SMOL, Backend::Cpu, 8, &mut script);
    // The edit keeps the system prompt and the start of the first user message.
    assert!(counts[4].0 > 10, "edit: {:?}", counts[4]);
}

/// A prompt that shares nothing (not even BOS) with the cache prefills whole and still
/// generates what a fresh engine does; `logits` (which overwrites the cache) and turning reuse
/// off forget the cache.
#[test]
fn unrelated_prompt_logits_and_reuse_off() {
    let mut e = load(TINY, Backend::Cpu, None);
    let a = e.tokenize("The quick brown fox", true, false).unwrap();
    let b = e
        .tokenize("Lorem ipsum dolor sit amet", false, false)
        .unwrap();
    assert_eq!(common_prefix(&a, &b), 0);
    let first = generate(&mut e, &a, 8, None);
    assert_eq!(first.cached_tokens, 0);
    let again = generate(&mut e, &a, 8, None);
    assert_eq!(again.cached_tokens, a.len() - 1);
    assert_eq!(again.ids, first.ids);
    let other = generate(&mut e, &b, 8, None);
    assert_eq!(other.cached_tokens, 0);
    let mut fresh = load(TINY, Backend::Cpu, None);
    assert_eq!(other.ids, generate(&mut fresh, &b, 8, None).ids);
    e.logits(&b[..2]).unwrap();
    assert!(e.cached_ids().is_empty(), "logits overwrote the cache");
    let after = generate(&mut e, &b, 8, None);
    assert_eq!((after.cached_tokens, &after.ids), (0, &other.ids));
    e.set_prefix_reuse(false);
    assert!(e.cached_ids().is_empty());
    assert_eq!(generate(&mut e, &b, 8, None).cached_tokens, 0);
}

/// A conversation longer than a small context keeps answering: the oldest whole turns are
/// dropped (the system prompt and the latest question stay), the count is reported, and the
/// `error` policy keeps the clear `context_full` error instead.
#[test]
fn long_conversation_in_a_small_context_keeps_answering() {
    use wasm_chord::conversation::{fit_chat, Overflow};
    const N_CTX: usize = 160;
    let mut e = load(SMOL, Backend::Cpu, Some(N_CTX));
    assert_eq!(e.n_ctx(), N_CTX);
    let opts = GenerateOptions {
        max_tokens: 16,
        ..Default::default()
    };
    let render = RenderOptions::default();
    let mut msgs =
        vec![json!({"role": "system", "content": "You are a helpful assistant. Answer briefly."})];
    let mut dropped_seen = 0;
    let mut error_checked = false;
    for turn in 0..7 {
        msgs.push(json!({"role": "user", "content": format!("Question {turn}: tell me one fact about the number {}.", turn * 7 + 3)}));
        let all = messages_from_value(&Json::Array(msgs.clone())).unwrap();
        let whole = e.chat_prompt_ids(&all, &render).unwrap();
        let fitted = fit_chat(&e, &all, &render, &opts, Overflow::DropOldest).unwrap();
        assert!(
            fitted.ids.len() + opts.max_tokens <= N_CTX,
            "turn {turn}: {} tokens",
            fitted.ids.len()
        );
        if whole.len() + opts.max_tokens > N_CTX {
            assert!(fitted.dropped_messages > 0, "turn {turn}: nothing dropped");
            // Dropped whole turns from the front: the system prompt still opens the prompt and
            // the latest question still ends it.
            let head = common_prefix(&whole, &fitted.ids);
            assert!(
                head >= 10,
                "turn {turn}: the system prompt is kept ({head} common tokens)"
            );
            let tail = common_prefix(
                &whole.iter().rev().copied().collect::<Vec<_>>(),
                &fitted.ids.iter().rev().copied().collect::<Vec<_>>(),
            );
            assert!(
                tail > 20,
                "turn {turn}: the latest question is kept ({tail} common tail tokens)"
            );
            dropped_seen = dropped_seen.max(fitted.dropped_messages);
            // The error policy leaves the messages alone; once the prompt alone overflows
            // the context it is the clear error.
            let as_is = fit_chat(&e, &all, &render, &opts, Overflow::Error).unwrap();
            assert_eq!((as_is.ids.len(), as_is.dropped_messages), (whole.len(), 0));
            if whole.len() >= N_CTX {
                let err = e
                    .generate(&whole, &opts, &mut |_| Control::Continue)
                    .unwrap_err();
                assert_eq!(err.code(), "context_full", "{err}");
                error_checked = true;
            }
        } else {
            assert_eq!(fitted.dropped_messages, 0);
        }
        let g = e
            .generate(&fitted.ids, &opts, &mut |_| Control::Continue)
            .unwrap();
        assert!(!g.text.trim().is_empty(), "turn {turn}: empty reply");
        msgs.push(json!({"role": "assistant", "content": g.text}));
    }
    assert!(
        dropped_seen >= 2,
        "the conversation never outgrew the context"
    );
    assert!(
        error_checked,
        "the prompt never outgrew the context by itself"
    );

    // A prompt that nearly fills the context stops at its end with finish 'length'.
    let prompt: Vec<u32> = e
        .tokenize(&"one two three ".repeat(60), true, false)
        .unwrap()[..N_CTX - 3]
        .to_vec();
    let g = e
        .generate(&prompt, &opts, &mut |_| Control::Continue)
        .unwrap();
    assert_eq!(g.finish, FinishReason::Length);
    assert_eq!(
        prompt.len() + g.ids.len(),
        N_CTX + 1,
        "the last position of the context is used"
    );

    // n_ctx at load is checked against the model.
    let src = FileSource::open(common::model_path(TINY)).unwrap();
    let with = |n_ctx| {
        Engine::load(
            &src,
            &LoadOptions {
                n_ctx: Some(n_ctx),
                ..Default::default()
            },
        )
    };
    let err = with(1 << 30)
        .err()
        .expect("a context larger than the model's");
    assert!(err.to_string().contains("training context"), "{err}");
    assert_eq!(with(0).err().expect("n_ctx 0").code(), "invalid");
    assert_eq!(with(64).unwrap().n_ctx(), 64);
}
