//! `chord bench --json-schema FILE` / `--grammar FILE`: engine decode speed with and without a
//! constraint, on the same prompt, backend and sampler (greedy), each repetition a fresh
//! generation. The unconstrained run is the engine's ordinary path (no mask is computed,
//! uploaded or applied), as many tokens as the constrained one; the constrained run adds
//! llguidance's mask per token on the CPU and, on the GPU, token_mask.wgsl in the step's
//! submission. The two alternate, and the mask's own cost is timed apart (the constrained
//! tokens replayed through a fresh constraint).

use serde_json::{json, Value as Json};

use super::Grammar;
use crate::chat::{ChatMessage, RenderOptions};
use crate::engine::{Control, Engine, GenerateOptions};
use crate::Result;

fn stats(mut v: Vec<f64>) -> Json {
    if v.is_empty() {
        return Json::Null;
    }
    v.sort_by(f64::total_cmp);
    json!({"median": v[v.len() / 2], "min": v[0], "max": v[v.len() - 1]})
}

/// Decode tokens per second (the first token, which the prompt pass yields, excluded) of `reps`
/// generations of at most `n` tokens after a chat prompt asking `ask`, unconstrained and under
/// `grammar`. Also the milliseconds the grammar takes to compile (its first use includes the
/// vocabulary tables).
pub fn bench_constrained(
    engine: &mut Engine,
    ask: &str,
    grammar: &Grammar,
    n: usize,
    reps: usize,
) -> Result<Json> {
    let ids = engine.chat_prompt_ids(&[ChatMessage::user(ask)], &RenderOptions::default())?;
    let t = std::time::Instant::now();
    engine.compile_grammar(grammar)?;
    let first_compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let t = std::time::Instant::now();
    engine.compile_grammar(grammar)?;
    let compile_ms = t.elapsed().as_secs_f64() * 1e3;
    let (mut free, mut constrained) = (Vec::new(), Vec::new());
    let (mut free_n, mut constrained_n) = (Vec::new(), Vec::new());
    let mut mask_us = Vec::new();
    // Interleaved (this machine's speed drifts): each repetition runs the constrained
    // generation, then an unconstrained one of the same length (EOG does not end it).
    for _ in 0..reps {
        let opts = GenerateOptions {
            max_tokens: n,
            grammar: Some(grammar.clone()),
            ..Default::default()
        };
        let out = engine.generate(&ids, &opts, &mut |_| Control::Continue)?;
        let rate = |out: &crate::engine::Generation| {
            let decoded = out.ids.len().saturating_sub(1);
            (decoded > 0 && out.gen_ms > 0.0).then(|| decoded as f64 / (out.gen_ms / 1e3))
        };
        constrained.extend(rate(&out));
        constrained_n.push(out.ids.len());
        // The mask alone: the same tokens replayed through a fresh constraint, timed per step.
        let mut c = engine.compile_grammar(grammar)?;
        let t = std::time::Instant::now();
        for &id in &out.ids {
            if c.is_done() {
                break;
            }
            c.mask()?;
            c.commit(id)?;
        }
        mask_us.push(t.elapsed().as_secs_f64() * 1e6 / out.ids.len().max(1) as f64);
        let opts = GenerateOptions {
            max_tokens: out.ids.len().max(2),
            stop_at_eog: false,
            ..Default::default()
        };
        let free_out = engine.generate(&ids, &opts, &mut |_| Control::Continue)?;
        free.extend(rate(&free_out));
        free_n.push(free_out.ids.len());
    }
    Ok(json!({
        "grammar": grammar.kind(),
        "compile_ms": {"first": first_compile_ms, "again": compile_ms},
        "unconstrained": {"tok_s": stats(free), "tokens": free_n},
        "constrained": {"tok_s": stats(constrained), "tokens": constrained_n},
        "mask_us_per_token": stats(mask_us),
    }))
}
