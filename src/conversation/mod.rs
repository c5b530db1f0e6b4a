//! A conversation that outgrows the context keeps going: the overflow policy.
//!
//! When the rendered prompt plus `max_tokens` does not fit the context, the default policy
//! ([`Overflow::DropOldest`]) keeps the leading system messages and the latest turn and drops
//! the oldest whole turns (a user message with the replies and tool results that follow it)
//! until it fits, as chat front-ends of llama.cpp and WebLLM do by hand. [`Overflow::Error`]
//! leaves the messages as they are: a prompt that does not fit is the engine's `context_full`
//! error. Either way a generation that reaches the end of the context stops with
//! [`crate::engine::FinishReason::Length`].
//!
//! [`bench`] times a multi-turn chat with and without the previous turn's cache
//! (`chord bench MODEL --turns 8`).

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;

use crate::chat::{ChatMessage, RenderOptions};
use crate::engine::{Engine, GenerateOptions};
use crate::{Error, Result};

/// What to do when prompt + `max_tokens` does not fit the context.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the oldest whole turns (never the system prompt nor the latest turn).
    #[default]
    DropOldest,
    /// Keep every message; a prompt longer than the context is an error.
    Error,
}

impl Overflow {
    /// `"drop_oldest"` (also `"truncate"`) or `"error"`.
    pub fn parse(name: &str) -> Result<Overflow> {
        match name {
            "drop_oldest" | "truncate" => Ok(Overflow::DropOldest),
            "error" => Ok(Overflow::Error),
            other => Err(Error::InvalidRequest(format!(
                "context_overflow {other:?} is unknown: use \"drop_oldest\" or \"error\""
            ))),
        }
    }
}

/// A chat prompt that fits, and how many messages were dropped for it.
#[derive(Clone, Debug)]
pub struct FittedPrompt {
    pub ids: Vec<u32>,
    /// Messages left out (the oldest turns), 0 when everything fit.
    pub dropped_messages: usize,
}

/// Index ranges of droppable turns, oldest first: each starts at a user message after the
/// leading system messages and runs to the next user message; the last turn is never listed.
fn droppable_turns(messages: &[ChatMessage]) -> Vec<std::ops::Range<usize>> {
    let first = messages
        .iter()
        .position(|m| m.role != "system" && m.role != "developer")
        .unwrap_or(messages.len());
    let starts: Vec<usize> = (first..messages.len())
        .filter(|&i| i == first || messages[i].role == "user")
        .collect();
    starts.windows(2).map(|w| w[0]..w[1]).collect()
}

/// The prompt ids of `messages` under `policy`, for a request with `opts` on `engine`.
pub fn fit_chat(
    engine: &Engine,
    messages: &[ChatMessage],
    render: &RenderOptions,
    opts: &GenerateOptions,
    policy: Overflow,
) -> Result<FittedPrompt> {
    let ids = engine.chat_prompt_ids(messages, render)?;
    let fits = |n: usize| n + opts.max_tokens <= engine.request_n_ctx(n, opts);
    if policy == Overflow::Error || fits(ids.len()) {
        return Ok(FittedPrompt {
            ids,
            dropped_messages: 0,
        });
    }
    let turns = droppable_turns(messages);
    let mut best = FittedPrompt {
        ids,
        dropped_messages: 0,
    };
    for k in 1..=turns.len() {
        let cut = turns[0].start..turns[k - 1].end;
        let kept: Vec<ChatMessage> = messages[..cut.start]
            .iter()
            .chain(&messages[cut.end..])
            .cloned()
            .collect();
        let ids = engine.chat_prompt_ids(&kept, render)?;
        best = FittedPrompt {
            ids,
            dropped_messages: cut.len(),
        };
        if fits(best.ids.len()) {
            break;
        }
    }
    // Still too long for `max_tokens`: generation stops at the end of the context ('length');
    // a prompt that alone fills the context is the engine's `context_full` error.
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(role: &str) -> ChatMessage {
        ChatMessage::new(role, "x")
    }

    #[test]
    fn turns_start_at_user_messages_and_skip_system_and_the_last_turn() {
        let msgs = [
            m("system"),
            m("user"),
            m("assistant"),
            m("user"),
            m("assistant"),
            m("tool"),
            m("assistant"),
            m("user"),
        ];
        assert_eq!(droppable_turns(&msgs), vec![1..3, 3..7]);
        assert!(droppable_turns(&msgs[..2]).is_empty());
        // An assistant message first (no system) starts a turn of its own.
        assert_eq!(droppable_turns(&[m("assistant"), m("user")]), vec![0..1]);
        assert_eq!(Overflow::parse("error").unwrap(), Overflow::Error);
        let err = Overflow::parse("shift").unwrap_err().to_string();
        assert!(err.contains("shift"), "{err}");
    }
}
