//! Tokenizers from GGUF metadata (placeholder; the tokenizer work replaces this file).
pub mod chat_template;

#[derive(Debug, thiserror::Error)]
#[error("tokenizer: {0}")]
pub struct TokenizerError(pub String);
