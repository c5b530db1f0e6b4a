//! Chat messages, OpenAI style: role, content (a string or text parts), tool calls, tool results.
//! Read from JSON the way llama.cpp reads them (unknown keys ignored, wrong types named).

use std::borrow::Cow;

use minijinja::value::ValueKind;
use minijinja::Value;

use super::error::TemplateError;
use super::value::JsonValue;

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
