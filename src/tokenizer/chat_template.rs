//! Chat templates (placeholder; the chat-template work replaces this file).

#[derive(Debug, thiserror::Error)]
#[error("chat template: {0}")]
pub struct TemplateError(pub String);
