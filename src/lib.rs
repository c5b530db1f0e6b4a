//! wasm-chord: a browser-first LLM inference engine for GGUF models.
//!
//! Data path: GGUF bytes (from a file natively, from IndexedDB chunks in the browser) →
//! incremental header parse ([`gguf`]) → tensors kept in their block formats ([`quant`]) →
//! forward pass on the CPU or on WebGPU → sampled tokens.

pub mod backend_choice;
#[cfg(not(target_arch = "wasm32"))]
pub mod batch;
pub mod chat;
pub mod constrain;
pub mod conversation;
pub mod cpu;
pub mod engine;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod model;
pub mod quant;
#[cfg(any(target_arch = "wasm32", feature = "json"))]
pub mod request;
pub mod sampling;
pub mod session;
pub mod source;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
