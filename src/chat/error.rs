//! Why a chat template could not be built or rendered, and how minijinja's errors map onto it
//! (`raise_exception` messages are told apart from engine errors).

use std::borrow::Cow;
use std::fmt;

use minijinja::ErrorKind;

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
pub(super) struct RaisedException(pub(super) String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

pub(super) fn from_jinja(err: minijinja::Error) -> TemplateError {
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

pub(super) fn invalid_op(msg: impl Into<Cow<'static, str>>) -> minijinja::Error {
    minijinja::Error::new(ErrorKind::InvalidOperation, msg)
}
