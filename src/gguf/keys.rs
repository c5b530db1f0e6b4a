//! Typed accessors for the well-known metadata keys (llama.cpp's `LLM_KV_*`).
//! Architecture-specific keys are `{arch}.name`, e.g. `llama.context_length`.

use super::value::Value;
use super::GgufHeader;
use crate::{Error, Result};

/// `{arch}.rope.scaling.*`
#[derive(Clone, Debug, PartialEq)]
pub struct RopeScaling {
    /// "none", "linear", "yarn", "llama3", ...
    pub kind: String,
    pub factor: Option<f32>,
    pub original_context_length: Option<u64>,
}

fn wrong(key: &str, expected: &str, v: &Value) -> Error {
    Error::Metadata {
        key: key.to_owned(),
        problem: format!("expected {expected}, found {}", v.type_name()),
    }
}

impl GgufHeader {
    /// A string value; `Ok(None)` when absent, an error when present with another type.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        self.metadata
            .get(key)
            .map(|v| v.as_str().ok_or_else(|| wrong(key, "a string", v)))
            .transpose()
    }

    /// A non-negative integer of any width.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        self.metadata
            .get(key)
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| wrong(key, "a non-negative integer", v))
            })
            .transpose()
    }

    /// A float (f32 or f64).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        self.metadata
            .get(key)
            .map(|v| v.as_f32().ok_or_else(|| wrong(key, "a float", v)))
            .transpose()
    }

    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        self.metadata
            .get(key)
            .map(|v| v.as_bool().ok_or_else(|| wrong(key, "a bool", v)))
            .transpose()
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<&[String]>> {
        self.metadata
            .get(key)
            .map(|v| {
                v.as_array()
                    .and_then(|a| a.as_strings())
                    .ok_or_else(|| wrong(key, "an array of strings", v))
            })
            .transpose()
    }

    fn require<T>(key: &str, v: Option<T>) -> Result<T> {
        v.ok_or_else(|| Error::Metadata {
            key: key.to_owned(),
            problem: "missing".into(),
        })
    }

    /// `general.architecture` (required).
    pub fn architecture(&self) -> Result<&str> {
        Self::require(
            "general.architecture",
            self.get_str("general.architecture")?,
        )
    }

    /// `general.name`, if any.
    pub fn model_name(&self) -> Result<Option<&str>> {
        self.get_str("general.name")
    }

    fn arch_key(&self, suffix: &str) -> Result<String> {
        Ok(format!("{}.{suffix}", self.architecture()?))
    }

    /// `{arch}.{suffix}` as an integer, if present.
    pub fn arch_u64(&self, suffix: &str) -> Result<Option<u64>> {
        self.get_u64(&self.arch_key(suffix)?)
    }

    /// `{arch}.{suffix}` as a float, if present.
    pub fn arch_f32(&self, suffix: &str) -> Result<Option<f32>> {
        self.get_f32(&self.arch_key(suffix)?)
    }

    fn arch_required(&self, suffix: &str) -> Result<u64> {
        let key = self.arch_key(suffix)?;
        Self::require(&key, self.get_u64(&key)?)
    }

    pub fn context_length(&self) -> Result<u64> {
        self.arch_required("context_length")
    }

    pub fn embedding_length(&self) -> Result<u64> {
        self.arch_required("embedding_length")
    }

    pub fn block_count(&self) -> Result<u64> {
        self.arch_required("block_count")
    }

    pub fn feed_forward_length(&self) -> Result<u64> {
        self.arch_required("feed_forward_length")
    }

    pub fn head_count(&self) -> Result<u64> {
        self.arch_required("attention.head_count")
    }

    /// `attention.head_count_kv`, defaulting to the head count (no grouped-query attention).
    pub fn head_count_kv(&self) -> Result<u64> {
        match self.arch_u64("attention.head_count_kv")? {
            Some(n) => Ok(n),
            None => self.head_count(),
        }
    }

    /// `attention.key_length` (head dimension of K), when given explicitly.
    pub fn key_length(&self) -> Result<Option<u64>> {
        self.arch_u64("attention.key_length")
    }

    pub fn value_length(&self) -> Result<Option<u64>> {
        self.arch_u64("attention.value_length")
    }

    /// `rope.dimension_count`: how many dimensions of each head are rotated.
    pub fn rope_dimension_count(&self) -> Result<Option<u64>> {
        self.arch_u64("rope.dimension_count")
    }

    /// `rope.freq_base`, default 10000.
    pub fn rope_freq_base(&self) -> Result<f32> {
        Ok(self.arch_f32("rope.freq_base")?.unwrap_or(10_000.0))
    }

    pub fn rope_scaling(&self) -> Result<Option<RopeScaling>> {
        let kind = self.get_str(&self.arch_key("rope.scaling.type")?)?;
        let factor = self.arch_f32("rope.scaling.factor")?;
        if kind.is_none() && factor.is_none() {
            return Ok(None);
        }
        Ok(Some(RopeScaling {
            kind: kind.unwrap_or("linear").to_owned(),
            factor,
            original_context_length: self.arch_u64("rope.scaling.original_context_length")?,
        }))
    }

    /// `attention.layer_norm_rms_epsilon`.
    pub fn rms_eps(&self) -> Result<Option<f32>> {
        self.arch_f32("attention.layer_norm_rms_epsilon")
    }

    /// `attention.sliding_window`, if the model has sliding-window layers.
    pub fn sliding_window(&self) -> Result<Option<u64>> {
        self.arch_u64("attention.sliding_window")
    }

    /// `tokenizer.ggml.model`: "llama" (SentencePiece), "gpt2" (byte-level BPE), ...
    pub fn tokenizer_model(&self) -> Result<Option<&str>> {
        self.get_str("tokenizer.ggml.model")
    }

    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer name.
    pub fn tokenizer_pre(&self) -> Result<Option<&str>> {
        self.get_str("tokenizer.ggml.pre")
    }

    pub fn tokenizer_tokens(&self) -> Result<Option<&[String]>> {
        self.get_str_array("tokenizer.ggml.tokens")
    }

    pub fn tokenizer_merges(&self) -> Result<Option<&[String]>> {
        self.get_str_array("tokenizer.ggml.merges")
    }

    /// A special token id: `name` is "bos", "eos", "eot", "unknown", "padding", ...
    pub fn special_token_id(&self, name: &str) -> Result<Option<u64>> {
        self.get_u64(&format!("tokenizer.ggml.{name}_token_id"))
    }

    pub fn chat_template(&self) -> Result<Option<&str>> {
        self.get_str("tokenizer.chat_template")
    }
}
