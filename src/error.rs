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

    /// A saved session (the KV cache of a conversation) that is corrupt, truncated, or was
    /// saved with another model.
    #[error("saved session: {0}")]
    BadSession(String),

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

/// Declares [`Code`]: one variant per code, with its string and what it means.
macro_rules! codes {
    ($($(#[doc = $doc:literal])* $name:ident = $s:literal,)*) => {
        /// Every error code that reaches JavaScript, from the engine and from the worker alike:
        /// one closed list. `worker/protocol.js` (`CODE`) mirrors it exactly, which
        /// `tests/error_codes.rs` checks.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Code {
            $($(#[doc = $doc])* $name,)*
        }

        impl Code {
            pub const ALL: &[Code] = &[$(Code::$name,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$name => $s,)*
                }
            }
        }
    };
}

codes! {
    /// The file is not a well-formed GGUF.
    BadGguf = "bad_gguf",
    /// A tensor's block format is not implemented.
    UnsupportedType = "unsupported_type",
    /// A tensor is missing, has the wrong shape or the wrong byte count.
    BadTensor = "bad_tensor",
    /// The vocabulary is unusable, or text could not be tokenized.
    Tokenizer = "tokenizer",
    /// The chat template failed to parse or render.
    ChatTemplate = "chat_template",
    /// The architecture (or a feature it uses) is not implemented.
    UnsupportedModel = "unsupported_model",
    /// The prompt does not fit the context.
    ContextFull = "context_full",
    /// A token id outside the vocabulary.
    BadToken = "bad_token",
    /// A request that cannot be served as given: the message names the field.
    Invalid = "invalid",
    TensorNotFound = "tensor_not_found",
    /// A well-known metadata key is missing, has the wrong type or an unusable value.
    BadMetadata = "bad_metadata",
    /// The GPU backend could not start or run.
    Gpu = "gpu",
    OutOfMemory = "out_of_memory",
    /// Reading the model's bytes failed.
    Io = "io",
    /// Another request holds the engine.
    Busy = "busy",
    NotLoaded = "not_loaded",
    /// The server answered with an error status.
    Http = "http",
    /// The connection failed (the download resumes).
    Network = "network",
    /// The bytes are not a GGUF file.
    NotGguf = "not_gguf",
    /// Not enough storage for the model.
    Quota = "quota",
    /// Cancelled by the caller.
    Aborted = "aborted",
    /// Wrong length or range, missing headers, a file changed on the server.
    BadResponse = "bad_response",
    /// The downloaded bytes do not match the expected SHA-256.
    Integrity = "integrity",
    /// A cached model the engine failed on before: it is not loaded again until deleted.
    Unusable = "unusable",
    /// The storage (IndexedDB, the cache directory) failed.
    Storage = "storage",
    /// The wasm module trapped, on the engine worker's thread or on one of its pool's threads;
    /// the client starts a fresh worker.
    Fatal = "fatal",
    /// A JSON schema, grammar or regex that cannot constrain decoding (unsupported feature,
    /// syntax error): reported before generation starts.
    BadGrammar = "bad_grammar",
    /// Constrained decoding failed mid-generation (the grammar allowed no token).
    Constraint = "constraint",
    /// A saved session that is corrupt, truncated, or was saved with another model; also a
    /// session key with nothing saved under it.
    BadSession = "bad_session",
    /// A bug: anything not covered above.
    Internal = "internal",
}

impl Error {
    /// The error's kind, from the one closed list [`Code`].
    pub fn kind(&self) -> Code {
        match self {
            Error::Gguf(_) => Code::BadGguf,
            Error::Tensor { source, .. } => match source {
                QuantError::Unsupported(_) => Code::UnsupportedType,
                _ => Code::BadTensor,
            },
            Error::Tokenizer(_) => Code::Tokenizer,
            Error::Template(_) => Code::ChatTemplate,
            Error::Constraint(crate::constrain::ConstraintError::Compile { .. }) => {
                Code::BadGrammar
            }
            Error::Constraint(_) => Code::Constraint,
            Error::UnsupportedModel(_) => Code::UnsupportedModel,
            Error::BadModelTensor { .. } => Code::BadTensor,
            Error::ContextFull { .. } => Code::ContextFull,
            Error::TokenOutOfRange { .. } => Code::BadToken,
            Error::InvalidRequest(_) => Code::Invalid,
            Error::TensorNotFound(_) => Code::TensorNotFound,
            Error::Metadata { .. } => Code::BadMetadata,
            Error::Gpu(_) => Code::Gpu,
            Error::OutOfMemory { .. } => Code::OutOfMemory,
            Error::Io { .. } => Code::Io,
            Error::BadSession(_) => Code::BadSession,
        }
    }

    /// A short, stable code for the error's kind; crosses into JS as `{code, message}`.
    pub fn code(&self) -> &'static str {
        self.kind().as_str()
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
