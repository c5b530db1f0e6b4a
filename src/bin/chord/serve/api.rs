//! The OpenAI-compatible API on the native engine: `POST /v1/chat/completions` and
//! `POST /v1/completions` (streamed as server-sent events ending in `data: [DONE]`, or one JSON
//! object), `GET /v1/models`, `GET /v1/models/{id}` and `GET /health`.
//!
//! Parameters, defaults, stop strings, `usage` and `finish_reason` are those of the JS API
//! (worker/client.js, src/web): greedy unless `temperature` is above 0, `max_tokens` 256,
//! `top_k`, `min_p` and `repeat_penalty` as llama-server takes them. Errors are OpenAI-shaped:
//! `{"error": {"message", "type", "param", "code"}}` with 400/401/404/413/500/503.
//!
//! Tools are the JS API's (`wasm_chord::chat::tools`): `tools` and `tool_choice` go through
//! `Tools::from_request` with the model's template, the definitions into the template and a
//! forced call's grammar into the options; the reply is parsed into `tool_calls` (streamed text
//! goes through the tools' stream filter, the calls follow as `delta.tool_calls` chunks).
//!
//! A request goes to its model's [`Batcher`]: on the CPU it joins the running batch (see
//! `wasm_chord::batch`). The batcher's callback forwards events into a channel; when the client
//! goes away the channel closes, the next token's send fails and generation stops.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value as Json};
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use wasm_chord::batch::{Batcher, Event, Prompt};
use wasm_chord::chat::messages_from_value;
use wasm_chord::chat::tools::{ParsedReply, ToolCall, ToolStreamFilter, Tools};
use wasm_chord::chat::RenderOptions;
use wasm_chord::constrain::Grammar;
use wasm_chord::engine::{Control, FinishReason, GenerateOptions, Generation};
use wasm_chord::sampling::SamplerConfig;
use wasm_chord::Error;

/// One model the API serves.
pub struct ApiModel {
    pub id: String,
    pub batcher: Batcher,
    pub created: u64,
    pub backend: &'static str,
}

pub struct ApiState {
    pub models: Vec<ApiModel>,
    pub api_key: Option<String>,
    /// How long a client may take to send its request body.
    pub body_timeout: Duration,
    /// Request bodies larger than this are refused (413).
    pub body_limit: usize,
}

pub type Shared = Arc<ApiState>;

/// An OpenAI-shaped error response.
pub struct ApiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<String>,
    code: Option<&'static str>,
}

impl ApiError {
    fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_owned),
            code: None,
        }
    }

    fn json(&self) -> Json {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.json())).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

/// An engine error as the API reports it.
fn engine_error(e: Error) -> ApiError {
    let (status, kind, code) = match &e {
        Error::ContextFull { .. } => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
        Error::InvalidRequest(_) | Error::TokenOutOfRange { .. } | Error::Template(_) => {
            (StatusCode::BAD_REQUEST, "invalid_request_error", None)
        }
        // A schema or grammar that cannot constrain decoding.
        Error::Constraint(_) if e.code() == "bad_grammar" => (
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("bad_grammar"),
        ),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "server_error", None),
    };
    ApiError {
        status,
        message: e.to_string(),
        kind,
        param: None,
        code,
    }
}

/// `Authorization: Bearer KEY` on every /v1 route when `--api-key` is set.
pub async fn auth(State(st): State<Shared>, req: Request, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let ok = given.is_some_and(|g| constant_time_eq(g.trim().as_bytes(), key.as_bytes()));
        if !ok {
            return ApiError {
                status: StatusCode::UNAUTHORIZED,
                message: if given.is_none() {
                    "missing API key: send `Authorization: Bearer KEY`".into()
                } else {
                    "incorrect API key".into()
                },
                kind: "invalid_request_error",
                param: None,
                code: Some("invalid_api_key"),
            }
            .into_response();
        }
    }
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn health(State(st): State<Shared>) -> Response {
    let models: Vec<Json> = st
        .models
        .iter()
        .map(|m| {
            let s = &m.batcher.stats;
            json!({
                "id": m.id,
                "backend": m.backend,
                "active": s.active.load(Ordering::SeqCst),
                "queued": s.queued.load(Ordering::SeqCst),
                "parallel": m.batcher.parallel,
                "n_ctx": m.batcher.n_ctx,
                "decode_steps": s.steps.load(Ordering::Relaxed),
                "max_batch": s.max_batch.load(Ordering::Relaxed),
            })
        })
        .collect();
    axum::Json(json!({"status": "ok", "models": models})).into_response()
}

fn model_json(m: &ApiModel) -> Json {
    json!({"id": m.id, "object": "model", "created": m.created, "owned_by": "wasm-chord"})
}

pub async fn list_models(State(st): State<Shared>) -> Response {
    let data: Vec<Json> = st.models.iter().map(model_json).collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

pub async fn get_model(State(st): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    match st.models.iter().find(|m| m.id == id) {
        Some(m) => axum::Json(model_json(m)).into_response(),
        None => not_found_model(&id).into_response(),
    }
}

fn not_found_model(id: &str) -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("the model `{id}` does not exist"),
        kind: "invalid_request_error",
        param: Some("model".into()),
        code: Some("model_not_found"),
    }
}

/// Any other path under /v1.
pub async fn unknown_route() -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "unknown API route".into(),
        kind: "invalid_request_error",
        param: None,
        code: Some("unknown_url"),
    }
    .into_response()
}

/// Read the whole body (bounded in size and time) and parse it as a JSON object.
async fn read_json(st: &ApiState, req: Request) -> Result<Json, ApiError> {
    let is_json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v.starts_with("application/json"));
    let read = axum::body::to_bytes(req.into_body(), st.body_limit);
    let bytes: Bytes = match tokio::time::timeout(st.body_timeout, read).await {
        Err(_) => {
            return Err(ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                message: "the request body was not received in time".into(),
                kind: "invalid_request_error",
                param: None,
                code: None,
            })
        }
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if too_big {
                ApiError {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    message: format!("the request body is larger than {} bytes", st.body_limit),
                    kind: "invalid_request_error",
                    param: None,
                    code: None,
                }
            } else {
                ApiError::invalid(format!("the request body could not be read: {e}"), None)
            });
        }
        Ok(Ok(b)) => b,
    };
    if !is_json {
        return Err(ApiError::invalid(
            "the request body must be JSON (Content-Type: application/json)",
            None,
        ));
    }
    let v: Json = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))?;
    if !v.is_object() {
        return Err(ApiError::invalid(
            "the request body must be a JSON object",
            None,
        ));
    }
    Ok(v)
}

/// A number parameter within [lo, hi], if present (null = absent).
fn number(v: &Json, name: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
    match v.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(x) => match x.as_f64() {
            Some(f) if f >= lo && f <= hi => Ok(Some(f)),
            Some(f) => Err(ApiError::invalid(
                format!("`{name}` must be between {lo} and {hi}, got {f}"),
                Some(name),
            )),
            None => Err(ApiError::invalid(
                format!("`{name}` must be a number"),
                Some(name),
            )),
        },
    }
}

fn integer(v: &Json, name: &str, lo: u64) -> Result<Option<u64>, ApiError> {
    match v.get(name) {
        None | Some(Json::Null) => Ok(None),
        Some(x) => match x.as_u64() {
            Some(n) if n >= lo => Ok(Some(n)),
            _ => Err(ApiError::invalid(
                format!("`{name}` must be an integer of at least {lo}"),
                Some(name),
            )),
        },
    }
}

/// Whether a list parameter is present: not absent, null or an empty array.
fn given(v: &Json, name: &str) -> bool {
    v.get(name)
        .is_some_and(|t| !t.is_null() && t.as_array().is_none_or(|a| !a.is_empty()))
}

/// A request's `tools` and `tool_choice` for the model's chat template, as the JS API reads
/// them (`Tools::from_request`); errors name the parameter at fault.
fn request_tools(m: &ApiModel, v: &Json) -> Result<Option<Tools>, ApiError> {
    let (tools, choice) = (v.get("tools"), v.get("tool_choice"));
    if tools.is_none_or(Json::is_null) && choice.is_none_or(Json::is_null) {
        return Ok(None);
    }
    // No working template: the empty source has no tool-call format, which is the error.
    let source = m.batcher.chat_template.as_deref().unwrap_or("");
    Tools::from_request(tools, choice, source).map_err(|e| tool_error(e, "tools"))
}

/// A tool error as a 400 naming `tool_choice` or `tools` (or `param` when it is neither's).
fn tool_error(e: Error, param: &str) -> ApiError {
    let message = match e {
        Error::InvalidRequest(m) => m,
        e => e.to_string(),
    };
    let param = if message.starts_with("tool_choice") || message.contains("(tool_choice") {
        "tool_choice"
    } else {
        param
    };
    ApiError::invalid(message, Some(param))
}

/// What a completion request asks for, parsed and checked.
struct Parsed {
    model: usize,
    stream: bool,
    include_usage: bool,
    opts: GenerateOptions,
}

fn parse_common(st: &ApiState, v: &Json) -> Result<Parsed, ApiError> {
    let model = match v.get("model") {
        None | Some(Json::Null) if st.models.len() == 1 => 0,
        None | Some(Json::Null) => {
            return Err(ApiError::invalid(
                "`model` is required: this server has several (GET /v1/models)",
                Some("model"),
            ))
        }
        Some(Json::String(id)) => match st.models.iter().position(|m| &m.id == id) {
            Some(i) => i,
            // One model: any name reaches it, as llama-server does.
            None if st.models.len() == 1 => 0,
            None => return Err(not_found_model(id)),
        },
        Some(_) => return Err(ApiError::invalid("`model` must be a string", Some("model"))),
    };
    let stream = match v.get("stream") {
        None | Some(Json::Null) => false,
        Some(Json::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::invalid(
                "`stream` must be a boolean",
                Some("stream"),
            ))
        }
    };
    let include_usage = v
        .pointer("/stream_options/include_usage")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    if let Some(n) = integer(v, "n", 1)? {
        if n != 1 {
            return Err(ApiError::invalid("only `n: 1` is supported", Some("n")));
        }
    }
    if given(v, "functions") {
        return Err(ApiError::invalid(
            "`functions` (OpenAI's deprecated form) is not supported: send `tools`",
            Some("functions"),
        ));
    }
    // Structured output: `response_format` (text, json_object, json_schema) or our `grammar`
    // extension (Lark), as the JS API takes them.
    let grammar =
        Grammar::from_request(v.get("response_format"), v.get("grammar")).map_err(|e| {
            let param = if v.get("grammar").is_some_and(|g| !g.is_null()) {
                "grammar"
            } else {
                "response_format"
            };
            ApiError::invalid(e.to_string(), Some(param))
        })?;
    let stop = match v.get("stop") {
        None | Some(Json::Null) => vec![],
        Some(Json::String(s)) => vec![s.clone()],
        Some(Json::Array(a)) => a
            .iter()
            .map(|s| {
                s.as_str().map(str::to_owned).ok_or_else(|| {
                    ApiError::invalid(
                        "`stop` must be a string or an array of strings",
                        Some("stop"),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ApiError::invalid(
                "`stop` must be a string or an array of strings",
                Some("stop"),
            ))
        }
    };
    let max_tokens = match integer(v, "max_completion_tokens", 1)? {
        Some(n) => Some(n),
        None => integer(v, "max_tokens", 1)?,
    };
    let d = SamplerConfig::default();
    let f32_or = |x: Option<f64>, d: f32| x.map_or(d, |x| x as f32);
    let opts = GenerateOptions {
        max_tokens: max_tokens.map_or(256, |n| n as usize),
        sampler: SamplerConfig {
            temperature: f32_or(number(v, "temperature", 0.0, 2.0)?, d.temperature),
            top_k: integer(v, "top_k", 0)?.map_or(d.top_k, |n| n as usize),
            top_p: f32_or(number(v, "top_p", 0.0, 1.0)?, d.top_p),
            min_p: f32_or(number(v, "min_p", 0.0, 1.0)?, d.min_p),
            repeat_penalty: f32_or(number(v, "repeat_penalty", 0.0, 10.0)?, d.repeat_penalty),
            presence_penalty: f32_or(
                number(v, "presence_penalty", -2.0, 2.0)?,
                d.presence_penalty,
            ),
            frequency_penalty: f32_or(
                number(v, "frequency_penalty", -2.0, 2.0)?,
                d.frequency_penalty,
            ),
            seed: match v.get("seed") {
                None | Some(Json::Null) => d.seed,
                Some(s) => s
                    .as_i64()
                    .map(|s| s as u64)
                    .ok_or_else(|| ApiError::invalid("`seed` must be an integer", Some("seed")))?,
            },
            ..d
        },
        stop,
        grammar,
        ..Default::default()
    };
    Ok(Parsed {
        model,
        stream,
        include_usage,
        opts,
    })
}

fn finish_name(f: &FinishReason) -> &'static str {
    match f {
        FinishReason::Eog | FinishReason::StopString(_) => "stop",
        FinishReason::Length => "length",
        FinishReason::Cancelled => "abort",
    }
}

/// The reply's tool calls, if it made any.
fn tool_calls(tools: Option<&Tools>, g: &Generation) -> Option<ParsedReply> {
    tools
        .map(|t| t.parse(&g.text))
        .filter(|p| !p.tool_calls.is_empty())
}

/// A chat's `finish_reason`: "tool_calls" when calls were made and the model ended its turn.
fn chat_finish(has_calls: bool, f: &FinishReason) -> &'static str {
    if has_calls && *f == FinishReason::Eog {
        "tool_calls"
    } else {
        finish_name(f)
    }
}

fn usage(g: &Generation) -> Json {
    json!({
        "prompt_tokens": g.prompt_ids.len(),
        "completion_tokens": g.ids.len(),
        "total_tokens": g.prompt_ids.len() + g.ids.len(),
        // Prompt tokens whose keys and values came from the slot's cache (prefix reuse).
        "prompt_tokens_details": {"cached_tokens": g.cached_tokens},
    })
}

fn timings(g: &Generation, backend: &str) -> Json {
    json!({
        "prompt_ms": g.prompt_ms,
        "gen_ms": g.gen_ms,
        "tokens_per_s": if g.gen_ms > 0.0 {
            Json::from(g.ids.len().saturating_sub(1) as f64 * 1e3 / g.gen_ms)
        } else {
            Json::Null
        },
        "backend": backend,
    })
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

static SEQ: AtomicU64 = AtomicU64::new(0);

fn completion_id(prefix: &str) -> String {
    format!(
        "{prefix}-{:x}{:04x}",
        now_s(),
        SEQ.fetch_add(1, Ordering::Relaxed) & 0xffff
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Chat,
    Text,
}

pub async fn chat_completions(State(st): State<Shared>, req: Request) -> Response {
    complete(st, req, Kind::Chat).await
}

pub async fn completions(State(st): State<Shared>, req: Request) -> Response {
    complete(st, req, Kind::Text).await
}

async fn complete(st: Shared, req: Request, kind: Kind) -> Response {
    match complete_inner(st, req, kind).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn complete_inner(st: Shared, req: Request, kind: Kind) -> Result<Response, ApiError> {
    let v = read_json(&st, req).await?;
    let mut p = parse_common(&st, &v)?;
    let mut render = RenderOptions::default();
    let mut tools = None;
    let prompt = match kind {
        Kind::Chat => {
            let msgs = match v.get("messages") {
                Some(m @ Json::Array(a)) if !a.is_empty() => m,
                _ => {
                    return Err(ApiError::invalid(
                        "`messages` must be a non-empty array",
                        Some("messages"),
                    ))
                }
            };
            let msgs = messages_from_value(msgs)
                .map_err(|e| ApiError::invalid(format!("bad `messages`: {e}"), Some("messages")))?;
            tools = request_tools(&st.models[p.model], &v)?;
            if let Some(t) = &tools {
                t.apply(&mut render, &mut p.opts.grammar)
                    .map_err(|e| tool_error(e, "tool_choice"))?;
            }
            Prompt::Chat(msgs)
        }
        Kind::Text if given(&v, "tools") || v.get("tool_choice").is_some_and(|c| !c.is_null()) => {
            return Err(ApiError::invalid(
                "`tools` are for /v1/chat/completions",
                Some("tools"),
            ))
        }
        Kind::Text => match v.get("prompt") {
            Some(Json::String(s)) => Prompt::Text(s.clone()),
            Some(Json::Array(a)) if a.len() == 1 && a[0].is_string() => {
                Prompt::Text(a[0].as_str().unwrap_or_default().to_owned())
            }
            Some(Json::Array(a)) if !a.is_empty() && a.iter().all(|x| x.is_u64()) => Prompt::Ids(
                a.iter()
                    .filter_map(|x| x.as_u64())
                    .map(|x| x as u32)
                    .collect(),
            ),
            _ => {
                return Err(ApiError::invalid(
                    "`prompt` must be a string (or an array of token ids)",
                    Some("prompt"),
                ))
            }
        },
    };
    let m = &st.models[p.model];
    let (tx, mut rx) = mpsc::unbounded_channel::<Event>();
    m.batcher
        .submit_with(
            prompt,
            render,
            p.opts,
            Box::new(move |ev| {
                // A closed receiver is a client that went away: stop generating.
                if tx.send(ev).is_ok() {
                    Control::Continue
                } else {
                    Control::Stop
                }
            }),
        )
        .map_err(engine_error)?;
    // The first event says whether the request was accepted: errors keep their status code.
    match rx.recv().await {
        Some(Event::Started { .. }) => {}
        Some(Event::Failed(e)) => return Err(engine_error(e)),
        _ => {
            return Err(engine_error(Error::InvalidRequest(
                "the request was dropped".into(),
            )))
        }
    }
    let (object, id) = match kind {
        Kind::Chat => ("chat.completion", completion_id("chatcmpl")),
        Kind::Text => ("text_completion", completion_id("cmpl")),
    };
    let created = now_s();
    let model_id = m.id.clone();
    let backend = m.backend;
    if !p.stream {
        let mut text = String::new();
        loop {
            match rx.recv().await {
                Some(Event::Token { text: t, .. }) => text.push_str(&t),
                Some(Event::Done(g)) => {
                    let choice = match kind {
                        Kind::Chat => {
                            let calls = tool_calls(tools.as_ref(), &g);
                            let message = match &calls {
                                Some(c) => json!({
                                    "role": "assistant",
                                    "content": c.content,
                                    "tool_calls": c.tool_calls.iter().map(ToolCall::to_json).collect::<Vec<_>>(),
                                }),
                                None => json!({"role": "assistant", "content": g.text}),
                            };
                            json!({
                                "index": 0,
                                "message": message,
                                "logprobs": null,
                                "finish_reason": chat_finish(calls.is_some(), &g.finish),
                            })
                        }
                        Kind::Text => json!({
                            "index": 0,
                            "text": g.text,
                            "logprobs": null,
                            "finish_reason": finish_name(&g.finish),
                        }),
                    };
                    let body = json!({
                        "id": id,
                        "object": object,
                        "created": created,
                        "model": model_id,
                        "choices": [choice],
                        "usage": usage(&g),
                        "timings": timings(&g, backend),
                    });
                    return Ok(axum::Json(body).into_response());
                }
                Some(Event::Failed(e)) => return Err(engine_error(e)),
                Some(Event::Started { .. }) => {}
                None => {
                    return Err(engine_error(Error::InvalidRequest(
                        "generation ended without a result".into(),
                    )))
                }
            }
        }
    }
    let chunk_object = match kind {
        Kind::Chat => "chat.completion.chunk",
        Kind::Text => "text_completion",
    };
    let chunk = move |choices: Json, extra: Vec<(&str, Json)>| {
        let mut c = json!({
            "id": id,
            "object": chunk_object,
            "created": created,
            "model": model_id,
            "choices": choices,
        });
        for (k, v) in extra {
            c[k] = v;
        }
        SseEvent::default().data(c.to_string())
    };
    let delta = move |first: bool, t: &str, finish: Option<&str>| match kind {
        Kind::Chat => {
            let d = if first {
                json!({"role": "assistant", "content": t})
            } else if finish.is_some() {
                json!({})
            } else {
                json!({"content": t})
            };
            json!({"index": 0, "delta": d, "logprobs": null, "finish_reason": finish})
        }
        Kind::Text => json!({"index": 0, "text": t, "logprobs": null, "finish_reason": finish}),
    };
    struct S {
        rx: mpsc::UnboundedReceiver<Event>,
        first: bool,
        done: bool,
        pending: Vec<SseEvent>,
        /// Holds back streamed text that may be a tool call.
        filter: Option<ToolStreamFilter>,
        tools: Option<Tools>,
    }
    let include_usage = p.include_usage;
    let state = S {
        rx,
        first: true,
        done: false,
        pending: vec![],
        filter: tools.as_ref().map(Tools::stream_filter),
        tools,
    };
    let stream = futures_util::stream::unfold(state, move |mut s| {
        let chunk = chunk.clone();
        async move {
            loop {
                if let Some(e) = s.pending.pop() {
                    return Some((Ok::<_, Infallible>(e), s));
                }
                if s.done {
                    return None;
                }
                match s.rx.recv().await {
                    Some(Event::Token { text, .. }) => {
                        let text = match &mut s.filter {
                            Some(f) => f.push(&text),
                            None => text,
                        };
                        if text.is_empty() && !s.first {
                            continue;
                        }
                        let c = chunk(json!([delta(s.first, &text, None)]), vec![]);
                        s.first = false;
                        return Some((Ok(c), s));
                    }
                    Some(Event::Done(g)) => {
                        s.done = true;
                        // Sent in reverse: pending is a stack.
                        s.pending.push(SseEvent::default().data("[DONE]"));
                        if include_usage {
                            // OpenAI's `stream_options.include_usage`: one more chunk, no choices.
                            s.pending.push(chunk(json!([]), vec![("usage", usage(&g))]));
                        }
                        let calls = tool_calls(s.tools.as_ref(), &g);
                        let finish = match kind {
                            Kind::Chat => chat_finish(calls.is_some(), &g.finish),
                            Kind::Text => finish_name(&g.finish),
                        };
                        // The last choice carries usage and timings, as the JS API's does.
                        let fin = chunk(
                            json!([delta(false, "", Some(finish))]),
                            vec![("usage", usage(&g)), ("timings", timings(&g, backend))],
                        );
                        s.pending.push(fin);
                        // Tool calls before it, one delta each (OpenAI's streaming shape, whole
                        // arguments at once), as the JS API streams them.
                        let calls = calls.map_or(vec![], |c| c.tool_calls);
                        for (index, c) in calls.iter().enumerate().rev() {
                            let mut call = c.to_json();
                            call["index"] = json!(index);
                            let d = json!({"index": 0, "delta": {"tool_calls": [call]},
                                "logprobs": null, "finish_reason": null});
                            s.pending.push(chunk(json!([d]), vec![]));
                        }
                        // Text the filter held back that turned out not to be a call.
                        let rest = s
                            .filter
                            .as_mut()
                            .map_or(String::new(), |f| f.finish(!calls.is_empty()));
                        if !rest.is_empty() {
                            s.pending
                                .push(chunk(json!([delta(s.first, &rest, None)]), vec![]));
                        }
                    }
                    Some(Event::Failed(e)) => {
                        s.done = true;
                        s.pending.push(SseEvent::default().data("[DONE]"));
                        s.pending
                            .push(SseEvent::default().data(engine_error(e).json().to_string()));
                    }
                    Some(Event::Started { .. }) => {}
                    None => return None,
                }
            }
        }
    });
    let mut r = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

/// A body for errors outside the handlers (unknown method on an API route).
pub fn method_not_allowed() -> Response {
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        message: "method not allowed on this route".into(),
        kind: "invalid_request_error",
        param: None,
        code: None,
    }
    .into_response()
}
