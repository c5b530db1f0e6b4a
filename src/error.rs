//! The crate's one error type. Every variant carries what a user needs to find the problem:
//! the field, byte offset, tensor name or type. Errors from outside data are never unwrapped.

use crate::gguf::GgufError;
use crate::quant::QuantError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file is not a well-formed GGUF (names the field and byte offset).
    #[error(transparent)]
    Gguf(#[from] GgufError),

    /// A tensor could not be dequantized (unsupported type, wrong byte count).
    #[error("tensor `{tensor}`: {source}")]
    Tensor { tensor: String, source: QuantError },

    /// The vocabulary in the metadata is unusable, or text could not be tokenized.
    #[error(transparent)]
    Tokenizer(#[from] crate::tokenizer::TokenizerError),

    /// The chat template failed to parse or render.
    #[error(transparent)]
    Template(#[from] crate::chat::TemplateError),

    /// A grammar or JSON schema for constrained decoding is unusable, or following it failed.
    #[error(transparent)]
    Constraint(#[from] crate::constrain::ConstraintError),

    /// The model's architecture (or a feature it uses) is not implemented.
    #[error("unsupported model: {0}")]
    UnsupportedModel(String),

    /// A tensor the architecture needs is missing or has the wrong shape.
    #[error("tensor `{tensor}`: {problem}")]
    BadModelTensor { tensor: String, problem: String },

    /// The prompt (plus what is to be generated) does not fit the context.
    #[error("the context holds {n_ctx} tokens but {needed} are needed: shorten the prompt or raise the context size")]
    ContextFull { needed: usize, n_ctx: usize },

    #[error("token id {id} is outside the vocabulary of {n_vocab} tokens")]
    TokenOutOfRange { id: u32, n_vocab: usize },

    /// A request that cannot be served as given (empty prompt, bad option).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    #[error("no tensor named `{0}` in the model")]
    TensorNotFound(String),

    /// A well-known metadata key is missing or has the wrong type.
    #[error("metadata key `{key}`: {problem}")]
    Metadata { key: String, problem: String },

    /// The weights do not fit in the memory this process can use (wasm32: a 4 GiB address space).
    #[error("{what} need {needed} bytes of memory, {}{hint}", available_text(.available))]
    OutOfMemory {
        what: String,
        needed: u64,
        /// What was left, when known (else the allocation itself failed).
        available: Option<u64>,
        hint: &'static str,
    },

    /// The GPU backend could not start or run (no adapter, a limit exceeded, a failed readback).
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),

    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

fn available_text(available: &Option<u64>) -> String {
    match available {
        Some(a) => format!("but only {a} bytes are available"),
        None => "and allocating them failed".into(),
    }
}

impl Error {
    /// A short, stable code for the error's kind; crosses into JS as `{code, message}`.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Gguf(_) => "bad_gguf",
            Error::Tensor { source, .. } => match source {
                QuantError::Unsupported(_) => "unsupported_type",
                _ => "bad_tensor",
            },
            Error::Tokenizer(_) => "tokenizer",
            Error::Template(_) => "chat_template",
            Error::Constraint(crate::constrain::ConstraintError::Compile { .. }) => "bad_grammar",
            Error::Constraint(_) => "constraint",
            Error::UnsupportedModel(_) => "unsupported_model",
            Error::BadModelTensor { .. } => "bad_tensor",
            Error::ContextFull { .. } => "context_full",
            Error::TokenOutOfRange { .. } => "bad_token",
            Error::InvalidRequest(_) => "invalid_request",
            Error::TensorNotFound(_) => "tensor_not_found",
            Error::Metadata { .. } => "bad_metadata",
            Error::Gpu(_) => "gpu",
            Error::OutOfMemory { .. } => "out_of_memory",
            Error::Io { .. } => "io",
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
