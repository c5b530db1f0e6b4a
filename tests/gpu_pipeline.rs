//! Pipelined GPU decoding (see the engine's module docs): the step that consumes a token is
//! submitted before the host reads that token back, its embedding taken on the device
//! (embed_token.wgsl, over every chunk of a split token_embd).
//!
//! - The device-token embedding equals the host's row for rows in every chunk (GpuModel level,
//!   logits compared exactly).
//! - Greedy output with pipelining equals the unpipelined path token for token, and the last
//!   step's logits bit for bit, on several families (two recurrent); the counters prove that
//!   each readback but the last overlapped the next step and that no step was added.
//! - A stop (callback Stop, stop string) gives the same text; the one extra step it costs
//!   leaves the cache holding the last token, and the next turn, reusing that cache, equals a
//!   fresh engine's.
//! - Sampling with top_k ≤ 64 is pipelined with the same draws; sampling on a recurrent model
//!   and constrained decoding are not.
//!
//! Natively on any adapter (CI: Mesa lavapipe, WGPU_BACKEND=vulkan
//! VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use pollster::block_on;
use wasm_chord::engine::{
    Backend, Control, Engine, FinishReason, GenerateOptions, Generation, LoadOptions,
};
use wasm_chord::gpu::{DecodeCounters, GpuContext, GpuModel};
use wasm_chord::sampling::{argmax, SamplerConfig};
use wasm_chord::session::KvPrecision;
use wasm_chord::source::FileSource;

const TINY: &str = "tiny-random-llama-q4_k_m.gguf";

fn zoo(name: &str) -> String {
    format!(
        "{}/tests/fixtures/zoo/tiny-{name}.gguf",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn context() -> GpuContext {
    block_on(GpuContext::new()).unwrap_or_else(|e| {
        panic!(
            "{e}\nThe GPU tests need a WebGPU adapter: install `mesa-vulkan-drivers` and set \
             WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
        )
    })
}

fn engine(model: &str, pipelined: bool) -> Engine {
    engine_with_ctx(model, pipelined, 128)
}

fn engine_with_ctx(model: &str, pipelined: bool, n_ctx: usize) -> Engine {
    let mut e = common::load_engine(model, Backend::Gpu, Some(n_ctx));
    e.set_pipelining(pipelined);
    e
}

fn counters(e: &Engine) -> DecodeCounters {
    e.gpu_model().unwrap().counters()
}

/// What a generation added to the counters.
fn delta(after: DecodeCounters, before: DecodeCounters) -> DecodeCounters {
    DecodeCounters {
        submissions: after.submissions - before.submissions,
        device_token_steps: after.device_token_steps - before.device_token_steps,
        token_readbacks: after.token_readbacks - before.token_readbacks,
        overlapped_readbacks: after.overlapped_readbacks - before.overlapped_readbacks,
    }
}

/// Generate, stopping after `stop_after` streamed tokens if given: the generation and what it
/// added to the counters.
fn run(
    e: &mut Engine,
    prompt: &[u32],
    opts: &GenerateOptions,
    stop_after: Option<usize>,
) -> (Generation, DecodeCounters) {
    let before = counters(e);
    let mut streamed = 0;
    let g = e
        .generate(prompt, opts, &mut |_| {
            streamed += 1;
            match stop_after {
                Some(n) if streamed >= n => Control::Stop,
                _ => Control::Continue,
            }
        })
        .unwrap();
    (g, delta(counters(e), before))
}

fn greedy(max_tokens: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        stop_at_eog: false,
        ..Default::default()
    }
}

fn last_logits(e: &Engine) -> Vec<f32> {
    block_on(e.gpu_model().unwrap().last_logits()).unwrap()
}

fn prompt(e: &Engine) -> Vec<u32> {
    e.tokenize("Once upon a time, in a quiet town", true, false)
        .unwrap()
}

/// The device-token embedding over a token_embd split into chunks (`max_binding` bytes per
/// binding): forcing the previous step's argmax to rows in different chunks (a token mask
/// allowing one token), the next step's logits equal those of the same step with the token
/// written from the host, exactly.
fn check_device_embedding(model: &str, max_binding: u64) {
    let src = FileSource::open(common::model_path(model)).unwrap();
    let mut dev = GpuModel::load(context().with_max_binding(max_binding), &src, 32).unwrap();
    let mut host = GpuModel::load(context().with_max_binding(max_binding), &src, 32).unwrap();
    let n_vocab = dev.cfg.n_vocab;
    let words = n_vocab.div_ceil(32);
    let rows = [
        0,
        1,
        n_vocab / 3,
        n_vocab / 2 + 1,
        2 * n_vocab / 3,
        n_vocab - 1,
    ];
    for (k, &forced) in rows.iter().enumerate() {
        let (t, pos) = (5 + k as u32, 2 * k);
        let mut mask = vec![0u32; words];
        mask[forced / 32] |= 1 << (forced % 32);
        dev.set_token_mask(Some(&mask)).unwrap();
        let first = dev.submit_argmax(&[t], pos).unwrap();
        dev.set_token_mask(None).unwrap();
        let second = dev.submit_from_device(pos + 1, None).unwrap();
        assert_eq!(block_on(dev.read_token(first)).unwrap(), forced as u32);
        // One embedding dispatch per chunk (and argmax), against the host's one.
        let dev_dispatches = dev.last_step().dispatches;
        let got_token = block_on(dev.read_token(second)).unwrap();
        let got = block_on(dev.last_logits()).unwrap();

        host.run(&[t], pos).unwrap();
        let want = block_on(host.forward(&[forced as u32], pos + 1)).unwrap();
        let chunks = dev_dispatches - host.last_step().dispatches;
        assert!(chunks >= 4, "{model}: token_embd in {chunks} chunks");
        assert!(
            got == want,
            "{model} (max binding {max_binding}): logits after row {forced} differ"
        );
        assert_eq!(got_token, argmax(&want) as u32, "{model}: row {forced}");
    }
    assert_eq!(dev.counters().device_token_steps, rows.len());
}

#[test]
fn device_token_embedding_reads_every_chunk() {
    // Q4_K rows of 144 bytes: 512 rows in 4 chunks of 138 rows and the rest.
    check_device_embedding(TINY, 20_000);
    // F32 rows of 256 bytes with Gemma's embedding scale: 512 rows in 4 chunks.
    check_device_embedding(&zoo("gemma4"), 40_000);
}

#[test]
fn device_token_step_needs_a_token_on_the_device() {
    let src = FileSource::open(common::model_path(TINY)).unwrap();
    let mut m = GpuModel::load(context(), &src, 16).unwrap();
    assert!(m.submit_from_device(0, None).is_err());
    let p = m.submit_argmax(&[1, 2], 0).unwrap();
    // Past the context: a typed error, nothing submitted.
    assert!(m.submit_from_device(16, None).is_err());
    let q = m.submit_from_device(2, None).unwrap();
    let r = m.submit_from_device(3, None).unwrap();
    // Two later steps reused the first one's staging buffer.
    assert!(block_on(m.read_token(p)).is_err());
    block_on(m.read_token(q)).unwrap();
    block_on(m.read_token(r)).unwrap();
}

/// Greedy: pipelined equals unpipelined (ids, text, the last step's logits exactly), with one
/// overlapped readback per generated token but the last and the same number of submissions.
fn check_greedy(model: &str) {
    const N: usize = 10;
    let mut on = engine(model, true);
    let mut off = engine(model, false);
    let p = prompt(&on);
    let (got, c_on) = run(&mut on, &p, &greedy(N), None);
    let (want, c_off) = run(&mut off, &p, &greedy(N), None);
    eprintln!(
        "{model}: {:?}\n  pipelined {c_on:?}\n  unpipelined {c_off:?}",
        got.ids
    );
    assert_eq!(got.ids.len(), N, "{model}");
    assert_eq!(got.ids, want.ids, "{model}: greedy ids differ");
    assert_eq!(got.text, want.text, "{model}");
    assert!(
        last_logits(&on) == last_logits(&off),
        "{model}: the last step's logits differ"
    );
    assert_eq!(c_on.token_readbacks, N, "{model}");
    assert_eq!(c_on.overlapped_readbacks, N - 1, "{model}: pipelined");
    assert_eq!(c_on.device_token_steps, N - 1, "{model}");
    assert_eq!(c_off.token_readbacks, N, "{model}");
    assert_eq!(c_off.overlapped_readbacks, 0, "{model}: unpipelined");
    assert_eq!(c_off.device_token_steps, 0, "{model}");
    // One submission per decode step either way: pipelining adds none at max_tokens.
    assert_eq!(c_on.submissions, c_off.submissions, "{model}");
    assert_eq!(on.cached_ids(), off.cached_ids(), "{model}");
}

#[test]
fn pipelined_greedy_equals_unpipelined_llama() {
    check_greedy(TINY);
}

#[test]
fn pipelined_greedy_equals_unpipelined_zoo() {
    for name in ["gemma4", "qwen3", "phi3", "granite", "smollm3"] {
        check_greedy(&zoo(name));
    }
}

#[test]
fn pipelined_greedy_equals_unpipelined_recurrent() {
    check_greedy(&zoo("lfm2"));
    check_greedy(&zoo("qwen35"));
}

/// A stop seen one step late: the same text and finish; the extra step leaves the cache
/// holding the last token too; the next turn (reusing the cache) equals a fresh engine's.
fn check_stop(model: &str) {
    let mut on = engine(model, true);
    let mut off = engine(model, false);
    let p = prompt(&on);
    let (full, _) = run(&mut off, &p, &greedy(12), None);

    // The callback's Stop after 4 tokens, and a stop string that the 6th token completes.
    let text_before = |n: usize| {
        let mut e = engine(model, false);
        run(&mut e, &p, &greedy(n), None).0.text
    };
    let (t5, t6) = (text_before(5), text_before(6));
    assert!(t6.len() > t5.len(), "{model}: the 6th token adds no text");
    let stop_string = t6[t5.len()..].to_string();
    let cases = [
        ("Stop", greedy(12), Some(4)),
        (
            "stop string",
            GenerateOptions {
                stop: vec![stop_string.clone()],
                ..greedy(12)
            },
            None,
        ),
    ];
    for (what, opts, stop_after) in cases {
        let (got, c_on) = run(&mut on, &p, &opts, stop_after);
        let (want, c_off) = run(&mut off, &p, &opts, stop_after);
        eprintln!(
            "{model}, {what}: {:?} {:?}\n  {c_on:?}",
            got.ids, got.finish
        );
        assert_eq!(got.ids, want.ids, "{model}, {what}");
        assert_eq!(got.text, want.text, "{model}, {what}");
        assert_eq!(got.finish, want.finish, "{model}, {what}");
        assert!(
            !matches!(got.finish, FinishReason::Length),
            "{model}, {what}"
        );
        assert!(
            full.ids.starts_with(&got.ids),
            "{model}, {what}: not the full run's start"
        );
        // One extra step: it consumed the last token, which the cache now holds.
        assert_eq!(c_on.device_token_steps, got.ids.len(), "{model}, {what}");
        assert_eq!(c_off.device_token_steps, 0, "{model}, {what}");
        let mut held = p.clone();
        held.extend(&got.ids);
        assert_eq!(on.cached_ids(), &held[..], "{model}, {what}");
        assert_eq!(off.cached_ids(), &held[..held.len() - 1], "{model}, {what}");
        // A recurrent state stands where the cache ends: the session saves.
        let saved = on.save_session(KvPrecision::F32);
        assert!(saved.is_ok(), "{model}, {what}: {:?}", saved.err());

        // The next turn extends the reply: with the cache reused, as a fresh engine.
        let mut next = held.clone();
        next.extend(on.tokenize(" And then", false, false).unwrap());
        let (a, _) = run(&mut on, &next, &greedy(6), None);
        let mut fresh = engine(model, true);
        let (b, _) = run(&mut fresh, &next, &greedy(6), None);
        assert!(a.cached_tokens > 0, "{model}, {what}: nothing reused");
        assert_eq!(
            a.ids, b.ids,
            "{model}, {what}: the next turn differs from a fresh run"
        );
        // Back to the first prompt for the next case (the unpipelined engine likewise).
        run(&mut off, &next, &greedy(6), None);
    }
}

#[test]
fn pipelined_stops_keep_the_cache_consistent() {
    check_stop(TINY);
}

#[test]
fn pipelined_stops_keep_the_cache_consistent_recurrent() {
    check_stop(&zoo("lfm2"));
    check_stop(&zoo("qwen35"));
}

fn sampling(max_tokens: usize, top_k: usize) -> GenerateOptions {
    GenerateOptions {
        max_tokens,
        stop_at_eog: false,
        sampler: SamplerConfig {
            temperature: 0.9,
            top_k,
            top_p: 0.95,
            seed: 7,
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn pipelined_sampling_equals_unpipelined() {
    const N: usize = 12;
    let mut on = engine(TINY, true);
    let mut off = engine(TINY, false);
    let p = prompt(&on);
    let (got, c_on) = run(&mut on, &p, &sampling(N, 40), None);
    let (want, c_off) = run(&mut off, &p, &sampling(N, 40), None);
    assert_eq!(got.ids, want.ids, "sampled ids differ");
    assert_eq!(c_on.overlapped_readbacks, N - 1);
    assert_eq!(c_off.overlapped_readbacks, 0);
    // Different seeds give different tokens here, so the equality above is about the draws.
    let other = GenerateOptions {
        sampler: SamplerConfig {
            seed: 8,
            ..sampling(N, 40).sampler
        },
        ..sampling(N, 40)
    };
    assert_ne!(run(&mut on, &p, &other, None).0.ids, got.ids);
    // top_k 0 may leave the choice to the host: not pipelined.
    let (_, c) = run(&mut on, &p, &sampling(N, 0), None);
    assert_eq!(c.overlapped_readbacks, 0);
}

#[test]
fn recurrent_sampling_and_grammars_are_not_pipelined() {
    let mut lfm2 = engine(&zoo("lfm2"), true);
    let p = prompt(&lfm2);
    let (_, c) = run(&mut lfm2, &p, &sampling(6, 40), None);
    assert_eq!(c.overlapped_readbacks, 0);
    let mut e = engine(TINY, true);
    let opts = GenerateOptions {
        grammar: Some(wasm_chord::constrain::Grammar::Regex("[a-z ]{1,40}".into())),
        ..greedy(6)
    };
    let (g, c) = run(&mut e, &p, &opts, None);
    assert!(!g.ids.is_empty());
    assert_eq!(c.overlapped_readbacks, 0);
}

#[test]
fn pipelining_is_off_on_the_cpu_and_harmless() {
    let src = FileSource::open(common::model_path(TINY)).unwrap();
    let mut cpu = Engine::load(&src, &LoadOptions::default()).unwrap();
    assert!(cpu.gpu_model().is_none());
    let p = prompt(&cpu);
    let a = cpu
        .generate(&p, &greedy(4), &mut |_| Control::Continue)
        .unwrap();
    cpu.set_pipelining(false);
    let b = cpu
        .generate(&p, &greedy(4), &mut |_| Control::Continue)
        .unwrap();
    assert_eq!(a.ids, b.ids);
}

/// An end-of-generation token seen one step late, through a chat template: the same reply and
/// finish; the cache holds the reply with its end token; the next turn, reusing it, equals a
/// fresh engine's (one with reuse off). On the tiny random llama with a ChatML template
/// (`common::tiny_chat`), whose greedy reply to this message ends with `</s>` as its 29th token
/// (`chord generate`, CPU and GPU alike); SmolLM2 took minutes of lavapipe here.
#[test]
fn pipelined_eos_keeps_the_cache_consistent() {
    use serde_json::json;
    use wasm_chord::chat::{messages_from_value, RenderOptions};
    let model = &common::tiny_chat();
    let chat = |e: &Engine, msgs: &serde_json::Value| {
        let m = messages_from_value(msgs).unwrap();
        e.chat_prompt_ids(&m, &RenderOptions::default()).unwrap()
    };
    // 256 positions: the template's markers are ~10 tokens each in this vocabulary.
    let mut on = engine_with_ctx(model, true, 256);
    let mut off = engine_with_ctx(model, false, 256);
    let mut msgs = json!([{"role": "user", "content": "Answer Yes or no?"}]);
    let p = chat(&on, &msgs);
    let opts = GenerateOptions {
        max_tokens: 40,
        ..Default::default()
    };
    let (got, c_on) = run(&mut on, &p, &opts, None);
    let (want, _) = run(&mut off, &p, &opts, None);
    eprintln!("{:?} {:?} {c_on:?}", got.text, got.finish);
    assert_eq!(got.finish, FinishReason::Eog, "no end-of-generation token");
    assert_eq!(got.ids, want.ids);
    assert_eq!(got.text, want.text);
    assert_eq!(
        c_on.device_token_steps,
        got.ids.len(),
        "one step past the stop"
    );
    let mut held = p.clone();
    held.extend(&got.ids);
    assert_eq!(on.cached_ids(), &held[..]);
    assert_eq!(off.cached_ids(), &held[..held.len() - 1]);

    msgs.as_array_mut().unwrap().extend([
        json!({"role": "assistant", "content": got.text}),
        json!({"role": "user", "content": "Again."}),
    ]);
    let next = chat(&on, &msgs);
    let short = GenerateOptions {
        max_tokens: 6,
        ..Default::default()
    };
    let (a, _) = run(&mut on, &next, &short, None);
    // Reuse off: the whole prompt prefilled, as on a fresh engine.
    off.set_prefix_reuse(false);
    let (b, _) = run(&mut off, &next, &short, None);
    assert!(
        a.cached_tokens > p.len(),
        "the reply was not reused: {}",
        a.cached_tokens
    );
    assert_eq!(a.ids, b.ids, "the next turn differs from a fresh run");
}
