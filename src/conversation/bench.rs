//! `chord bench MODEL --turns 8`: time to first token per turn of a multi-turn chat, with the
//! previous turn's cache reused and with reuse off (every prompt prefilled whole), on the same
//! messages; then a saved session's save and restore times against prefilling the whole
//! conversation (docs/performance.md, issue 12). The goal: with reuse, turn 8's time to first
//! token within 1.5× of turn 1's.
//!
//! Each user message is about `turn_tokens` tokens of prose (sentences from a fixed list, so
//! runs are comparable); replies are greedy, at most `reply_tokens` tokens, and the run with
//! reuse off replays the same messages.

use serde_json::{json, Value as Json};

use crate::chat::{ChatMessage, RenderOptions};
use crate::engine::{Control, Engine, GenerateOptions};
use crate::session::KvPrecision;
use crate::Result;

const SENTENCES: &[&str] = &[
    "The harbour town wakes early, and the fishing boats leave before the sun is up.",
    "Our team is planning a two-week trip through the mountains next spring.",
    "The library keeps its oldest maps in a cold room behind the reading hall.",
    "A good sourdough needs patience: the starter, the dough and the oven all take time.",
    "The committee asked for a summary of last quarter's numbers by Friday.",
    "My grandmother grew tomatoes, beans and a row of sunflowers along the fence.",
    "The new train line cuts the trip between the two cities to under an hour.",
    "Astronomers measured the light of the distant star for three nights in a row.",
    "The museum's east wing reopens after a long renovation of its glass roof.",
    "Every Tuesday the market square fills with stalls selling cheese and honey.",
    "The engineers tested the bridge with trucks full of sand before it opened.",
    "She practised the violin piece slowly until every note was clean and even.",
];

/// A user message of about `tokens` tokens for turn `t`, ending in a question.
fn user_message(engine: &Engine, t: usize, tokens: usize) -> Result<String> {
    let mut text = format!("Turn {}. Here is some context.", t + 1);
    let mut i = t * 5;
    while engine.tokenize(&text, false, false)?.len() < tokens.saturating_sub(12) {
        text.push(' ');
        text.push_str(SENTENCES[i % SENTENCES.len()]);
        i += 1;
    }
    text.push_str(" What is the main point of what I just wrote?");
    Ok(text)
}

/// One turn's (prompt tokens, cached tokens, time to first token in ms).
type TurnTiming = (usize, usize, f64);

/// One pass over the conversation, a [`TurnTiming`] per turn; replies are taken from
/// `replies` when given, else generated and returned.
fn run_turns(
    engine: &mut Engine,
    users: &[String],
    reply_tokens: usize,
    replies: Option<&[String]>,
) -> Result<(Vec<TurnTiming>, Vec<String>)> {
    let mut messages = vec![ChatMessage::new(
        "system",
        "You are a helpful assistant. Answer in one or two sentences.",
    )];
    let (mut rows, mut said) = (Vec::new(), Vec::new());
    for (t, user) in users.iter().enumerate() {
        messages.push(ChatMessage::user(user.as_str()));
        let ids = engine.chat_prompt_ids(&messages, &RenderOptions::default())?;
        let opts = GenerateOptions {
            max_tokens: reply_tokens,
            ..Default::default()
        };
        let out = engine.generate(&ids, &opts, &mut |_| Control::Continue)?;
        rows.push((ids.len(), out.cached_tokens, out.prompt_ms));
        let reply = match replies {
            Some(r) => r[t].clone(),
            None => out.text,
        };
        messages.push(ChatMessage::new("assistant", reply.as_str()));
        said.push(reply);
    }
    Ok((rows, said))
}

/// The multi-turn benchmark: `turns` turns of about `turn_tokens` tokens each.
pub fn bench_turns(
    engine: &mut Engine,
    turns: usize,
    turn_tokens: usize,
    reply_tokens: usize,
) -> Result<Json> {
    let users = (0..turns)
        .map(|t| user_message(engine, t, turn_tokens))
        .collect::<Result<Vec<_>>>()?;
    engine.set_prefix_reuse(true);
    let (reuse, replies) = run_turns(engine, &users, reply_tokens, None)?;

    // The session of the whole conversation: saved, then restored into an emptied cache.
    let held = engine.cached_ids().to_vec();
    let mut session = serde_json::Map::new();
    for (name, p) in [("f16", KvPrecision::F16), ("f32", KvPrecision::F32)] {
        let t = std::time::Instant::now();
        let bytes = engine.save_session(p)?;
        let save_ms = t.elapsed().as_secs_f64() * 1e3;
        engine.forget_prefix();
        let t = std::time::Instant::now();
        engine.restore_session(&bytes)?;
        let restore_ms = t.elapsed().as_secs_f64() * 1e3;
        session.insert(
            name.into(),
            json!({"bytes": bytes.len(), "save_ms": save_ms, "restore_ms": restore_ms}),
        );
    }
    // Prefilling the same positions from nothing, for comparison.
    engine.set_prefix_reuse(false);
    let opts = GenerateOptions {
        max_tokens: 1,
        ..Default::default()
    };
    let prefill_ms = engine
        .generate(&held, &opts, &mut |_| Control::Continue)?
        .prompt_ms;
    let (whole, _) = run_turns(engine, &users, reply_tokens, Some(&replies))?;
    engine.set_prefix_reuse(true);

    let rows: Vec<Json> = reuse
        .iter()
        .zip(&whole)
        .enumerate()
        .map(|(t, (r, w))| {
            json!({"turn": t + 1, "prompt_tokens": r.0, "cached_tokens": r.1,
                   "ttft_ms": r.2, "ttft_ms_no_reuse": w.2})
        })
        .collect();
    let ratio = |v: &[TurnTiming]| match (v.first(), v.last()) {
        (Some(a), Some(b)) if a.2 > 0.0 => Some(b.2 / a.2),
        _ => None,
    };
    Ok(json!({
        "turns": rows,
        "last_over_first_ttft": {"reuse": ratio(&reuse), "no_reuse": ratio(&whole)},
        "session": {"tokens": held.len(), "prefill_ms": prefill_ms, "precision": session},
    }))
}
