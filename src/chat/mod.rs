//! Chat: messages, and the model's chat template that turns a conversation into the prompt text
//! the model was trained on.
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
//!
//! Files, one concern each:
//!
//! | file | what it holds |
//! | --- | --- |
//! | `messages.rs` | [`ChatMessage`] and its content parts, read from JSON the way llama.cpp reads them |
//! | `value.rs` | [`JsonValue`]: JSON read into template values with the input's key order |
//! | `template.rs` | [`ChatTemplate`], [`RenderOptions`]: the variables and message adjustments of llama.cpp |
//! | `environment.rs` | the minijinja environment: llama.cpp's lexer settings, printing, helper functions |
//! | `tojson.rs` | `tojson` with llama.cpp's exact output |
//! | `pycompat.rs` | Python string, dict and list methods that templates call |
//! | `dates.rs` | [`ChatDate`] and `strftime` for `strftime_now`, `datetime`, `date_string` |
//! | `tools.rs` | OpenAI tools: `tool_choice`, the call formats (Qwen `<tool_call>`, Llama 3 JSON), forced-call grammars |
//! | `error.rs` | [`TemplateError`] |
//!
//! The renderer is `minijinja`; the hand-written pieces are those whose output must equal
//! llama.cpp's byte for byte, where the library's own behaves differently (each file says where).

mod dates;
mod environment;
mod error;
mod messages;
mod pycompat;
mod template;
mod tojson;
pub mod tools;
mod value;

#[cfg(test)]
mod tests;

pub use dates::ChatDate;
pub use error::TemplateError;
pub use messages::{messages_from_value, ChatMessage, ContentPart, MessageContent};
pub use minijinja::Value;
pub use template::{
    patch_template_like_llama_cpp, special_token_texts, strip_bos_eos, ChatTemplate, RenderOptions,
    CHATML_TEMPLATE,
};
pub use value::JsonValue;
