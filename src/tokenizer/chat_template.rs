//! Chat templates: turn a conversation into the prompt text a model was trained on.
//!
//! A GGUF model carries its chat template as Jinja source in `tokenizer.chat_template`. This module
//! renders it the way llama.cpp does with `--jinja` (llama-server, llama-cli), which is also what
//! `shared/tools/llama-ref` records in its `chat` goldens:
//!
//! * The template gets llama.cpp's two source patches for known broken templates
//!   ([`patch_template_like_llama_cpp`]) and is parsed with `trim_blocks` and `lstrip_blocks` on and
//!   a single trailing newline dropped, as llama.cpp's Jinja lexer does.
//! * The variables are llama.cpp's: `messages`, `bos_token`, `eos_token`, `enable_thinking: true`,
//!   `tools` (only when given and not an empty list), `datetime` ("Nov 26 2025") and `date_string`
//!   ("26 Nov 2025") from [`RenderOptions::now`], then the extra kwargs (like
//!   `--chat-template-kwargs`, they may override any of these), then `add_generation_prompt`.
//! * Messages are adjusted as llama.cpp adjusts them ([`ChatTemplate::render`]): role `developer`
//!   becomes `system`, empty content is left out, array content is joined with `"\n"`, and a
//!   leading system message is merged into the next message when a probe render shows that the
//!   template ignores or rejects system messages.
//! * Helpers that chat templates call: `raise_exception(msg)` (becomes
//!   [`TemplateError::Raised`]), `strftime_now(fmt)`, `tojson` with llama.cpp's output (Python
//!   `json.dumps` separators `", "` and `": "`, non-ASCII kept unless `ensure_ascii=true`, keys in
//!   input order), Python string methods (`strip`, `lstrip`, `rstrip`, `startswith`, `endswith`,
//!   `split`, `rsplit`, `replace`, `upper`, `lower`, `title`, `capitalize`, `find`, `count`,
//!   `join`, `format`, `is*`, ...) and dict methods (`items`, `keys`, `values`, `get`). As in
//!   llama.cpp, case mapping (`upper`, `lower`, `title`, `capitalize`, methods and filters) only
//!   changes ASCII letters, `title` starts words after whitespace only, and `strip`/`trim` remove
//!   ASCII whitespace.
//! * Output printing follows llama.cpp: `none` and undefined print nothing, booleans print
//!   `True`/`False`.
//!
//! When the tokenizer adds BOS (or EOS) itself, llama.cpp removes a BOS text at the start (an EOS
//! text at the end) of the rendered prompt: [`strip_bos_eos`] / [`ChatTemplate::render_prompt`].
//!
//! A model without a template is an error ([`TemplateError::NoTemplate`]): llama.cpp would fall
//! back to ChatML silently, which is not what such a model was trained on. A caller that wants that
//! fallback anyway opts in with [`ChatTemplate::chatml`].
//!
//! Known differences from llama.cpp's engine (the renderer here is `minijinja`): `list.append()`
//! is not supported (lists are immutable; a template gets a clear error), `'x' ~ none` gives
//! `xnone`, string `+` with an undefined value is an error (it is retried once with empty strings
//! for the contents llama.cpp leaves out, which reproduces llama.cpp's output), and dict literals
//! written in the template itself keep their key order only when minijinja's `preserve_order`
//! feature is on (input data always keeps its order). Times are UTC, where llama.cpp uses local
//! time; in the browser pass [`RenderOptions::now`] (there is no clock on wasm32-unknown-unknown).

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::sync::Arc;

use minijinja::value::{from_args, Enumerator, Kwargs, Object, ObjectRepr, ValueKind};
use minijinja::{Environment, ErrorKind, State, UndefinedBehavior};

/// The dynamic value type used for template data (tool calls, tools, kwargs). Build one from
/// Rust data with `Value::from(..)`, from any `Serialize` with `Value::from_serialize` (maps then
/// come out sorted unless minijinja's `preserve_order` feature is on), or from JSON text with
/// [`JsonValue`], which keeps the key order of the text.
pub use minijinja::Value;

/// Name under which the template is stored in its environment (shows in minijinja's messages).
const TEMPLATE_NAME: &str = "chat_template";
/// Hidden context variable holding the render time for `strftime_now`.
const NOW_VAR: &str = "__wasm_chord_now";

/// A generic ChatML template, the fallback llama.cpp uses silently for models without a template.
/// Only used when a caller asks for it: [`ChatTemplate::chatml`].
pub const CHATML_TEMPLATE: &str = "{%- for message in messages -%}\n\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n\
{%- endfor -%}\n\
{%- if add_generation_prompt -%}\n\
{{- '<|im_start|>assistant\\n' -}}\n\
{%- endif -%}\n";

// ------------------------------------------------------------------------------------------ errors

/// Why a chat template could not be built or rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateError {
    /// The model has no `tokenizer.chat_template`. Pass a template explicitly, or opt in to the
    /// generic ChatML fallback with [`ChatTemplate::chatml`].
    NoTemplate,
    /// The template source does not parse. `line` is 1-based, in the template source.
    Syntax {
        line: Option<usize>,
        message: String,
    },
    /// The template called `raise_exception(message)`.
    Raised(String),
    /// Rendering failed (a type error, an unknown filter, ...). `line` is 1-based.
    Render {
        line: Option<usize>,
        message: String,
    },
    /// The messages, tools or kwargs given are unusable (says which and why).
    InvalidInput(String),
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn at(line: &Option<usize>) -> String {
            line.map(|l| format!(" at line {l}")).unwrap_or_default()
        }
        match self {
            TemplateError::NoTemplate => f.write_str(
                "the model has no chat template (no `tokenizer.chat_template` in its GGUF metadata); \
                 pass a template explicitly, or opt in to the generic ChatML fallback \
                 (`ChatTemplate::chatml`), which is not what such a model was trained on",
            ),
            TemplateError::Syntax { line, message } => {
                write!(f, "chat template syntax error{}: {message}", at(line))
            }
            TemplateError::Raised(msg) => write!(f, "the chat template raised an exception: {msg}"),
            TemplateError::Render { line, message } => {
                write!(f, "rendering the chat template failed{}: {message}", at(line))
            }
            TemplateError::InvalidInput(msg) => write!(f, "invalid chat template input: {msg}"),
        }
    }
}

impl std::error::Error for TemplateError {}

/// Carried as the source of the minijinja error that `raise_exception` returns, so that the
/// message can be told apart from engine errors.
#[derive(Debug)]
struct RaisedException(String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn from_jinja(err: minijinja::Error) -> TemplateError {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    while let Some(e) = cur {
        if let Some(raised) = e.downcast_ref::<RaisedException>() {
            return TemplateError::Raised(raised.0.clone());
        }
        cur = e.source();
    }
    let line = err.line();
    if err.kind() == ErrorKind::SyntaxError {
        let message = err
            .detail()
            .map_or_else(|| err.kind().to_string(), str::to_string);
        return TemplateError::Syntax { line, message };
    }
    let message = match err.detail() {
        Some(d) => format!("{}: {d}", err.kind()),
        None => err.kind().to_string(),
    };
    TemplateError::Render { line, message }
}

fn invalid_op(msg: impl Into<Cow<'static, str>>) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, msg)
}

// ------------------------------------------------------------------------------------ JSON values

/// A map that keeps insertion order (JSON objects, messages, the context). Later duplicates of a
/// key replace the value in place.
#[derive(Debug, Default)]
struct OrderedMap(Vec<(Value, Value)>);

impl OrderedMap {
    fn insert(&mut self, key: impl Into<Value>, value: Value) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    fn into_value(self) -> Value {
        Value::from_object(self)
    }
}

impl Object for OrderedMap {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Map
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::Values(self.0.iter().map(|(k, _)| k.clone()).collect())
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        Some(self.0.len())
    }
}

/// A [`Value`] read from JSON (or any self-describing serde format) with objects kept in the
/// order of the input, as llama.cpp keeps them. `serde_json::from_str::<JsonValue>(text)`.
#[derive(Debug, Clone)]
pub struct JsonValue(pub Value);

impl<'de> serde::Deserialize<'de> for JsonValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(JsonVisitor).map(JsonValue)
    }
}

struct JsonVisitor;

impl<'de> serde::de::Visitor<'de> for JsonVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::from(()))
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(JsonValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::from(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = OrderedMap::default();
        while let Some(key) = map.next_key::<String>()? {
            let JsonValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(out.into_value())
    }
}

// ---------------------------------------------------------------------------------------- messages

/// One part of an array `content` (`{"type": "text", "text": ...}`). Only text parts reach the
/// template; others (images, audio) are left out, as llama.cpp does for text-only templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentPart {
    /// The part's `type` (`"text"`, `"image_url"`, ...).
    pub kind: String,
    /// The part's `text`, for text parts.
    pub text: Option<String>,
}

impl ContentPart {
    pub fn text(text: impl Into<String>) -> Self {
        ContentPart {
            kind: "text".into(),
            text: Some(text.into()),
        }
    }
}

/// A message's content: a string, or an OpenAI-style array of parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl MessageContent {
    /// The content as the template sees it: text parts joined with `"\n"`.
    pub fn joined(&self) -> Cow<'_, str> {
        match self {
            MessageContent::Text(s) => Cow::Borrowed(s),
            MessageContent::Parts(parts) => Cow::Owned(
                parts
                    .iter()
                    .filter(|p| p.kind == "text")
                    .map(|p| p.text.as_deref().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        }
    }
}

impl From<&str> for MessageContent {
    fn from(s: &str) -> Self {
        MessageContent::Text(s.to_string())
    }
}

impl From<String> for MessageContent {
    fn from(s: String) -> Self {
        MessageContent::Text(s)
    }
}

/// One chat message, OpenAI style. Serializes to and deserializes from
/// `{"role", "content", "tool_calls", "reasoning_content", "name", "tool_call_id"}` (absent
/// fields are left out); other keys in the input are ignored.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, `tool`, `developer` (becomes `system`), or anything the
    /// template handles.
    pub role: String,
    pub content: Option<MessageContent>,
    /// Passed to the template as given (usually a list of `{"id", "type", "function": {"name",
    /// "arguments"}}`).
    pub tool_calls: Option<Value>,
    pub reasoning_content: Option<String>,
    pub name: Option<String>,
    pub tool_call_id: Option<String>,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<MessageContent>) -> Self {
        ChatMessage {
            role: role.into(),
            content: Some(content.into()),
            tool_calls: None,
            reasoning_content: None,
            name: None,
            tool_call_id: None,
        }
    }
    pub fn system(content: impl Into<MessageContent>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<MessageContent>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<MessageContent>) -> Self {
        Self::new("assistant", content)
    }
    pub fn with_tool_calls(mut self, tool_calls: Value) -> Self {
        self.tool_calls = Some(tool_calls);
        self
    }

    /// Reads one message from a map value (such as a [`JsonValue`]).
    pub fn from_value(v: &Value) -> Result<Self, TemplateError> {
        Self::from_value_at(v, None)
    }

    fn from_value_at(v: &Value, index: Option<usize>) -> Result<Self, TemplateError> {
        let what = match index {
            Some(i) => format!("messages[{i}]"),
            None => "message".to_string(),
        };
        if v.kind() != ValueKind::Map {
            return Err(TemplateError::InvalidInput(format!(
                "{what} must be an object with a string \"role\""
            )));
        }
        let field = |name: &str| {
            v.get_attr(name)
                .ok()
                .filter(|x| !x.is_undefined() && !x.is_none())
        };
        let role = match field("role") {
            Some(r) if r.kind() == ValueKind::String => r.as_str().unwrap_or_default().to_string(),
            _ => {
                return Err(TemplateError::InvalidInput(format!(
                    "{what} must be an object with a string \"role\""
                )))
            }
        };
        let content = match field("content") {
            None => None,
            Some(c) if c.kind() == ValueKind::String => {
                Some(MessageContent::Text(c.as_str().unwrap_or_default().to_string()))
            }
            Some(c) if c.kind() == ValueKind::Seq => {
                let mut parts = Vec::new();
                for p in c.try_iter().map_err(|e| TemplateError::InvalidInput(e.to_string()))? {
                    if p.kind() != ValueKind::Map {
                        continue;
                    }
                    let get = |k: &str| {
                        p.get_attr(k)
                            .ok()
                            .filter(|x| !x.is_undefined() && !x.is_none())
                            .map(|x| match x.as_str() {
                                Some(s) => s.to_string(),
                                None => x.to_string(),
                            })
                    };
                    parts.push(ContentPart {
                        kind: get("type").unwrap_or_default(),
                        text: get("text"),
                    });
                }
                Some(MessageContent::Parts(parts))
            }
            Some(_) => {
                return Err(TemplateError::InvalidInput(format!(
                    "{what}.content must be a string or an array of {{\"type\":\"text\",\"text\":...}} parts"
                )))
            }
        };
        let string_field = |name: &str| -> Result<Option<String>, TemplateError> {
            match field(name) {
                None => Ok(None),
                Some(x) => match x.as_str() {
                    Some(s) => Ok(Some(s.to_string())),
                    None => Err(TemplateError::InvalidInput(format!(
                        "{what}.{name} must be a string"
                    ))),
                },
            }
        };
        Ok(ChatMessage {
            role,
            content,
            tool_calls: field("tool_calls"),
            reasoning_content: string_field("reasoning_content")?,
            name: string_field("name")?,
            tool_call_id: string_field("tool_call_id")?,
        })
    }
}

/// Reads a list of messages from an array: a [`Value`] (such as a [`JsonValue`] read from JSON
/// text, which keeps the key order of `tool_calls`), or any `Serialize` data such as a
/// `serde_json::Value` (whose maps are sorted by key unless serde_json's `preserve_order` is on).
pub fn messages_from_value<T: serde::Serialize + ?Sized>(
    v: &T,
) -> Result<Vec<ChatMessage>, TemplateError> {
    let v = Value::from_serialize(v);
    if v.kind() != ValueKind::Seq {
        return Err(TemplateError::InvalidInput(
            "messages must be an array of {\"role\", \"content\"} objects".into(),
        ));
    }
    let items = v
        .try_iter()
        .map_err(|e| TemplateError::InvalidInput(e.to_string()))?;
    items
        .enumerate()
        .map(|(i, m)| ChatMessage::from_value_at(&m, Some(i)))
        .collect()
}

impl serde::Serialize for ContentPart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", &self.kind)?;
        if let Some(t) = &self.text {
            m.serialize_entry("text", t)?;
        }
        m.end()
    }
}

impl serde::Serialize for MessageContent {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            MessageContent::Text(t) => s.serialize_str(t),
            MessageContent::Parts(p) => p.serialize(s),
        }
    }
}

impl serde::Serialize for ChatMessage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("role", &self.role)?;
        if let Some(c) = &self.content {
            m.serialize_entry("content", c)?;
        }
        if let Some(t) = &self.tool_calls {
            m.serialize_entry("tool_calls", t)?;
        }
        if let Some(r) = &self.reasoning_content {
            m.serialize_entry("reasoning_content", r)?;
        }
        if let Some(n) = &self.name {
            m.serialize_entry("name", n)?;
        }
        if let Some(t) = &self.tool_call_id {
            m.serialize_entry("tool_call_id", t)?;
        }
        m.end()
    }
}

impl<'de> serde::Deserialize<'de> for ChatMessage {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let JsonValue(v) = JsonValue::deserialize(d)?;
        ChatMessage::from_value(&v).map_err(serde::de::Error::custom)
    }
}

// ------------------------------------------------------------------------------------------ dates

/// A civil date and time (no time zone) for `datetime`, `date_string` and `strftime_now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatDate {
    pub year: i32,
    /// 1..=12
    pub month: u8,
    /// 1..=31
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian; H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: u8, d: u8) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl ChatDate {
    /// A date at midnight; `None` when it does not exist.
    pub fn new(year: i32, month: u8, day: u8) -> Option<Self> {
        Self::with_time(year, month, day, 0, 0, 0)
    }

    /// A date and time; `None` when it does not exist.
    pub fn with_time(
        year: i32,
        month: u8,
        day: u8,
        hour: u8,
        minute: u8,
        second: u8,
    ) -> Option<Self> {
        let ok = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(i64::from(year), month)
            && hour < 24
            && minute < 60
            && second < 61;
        ok.then_some(ChatDate {
            year,
            month,
            day,
            hour,
            minute,
            second,
        })
    }

    /// The UTC date and time of a Unix timestamp (seconds). In the browser:
    /// `Math.floor((Date.now() - new Date().getTimezoneOffset() * 60000) / 1000)` gives local time.
    pub fn from_unix_seconds(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400);
        // civil_from_days (H. Hinnant)
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u8;
        let year = yoe + era * 400 + i64::from(month <= 2);
        ChatDate {
            year: year.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
        }
    }

    /// The current UTC time, where the platform has a clock (`None` on wasm32-unknown-unknown).
    pub fn now_utc() -> Option<Self> {
        #[cfg(all(target_arch = "wasm32", not(target_os = "wasi")))]
        {
            None
        }
        #[cfg(not(all(target_arch = "wasm32", not(target_os = "wasi"))))]
        {
            let d = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()?;
            Some(Self::from_unix_seconds(i64::try_from(d.as_secs()).ok()?))
        }
    }

    /// 0 = Sunday.
    fn weekday(&self) -> usize {
        let days = days_from_civil(i64::from(self.year), self.month, self.day);
        (days + 4).rem_euclid(7) as usize
    }

    /// 1-based day of the year.
    fn day_of_year(&self) -> i64 {
        days_from_civil(i64::from(self.year), self.month, self.day)
            - days_from_civil(i64::from(self.year), 1, 1)
            + 1
    }

    /// C `strftime` in the "C" locale for the common conversions (`%Y %y %C %m %d %e %j %H %I
    /// %M %S %p %b %h %B %a %A %u %w %F %T %D %R %c %x %X %n %t %% %s %Z %z`), with glibc's `-`
    /// flag (no padding, `%-d`). The time zone is UTC. Unknown conversions are copied as written.
    pub fn strftime(&self, fmt: &str) -> String {
        let mut out = String::with_capacity(fmt.len() + 16);
        let mut chars = fmt.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let no_pad = chars.peek() == Some(&'-');
            if no_pad {
                chars.next();
            }
            let Some(conv) = chars.next() else {
                out.push('%');
                if no_pad {
                    out.push('-');
                }
                break;
            };
            let num = |v: i64, width: usize| -> String {
                if no_pad {
                    v.to_string()
                } else {
                    format!("{v:0width$}")
                }
            };
            let month_name = MONTHS[usize::from(self.month.clamp(1, 12) - 1)];
            let day_name = WEEKDAYS[self.weekday()];
            let hour12 = match self.hour % 12 {
                0 => 12,
                h => h,
            };
            match conv {
                'Y' => out.push_str(&self.year.to_string()),
                'y' => out.push_str(&num(i64::from(self.year).rem_euclid(100), 2)),
                'C' => out.push_str(&num(i64::from(self.year).div_euclid(100), 2)),
                'm' => out.push_str(&num(i64::from(self.month), 2)),
                'd' => out.push_str(&num(i64::from(self.day), 2)),
                'e' => {
                    if no_pad {
                        out.push_str(&self.day.to_string())
                    } else {
                        out.push_str(&format!("{:>2}", self.day))
                    }
                }
                'j' => out.push_str(&num(self.day_of_year(), 3)),
                'H' => out.push_str(&num(i64::from(self.hour), 2)),
                'I' => out.push_str(&num(i64::from(hour12), 2)),
                'M' => out.push_str(&num(i64::from(self.minute), 2)),
                'S' => out.push_str(&num(i64::from(self.second), 2)),
                'p' => out.push_str(if self.hour < 12 { "AM" } else { "PM" }),
                'b' | 'h' => out.push_str(&month_name[..3]),
                'B' => out.push_str(month_name),
                'a' => out.push_str(&day_name[..3]),
                'A' => out.push_str(day_name),
                'u' => out.push_str(&(((self.weekday() + 6) % 7) + 1).to_string()),
                'w' => out.push_str(&self.weekday().to_string()),
                'F' => out.push_str(&self.strftime("%Y-%m-%d")),
                'T' => out.push_str(&self.strftime("%H:%M:%S")),
                'D' => out.push_str(&self.strftime("%m/%d/%y")),
                'R' => out.push_str(&self.strftime("%H:%M")),
                'c' => out.push_str(&self.strftime("%a %b %e %H:%M:%S %Y")),
                'x' => out.push_str(&self.strftime("%m/%d/%y")),
                'X' => out.push_str(&self.strftime("%H:%M:%S")),
                's' => {
                    let days = days_from_civil(i64::from(self.year), self.month, self.day);
                    let secs = days * 86_400
                        + i64::from(self.hour) * 3600
                        + i64::from(self.minute) * 60
                        + i64::from(self.second);
                    out.push_str(&secs.to_string())
                }
                'Z' => out.push_str("UTC"),
                'z' => out.push_str("+0000"),
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '%' => out.push('%'),
                other => {
                    out.push('%');
                    if no_pad {
                        out.push('-');
                    }
                    out.push(other);
                }
            }
        }
        out
    }

    fn to_value(self) -> Value {
        Value::from(vec![
            Value::from(self.year),
            Value::from(self.month),
            Value::from(self.day),
            Value::from(self.hour),
            Value::from(self.minute),
            Value::from(self.second),
        ])
    }

    fn from_value(v: &Value) -> Option<Self> {
        let parts: Vec<i64> = v.try_iter().ok()?.filter_map(|x| x.as_i64()).collect();
        let [y, mo, d, h, mi, s] = parts[..] else {
            return None;
        };
        Self::with_time(
            i32::try_from(y).ok()?,
            u8::try_from(mo).ok()?,
            u8::try_from(d).ok()?,
            u8::try_from(h).ok()?,
            u8::try_from(mi).ok()?,
            u8::try_from(s).ok()?,
        )
    }
}

/// The date used when none is given and the platform has no clock.
const EPOCH: ChatDate = ChatDate {
    year: 1970,
    month: 1,
    day: 1,
    hour: 0,
    minute: 0,
    second: 0,
};

// ------------------------------------------------------------------------------------------ options

/// How to render: llama.cpp's defaults are `add_generation_prompt: true`, `enable_thinking:
/// true`, no tools, no kwargs, today's date.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// End the prompt with the start of an assistant turn (`add_generation_prompt`).
    pub add_generation_prompt: bool,
    /// The `enable_thinking` variable (templates of reasoning models read it).
    pub enable_thinking: bool,
    /// Extra variables, like llama.cpp's `--chat-template-kwargs`; they override the standard
    /// ones (`bos_token`, `enable_thinking`, `date_string`, ...), except `add_generation_prompt`
    /// when that is true.
    pub kwargs: Vec<(String, Value)>,
    /// Tool definitions (`tools`), usually a list of `{"type": "function", "function": {...}}`.
    /// An empty list is the same as none, as in llama.cpp.
    pub tools: Option<Value>,
    /// The date and time for `datetime`, `date_string` and `strftime_now`. `None`: now (UTC), or
    /// 1970-01-01 where there is no clock (wasm32-unknown-unknown: pass it from JavaScript).
    pub now: Option<ChatDate>,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            add_generation_prompt: true,
            enable_thinking: true,
            kwargs: Vec::new(),
            tools: None,
            now: None,
        }
    }
}

impl RenderOptions {
    /// Adds (or replaces) one extra variable.
    pub fn kwarg(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.set_kwarg(key, value);
        self
    }

    /// Adds (or replaces) one extra variable.
    pub fn set_kwarg(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.kwargs.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.kwargs.push((key, value)),
        }
    }

    /// Adds every entry of a map value (such as a [`JsonValue`] of a JSON object) as extra
    /// variables, like `--chat-template-kwargs '{"enable_thinking": false}'`.
    pub fn set_kwargs_from_value(&mut self, map: &Value) -> Result<(), TemplateError> {
        if map.kind() != ValueKind::Map {
            return Err(TemplateError::InvalidInput(
                "the chat template kwargs must be a JSON object".into(),
            ));
        }
        let keys = map
            .try_iter()
            .map_err(|e| TemplateError::InvalidInput(e.to_string()))?;
        for key in keys {
            let value = map.get_item(&key).unwrap_or_default();
            let key = match key.as_str() {
                Some(s) => s.to_string(),
                None => key.to_string(),
            };
            self.set_kwarg(key, value);
        }
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------ template

/// A parsed chat template with the model's BOS and EOS texts.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish()
    }
}

/// llama.cpp (`common/chat.cpp`) rewrites two known broken templates before parsing them (a
/// GPT-OSS condition and a Mistral tool-call condition, both replaced by `false`).
pub fn patch_template_like_llama_cpp(source: &str) -> Cow<'_, str> {
    const GPT_OSS: &str = "{%- if \"<|channel|>analysis<|message|>\" in message.content or \"<|channel|>final<|message|>\" in message.content %}";
    const MISTRAL: &str = "{%- if (message['content'] is none or message['content'] == '' or message['content']|length == 0) and (message['tool_calls'] is not defined or message['tool_calls'] is none or message['tool_calls']|length == 0) %}";
    let mut src = Cow::Borrowed(source);
    if src.contains("<|channel|>") && src.contains("in message.content or") && src.contains(GPT_OSS)
    {
        src = Cow::Owned(src.replace(GPT_OSS, "{%- if false %}"));
    }
    if src.contains("[TOOL_CALLS]")
        && src.contains("if (message['content'] is none or")
        && src.contains(MISTRAL)
    {
        src = Cow::Owned(src.replace(MISTRAL, "{%- if false %}"));
    }
    src
}

/// Removes a leading BOS text when the tokenizer adds BOS itself (`add_bos`), and a trailing EOS
/// text when it adds EOS (`add_eos`), as llama.cpp does after rendering a chat template. Empty
/// token texts are never stripped.
pub fn strip_bos_eos<'a>(
    rendered: &'a str,
    bos_token: &str,
    eos_token: &str,
    add_bos: bool,
    add_eos: bool,
) -> &'a str {
    let mut s = rendered;
    if add_bos && !bos_token.is_empty() {
        s = s.strip_prefix(bos_token).unwrap_or(s);
    }
    if add_eos && !eos_token.is_empty() {
        s = s.strip_suffix(eos_token).unwrap_or(s);
    }
    s
}

const KEY_CHAT_TEMPLATE: &str = "tokenizer.chat_template";

/// The texts of a GGUF model's BOS and EOS tokens (`tokenizer.ggml.bos_token_id` and
/// `tokenizer.ggml.eos_token_id` in `tokenizer.ggml.tokens`); empty for a missing id. An id
/// outside the vocabulary is an error.
pub fn special_token_texts(
    metadata: &crate::gguf::Metadata,
) -> Result<(String, String), TemplateError> {
    let tokens = metadata
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .and_then(|a| a.as_strings());
    let text = |key: &str| -> Result<String, TemplateError> {
        let Some(v) = metadata.get(key) else {
            return Ok(String::new());
        };
        let id = v.as_u64().ok_or_else(|| {
            TemplateError::InvalidInput(format!(
                "metadata key `{key}` is a {}, not a token id",
                v.type_name()
            ))
        })?;
        let tokens = tokens.ok_or_else(|| {
            TemplateError::InvalidInput(format!(
                "metadata key `{key}` is set but `tokenizer.ggml.tokens` is missing"
            ))
        })?;
        usize::try_from(id)
            .ok()
            .and_then(|i| tokens.get(i))
            .cloned()
            .ok_or_else(|| {
                TemplateError::InvalidInput(format!(
                    "metadata key `{key}` = {id} is outside the vocabulary ({} tokens)",
                    tokens.len()
                ))
            })
    };
    Ok((
        text("tokenizer.ggml.bos_token_id")?,
        text("tokenizer.ggml.eos_token_id")?,
    ))
}

/// A message after llama.cpp's adjustments.
struct Msg {
    role: String,
    content: Option<String>,
    extra: Vec<(&'static str, Value)>,
}

impl ChatTemplate {
    /// Parses a template (after llama.cpp's source patches). `bos_token` and `eos_token` are the
    /// texts of the model's BOS and EOS tokens (empty when it has none).
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, TemplateError> {
        let source = patch_template_like_llama_cpp(source).into_owned();
        let mut env = build_environment();
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(from_jinja)?;
        Ok(ChatTemplate {
            env,
            source,
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
        })
    }

    /// The template of a model's metadata (`tokenizer.chat_template`): a missing or blank one is
    /// [`TemplateError::NoTemplate`].
    pub fn from_metadata(
        chat_template: Option<&str>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<Self, TemplateError> {
        match chat_template {
            Some(src) if !src.trim().is_empty() => Self::new(src, bos_token, eos_token),
            _ => Err(TemplateError::NoTemplate),
        }
    }

    /// The template of a GGUF model: `tokenizer.chat_template`, with the texts of the tokens
    /// `tokenizer.ggml.bos_token_id` and `tokenizer.ggml.eos_token_id` (empty when the model has
    /// none). A model without a template is [`TemplateError::NoTemplate`].
    pub fn from_gguf(header: &crate::gguf::GgufHeader) -> Result<Self, TemplateError> {
        let source = match header.metadata.get(KEY_CHAT_TEMPLATE) {
            None => None,
            Some(v) => Some(v.as_str().ok_or_else(|| {
                TemplateError::InvalidInput(format!(
                    "metadata key `{KEY_CHAT_TEMPLATE}` is a {}, not a string",
                    v.type_name()
                ))
            })?),
        };
        let (bos, eos) = special_token_texts(&header.metadata)?;
        Self::from_metadata(source, &bos, &eos)
    }

    /// The generic ChatML template ([`CHATML_TEMPLATE`]): an explicit, opt-in fallback for a
    /// model without a template. It is what llama.cpp uses silently in that case; it is not what
    /// such a model was trained on.
    pub fn chatml(bos_token: &str, eos_token: &str) -> Self {
        Self::new(CHATML_TEMPLATE, bos_token, eos_token)
            .expect("the built-in ChatML template parses")
    }

    /// The template source, after llama.cpp's patches.
    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn bos_token(&self) -> &str {
        &self.bos_token
    }

    pub fn eos_token(&self) -> &str {
        &self.eos_token
    }

    /// Whether the template shows a system message: llama.cpp's probe, a render of
    /// `[system "System message", user "User message"]` that must contain `System message`.
    pub fn supports_system_role(&self, opts: &RenderOptions) -> bool {
        let vars = self.variables(opts);
        self.probe_system_role(&vars)
    }

    /// Renders the conversation: the prompt text before tokenization, without the BOS strip
    /// (see [`render_prompt`](Self::render_prompt)). Applies llama.cpp's message adjustments:
    /// `developer` → `system` (except for GPT-OSS templates, which have `<|channel|>`), empty
    /// content left out, array content joined with `"\n"`, and a leading system message merged
    /// into the next one (joined with `"\n"`) or dropped when it is alone, if the template does
    /// not show system messages. Roles are not checked: the template decides what an unknown
    /// role means (and may `raise_exception`).
    pub fn render(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let keep_developer = self.source.contains("<|channel|>");
        let mut msgs: Vec<Msg> = messages
            .iter()
            .map(|m| normalize_message(m, keep_developer))
            .collect();
        let vars = self.variables(opts);
        if msgs.first().is_some_and(|m| m.role == "system") && !self.probe_system_role(&vars) {
            let sys = msgs.remove(0);
            if let Some(next) = msgs.first_mut() {
                let merged = format!(
                    "{}\n{}",
                    sys.content.unwrap_or_default(),
                    next.content.as_deref().unwrap_or("")
                );
                next.content = Some(merged);
            }
        }
        match self.render_vars(&msgs, &vars, false) {
            Ok(s) => Ok(s),
            Err(err) => {
                // llama.cpp's engine treats a left-out content as "" in string concatenation;
                // minijinja fails there. Retry with "" for those contents, which gives llama.cpp's
                // output for such templates.
                if matches!(err, TemplateError::Raised(_))
                    || msgs.iter().all(|m| m.content.is_some())
                {
                    return Err(err);
                }
                self.render_vars(&msgs, &vars, true).map_err(|_| err)
            }
        }
    }

    /// [`render`](Self::render), then [`strip_bos_eos`] with the tokenizer's `add_bos` and
    /// `add_eos` flags: the prompt as llama-server tokenizes it (with special-token parsing and
    /// BOS/EOS added per the metadata).
    pub fn render_prompt(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
        add_bos: bool,
        add_eos: bool,
    ) -> Result<String, TemplateError> {
        let rendered = self.render(messages, opts)?;
        Ok(strip_bos_eos(
            &rendered,
            &self.bos_token,
            &self.eos_token,
            add_bos,
            add_eos,
        )
        .to_string())
    }

    /// The variables llama.cpp passes besides `messages`, in its order.
    fn variables(&self, opts: &RenderOptions) -> Vec<(String, Value)> {
        let now = opts.now.or_else(ChatDate::now_utc).unwrap_or(EPOCH);
        let mut vars = OrderedVars::default();
        vars.set("bos_token", Value::from(self.bos_token.as_str()));
        vars.set("eos_token", Value::from(self.eos_token.as_str()));
        vars.set("enable_thinking", Value::from(opts.enable_thinking));
        if let Some(tools) = &opts.tools {
            let empty = tools.is_none()
                || tools.is_undefined()
                || (tools.kind() == ValueKind::Seq && tools.len() == Some(0));
            if !empty {
                vars.set("tools", tools.clone());
            }
        }
        vars.set("datetime", Value::from(now.strftime("%b %d %Y")));
        vars.set("date_string", Value::from(now.strftime("%d %b %Y")));
        for (k, v) in &opts.kwargs {
            vars.set(k, v.clone());
        }
        if opts.add_generation_prompt {
            vars.set("add_generation_prompt", Value::from(true));
        } else if !vars.has("add_generation_prompt") {
            vars.set("add_generation_prompt", Value::from(false));
        }
        vars.set(NOW_VAR, now.to_value());
        vars.0
    }

    fn probe_system_role(&self, vars: &[(String, Value)]) -> bool {
        let probe = [
            Msg {
                role: "system".into(),
                content: Some("System message".into()),
                extra: Vec::new(),
            },
            Msg {
                role: "user".into(),
                content: Some("User message".into()),
                extra: Vec::new(),
            },
        ];
        self.render_vars(&probe, vars, false)
            .is_ok_and(|out| out.contains("System message"))
    }

    fn render_vars(
        &self,
        msgs: &[Msg],
        vars: &[(String, Value)],
        empty_for_missing_content: bool,
    ) -> Result<String, TemplateError> {
        let messages: Vec<Value> = msgs
            .iter()
            .map(|m| {
                let mut o = OrderedMap::default();
                o.insert("role", Value::from(m.role.as_str()));
                match (&m.content, empty_for_missing_content) {
                    (Some(c), _) => o.insert("content", Value::from(c.as_str())),
                    (None, true) => o.insert("content", Value::from("")),
                    (None, false) => {}
                }
                for (k, v) in &m.extra {
                    o.insert(*k, v.clone());
                }
                o.into_value()
            })
            .collect();
        let mut ctx = OrderedMap::default();
        ctx.insert("messages", Value::from(messages));
        for (k, v) in vars {
            ctx.insert(k.as_str(), v.clone());
        }
        let tmpl = self.env.get_template(TEMPLATE_NAME).map_err(from_jinja)?;
        tmpl.render(ctx.into_value()).map_err(from_jinja)
    }
}

#[derive(Default)]
struct OrderedVars(Vec<(String, Value)>);

impl OrderedVars {
    fn set(&mut self, key: &str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key.to_string(), value)),
        }
    }
    fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }
}

fn normalize_message(m: &ChatMessage, keep_developer: bool) -> Msg {
    let role = if m.role == "developer" && !keep_developer {
        "system".to_string()
    } else {
        m.role.clone()
    };
    let content = m
        .content
        .as_ref()
        .map(|c| c.joined().into_owned())
        .filter(|c| !c.is_empty());
    let mut extra: Vec<(&'static str, Value)> = Vec::new();
    if let Some(tc) = &m.tool_calls {
        let empty = tc.is_none() || tc.is_undefined() || tc.as_str() == Some("");
        if !empty {
            extra.push(("tool_calls", tc.clone()));
        }
    }
    for (k, v) in [
        ("reasoning_content", &m.reasoning_content),
        ("name", &m.name),
        ("tool_call_id", &m.tool_call_id),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            extra.push((k, Value::from(v)));
        }
    }
    Msg {
        role,
        content,
        extra,
    }
}

// ----------------------------------------------------------------------------------- environment

/// Instruction budget for one render.
const RENDER_FUEL: u64 = 5_000_000;

fn build_environment() -> Environment<'static> {
    let mut env = Environment::new();
    // llama.cpp's Jinja lexer: lstrip_blocks and trim_blocks on, one trailing newline dropped.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    // Bound the work a hostile template can do (a real template renders in well under 1% of it).
    env.set_fuel(Some(RENDER_FUEL));
    // llama.cpp: attributes of undefined values are undefined, iterating one gives nothing.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_formatter(|out, _state, value| {
        let mut s = String::new();
        display_like_llama_cpp(value, &mut s);
        out.write_str(&s).map_err(minijinja::Error::from)
    });
    env.set_unknown_method_callback(pycompat::call_method);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.add_function("tojson", tojson);
    // llama.cpp's versions of these filters (ASCII case mapping, C whitespace)
    env.add_filter("upper", |s: &str| s.to_ascii_uppercase());
    env.add_filter("lower", |s: &str| s.to_ascii_lowercase());
    env.add_filter("title", |s: &str| pycompat::title(s));
    env.add_filter("capitalize", |s: &str| pycompat::capitalize(s));
    env.add_filter("trim", |s: &str, chars: Option<&str>| {
        pycompat::strip(s, chars, true, true).to_string()
    });
    env
}

fn raise_exception(args: &[Value]) -> Result<Value, minijinja::Error> {
    let msg = args
        .first()
        .map(|v| match v.as_str() {
            Some(s) => s.to_string(),
            None => v.to_string(),
        })
        .unwrap_or_default();
    Err(invalid_op(format!("raise_exception: {msg}")).with_source(RaisedException(msg)))
}

fn strftime_now(state: &State, format: &str) -> String {
    let now = state
        .lookup(NOW_VAR)
        .and_then(|v| ChatDate::from_value(&v))
        .or_else(ChatDate::now_utc)
        .unwrap_or(EPOCH);
    now.strftime(format)
}

/// How llama.cpp prints a value in `{{ ... }}`: strings as they are, numbers, `True`/`False`,
/// lists item by item; `none`, undefined, maps and functions print nothing.
fn display_like_llama_cpp(value: &Value, out: &mut String) {
    match value.kind() {
        ValueKind::Undefined | ValueKind::None | ValueKind::Map | ValueKind::Invalid => {}
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::String => out.push_str(value.as_str().unwrap_or_default()),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                match f64::try_from(value.clone()) {
                    Ok(f) => out.push_str(&float_to_string_like_cpp(f)),
                    Err(_) => {
                        let _ = write!(out, "{value}");
                    }
                }
            }
        }
        ValueKind::Seq | ValueKind::Iterable => {
            if let Ok(items) = value.try_iter() {
                for item in items {
                    display_like_llama_cpp(&item, out);
                }
            }
        }
        _ => {
            if value.as_object().is_none() {
                let _ = write!(out, "{value}");
            }
        }
    }
}

/// C++ `std::to_string(double)` (`%f`) with trailing zeros removed, one kept after the point.
fn float_to_string_like_cpp(f: f64) -> String {
    if !f.is_finite() {
        return if f.is_nan() {
            "nan".into()
        } else if f > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    let mut s = format!("{f:.6}");
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.push('0');
    }
    s
}

/// C++ `ostream << double` with the default precision (`%g`, 6 significant digits).
fn float_to_json_like_cpp(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    if f == 0.0 {
        return if f.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    let sci = format!("{f:.5e}"); // d.ddddde±x, rounded to 6 significant digits
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let trim = |s: &str| -> String {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s.to_string()
        }
    };
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{}e{sign}{:02}", trim(mantissa), exp.abs())
    } else {
        let decimals = usize::try_from(5 - exp).unwrap_or(0);
        trim(&format!("{f:.decimals$}"))
    }
}

// ------------------------------------------------------------------------------------------ tojson

/// `tojson` as llama.cpp implements it: `value | tojson(indent=None, ensure_ascii=False,
/// separators=None, sort_keys=False)`. Without indent the separators are `", "` and `": "`
/// (Python's `json.dumps`); with indent, `","` and `": "`. Keys keep their order. A positional
/// integer argument is the indent (Jinja2), a positional boolean is `ensure_ascii`.
fn tojson(value: &Value, args: &[Value]) -> Result<Value, minijinja::Error> {
    let mut indent: Option<usize> = None;
    let mut ensure_ascii = false;
    let mut separators: Option<(String, String)> = None;
    let mut sort_keys = false;
    for arg in args {
        if arg.is_kwargs() {
            let kwargs = Kwargs::try_from(arg.clone())?;
            for key in kwargs.args() {
                let v: Value = kwargs.get(key)?;
                match key {
                    "indent" => indent = parse_indent(&v)?,
                    "ensure_ascii" => ensure_ascii = v.is_true(),
                    "separators" => separators = parse_separators(&v)?,
                    "sort_keys" => sort_keys = v.is_true(),
                    other => return Err(invalid_op(format!("tojson: unknown argument `{other}`"))),
                }
            }
            kwargs.assert_all_used()?;
        } else if arg.kind() == ValueKind::Bool {
            ensure_ascii = arg.is_true();
        } else {
            indent = parse_indent(arg)?;
        }
    }
    let (item_sep, key_sep) = separators.unwrap_or_else(|| {
        (
            if indent.is_some() { "," } else { ", " }.to_string(),
            ": ".to_string(),
        )
    });
    let mut out = String::new();
    let fmt = JsonFormat {
        indent,
        item_sep: &item_sep,
        key_sep: &key_sep,
        sort_keys,
    };
    write_json(value, 0, &fmt, &mut out, 0)?;
    if ensure_ascii {
        out = json_ensure_ascii(&out);
    }
    Ok(Value::from(out))
}

fn parse_indent(v: &Value) -> Result<Option<usize>, minijinja::Error> {
    if v.is_none() || v.is_undefined() {
        return Ok(None);
    }
    if let Some(s) = v.as_str() {
        // Python accepts a string indent; llama.cpp only ints. Treat it as its width.
        return Ok(Some(s.chars().count()));
    }
    match v.as_i64() {
        Some(n) if n < 0 => Ok(Some(0)),
        Some(n) => Ok(Some(usize::try_from(n).unwrap_or(0).min(64))),
        None => Err(invalid_op("tojson: indent must be an integer")),
    }
}

fn parse_separators(v: &Value) -> Result<Option<(String, String)>, minijinja::Error> {
    if v.is_none() || v.is_undefined() {
        return Ok(None);
    }
    let parts: Vec<String> = v
        .try_iter()
        .map_err(|_| invalid_op("tojson: separators must be a pair of strings"))?
        .map(|p| {
            p.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| p.to_string())
        })
        .collect();
    match parts.as_slice() {
        [a, b] => Ok(Some((a.clone(), b.clone()))),
        _ => Err(invalid_op("tojson: separators must be a pair of strings")),
    }
}

struct JsonFormat<'a> {
    indent: Option<usize>,
    item_sep: &'a str,
    key_sep: &'a str,
    sort_keys: bool,
}

const MAX_JSON_DEPTH: usize = 256;

fn write_json(
    value: &Value,
    level: usize,
    fmt: &JsonFormat<'_>,
    out: &mut String,
    depth: usize,
) -> Result<(), minijinja::Error> {
    if depth > MAX_JSON_DEPTH {
        return Err(invalid_op("tojson: value is nested too deeply"));
    }
    let newline = |out: &mut String| {
        if fmt.indent.is_some() {
            out.push('\n');
        }
    };
    let pad = |out: &mut String, lvl: usize| {
        if let Some(n) = fmt.indent {
            for _ in 0..n * lvl {
                out.push(' ');
            }
        }
    };
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
                out.push_str(&float_to_json_like_cpp(f));
            }
        }
        ValueKind::String => write_json_string(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            out.push('[');
            if !items.is_empty() {
                newline(out);
                for (i, item) in items.iter().enumerate() {
                    pad(out, level + 1);
                    write_json(item, level + 1, fmt, out, depth + 1)?;
                    if i + 1 < items.len() {
                        out.push_str(fmt.item_sep);
                    }
                    newline(out);
                }
                pad(out, level);
            }
            out.push(']');
        }
        ValueKind::Map => {
            let mut keys: Vec<Value> = value.try_iter()?.collect();
            if fmt.sort_keys {
                keys.sort_by_key(key_text);
            }
            out.push('{');
            if !keys.is_empty() {
                newline(out);
                for (i, key) in keys.iter().enumerate() {
                    pad(out, level + 1);
                    write_json_string(&key_text(key), out);
                    out.push_str(fmt.key_sep);
                    let v = value.get_item(key).unwrap_or_default();
                    write_json(&v, level + 1, fmt, out, depth + 1)?;
                    if i + 1 < keys.len() {
                        out.push_str(fmt.item_sep);
                    }
                    newline(out);
                }
                pad(out, level);
            }
            out.push('}');
        }
        _ => out.push_str("null"),
    }
    Ok(())
}

fn key_text(key: &Value) -> String {
    match key.as_str() {
        Some(s) => s.to_string(),
        None => key.to_string(),
    }
}

fn write_json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Escapes every non-ASCII character inside JSON strings as `\uXXXX` (surrogate pairs above the
/// BMP), leaving the layout alone.
fn json_ensure_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut buf = [0u16; 2];
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut buf) {
                let _ = write!(out, "\\u{unit:04x}");
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------- pycompat

/// Python methods on strings, dicts and lists, for templates written against Jinja2/transformers.
mod pycompat {
    use super::*;

    pub(super) fn call_method(
        _state: &State,
        value: &Value,
        method: &str,
        args: &[Value],
    ) -> Result<Value, minijinja::Error> {
        match value.kind() {
            ValueKind::String => string_method(value.as_str().unwrap_or_default(), method, args),
            ValueKind::Map => map_method(value, method, args),
            ValueKind::Seq | ValueKind::Iterable => seq_method(value, method, args),
            _ => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
        }
    }

    /// C `isspace` in the "C" locale, which llama.cpp's `strip` and `title` use.
    fn is_py_space(c: char) -> bool {
        matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r')
    }

    pub(super) fn strip<'a>(s: &'a str, chars: Option<&str>, left: bool, right: bool) -> &'a str {
        let pred = |c: char| match chars {
            Some(set) => set.contains(c),
            None => is_py_space(c),
        };
        let mut out = s;
        if left {
            out = out.trim_start_matches(pred);
        }
        if right {
            out = out.trim_end_matches(pred);
        }
        out
    }

    fn prefixes(v: &Value) -> Result<Vec<String>, minijinja::Error> {
        if let Some(s) = v.as_str() {
            return Ok(vec![s.to_string()]);
        }
        if matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable) {
            return v
                .try_iter()?
                .map(|p| {
                    p.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| invalid_op("startswith/endswith: expected strings"))
                })
                .collect();
        }
        Err(invalid_op(
            "startswith/endswith: expected a string or a tuple of strings",
        ))
    }

    /// Python's `str.split(sep=None, maxsplit=-1)`.
    pub(super) fn split(
        s: &str,
        sep: Option<&str>,
        maxsplit: i64,
    ) -> Result<Vec<String>, minijinja::Error> {
        match sep {
            Some("") => Err(invalid_op("split: empty separator")),
            Some(sep) => Ok(if maxsplit < 0 {
                s.split(sep).map(str::to_string).collect()
            } else {
                s.splitn(
                    usize::try_from(maxsplit)
                        .unwrap_or(usize::MAX)
                        .saturating_add(1),
                    sep,
                )
                .map(str::to_string)
                .collect()
            }),
            None => {
                let mut out = Vec::new();
                let mut rest = s.trim_start_matches(is_py_space);
                while !rest.is_empty() {
                    if maxsplit >= 0 && out.len() as i64 >= maxsplit {
                        out.push(rest.to_string());
                        break;
                    }
                    match rest.find(is_py_space) {
                        Some(i) => {
                            out.push(rest[..i].to_string());
                            rest = rest[i..].trim_start_matches(is_py_space);
                        }
                        None => {
                            out.push(rest.to_string());
                            break;
                        }
                    }
                }
                Ok(out)
            }
        }
    }

    /// Python's `str.rsplit(sep=None, maxsplit=-1)`.
    pub(super) fn rsplit(
        s: &str,
        sep: Option<&str>,
        maxsplit: i64,
    ) -> Result<Vec<String>, minijinja::Error> {
        let mut out = match sep {
            Some("") => return Err(invalid_op("rsplit: empty separator")),
            Some(sep) => {
                if maxsplit < 0 {
                    s.rsplit(sep).map(str::to_string).collect::<Vec<_>>()
                } else {
                    s.rsplitn(
                        usize::try_from(maxsplit)
                            .unwrap_or(usize::MAX)
                            .saturating_add(1),
                        sep,
                    )
                    .map(str::to_string)
                    .collect()
                }
            }
            None => {
                let mut out = Vec::new();
                let mut rest = s.trim_end_matches(is_py_space);
                while !rest.is_empty() {
                    if maxsplit >= 0 && out.len() as i64 >= maxsplit {
                        out.push(rest.to_string());
                        break;
                    }
                    match rest.rfind(is_py_space) {
                        Some(i) => {
                            let ws_len = rest[i..].chars().next().map_or(1, char::len_utf8);
                            out.push(rest[i + ws_len..].to_string());
                            rest = rest[..i].trim_end_matches(is_py_space);
                        }
                        None => {
                            out.push(rest.to_string());
                            break;
                        }
                    }
                }
                out
            }
        };
        out.reverse();
        Ok(out)
    }

    /// `str.title()` as llama.cpp implements it: the first character of each
    /// whitespace-separated word uppercased, the rest lowercased, ASCII letters only (Python also
    /// starts a word after any uncased character, as in `"they'Re"`, and maps all letters).
    pub(super) fn title(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut start = true;
        for c in s.chars() {
            if is_py_space(c) {
                start = true;
                out.push(c);
            } else if start {
                start = false;
                out.push(c.to_ascii_uppercase());
            } else {
                out.push(c.to_ascii_lowercase());
            }
        }
        out
    }

    /// `str.capitalize()` as llama.cpp implements it (ASCII letters only).
    pub(super) fn capitalize(s: &str) -> String {
        let mut chars = s.chars();
        match chars.next() {
            Some(first) => {
                let mut out = String::with_capacity(s.len());
                out.push(first.to_ascii_uppercase());
                out.push_str(&chars.as_str().to_ascii_lowercase());
                out
            }
            None => String::new(),
        }
    }

    fn char_index(s: &str, byte_index: usize) -> i64 {
        s[..byte_index].chars().count() as i64
    }

    fn strings(list: Vec<String>) -> Value {
        Value::from(list.into_iter().map(Value::from).collect::<Vec<_>>())
    }

    fn string_method(s: &str, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
        let v = match method {
            "strip" | "lstrip" | "rstrip" => {
                let (chars,): (Option<&str>,) = from_args(args)?;
                let out = match method {
                    "strip" => strip(s, chars, true, true),
                    "lstrip" => strip(s, chars, true, false),
                    _ => strip(s, chars, false, true),
                };
                Value::from(out)
            }
            "startswith" | "endswith" => {
                let (prefix,): (Value,) = from_args(args)?;
                let list = prefixes(&prefix)?;
                let hit = if method == "startswith" {
                    list.iter().any(|p| s.starts_with(p.as_str()))
                } else {
                    list.iter().any(|p| s.ends_with(p.as_str()))
                };
                Value::from(hit)
            }
            "split" | "rsplit" => {
                let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
                let parts = if method == "split" {
                    split(s, sep, maxsplit.unwrap_or(-1))?
                } else {
                    rsplit(s, sep, maxsplit.unwrap_or(-1))?
                };
                strings(parts)
            }
            "splitlines" => {
                let (keepends,): (Option<bool>,) = from_args(args)?;
                let parts: Vec<String> = if keepends.unwrap_or(false) {
                    s.split_inclusive('\n').map(str::to_string).collect()
                } else {
                    s.lines().map(str::to_string).collect()
                };
                strings(parts)
            }
            "replace" => {
                let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
                match count {
                    Some(n) if n >= 0 => {
                        Value::from(s.replacen(old, new, usize::try_from(n).unwrap_or(0)))
                    }
                    _ => Value::from(s.replace(old, new)),
                }
            }
            "upper" => Value::from(s.to_ascii_uppercase()),
            "lower" => Value::from(s.to_ascii_lowercase()),
            "title" => Value::from(title(s)),
            "capitalize" => Value::from(capitalize(s)),
            "swapcase" => Value::from(
                s.chars()
                    .map(|c| {
                        if c.is_ascii_uppercase() {
                            c.to_ascii_lowercase()
                        } else {
                            c.to_ascii_uppercase()
                        }
                    })
                    .collect::<String>(),
            ),
            "find" | "rfind" | "index" | "rindex" => {
                let (sub,): (&str,) = from_args(args)?;
                let pos = if method.starts_with('r') {
                    s.rfind(sub)
                } else {
                    s.find(sub)
                };
                match pos {
                    Some(p) => Value::from(char_index(s, p)),
                    None if method.ends_with("find") => Value::from(-1),
                    None => return Err(invalid_op("substring not found")),
                }
            }
            "count" => {
                let (sub,): (&str,) = from_args(args)?;
                if sub.is_empty() {
                    Value::from(s.chars().count() + 1)
                } else {
                    Value::from(s.matches(sub).count())
                }
            }
            "join" => {
                let (items,): (Value,) = from_args(args)?;
                let parts = items
                    .try_iter()?
                    .map(|x| {
                        x.as_str()
                            .map(str::to_string)
                            .ok_or_else(|| invalid_op("join: expected a list of strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Value::from(parts.join(s))
            }
            "format" => Value::from(format_braces(s, args)?),
            "isdigit" | "isnumeric" | "isdecimal" => {
                Value::from(!s.is_empty() && s.chars().all(|c| c.is_numeric()))
            }
            "isalpha" => Value::from(!s.is_empty() && s.chars().all(char::is_alphabetic)),
            "isalnum" => Value::from(!s.is_empty() && s.chars().all(char::is_alphanumeric)),
            "isspace" => Value::from(!s.is_empty() && s.chars().all(is_py_space)),
            "islower" => {
                Value::from(s.chars().any(char::is_lowercase) && !s.chars().any(char::is_uppercase))
            }
            "isupper" => {
                Value::from(s.chars().any(char::is_uppercase) && !s.chars().any(char::is_lowercase))
            }
            "removeprefix" => {
                let (p,): (&str,) = from_args(args)?;
                Value::from(s.strip_prefix(p).unwrap_or(s))
            }
            "removesuffix" => {
                let (p,): (&str,) = from_args(args)?;
                Value::from(s.strip_suffix(p).unwrap_or(s))
            }
            _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
        };
        Ok(v)
    }

    /// `"{} and {}".format(a, b)` and `"{0}"`: positional placeholders only (`{{`/`}}` escape).
    fn format_braces(s: &str, args: &[Value]) -> Result<String, minijinja::Error> {
        let mut out = String::new();
        let mut next = 0usize;
        let mut chars = s.chars().peekable();
        let text = |v: &Value| -> String {
            let mut t = String::new();
            display_like_llama_cpp(v, &mut t);
            t
        };
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    out.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    out.push('}');
                }
                '{' => {
                    let mut field = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => field.push(c),
                            None => return Err(invalid_op("format: unmatched '{'")),
                        }
                    }
                    let index = if field.is_empty() {
                        next += 1;
                        next - 1
                    } else {
                        field.parse::<usize>().map_err(|_| {
                            invalid_op("format: only positional fields are supported")
                        })?
                    };
                    let arg = args
                        .get(index)
                        .ok_or_else(|| invalid_op("format: not enough arguments"))?;
                    out.push_str(&text(arg));
                }
                c => out.push(c),
            }
        }
        Ok(out)
    }

    fn map_method(map: &Value, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
        let v = match method {
            "items" => {
                from_args::<()>(args)?;
                let pairs = map
                    .try_iter()?
                    .map(|k| {
                        let v = map.get_item(&k).unwrap_or_default();
                        Value::from(vec![k, v])
                    })
                    .collect::<Vec<_>>();
                Value::from(pairs)
            }
            "keys" => {
                from_args::<()>(args)?;
                Value::from(map.try_iter()?.collect::<Vec<_>>())
            }
            "values" => {
                from_args::<()>(args)?;
                Value::from(
                    map.try_iter()?
                        .map(|k| map.get_item(&k).unwrap_or_default())
                        .collect::<Vec<_>>(),
                )
            }
            "get" => {
                let (key, default): (Value, Option<Value>) = from_args(args)?;
                match map.get_item(&key) {
                    Ok(v) if !v.is_undefined() => v,
                    _ => default.unwrap_or(Value::from(())),
                }
            }
            _ => return Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
        };
        Ok(v)
    }

    fn seq_method(seq: &Value, method: &str, args: &[Value]) -> Result<Value, minijinja::Error> {
        match method {
            "append" | "extend" | "insert" | "pop" | "remove" | "clear" | "sort" | "reverse" => {
                Err(invalid_op(format!(
                    "list.{method}() is not supported: lists are immutable in this template engine \
                     (write `{{% set xs = xs + [item] %}}` instead)"
                )))
            }
            "index" => {
                let (needle,): (Value,) = from_args(args)?;
                seq.try_iter()?
                    .position(|x| x == needle)
                    .map(Value::from)
                    .ok_or_else(|| invalid_op("list.index(x): x not in list"))
            }
            "count" => {
                let (needle,): (Value,) = from_args(args)?;
                Ok(Value::from(
                    seq.try_iter()?.filter(|x| *x == needle).count(),
                ))
            }
            _ => Err(minijinja::Error::from(ErrorKind::UnknownMethod)),
        }
    }
}

// ------------------------------------------------------------------------------------------- tests

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        ChatTemplate::new(src, "<s>", "</s>")?.render(messages, &RenderOptions::default())
    }

    fn eval(expr: &str) -> String {
        render(&format!("{{{{ {expr} }}}}"), &[]).unwrap()
    }

    #[test]
    fn syntax_error_names_the_line() {
        let err = ChatTemplate::new("line one\n{% if x %}\n{{ 1 + }}\n", "", "").unwrap_err();
        match &err {
            TemplateError::Syntax { line, message } => {
                assert_eq!(*line, Some(3), "{err}");
                assert!(!message.is_empty());
            }
            other => panic!("expected a syntax error, got {other:?}"),
        }
        assert!(err.to_string().contains("line 3"), "{err}");
        let err = ChatTemplate::new("{% for m in messages %}\nno end", "", "").unwrap_err();
        assert!(matches!(err, TemplateError::Syntax { .. }), "{err:?}");
    }

    #[test]
    fn raise_exception_carries_the_message() {
        let err = render(
            "{% if messages[0].role != 'user' %}{{ raise_exception('Roles must alternate!') }}{% endif %}ok",
            &[ChatMessage::assistant("hi")],
        )
        .unwrap_err();
        assert_eq!(err, TemplateError::Raised("Roles must alternate!".into()));
        assert!(err.to_string().contains("Roles must alternate!"));
        // inside a macro and a loop too
        let err = render(
            "{% macro check(m) %}{% if m.role == 'x' %}{{ raise_exception('bad role ' + m.role) }}{% endif %}{% endmacro %}\
             {% for m in messages %}{{ check(m) }}{% endfor %}",
            &[ChatMessage::user("a"), ChatMessage::new("x", "b")],
        )
        .unwrap_err();
        assert_eq!(err, TemplateError::Raised("bad role x".into()));
    }

    #[test]
    fn render_errors_name_the_line() {
        let err = render("a\nb\n{{ messages | no_such_filter }}", &[]).unwrap_err();
        match err {
            TemplateError::Render { line, .. } => assert_eq!(line, Some(3)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_roles_are_left_to_the_template() {
        let src = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}";
        let out = render(
            src,
            &[
                ChatMessage::new("critic", "fine"),
                ChatMessage::new("", "x"),
            ],
        )
        .unwrap();
        assert_eq!(out, "<critic>fine<>x");
    }

    #[test]
    fn message_adjustments() {
        let src = "{% for m in messages %}[{{ m.role }}|{{ m.content }}|{{ m.content is defined }}]{% endfor %}";
        let msgs = [
            ChatMessage::new("developer", "dev"),
            ChatMessage::user(MessageContent::Parts(vec![
                ContentPart::text("a"),
                ContentPart {
                    kind: "image_url".into(),
                    text: None,
                },
                ContentPart::text("b"),
            ])),
            ChatMessage::assistant(""),
        ];
        let out = render(src, &msgs).unwrap();
        assert_eq!(out, "[system|dev|True][user|a\nb|True][assistant||False]");
        // GPT-OSS templates keep `developer`
        let out = render(&format!("{{# <|channel|> #}}{src}"), &msgs[..1]).unwrap();
        assert_eq!(out, "[developer|dev|True]");
    }

    #[test]
    fn system_merged_when_template_ignores_it() {
        // a template that only shows user/assistant turns
        let src = "{% for m in messages %}{% if m.role != 'system' %}<{{ m.role }}>{{ m.content }}{% endif %}{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        assert!(!t.supports_system_role(&RenderOptions::default()));
        let out = t
            .render(
                &[ChatMessage::system("S"), ChatMessage::user("U")],
                &RenderOptions::default(),
            )
            .unwrap();
        assert_eq!(out, "<user>S\nU");
        // alone, it is dropped
        let out = t
            .render(&[ChatMessage::system("S")], &RenderOptions::default())
            .unwrap();
        assert_eq!(out, "");
        // a template that raises on system is probed as not supporting it
        let src = "{% for m in messages %}{% if m.role == 'system' %}{{ raise_exception('no system') }}{% endif %}{{ m.content }};{% endfor %}";
        let t = ChatTemplate::new(src, "", "").unwrap();
        let out = t
            .render(
                &[ChatMessage::system("S"), ChatMessage::user("U")],
                &RenderOptions::default(),
            )
            .unwrap();
        assert_eq!(out, "S\nU;");
    }

    #[test]
    fn missing_content_concatenates_as_empty() {
        let src =
            "{% for m in messages %}{{ '<' + m.role + '>' + m['content'] + '\\n' }}{% endfor %}";
        let out = render(src, &[ChatMessage::user("a"), ChatMessage::assistant("")]).unwrap();
        assert_eq!(out, "<user>a\n<assistant>\n");
    }

    #[test]
    fn variables_like_llama_cpp() {
        let src = "{{ bos_token }}|{{ eos_token }}|{{ enable_thinking }}|{{ add_generation_prompt }}|{{ datetime }}|{{ date_string }}|{{ strftime_now('%Y-%m-%d %A %-d %j') }}|{{ tools is defined }}";
        let t = ChatTemplate::new(src, "<s>", "</s>").unwrap();
        let opts = RenderOptions {
            now: ChatDate::new(2024, 7, 6),
            ..RenderOptions::default()
        };
        let out = t.render(&[], &opts).unwrap();
        assert_eq!(
            out,
            "<s>|</s>|True|True|Jul 06 2024|06 Jul 2024|2024-07-06 Saturday 6 188|False"
        );
        // kwargs override the standard variables, not add_generation_prompt when it is true
        let opts = opts
            .kwarg("enable_thinking", false)
            .kwarg("date_string", "26 Jul 2024")
            .kwarg("add_generation_prompt", false);
        let out = t.render(&[], &opts).unwrap();
        assert_eq!(
            out,
            "<s>|</s>|False|True|Jul 06 2024|26 Jul 2024|2024-07-06 Saturday 6 188|False"
        );
        let opts = RenderOptions {
            add_generation_prompt: false,
            tools: Some(Value::from(Vec::<Value>::new())),
            ..opts
        };
        assert!(t.render(&[], &opts).unwrap().contains("|False|Jul 06 2024"));
    }

    #[test]
    fn dates() {
        let d = ChatDate::from_unix_seconds(1_732_579_200 + 3_723); // 2024-11-26 01:02:03
        assert_eq!(d, ChatDate::with_time(2024, 11, 26, 1, 2, 3).unwrap());
        assert_eq!(
            d.strftime("%d %b %Y %H:%M:%S %a %I%p %y %e %%"),
            "26 Nov 2024 01:02:03 Tue 01AM 24 26 %"
        );
        assert_eq!(ChatDate::from_unix_seconds(0), EPOCH);
        assert_eq!(ChatDate::from_unix_seconds(-1).year, 1969);
        assert_eq!(ChatDate::new(2023, 2, 29), None);
        assert!(ChatDate::new(2024, 2, 29).is_some());
        assert_eq!(
            ChatDate::new(2000, 1, 1).unwrap().strftime("%A %j %Q %"),
            "Saturday 001 %Q %"
        );
        assert!(ChatDate::now_utc().is_some());
    }

    #[test]
    fn tojson_like_llama_cpp() {
        let mut m = OrderedMap::default();
        m.insert("z", Value::from("é\"\n<>&'"));
        m.insert(
            "a",
            Value::from(vec![Value::from(1), Value::from(2.5), Value::from(())]),
        );
        m.insert("t", Value::from(true));
        m.insert("e", OrderedMap::default().into_value());
        let obj = m.into_value();
        let t = ChatTemplate::new(
            "{{ x | tojson }}\n{{ x | tojson(indent=2) }}\n{{ x | tojson(ensure_ascii=true) }}\n{{ tojson('🎉', ensure_ascii=true) }}\n{{ x | tojson(separators=(',', ':')) }}",
            "",
            "",
        )
        .unwrap();
        let out = t
            .render(&[], &RenderOptions::default().kwarg("x", obj))
            .unwrap();
        let expected = "{\"z\": \"é\\\"\\n<>&'\", \"a\": [1, 2.5, null], \"t\": true, \"e\": {}}\n\
{\n  \"z\": \"é\\\"\\n<>&'\",\n  \"a\": [\n    1,\n    2.5,\n    null\n  ],\n  \"t\": true,\n  \"e\": {}\n}\n\
{\"z\": \"\\u00e9\\\"\\n<>&'\", \"a\": [1, 2.5, null], \"t\": true, \"e\": {}}\n\
\"\\ud83c\\udf89\"\n\
{\"z\":\"é\\\"\\n<>&'\",\"a\":[1,2.5,null],\"t\":true,\"e\":{}}";
        assert_eq!(out, expected);
        assert_eq!(float_to_json_like_cpp(0.1), "0.1");
        assert_eq!(float_to_json_like_cpp(1.0), "1");
        assert_eq!(float_to_json_like_cpp(1.23456789), "1.23457");
        assert_eq!(float_to_json_like_cpp(1e20), "1e+20");
        assert_eq!(float_to_json_like_cpp(123456.0), "123456");
        assert_eq!(float_to_json_like_cpp(1234567.0), "1.23457e+06");
        assert_eq!(float_to_json_like_cpp(0.0001), "0.0001");
        assert_eq!(float_to_json_like_cpp(0.00001), "1e-05");
        assert_eq!(float_to_string_like_cpp(2.5), "2.5");
        assert_eq!(float_to_string_like_cpp(2.0), "2.0");
    }

    #[test]
    fn python_string_methods() {
        assert_eq!(eval("'  a b  '.strip()"), "a b");
        assert_eq!(eval("'xxaxx'.strip('x')"), "a");
        assert_eq!(eval("'  a '.lstrip() + '|'"), "a |");
        assert_eq!(eval("'  a '.rstrip() + '|'"), "  a|");
        assert_eq!(eval("'hello'.startswith('he')"), "True");
        assert_eq!(eval("'hello'.startswith(('x', 'h'))"), "True");
        assert_eq!(eval("'hello'.endswith('lo')"), "True");
        assert_eq!(eval("'a,b,,c'.split(',') | join('|')"), "a|b||c");
        assert_eq!(eval("'a,b,c'.split(',', 1) | join('|')"), "a|b,c");
        assert_eq!(eval("'  a  b c '.split() | join('|')"), "a|b|c");
        assert_eq!(eval("' a  b c '.split(none, 1) | join('|')"), "a|b c ");
        assert_eq!(eval("'a,b,c'.rsplit(',', 1) | join('|')"), "a,b|c");
        assert_eq!(eval("' a  b c '.rsplit(none, 1) | join('|')"), " a  b|c");
        assert_eq!(eval("'</think>x'.split('</think>')[-1]"), "x");
        assert_eq!(eval("'aaa'.replace('a', 'b')"), "bbb");
        assert_eq!(eval("'aaa'.replace('a', 'b', 2)"), "bba");
        assert_eq!(eval("'MiXed'.upper() + 'MiXed'.lower()"), "MIXEDmixed");
        assert_eq!(
            eval("\"they're bill's FRIENDS\".title()"),
            "They're Bill's Friends"
        );
        assert_eq!(eval("'{\"a\": 18 °C}'.title()"), "{\"a\": 18 °c}");
        assert_eq!(eval("'hello WORLD'.capitalize()"), "Hello world");
        assert_eq!(eval("'héllo'.find('l')"), "2");
        assert_eq!(eval("'hello'.find('z')"), "-1");
        assert_eq!(eval("'a-b-c'.count('-')"), "2");
        assert_eq!(eval("', '.join(['a', 'b'])"), "a, b");
        assert_eq!(eval("'{} + {} = {0}'.format(1, 2)"), "1 + 2 = 1");
        assert_eq!(eval("'123'.isdigit()"), "True");
        assert_eq!(
            eval("'ab'.isalpha() and 'a1'.isalnum() and ' '.isspace()"),
            "True"
        );
        assert!(render("{{ 'x'.no_such_method() }}", &[]).is_err());
    }

    #[test]
    fn python_dict_methods() {
        let mut m = OrderedMap::default();
        m.insert("b", Value::from(1));
        m.insert("a", Value::from(2));
        let t = ChatTemplate::new(
            "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{{ d.keys() | join(',') }}|{{ d.values() | join(',') }}|{{ d.get('a') }}|{{ d.get('zz', 'dflt') }}|{{ d.get('zz') is none }}",
            "",
            "",
        )
        .unwrap();
        let out = t
            .render(&[], &RenderOptions::default().kwarg("d", m.into_value()))
            .unwrap();
        assert_eq!(out, "b=1;a=2;|b,a|1,2|2|dflt|True");
        // list.append is reported clearly
        let err = render("{% set xs = [] %}{{ xs.append(1) }}", &[]).unwrap_err();
        assert!(err.to_string().contains("append"), "{err}");
    }

    #[test]
    fn printing_like_llama_cpp() {
        assert_eq!(eval("none"), "");
        assert_eq!(eval("undefined_name"), "");
        assert_eq!(eval("undefined_name.attr.deeper"), "");
        assert_eq!(eval("true"), "True");
        assert_eq!(eval("1.5"), "1.5");
        assert_eq!(eval("7"), "7");
        assert_eq!(eval("['a', 1]"), "a1");
    }

    #[test]
    fn whitespace_control_like_llama_cpp() {
        // trim_blocks + lstrip_blocks, one trailing newline dropped
        let src = "{% for m in messages %}\n    {% if true %}\n{{ m.content }}\n    {% endif %}\n{% endfor %}\nend\n";
        let out = render(src, &[ChatMessage::user("a"), ChatMessage::user("b")]).unwrap();
        assert_eq!(out, "a\nb\nend");
    }

    #[test]
    fn no_template_and_chatml_fallback() {
        assert_eq!(
            ChatTemplate::from_metadata(None, "<s>", "</s>").unwrap_err(),
            TemplateError::NoTemplate
        );
        assert_eq!(
            ChatTemplate::from_metadata(Some("  \n"), "<s>", "</s>").unwrap_err(),
            TemplateError::NoTemplate
        );
        assert!(TemplateError::NoTemplate
            .to_string()
            .contains("no chat template"));
        let t = ChatTemplate::chatml("", "");
        let out = t
            .render(
                &[ChatMessage::system("S"), ChatMessage::user("U")],
                &RenderOptions::default(),
            )
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
        );
        let out = t
            .render(
                &[ChatMessage::user("U")],
                &RenderOptions {
                    add_generation_prompt: false,
                    ..RenderOptions::default()
                },
            )
            .unwrap();
        assert_eq!(out, "<|im_start|>user\nU<|im_end|>\n");
    }

    #[test]
    fn bos_eos_strip() {
        assert_eq!(
            strip_bos_eos("<s>hi</s>", "<s>", "</s>", true, false),
            "hi</s>"
        );
        assert_eq!(
            strip_bos_eos("<s>hi</s>", "<s>", "</s>", false, true),
            "<s>hi"
        );
        assert_eq!(strip_bos_eos("<s>hi</s>", "<s>", "</s>", true, true), "hi");
        assert_eq!(
            strip_bos_eos("<s>hi</s>", "<s>", "</s>", false, false),
            "<s>hi</s>"
        );
        assert_eq!(strip_bos_eos("hi", "", "", true, true), "hi");
        assert_eq!(strip_bos_eos(" <s>hi", "<s>", "", true, false), " <s>hi");
        let t = ChatTemplate::new("{{ bos_token }}x{{ eos_token }}", "<s>", "</s>").unwrap();
        let out = t
            .render_prompt(&[], &RenderOptions::default(), true, false)
            .unwrap();
        assert_eq!(out, "x</s>");
    }

    #[test]
    fn llama_cpp_source_patches() {
        let gpt = "<|channel|>{%- for message in messages %}{%- if \"<|channel|>analysis<|message|>\" in message.content or \"<|channel|>final<|message|>\" in message.content %}X{%- endif %}{%- endfor %}";
        assert_eq!(
            patch_template_like_llama_cpp(gpt),
            "<|channel|>{%- for message in messages %}{%- if false %}X{%- endif %}{%- endfor %}"
        );
        let mistral = "[TOOL_CALLS]{%- if (message['content'] is none or message['content'] == '' or message['content']|length == 0) and (message['tool_calls'] is not defined or message['tool_calls'] is none or message['tool_calls']|length == 0) %}";
        assert_eq!(
            patch_template_like_llama_cpp(mistral),
            "[TOOL_CALLS]{%- if false %}"
        );
        assert!(matches!(
            patch_template_like_llama_cpp("plain"),
            Cow::Borrowed("plain")
        ));
    }

    #[test]
    fn message_serde_roundtrip_keeps_order() {
        let mut call = OrderedMap::default();
        call.insert("unit", Value::from("c"));
        call.insert("location", Value::from("Paris"));
        let msg = ChatMessage::assistant("x").with_tool_calls(Value::from(vec![call.into_value()]));
        let json = serde_json::to_string(&msg).unwrap();
        assert_eq!(
            json,
            r#"{"role":"assistant","content":"x","tool_calls":[{"unit":"c","location":"Paris"}]}"#
        );
        let back: ChatMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(serde_json::to_string(&back).unwrap(), json);
        let parts: ChatMessage =
            serde_json::from_str(r#"{"role":"user","content":[{"type":"text","text":"a"},{"type":"image_url","image_url":{}}],"extra":1}"#)
                .unwrap();
        assert_eq!(parts.content.unwrap().joined(), "a");
        assert!(serde_json::from_str::<ChatMessage>(r#"{"content":"x"}"#).is_err());
        assert!(serde_json::from_str::<ChatMessage>(r#"{"role":"user","content":5}"#).is_err());
        assert!(serde_json::from_str::<ChatMessage>(r#"[1]"#).is_err());
        // lists of messages: from a JsonValue (order kept) or any Serialize
        let JsonValue(v) =
            serde_json::from_str(r#"[{"role":"assistant","tool_calls":[{"z":1,"a":2}]}]"#).unwrap();
        let m = messages_from_value(&v).unwrap();
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"[{"role":"assistant","tool_calls":[{"z":1,"a":2}]}]"#
        );
        let j: serde_json::Value =
            serde_json::from_str(r#"[{"role":"user","content":"hi"}]"#).unwrap();
        assert_eq!(
            messages_from_value(&j).unwrap(),
            vec![ChatMessage::user("hi")]
        );
        let err = messages_from_value(&serde_json::json!([{"role": "user"}, {"content": "x"}]));
        assert!(err.unwrap_err().to_string().contains("messages[1]"));
        assert!(messages_from_value(&serde_json::json!({"role": "user"})).is_err());
    }

    #[test]
    fn never_panics_on_odd_input() {
        let templates = [
            "",
            "{{",
            "{%",
            "{#",
            "}}",
            "{{ messages[99].content.x.y }}",
            "{{ 1/0 }}",
            "{{ messages | tojson }}",
            "{% for m in messages recursive %}{{ loop(m) }}{% endfor %}",
            "{{ range(10) | tojson }}",
            "{{ 'a' * 3 }}",
            "{{ none.strip() }}",
            "{{ ''.split('') }}",
            "{% set x = namespace(a=1) %}{{ x.a }}",
            "{{ messages[0]['content'][0] }}",
            "{{ raise_exception() }}",
            "{{ strftime_now() }}",
            "{{ tojson() }}",
            "{{ 'x'.format('{') }}",
            "{{ '{'.format() }}",
            "{{ ''.center(3) }}",
            "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
            "\u{0}\u{ffff}{{ '\\u00e9' }}",
        ];
        let messages = [
            ChatMessage::user(""),
            ChatMessage::new("", MessageContent::Parts(vec![])),
            ChatMessage::assistant("\u{0}🎉").with_tool_calls(Value::from("not a list")),
        ];
        for src in templates {
            if let Ok(t) = ChatTemplate::new(src, "", "") {
                let _ = t.render(&messages, &RenderOptions::default());
                let _ = t.render(&[], &RenderOptions::default());
            }
        }
    }

    /// Random templates stitched from Jinja fragments, rendered with odd messages and options:
    /// errors are fine, panics are not.
    #[test]
    fn never_panics_on_random_templates() {
        const FRAGMENTS: &[&str] = &[
            "{{",
            "}}",
            "{%",
            "%}",
            "{%-",
            "-%}",
            "{#",
            "#}",
            " for m in messages ",
            " endfor ",
            " if ",
            " elif ",
            " else ",
            " endif ",
            "m",
            "m.content",
            "m['role']",
            "messages[0]",
            "messages[-1]",
            "messages[1:]",
            ".",
            "(",
            ")",
            "[",
            "]",
            "'a'",
            "\"é🎉\"",
            "1",
            "-1",
            "2.5",
            "+",
            "-",
            "*",
            "/",
            "~",
            "|",
            " tojson",
            " tojson(indent=2)",
            " trim",
            " upper",
            " title",
            " length",
            " join(',')",
            ".strip()",
            ".split()",
            ".split('')",
            ".items()",
            ".get('x')",
            ".title()",
            ".format(1)",
            ".append(1)",
            "raise_exception('x')",
            "strftime_now('%c')",
            " loop.index ",
            " set ns = namespace(a=1) ",
            " set ns.a = 2 ",
            " is defined ",
            " is string ",
            " not ",
            " none ",
            " true ",
            " in ",
            "range(3)",
            ",",
            " ",
            "\n",
            ":",
            "{",
            "}",
            "tools",
            "bos_token",
            "add_generation_prompt",
            " macro f(x) ",
            " endmacro ",
            "f(1)",
            " break ",
            " continue ",
            "x",
            "=",
        ];
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: usize| -> usize {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        let mut tool_call = OrderedMap::default();
        tool_call.insert("function", Value::from("oops"));
        let messages = [
            ChatMessage::system("sys"),
            ChatMessage::user(MessageContent::Parts(vec![ContentPart::text("")])),
            ChatMessage::new("tool", "\u{0}")
                .with_tool_calls(Value::from(vec![tool_call.into_value()])),
            ChatMessage::new("developer", "🎉"),
        ];
        let opts = RenderOptions {
            tools: Some(Value::from(vec![Value::from(1)])),
            now: ChatDate::new(2024, 2, 29),
            ..RenderOptions::default()
        }
        .kwarg("x", Value::from(()));
        let mut parsed = 0;
        for _ in 0..3000 {
            let len = 1 + next(24);
            let src: String = (0..len).map(|_| FRAGMENTS[next(FRAGMENTS.len())]).collect();
            if let Ok(t) = ChatTemplate::new(&src, "<s>", "</s>") {
                parsed += 1;
                let _ = t.render(&messages, &opts);
                let _ =
                    t.render_prompt(&messages[..next(4)], &RenderOptions::default(), true, true);
            }
        }
        assert!(parsed > 100, "only {parsed} random templates parsed");
    }
}
