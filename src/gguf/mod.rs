//! GGUF reader (placeholder until the reader lands).
#[derive(Debug, thiserror::Error)]
#[error("placeholder")]
pub struct GgufError;
