//! `chord bench --json-schema FILE` / `--grammar FILE`: engine decode speed with and without a
//! constraint, on the same prompt, backend and sampler (greedy), each repetition a fresh
//! generation. The unconstrained run is the engine's ordinary path (no mask is computed,
//! uploaded or applied); the constrained run adds llguidance's mask per token on the CPU and,
//! on the GPU, token_mask.wgsl in the step's submission.

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
    let mut run = |g: Option<&Grammar>| -> Result<(Vec<f64>, Vec<usize>)> {
        let opts = GenerateOptions {
            max_tokens: n,
            // Unconstrained: the full n tokens (EOG does not end the run).
            stop_at_eog: g.is_some(),
            grammar: g.cloned(),
            ..Default::default()
        };
        let (mut rates, mut counts) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let out = engine.generate(&ids, &opts, &mut |_| Control::Continue)?;
            let decoded = out.ids.len().saturating_sub(1);
            if decoded > 0 && out.gen_ms > 0.0 {
                rates.push(decoded as f64 / (out.gen_ms / 1e3));
            }
            counts.push(out.ids.len());
        }
        Ok((rates, counts))
    };
    let (free, free_n) = run(None)?;
    let (constrained, constrained_n) = run(Some(grammar))?;
    Ok(json!({
        "grammar": grammar.kind(),
        "compile_ms": {"first": first_compile_ms, "again": compile_ms},
        "unconstrained": {"tok_s": stats(free), "tokens": free_n},
        "constrained": {"tok_s": stats(constrained), "tokens": constrained_n},
    }))
}
