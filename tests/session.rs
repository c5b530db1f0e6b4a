//! Saved sessions (`Engine::save_session` / `restore_session`): a conversation's cache saved
//! by one engine and restored into a freshly loaded one continues exactly as the original
//! engine does. With f32 values the restored cache is bit for bit the saved one, so the next
//! turn's greedy ids, text and cached token count equal the original's; with f16 values (the
//! default, half the bytes) the greedy continuation is checked the same way. A session saved
//! with another model, a corrupt one and one longer than the context are `bad_session` /
//! `context_full` errors that leave the cache as it was. CPU and GPU (any adapter; CI: Mesa
//! lavapipe), and a session saved on one backend restores on the other; hybrid models' sessions
//! carry their recurrent state.
#![cfg(not(target_arch = "wasm32"))]

mod common;

use wasm_chord::engine::{Backend, Control, Engine, GenerateOptions, Generation};
use wasm_chord::session::KvPrecision;
use wasm_chord::Error;

const TINY: &str = "tiny-random-llama-q4_k_m.gguf";
const SMOL: &str = "smollm2-135m-instruct-q4_k_m.gguf";

fn load(model: &str, backend: Backend, n_ctx: Option<usize>) -> Engine {
    common::load_engine(model, backend, n_ctx)
}

fn greedy(e: &mut Engine, prompt: &[u32], max_tokens: usize) -> Generation {
    let opts = GenerateOptions {
        max_tokens,
        stop_at_eog: false,
        ..Default::default()
    };
    e.generate(prompt, &opts, &mut |_| Control::Continue)
        .unwrap()
}

/// The first prompt of a token-level conversation.
fn first_turn(e: &Engine) -> Vec<u32> {
    e.tokenize(
        "The quick brown fox jumps over the lazy dog. Then",
        true,
        false,
    )
    .unwrap()
}

/// The second prompt: the first, its reply and a new question.
fn second_turn(e: &Engine, first: &[u32], reply: &[u32]) -> Vec<u32> {
    let mut p = first.to_vec();
    p.extend(reply);
    p.extend(
        e.tokenize(" And after that, the fox", false, false)
            .unwrap(),
    );
    p
}

/// Saves after the first turn on `save_on`, restores into fresh engines on `restore_on`, and
/// checks the second turn against the original engine's.
fn check(model: &str, save_on: Backend, restore_on: Backend, precisions: &[KvPrecision]) {
    let what = format!("{model}, saved on {save_on:?}, restored on {restore_on:?}");
    let mut original = load(model, save_on, None);
    let first = first_turn(&original);
    let reply = greedy(&mut original, &first, 12);
    let held = original.cached_ids().to_vec();
    assert_eq!(held.len(), first.len() + reply.ids.len() - 1, "{what}");
    let saved: Vec<_> = precisions
        .iter()
        .map(|&p| (p, original.save_session(p).unwrap()))
        .collect();
    let second_prompt = second_turn(&original, &first, &reply.ids);
    let want = greedy(&mut original, &second_prompt, 12);
    assert!(
        want.cached_tokens >= held.len() - 1,
        "{what}: the original reused its cache"
    );
    for (p, bytes) in saved {
        let what = format!("{what}, {p:?}");
        let mut restored = load(model, restore_on, None);
        assert_eq!(
            restored.restore_session(&bytes).unwrap(),
            held.len(),
            "{what}"
        );
        assert_eq!(restored.cached_ids(), &held[..], "{what}: the restored ids");
        let got = greedy(&mut restored, &second_prompt, 12);
        assert_eq!(
            got.cached_tokens, want.cached_tokens,
            "{what}: cached tokens"
        );
        assert_eq!(got.ids, want.ids, "{what}: the greedy continuation differs");
        assert_eq!(got.text, want.text, "{what}");
        if p == KvPrecision::F32 && save_on == restore_on {
            // Bit for bit: saving the restored cache gives the same bytes.
            let mut again = load(model, restore_on, None);
            again.restore_session(&bytes).unwrap();
            assert_eq!(
                again.save_session(p).unwrap(),
                bytes,
                "{what}: not bit for bit"
            );
        }
    }
}

#[test]
fn a_restored_session_continues_as_the_original_on_the_cpu() {
    check(
        SMOL,
        Backend::Cpu,
        Backend::Cpu,
        &[KvPrecision::F32, KvPrecision::F16],
    );
}

#[test]
fn a_restored_session_continues_as_the_original_on_the_gpu() {
    check(
        TINY,
        Backend::Gpu,
        Backend::Gpu,
        &[KvPrecision::F32, KvPrecision::F16],
    );
}

#[test]
fn a_session_saved_on_the_gpu_restores_on_the_cpu() {
    // The two backends' caches differ in rounding only: the continuation is checked for ids.
    check(TINY, Backend::Gpu, Backend::Cpu, &[KvPrecision::F32]);
}

/// Hybrid models (LFM2's short convolutions, Qwen3.5's delta-net): the session carries each
/// recurrent layer's state after the saved positions, so a restored conversation continues
/// exactly, on either backend.
#[test]
fn hybrid_sessions_carry_the_recurrent_state() {
    for family in ["lfm2", "qwen35"] {
        let path = common::root().join(format!("tests/fixtures/zoo/tiny-{family}.gguf"));
        let model = path.to_str().unwrap();
        check(model, Backend::Cpu, Backend::Cpu, &[KvPrecision::F32]);
        check(model, Backend::Gpu, Backend::Gpu, &[KvPrecision::F32]);
        check(model, Backend::Gpu, Backend::Cpu, &[KvPrecision::F32]);
    }
}

#[test]
fn f16_sessions_take_half_the_bytes_of_f32() {
    let mut e = load(SMOL, Backend::Cpu, None);
    let first = first_turn(&e);
    greedy(&mut e, &first, 4);
    let f32_len = e.save_session(KvPrecision::F32).unwrap().len();
    let f16_len = e.save_session(KvPrecision::F16).unwrap().len();
    let n = e.cached_ids().len();
    let c = e.config();
    let per_pos: usize = c.layers.iter().map(|l| l.kv_dim() + l.v_dim()).sum();
    assert!(
        f32_len >= n * per_pos * 4,
        "{f32_len} bytes for {n} positions"
    );
    assert!(
        f16_len >= n * per_pos * 2 && f16_len < f32_len / 2 + 1024,
        "{f16_len} vs {f32_len}"
    );
}

#[test]
fn a_bad_session_is_a_typed_error_that_keeps_the_cache() {
    let mut smol = load(SMOL, Backend::Cpu, None);
    let first = first_turn(&smol);
    greedy(&mut smol, &first, 6);
    let saved = smol.save_session(KvPrecision::F16).unwrap();
    let held = smol.cached_ids().to_vec();

    let bad_session = |r: Result<usize, Error>, what: &str| match r {
        Err(e @ Error::BadSession(_)) => assert_eq!(e.code(), "bad_session", "{what}: {e}"),
        other => panic!("{what}: expected a bad_session error, got {other:?}"),
    };
    // Another model: named as such, and the other engine's cache is untouched.
    let mut tiny = load(TINY, Backend::Cpu, None);
    let tiny_first = tiny.tokenize("hello there", true, false).unwrap();
    greedy(&mut tiny, &tiny_first, 3);
    let tiny_held = tiny.cached_ids().to_vec();
    let r = tiny.restore_session(&saved);
    assert!(
        format!("{:?}", r).contains("another model"),
        "the message says why: {r:?}"
    );
    bad_session(r, "another model");
    assert_eq!(tiny.cached_ids(), &tiny_held[..]);

    // Corrupt (one bit), truncated, empty, not a session at all.
    let mut flipped = saved.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x10;
    for (what, bytes) in [
        ("one bit flipped", &flipped[..]),
        ("truncated", &saved[..saved.len() - 100]),
        ("empty", &[][..]),
        (
            "not a session",
            &b"GGUF\x03\x00\x00\x00 and then something"[..],
        ),
    ] {
        bad_session(smol.restore_session(bytes), what);
        assert_eq!(smol.cached_ids(), &held[..], "{what}: the cache changed");
    }

    // Longer than the context of an engine loaded with a small one.
    let mut small = load(SMOL, Backend::Cpu, Some(8));
    match small.restore_session(&saved) {
        Err(e @ Error::ContextFull { .. }) => assert!(e.to_string().contains('8'), "{e}"),
        other => panic!("expected context_full, got {other:?}"),
    }
    assert!(small.cached_ids().is_empty());
    // And the good session still restores where it fits.
    assert_eq!(smol.restore_session(&saved).unwrap(), held.len());
}
