//! Chat requests as they arrive from JavaScript (the worker's JSON strings): parsed and checked
//! field by field, so a bad value is an `invalid` error naming the field instead of a wrapped
//! size, a NaN sampler or a panic deeper in the engine. Native as well as wasm32, so it is
//! tested and fuzzed natively (`fuzz/fuzz_targets/request.rs`).

use crate::chat::{messages_from_value, ChatDate, ChatMessage, RenderOptions, TemplateError};
use crate::conversation::Overflow;
use crate::engine::GenerateOptions;
use crate::sampling::SamplerConfig;
use crate::{Error, Result};
use serde_json::Value as Json;

/// Most tokens one request may generate.
pub const MAX_TOKENS: u64 = 1 << 20;
/// Largest KV cache a request may ask for (positions); memory is checked again when allocating.
pub const MAX_N_CTX: u64 = 1 << 22;
/// Most stop strings, and the longest one (bytes).
pub const MAX_STOPS: usize = 16;
pub const MAX_STOP_BYTES: usize = 1024;
/// Most messages in one request.
pub const MAX_MESSAGES: usize = 65_536;

/// A parsed chat request.
#[derive(Debug)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub options: GenerateOptions,
    pub render: RenderOptions,
    /// The options object as sent (`tools` and `tool_choice` need the model's template).
    pub raw: Json,
    /// `cache_prompt` (default true): reuse the previous request's common prefix.
    pub cache_prompt: bool,
    /// `context_overflow` (default `"drop_oldest"`).
    pub overflow: Overflow,
}

fn invalid(msg: String) -> Error {
    Error::InvalidRequest(msg)
}

/// A number field: `None` when absent or null, an error naming the field when not a number.
fn number(o: &Json, k: &str) -> Result<Option<f64>> {
    match o.get(k) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Number(n)) => n
            .as_f64()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| invalid(format!("{k} must be a finite number"))),
        Some(v) => Err(invalid(format!("{k} must be a number, got {}", kind(v)))),
    }
}

/// A number in `[lo, hi]`.
fn ranged(o: &Json, k: &str, lo: f64, hi: f64) -> Result<Option<f64>> {
    match number(o, k)? {
        Some(v) if !(lo..=hi).contains(&v) => Err(invalid(format!(
            "{k} must be between {lo} and {hi}, got {v}"
        ))),
        v => Ok(v),
    }
}

/// An integer in `[lo, hi]`.
fn integer(o: &Json, k: &str, lo: u64, hi: u64) -> Result<Option<u64>> {
    match number(o, k)? {
        None => Ok(None),
        Some(v) if v.fract() == 0.0 && v >= lo as f64 && v <= hi as f64 => Ok(Some(v as u64)),
        Some(v) => Err(invalid(format!(
            "{k} must be an integer from {lo} to {hi}, got {v}"
        ))),
    }
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn stop_strings(o: &Json) -> Result<Vec<String>> {
    let one = |s: &Json, what: String| -> Result<String> {
        let s = s.as_str().ok_or_else(|| {
            invalid(format!(
                "{what} must be a string, got {} (stop: a string or an array of strings)",
                kind(s)
            ))
        })?;
        if s.is_empty() || s.len() > MAX_STOP_BYTES {
            return Err(invalid(format!(
                "{what} must be 1 to {MAX_STOP_BYTES} bytes long, got {}",
                s.len()
            )));
        }
        Ok(s.to_owned())
    };
    match o.get("stop") {
        None | Some(Json::Null) => Ok(vec![]),
        Some(s @ Json::String(_)) => Ok(vec![one(s, "stop".into())?]),
        Some(Json::Array(a)) if a.len() > MAX_STOPS => Err(invalid(format!(
            "stop holds {} strings, at most {MAX_STOPS} are allowed",
            a.len()
        ))),
        Some(Json::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, s)| one(s, format!("stop[{i}]")))
            .collect(),
        Some(v) => Err(invalid(format!(
            "stop must be a string or an array of strings, got {}",
            kind(v)
        ))),
    }
}

fn date_from(v: &Json) -> Option<ChatDate> {
    let n = |k: &str| v.get(k).and_then(Json::as_i64);
    Some(ChatDate {
        year: n("year")?.clamp(1, 9999) as i32,
        month: n("month")?.clamp(1, 12) as u8,
        day: n("day")?.clamp(1, 31) as u8,
        hour: n("hour").unwrap_or(0).clamp(0, 23) as u8,
        minute: n("minute").unwrap_or(0).clamp(0, 59) as u8,
        second: n("second").unwrap_or(0).clamp(0, 59) as u8,
    })
}

/// The messages: a non-empty array of `{role, content}` objects.
pub fn parse_messages(v: &Json) -> Result<Vec<ChatMessage>> {
    let Json::Array(items) = v else {
        return Err(invalid(format!(
            "messages must be an array of {{\"role\", \"content\"}} objects, got {}",
            kind(v)
        )));
    };
    if items.is_empty() || items.len() > MAX_MESSAGES {
        return Err(invalid(format!(
            "messages must hold 1 to {MAX_MESSAGES} messages, got {}",
            items.len()
        )));
    }
    for (i, m) in items.iter().enumerate() {
        let Json::Object(o) = m else {
            return Err(invalid(format!(
                "messages[{i}] must be an object, got {}",
                kind(m)
            )));
        };
        match o.get("role") {
            Some(Json::String(r)) if !r.is_empty() => {}
            Some(r) => {
                return Err(invalid(format!(
                    "messages[{i}].role must be a non-empty string, got {}",
                    kind(r)
                )))
            }
            None => return Err(invalid(format!("messages[{i}].role is missing"))),
        }
    }
    messages_from_value(v).map_err(|e| match e {
        TemplateError::InvalidInput(m) => invalid(m),
        e => e.into(),
    })
}

/// Parse a chat request from the worker's two JSON strings (`options_json` may be empty).
pub fn parse_chat(messages_json: &str, options_json: &str) -> Result<ChatRequest> {
    let msgs: Json = serde_json::from_str(messages_json)
        .map_err(|err| invalid(format!("messages are not JSON: {err}")))?;
    let messages = parse_messages(&msgs)?;
    let o: Json = if options_json.trim().is_empty() {
        Json::Object(Default::default())
    } else {
        serde_json::from_str(options_json)
            .map_err(|err| invalid(format!("options are not JSON: {err}")))?
    };
    if !o.is_object() {
        return Err(invalid(format!(
            "options must be an object, got {}",
            kind(&o)
        )));
    }
    let d = SamplerConfig::default();
    let f32_or = |v: Option<f64>, d: f32| v.map_or(d, |v| v as f32);
    let options = GenerateOptions {
        max_tokens: integer(&o, "max_tokens", 1, MAX_TOKENS)?.map_or(256, |v| v as usize),
        sampler: SamplerConfig {
            temperature: f32_or(ranged(&o, "temperature", 0.0, 100.0)?, d.temperature),
            top_k: integer(&o, "top_k", 0, u32::MAX as u64)?.map_or(d.top_k, |v| v as usize),
            top_p: f32_or(ranged(&o, "top_p", 0.0, 1.0)?, d.top_p),
            min_p: f32_or(ranged(&o, "min_p", 0.0, 1.0)?, d.min_p),
            repeat_penalty: match number(&o, "repeat_penalty")? {
                Some(v) if v <= 0.0 || v > 100.0 => {
                    return Err(invalid(format!(
                        "repeat_penalty must be above 0 and at most 100, got {v}"
                    )))
                }
                v => f32_or(v, d.repeat_penalty),
            },
            presence_penalty: f32_or(
                ranged(&o, "presence_penalty", -2.0, 2.0)?,
                d.presence_penalty,
            ),
            frequency_penalty: f32_or(
                ranged(&o, "frequency_penalty", -2.0, 2.0)?,
                d.frequency_penalty,
            ),
            seed: integer(&o, "seed", 0, (1u64 << 53) - 1)?.unwrap_or(d.seed),
            ..d
        },
        stop: stop_strings(&o)?,
        n_ctx: integer(&o, "n_ctx", 1, MAX_N_CTX)?.map(|v| v as usize),
        grammar: crate::constrain::Grammar::from_request(
            o.get("response_format"),
            o.get("grammar"),
        )?,
        ..Default::default()
    };
    let render = RenderOptions {
        now: o.get("now").and_then(date_from),
        ..Default::default()
    };
    let cache_prompt = match o.get("cache_prompt") {
        None | Some(Json::Null) => true,
        Some(Json::Bool(b)) => *b,
        Some(v) => {
            return Err(invalid(format!(
                "cache_prompt must be a boolean, got {}",
                kind(v)
            )))
        }
    };
    let overflow = match o.get("context_overflow") {
        None | Some(Json::Null) => Overflow::default(),
        Some(Json::String(s)) => Overflow::parse(s)?,
        Some(v) => {
            return Err(invalid(format!(
                "context_overflow must be \"drop_oldest\" or \"error\", got {}",
                kind(v)
            )))
        }
    };
    Ok(ChatRequest {
        messages,
        options,
        render,
        raw: o,
        cache_prompt,
        overflow,
    })
}
