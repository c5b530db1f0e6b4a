//! The chat template: parsing (with llama.cpp's source patches), the variables llama.cpp passes,
//! llama.cpp's message adjustments and its BOS/EOS strip.

use std::borrow::Cow;
use std::fmt;

use minijinja::value::ValueKind;
use minijinja::{Environment, Value};

use super::dates::{ChatDate, EPOCH};
use super::environment::build_environment;
use super::error::{from_jinja, TemplateError};
use super::messages::ChatMessage;
use super::value::OrderedMap;

/// Name under which the template is stored in its environment (shows in minijinja's messages).
const TEMPLATE_NAME: &str = "chat_template";
/// Hidden context variable holding the render time for `strftime_now`.
pub(super) const NOW_VAR: &str = "__wasm_chord_now";

/// A generic ChatML template, the fallback llama.cpp uses silently for models without a template.
/// Only used when a caller asks for it: [`ChatTemplate::chatml`].
pub const CHATML_TEMPLATE: &str = "{%- for message in messages -%}\n\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' -}}\n\
{%- endfor -%}\n\
{%- if add_generation_prompt -%}\n\
{{- '<|im_start|>assistant\\n' -}}\n\
{%- endif -%}\n";

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
        let object_arguments = super::tools::wants_object_arguments(&self.source);
        let mut msgs: Vec<Msg> = messages
            .iter()
            .map(|m| normalize_message(m, keep_developer, object_arguments))
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

/// `object_arguments`: the template renders `tool_call.arguments | tojson`, so arguments given as
/// JSON text (OpenAI's form) are passed as objects, as llama.cpp does for such templates.
fn normalize_message(m: &ChatMessage, keep_developer: bool, object_arguments: bool) -> Msg {
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
            let tc = if object_arguments {
                super::tools::arguments_as_objects(tc)
            } else {
                tc.clone()
            };
            extra.push(("tool_calls", tc));
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
