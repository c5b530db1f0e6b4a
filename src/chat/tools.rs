//! Tool calls, OpenAI style: `tools`, `tool_choice`, the call formats of the model families we
//! run, and the grammar that forces a call.
//!
//! The model's own chat template renders the tool definitions (`tools`, as llama.cpp passes
//! them), the assistant's earlier `tool_calls` and the `tool` results. What the model writes
//! back is parsed per family, detected from the template source as llama.cpp does:
//!
//! * [`ToolCallFormat::Hermes`], Qwen2.5 / Qwen3 (and other Hermes-style templates, which
//!   contain `<tool_call>`): `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one
//!   block per call, text before the first block is the message content.
//! * [`ToolCallFormat::Llama3`], Llama 3.1 / 3.2 / 3.3 JSON tool calling (templates that mention
//!   `<|python_tag|>` or the "Given the following functions" prompt): the whole reply is
//!   `{"name": ..., "parameters": {...}}` (optionally after `<|python_tag|>`).
//!
//! A template that renders no tools (SmolLM2's, Gemma 3's) gets a clear error when tools are
//! passed, instead of tools silently left out of the prompt.
//!
//! `tool_choice: "required"` and a named function are enforced with a grammar
//! ([`Tools::grammar`], llguidance's Lark with `%json`): the reply is exactly one call whose
//! `name` is one of the allowed functions and whose arguments validate against that function's
//! `parameters` schema. `"auto"` leaves the model free and parses what it writes; `"none"`
//! leaves the tools out of the prompt and the reply unparsed: it is plain text even where it
//! looks like a call (no `tool_calls`, no grammar).
//!
//! Hand-written because no maintained Rust crate parses these formats (llama.cpp's own parsers
//! are C++, `common/chat.cpp`); the JSON inside is read with serde_json.

use serde_json::{json, Value as Json};

use crate::chat::RenderOptions;
use crate::constrain::Grammar;
use crate::{Error, Result};

/// How a model family writes tool calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ToolCallFormat {
    /// `<tool_call>{"name", "arguments"}</tool_call>` (Qwen2.5, Qwen3, Hermes).
    Hermes,
    /// `{"name", "parameters"}` as the whole reply (Llama 3.x).
    Llama3,
}

impl ToolCallFormat {
    /// The format a chat template's source uses, if it renders tools at all.
    pub fn detect(template_source: &str) -> Option<Self> {
        if template_source.contains("<tool_call>") {
            Some(ToolCallFormat::Hermes)
        } else if template_source.contains("<|python_tag|>")
            || template_source.contains("Given the following functions")
        {
            Some(ToolCallFormat::Llama3)
        } else {
            None
        }
    }

    fn arguments_key(self) -> &'static str {
        match self {
            ToolCallFormat::Hermes => "arguments",
            ToolCallFormat::Llama3 => "parameters",
        }
    }
}

/// Which calls the model may or must make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides (the default with tools).
    Auto,
    /// No call: the tools are left out of the prompt and the reply is never parsed for calls.
    None,
    /// Exactly one call to one of the tools, enforced by a grammar.
    Required,
    /// Exactly one call to this function, enforced by a grammar.
    Function(String),
}

impl ToolChoice {
    /// Reads `"auto" | "none" | "required" | {"type": "function", "function": {"name"}}`.
    pub fn from_json(v: &Json) -> Result<Self> {
        match v {
            Json::String(s) => match s.as_str() {
                "auto" => Ok(ToolChoice::Auto),
                "none" => Ok(ToolChoice::None),
                "required" => Ok(ToolChoice::Required),
                other => Err(bad(format!(
                    "tool_choice {other:?} is not one of \"auto\", \"none\", \"required\" or \
                     {{\"type\": \"function\", \"function\": {{\"name\": ...}}}}"
                ))),
            },
            Json::Object(o) => o
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(Json::as_str)
                .map(|n| ToolChoice::Function(n.to_string()))
                .ok_or_else(|| {
                    bad("tool_choice as an object must be {\"type\": \"function\", \"function\": {\"name\": ...}}")
                }),
            _ => Err(bad("tool_choice must be a string or an object")),
        }
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::InvalidRequest(msg.into())
}

/// One function the model may call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolFunction {
    pub name: String,
    /// JSON schema of the arguments (`{"type": "object"}` when the tool gives none).
    pub parameters: Json,
}

/// A call the model made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolCall {
    /// `call_` and 24 hex digits, stable for a given reply.
    pub id: String,
    pub name: String,
    /// The arguments as a JSON text (OpenAI's `function.arguments`).
    pub arguments: String,
}

impl ToolCall {
    /// `{"id", "type": "function", "function": {"name", "arguments"}}`.
    pub fn to_json(&self) -> Json {
        json!({
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        })
    }
}

/// A reply split into its content and its tool calls.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedReply {
    /// The text outside the calls (`None` when there is none).
    pub content: Option<String>,
    pub tool_calls: Vec<ToolCall>,
}

/// The tools of one request, for one chat template.
#[derive(Clone, Debug)]
pub struct Tools {
    /// `tools` as given (what the template renders).
    definitions: Json,
    functions: Vec<ToolFunction>,
    pub choice: ToolChoice,
    pub format: ToolCallFormat,
}

impl Tools {
    /// Reads a request's `tools` and `tool_choice` for a template (its source). `None` when
    /// there are no tools (absent, null or an empty list); a `tool_choice` that needs tools is
    /// then an error, and so is a template that cannot render tools.
    pub fn from_request(
        tools: Option<&Json>,
        tool_choice: Option<&Json>,
        template_source: &str,
    ) -> Result<Option<Tools>> {
        let choice = match tool_choice {
            None | Some(Json::Null) => ToolChoice::Auto,
            Some(v) => ToolChoice::from_json(v)?,
        };
        let list = match tools {
            None | Some(Json::Null) => &[][..],
            Some(Json::Array(a)) => a.as_slice(),
            Some(_) => {
                return Err(bad(
                    "tools must be an array of {\"type\": \"function\", ...}",
                ))
            }
        };
        if list.is_empty() {
            return match choice {
                ToolChoice::Auto | ToolChoice::None => Ok(None),
                _ => Err(bad(format!("tool_choice {choice:?} needs tools"))),
            };
        }
        let mut functions = Vec::with_capacity(list.len());
        for (i, t) in list.iter().enumerate() {
            let f = t
                .get("function")
                .filter(|_| t.get("type").and_then(Json::as_str).unwrap_or("function") == "function")
                .ok_or_else(|| {
                    bad(format!(
                        "tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\", \"parameters\"}}}}"
                    ))
                })?;
            let name = f
                .get("name")
                .and_then(Json::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| {
                    bad(format!(
                        "tools[{i}].function.name must be a non-empty string"
                    ))
                })?;
            let parameters = match f.get("parameters") {
                None | Some(Json::Null) => json!({"type": "object"}),
                Some(p @ Json::Object(_)) => p.clone(),
                Some(_) => {
                    return Err(bad(format!(
                        "tools[{i}].function.parameters must be a JSON schema object"
                    )))
                }
            };
            functions.push(ToolFunction {
                name: name.to_string(),
                parameters,
            });
        }
        if let ToolChoice::Function(name) = &choice {
            if !functions.iter().any(|f| &f.name == name) {
                return Err(bad(format!(
                    "tool_choice names the function {name:?}, which is not among the tools"
                )));
            }
        }
        let format = ToolCallFormat::detect(template_source).ok_or_else(|| {
            bad(
                "the model's chat template does not render tools (it has no tool-call format \
                 this engine knows: Qwen2.5/Qwen3 <tool_call> or Llama 3.x JSON)",
            )
        })?;
        Ok(Some(Tools {
            definitions: Json::Array(list.to_vec()),
            functions,
            choice,
            format,
        }))
    }

    pub fn functions(&self) -> &[ToolFunction] {
        &self.functions
    }

    /// Whether the reply may hold calls: not with `tool_choice: "none"`, whose reply is plain
    /// text even where it looks like a call.
    pub fn calls_allowed(&self) -> bool {
        self.choice != ToolChoice::None
    }

    /// What the template gets as `tools` (`None` with `tool_choice: "none"`).
    pub fn template_tools(&self) -> Option<minijinja::Value> {
        (self.choice != ToolChoice::None)
            .then(|| minijinja::Value::from_serialize(&self.definitions))
    }

    /// The grammar that forces one well-formed call (`required` or a named function); `None`
    /// for `auto` and `none`.
    pub fn grammar(&self) -> Option<Grammar> {
        let allowed: Vec<&ToolFunction> = match &self.choice {
            ToolChoice::Auto | ToolChoice::None => return None,
            ToolChoice::Required => self.functions.iter().collect(),
            ToolChoice::Function(name) => {
                self.functions.iter().filter(|f| &f.name == name).collect()
            }
        };
        let key = self.format.arguments_key();
        let variants: Vec<Json> = allowed
            .iter()
            .map(|f| {
                let mut properties = serde_json::Map::new();
                properties.insert("name".into(), json!({"const": f.name}));
                properties.insert(key.into(), f.parameters.clone());
                json!({
                    "type": "object",
                    "properties": properties,
                    "required": ["name", key],
                    "additionalProperties": false,
                })
            })
            .collect();
        let schema = json!({
            "anyOf": variants,
            "x-guidance": {"whitespace_flexible": false},
        });
        let call = format!("call: %json {schema}");
        Some(Grammar::Lark(match self.format {
            ToolCallFormat::Hermes => {
                format!("start: \"<tool_call>\\n\" call \"\\n</tool_call>\"\n{call}\n")
            }
            ToolCallFormat::Llama3 => format!("start: call\n{call}\n"),
        }))
    }

    /// Puts the tools into a chat request: their definitions into the template's `tools` and a
    /// forced call's grammar into `grammar`, which must then be empty (a forced call cannot be
    /// combined with `response_format` or `grammar`).
    pub fn apply(&self, render: &mut RenderOptions, grammar: &mut Option<Grammar>) -> Result<()> {
        render.tools = self.template_tools();
        if let Some(g) = self.grammar() {
            if grammar.is_some() {
                return Err(bad(
                    "a forced tool call (tool_choice required or named) and response_format/grammar cannot be combined",
                ));
            }
            *grammar = Some(g);
        }
        Ok(())
    }

    /// Splits a reply into content and tool calls. Calls to unknown functions are kept in
    /// Hermes replies (the block says it is a call) and are content in Llama 3 replies (a JSON
    /// answer is not a call unless it names a tool). With `tool_choice: "none"` the whole
    /// reply is content.
    pub fn parse(&self, text: &str) -> ParsedReply {
        let calls = if !self.calls_allowed() {
            None
        } else {
            match self.format {
                ToolCallFormat::Hermes => parse_hermes(text),
                ToolCallFormat::Llama3 => parse_llama3(text, &self.functions),
            }
        };
        match calls {
            Some((content, calls)) if !calls.is_empty() => ParsedReply {
                content: Some(content.trim().to_string()).filter(|c| !c.is_empty()),
                tool_calls: calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, arguments))| ToolCall {
                        id: call_id(text, i),
                        name,
                        arguments,
                    })
                    .collect(),
            },
            _ => ParsedReply {
                content: Some(text.to_string()),
                tool_calls: Vec::new(),
            },
        }
    }

    /// A filter for streamed text that holds back what may be a tool call (nothing with
    /// `tool_choice: "none"`: all text shows as it comes).
    pub fn stream_filter(&self) -> ToolStreamFilter {
        ToolStreamFilter {
            format: self.calls_allowed().then_some(self.format),
            pending: String::new(),
            held: false,
            seen_text: false,
        }
    }
}

/// The arguments value as a JSON text (a string that holds JSON is taken as that JSON).
fn arguments_text(v: &Json) -> Option<String> {
    match v {
        Json::Object(_) => Some(v.to_string()),
        Json::String(s) => serde_json::from_str::<Json>(s)
            .ok()
            .filter(Json::is_object)
            .map(|o| o.to_string()),
        _ => None,
    }
}

type Calls = Vec<(String, String)>;

fn parse_hermes(text: &str) -> Option<(String, Calls)> {
    const OPEN: &str = "<tool_call>";
    const CLOSE: &str = "</tool_call>";
    let first = text.find(OPEN)?;
    let content = text[..first].to_string();
    let mut calls = Vec::new();
    let mut rest = &text[first..];
    while let Some(at) = rest.find(OPEN) {
        let body_start = at + OPEN.len();
        let (body, next) = match rest[body_start..].find(CLOSE) {
            Some(end) => (
                &rest[body_start..body_start + end],
                &rest[body_start + end + CLOSE.len()..],
            ),
            None => (&rest[body_start..], ""),
        };
        let v: Json = serde_json::from_str(body.trim()).ok()?;
        let name = v.get("name")?.as_str()?.to_string();
        let args = arguments_text(v.get("arguments").unwrap_or(&json!({})))?;
        calls.push((name, args));
        rest = next;
    }
    Some((content, calls))
}

fn parse_llama3(text: &str, functions: &[ToolFunction]) -> Option<(String, Calls)> {
    let t = text.trim_start();
    let t = t.strip_prefix("<|python_tag|>").unwrap_or(t).trim();
    if !t.starts_with('{') {
        return None;
    }
    let v: Json = serde_json::from_str(t).ok()?;
    let name = v.get("name")?.as_str()?;
    if !functions.iter().any(|f| f.name == name) {
        return None;
    }
    let args = v
        .get("parameters")
        .or_else(|| v.get("arguments"))
        .unwrap_or(&Json::Null);
    let args = match args {
        Json::Null => "{}".to_string(),
        a => arguments_text(a)?,
    };
    Some((String::new(), vec![(name.to_string(), args)]))
}

/// `call_` + 24 hex digits of FNV-1a over the reply and the call's index: unique per call of a
/// reply, reproducible for tests.
fn call_id(text: &str, index: usize) -> String {
    let mut h: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    for b in text.bytes().chain(index.to_le_bytes()) {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000_0000_0100_0000_0000_0000_0000_013b);
    }
    format!("call_{:024x}", h >> 32)
}

/// Holds back streamed text that may be a tool call: from `<tool_call>` on (Hermes), or the
/// whole reply when it starts with `{` or `<|python_tag|>` (Llama 3). What it holds comes back
/// from [`finish`](Self::finish) when the reply turned out to have no call.
#[derive(Debug)]
pub struct ToolStreamFilter {
    /// `None` when the reply cannot hold calls (`tool_choice: "none"`): nothing is held.
    format: Option<ToolCallFormat>,
    pending: String,
    /// A call has started: everything from here on is held.
    held: bool,
    /// Non-whitespace text was emitted (Llama 3: a reply that starts with text is no call).
    seen_text: bool,
}

impl ToolStreamFilter {
    /// Adds streamed text; returns what may be shown now.
    pub fn push(&mut self, text: &str) -> String {
        self.pending.push_str(text);
        if self.held {
            return String::new();
        }
        let Some(format) = self.format else {
            return std::mem::take(&mut self.pending);
        };
        match format {
            ToolCallFormat::Hermes => {
                const OPEN: &str = "<tool_call>";
                if let Some(at) = self.pending.find(OPEN) {
                    self.held = true;
                    let out = self.pending[..at].to_string();
                    self.pending.drain(..at);
                    return out;
                }
                // Keep a suffix that may start the marker.
                let keep = (1..OPEN.len())
                    .rev()
                    .find(|&k| {
                        self.pending.len() >= k
                            && self.pending.is_char_boundary(self.pending.len() - k)
                            && OPEN.starts_with(&self.pending[self.pending.len() - k..])
                    })
                    .unwrap_or(0);
                let cut = self.pending.len() - keep;
                self.pending.drain(..cut).collect()
            }
            ToolCallFormat::Llama3 => {
                if self.seen_text {
                    return std::mem::take(&mut self.pending);
                }
                let t = self.pending.trim_start();
                if t.is_empty() {
                    return String::new();
                }
                if t.starts_with('{') || t.starts_with("<|python_tag|>") {
                    self.held = true;
                    return String::new();
                }
                if "<|python_tag|>".starts_with(t) {
                    return String::new();
                }
                self.seen_text = true;
                std::mem::take(&mut self.pending)
            }
        }
    }

    /// The end of the reply: what is still held is shown unless the reply parsed into calls.
    pub fn finish(&mut self, has_calls: bool) -> String {
        let rest = std::mem::take(&mut self.pending);
        if has_calls {
            String::new()
        } else {
            rest
        }
    }
}

/// Whether a template renders `tool_call.arguments` through `tojson` (Qwen2.5, Llama 3.x): it
/// wants the arguments as an object, so OpenAI's JSON-text arguments are parsed first, as
/// llama.cpp does for such templates.
pub(crate) fn wants_object_arguments(template_source: &str) -> bool {
    template_source.contains("arguments | tojson") || template_source.contains("arguments|tojson")
}

/// `tool_calls` with every `function.arguments` that is a JSON text of an object replaced by
/// that object.
pub(crate) fn arguments_as_objects(tool_calls: &minijinja::Value) -> minijinja::Value {
    let Ok(json) = serde_json::to_value(tool_calls) else {
        return tool_calls.clone();
    };
    let Json::Array(mut calls) = json else {
        return tool_calls.clone();
    };
    let mut changed = false;
    for call in &mut calls {
        let Some(args) = call
            .get_mut("function")
            .and_then(|f| f.get_mut("arguments"))
        else {
            continue;
        };
        if let Json::String(s) = args {
            if let Ok(v @ Json::Object(_)) = serde_json::from_str::<Json>(s) {
                *args = v;
                changed = true;
            }
        }
    }
    if changed {
        minijinja::Value::from_serialize(&calls)
    } else {
        tool_calls.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weather() -> Json {
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["location"]}}}])
    }

    #[test]
    fn formats_are_detected_from_the_template() {
        assert_eq!(
            ToolCallFormat::detect("x <tool_call> y"),
            Some(ToolCallFormat::Hermes)
        );
        assert_eq!(
            ToolCallFormat::detect("{{- '<|python_tag|>' }}"),
            Some(ToolCallFormat::Llama3)
        );
        assert_eq!(ToolCallFormat::detect("<|im_start|>"), None);
        let err = Tools::from_request(Some(&weather()), None, "<|im_start|>").unwrap_err();
        assert!(err.to_string().contains("does not render tools"), "{err}");
    }

    #[test]
    fn tool_choice_is_checked() {
        let t = |c: Json| Tools::from_request(Some(&weather()), Some(&c), "<tool_call>");
        assert_eq!(
            t(json!("required")).unwrap().unwrap().choice,
            ToolChoice::Required
        );
        assert!(t(json!("none"))
            .unwrap()
            .unwrap()
            .template_tools()
            .is_none());
        assert!(t(json!("sometimes"))
            .unwrap_err()
            .to_string()
            .contains("sometimes"));
        let err = t(json!({"type": "function", "function": {"name": "nope"}})).unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
        let err = Tools::from_request(None, Some(&json!("required")), "<tool_call>").unwrap_err();
        assert!(err.to_string().contains("needs tools"), "{err}");
        assert!(Tools::from_request(Some(&json!([])), None, "")
            .unwrap()
            .is_none());
        let err = Tools::from_request(Some(&json!([{"type": "function"}])), None, "<tool_call>");
        assert!(err.unwrap_err().to_string().contains("tools[0]"));
    }

    #[test]
    fn hermes_calls_are_parsed_and_streamed_held_back() {
        let tools = Tools::from_request(Some(&weather()), None, "<tool_call>")
            .unwrap()
            .unwrap();
        let reply = "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>";
        let p = tools.parse(reply);
        assert_eq!(p.content.as_deref(), Some("Let me check."));
        assert_eq!(p.tool_calls.len(), 1);
        assert_eq!(p.tool_calls[0].name, "get_weather");
        assert_eq!(p.tool_calls[0].arguments, "{\"location\":\"Paris\"}");
        assert!(p.tool_calls[0].id.starts_with("call_") && p.tool_calls[0].id.len() == 29);
        // streamed in small pieces: the text before the call shows, the call never does
        let mut f = tools.stream_filter();
        let mut shown = String::new();
        for piece in reply.as_bytes().chunks(3) {
            shown.push_str(&f.push(std::str::from_utf8(piece).unwrap()));
        }
        shown.push_str(&f.finish(true));
        assert_eq!(shown, "Let me check.\n");
        // no call: all text comes back
        let p = tools.parse("Just text <tool");
        assert_eq!(p.tool_calls, vec![]);
        let mut f = tools.stream_filter();
        let s = f.push("Just text <tool");
        assert_eq!(s + &f.finish(false), "Just text <tool");
        // a malformed call is content
        assert!(tools
            .parse("<tool_call>{\"name\": 1}</tool_call>")
            .tool_calls
            .is_empty());
    }

    #[test]
    fn llama3_calls_are_parsed() {
        let tools = Tools::from_request(Some(&weather()), None, "<|python_tag|>")
            .unwrap()
            .unwrap();
        let p = tools.parse(
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Oslo\"}}",
        );
        assert_eq!(p.content, None);
        assert_eq!(p.tool_calls[0].arguments, "{\"location\":\"Oslo\"}");
        // JSON that names no tool is an answer
        let p = tools.parse("{\"name\": \"Bob\"}");
        assert!(p.tool_calls.is_empty());
        let mut f = tools.stream_filter();
        assert_eq!(f.push("  {\"na"), "");
        assert_eq!(f.finish(false), "  {\"na");
        let mut f = tools.stream_filter();
        assert_eq!(f.push("Hello {"), "Hello {");
    }

    #[test]
    fn forced_calls_have_a_grammar() {
        let tools = Tools::from_request(
            Some(&weather()),
            Some(&json!({"type": "function", "function": {"name": "get_weather"}})),
            "<tool_call>",
        )
        .unwrap()
        .unwrap();
        let Some(Grammar::Lark(g)) = tools.grammar() else {
            panic!("no grammar")
        };
        assert!(g.starts_with("start: \"<tool_call>\\n\" call"), "{g}");
        assert!(g.contains("\"const\":\"get_weather\""), "{g}");
        let auto = Tools::from_request(Some(&weather()), None, "<tool_call>")
            .unwrap()
            .unwrap();
        assert_eq!(auto.grammar(), None);
    }

    #[test]
    fn tool_choice_none_never_makes_calls() {
        let hermes = "Sure.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>";
        let llama3 =
            "<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"location\": \"Oslo\"}}";
        for (source, reply) in [("<tool_call>", hermes), ("<|python_tag|>", llama3)] {
            // the same reply is a call with `auto`...
            let auto = Tools::from_request(Some(&weather()), None, source)
                .unwrap()
                .unwrap();
            assert_eq!(auto.parse(reply).tool_calls.len(), 1, "{source}");
            // ...and plain text with `none`: no calls, no grammar, nothing held back
            let none = Tools::from_request(Some(&weather()), Some(&json!("none")), source)
                .unwrap()
                .unwrap();
            let p = none.parse(reply);
            assert_eq!(p.tool_calls, vec![], "{source}");
            assert_eq!(p.content.as_deref(), Some(reply));
            let mut f = none.stream_filter();
            for piece in reply.as_bytes().chunks(3) {
                let piece = std::str::from_utf8(piece).unwrap();
                assert_eq!(f.push(piece), piece, "{source}");
            }
            assert_eq!(f.finish(false), "");
            assert!(!none.calls_allowed());
            assert_eq!(none.grammar(), None);
            let mut render = RenderOptions::default();
            let mut grammar = None;
            none.apply(&mut render, &mut grammar).unwrap();
            assert!(grammar.is_none());
        }
    }

    #[test]
    fn string_arguments_become_objects_for_the_template() {
        let calls = minijinja::Value::from_serialize(json!([
            {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{\"a\": 1}"}}
        ]));
        let out = serde_json::to_value(arguments_as_objects(&calls)).unwrap();
        assert_eq!(out[0]["function"]["arguments"], json!({"a": 1}));
        assert!(wants_object_arguments("{{ tool_call.arguments | tojson }}"));
        assert!(!wants_object_arguments("{{ tool_call.arguments }}"));
    }
}
