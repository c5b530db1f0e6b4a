//! The engine: load a model from any byte source → tokenize → generate with streaming → text.
//!
//! Backend-agnostic at the API: today the CPU forward pass runs it; the GPU backend plugs in
//! beside it as another `Backend`.

use crate::cpu::{CpuModel, Kernel, KvCache};
use crate::gguf::GgufHeader;
use crate::sampling::{Sampler, SamplerConfig};
use crate::source::ByteSource;
use crate::tokenizer::chat_template::{ChatMessage, ChatTemplate, RenderOptions, TemplateError};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// Which compute backend runs the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Cpu,
}

#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub backend: Backend,
    pub kernel: Kernel,
}

#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Tokens to generate at most.
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    /// Stop when the text contains any of these (the stop string itself is not emitted).
    pub stop: Vec<String>,
    /// Stop on end-of-generation tokens (`<|im_end|>`, `<eos>`, ...).
    pub stop_at_eog: bool,
    /// KV-cache size; default: prompt + max_tokens, capped by the training context.
    pub n_ctx: Option<usize>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 128,
            sampler: SamplerConfig::default(),
            stop: vec![],
            stop_at_eog: true,
            n_ctx: None,
        }
    }
}

/// What the streaming callback sees for each generated token.
#[derive(Debug)]
pub struct TokenEvent<'a> {
    pub index: usize,
    pub id: u32,
    /// Text that became final with this token: whole UTF-8 characters only, and never part of
    /// a stop string. May be empty.
    pub text: &'a str,
}

/// The callback's answer: go on, or cancel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// An end-of-generation token.
    Eog,
    /// A stop string (given).
    StopString(String),
    /// `max_tokens` reached.
    Length,
    /// The callback asked to stop.
    Cancelled,
}

#[derive(Clone, Debug)]
pub struct Generation {
    pub prompt_ids: Vec<u32>,
    pub ids: Vec<u32>,
    pub text: String,
    pub finish: FinishReason,
    pub prompt_ms: f64,
    pub gen_ms: f64,
}

/// Milliseconds from an arbitrary origin (0 on wasm32 without a clock).
fn now_ms() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<std::time::Instant> = OnceLock::new();
        T0.get_or_init(std::time::Instant::now)
            .elapsed()
            .as_secs_f64()
            * 1e3
    }
    #[cfg(target_arch = "wasm32")]
    {
        0.0
    }
}

pub struct Engine {
    pub header: GgufHeader,
    pub tokenizer: Tokenizer,
    template: std::result::Result<ChatTemplate, TemplateError>,
    model: CpuModel,
}

impl Engine {
    pub fn load(src: &dyn ByteSource, opts: &LoadOptions) -> Result<Engine> {
        let (header, model) = CpuModel::load(src, opts.kernel)?;
        let tokenizer = Tokenizer::from_gguf(&header)?;
        let template = ChatTemplate::from_gguf(&header);
        Ok(Engine {
            header,
            tokenizer,
            template,
            model,
        })
    }

    pub fn config(&self) -> &crate::model::Config {
        &self.model.cfg
    }

    pub fn backend(&self) -> Backend {
        Backend::Cpu
    }

    /// Token ids of `text`; `add_special` adds BOS/EOS per the metadata, `parse_special` turns
    /// special-token texts into their tokens.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, add_special, parse_special)?)
    }

    /// The model's chat template (an error if it has none).
    pub fn chat_template(&self) -> Result<&ChatTemplate> {
        self.template
            .as_ref()
            .map_err(|e| Error::Template(e.clone()))
    }

    /// The rendered chat prompt, as llama.cpp would feed it (a leading BOS text removed when the
    /// tokenizer adds BOS itself).
    pub fn render_chat(&self, messages: &[ChatMessage], opts: &RenderOptions) -> Result<String> {
        let v = self.tokenizer.vocab();
        Ok(self
            .chat_template()?
            .render_prompt(messages, opts, v.add_bos(), v.add_eos())?)
    }

    /// Prompt ids of a conversation: rendered, then tokenized with special tokens parsed.
    pub fn chat_prompt_ids(
        &self,
        messages: &[ChatMessage],
        opts: &RenderOptions,
    ) -> Result<Vec<u32>> {
        let text = self.render_chat(messages, opts)?;
        self.tokenize(&text, true, true)
    }

    /// Last-position logits of `prompt` (a fresh context).
    pub fn logits(&self, prompt: &[u32]) -> Result<Vec<f32>> {
        let mut cache = KvCache::new(&self.model.cfg, prompt.len().max(1));
        self.model.forward(prompt, 0, &mut cache)
    }

    /// Generate after `prompt`, streaming each token through `on_token`.
    pub fn generate(
        &self,
        prompt: &[u32],
        opts: &GenerateOptions,
        on_token: &mut dyn FnMut(&TokenEvent) -> Control,
    ) -> Result<Generation> {
        let cfg = &self.model.cfg;
        if prompt.is_empty() {
            return Err(Error::InvalidRequest("the prompt is empty".into()));
        }
        let n_ctx = opts.n_ctx.unwrap_or_else(|| {
            (prompt.len() + opts.max_tokens).min(cfg.n_ctx_train.max(prompt.len() + 1))
        });
        if prompt.len() >= n_ctx {
            return Err(Error::ContextFull {
                needed: prompt.len() + 1,
                n_ctx,
            });
        }
        let mut cache = KvCache::new(cfg, n_ctx);
        let mut sampler = Sampler::new(opts.sampler.clone());
        let mut history = prompt.to_vec();
        let mut decoder = self.tokenizer.stream_decoder(false);
        let mut stops = StopMatcher::new(&opts.stop);
        let mut out = Generation {
            prompt_ids: prompt.to_vec(),
            ids: vec![],
            text: String::new(),
            finish: FinishReason::Length,
            prompt_ms: 0.0,
            gen_ms: 0.0,
        };
        let t0 = now_ms();
        let mut logits = self.model.forward(prompt, 0, &mut cache)?;
        out.prompt_ms = now_ms() - t0;
        let t1 = now_ms();
        for i in 0..opts.max_tokens {
            let id = sampler.sample(&mut logits, &history);
            history.push(id);
            out.ids.push(id);
            if opts.stop_at_eog && self.tokenizer.vocab().is_eog(id) {
                out.finish = FinishReason::Eog;
                // Flush what was held back for stop strings: no stop string can complete now.
                let tail = stops.flush(&decoder.finish());
                out.text.push_str(&tail);
                on_token(&TokenEvent {
                    index: i,
                    id,
                    text: &tail,
                });
                break;
            }
            let piece = decoder.push(id)?;
            let (emit, hit) = stops.push(&piece);
            out.text.push_str(&emit);
            let control = on_token(&TokenEvent {
                index: i,
                id,
                text: &emit,
            });
            if let Some(s) = hit {
                out.finish = FinishReason::StopString(s);
                break;
            }
            if control == Control::Stop {
                out.finish = FinishReason::Cancelled;
                break;
            }
            if i + 1 == opts.max_tokens {
                let tail = stops.flush(&decoder.finish());
                out.text.push_str(&tail);
                if !tail.is_empty() {
                    on_token(&TokenEvent {
                        index: i,
                        id,
                        text: &tail,
                    });
                }
                break;
            }
            let pos = prompt.len() + i;
            if pos + 1 > n_ctx {
                out.finish = FinishReason::Length;
                break;
            }
            logits = self.model.forward(&[id], pos, &mut cache)?;
        }
        out.gen_ms = now_ms() - t1;
        Ok(out)
    }
}

/// Holds back text that could be the start of a stop string, so streamed text never shows
/// part of one.
struct StopMatcher<'a> {
    stops: &'a [String],
    pending: String,
}

impl<'a> StopMatcher<'a> {
    fn new(stops: &'a [String]) -> Self {
        StopMatcher {
            stops,
            pending: String::new(),
        }
    }

    /// Add text; returns (text safe to emit, the stop string hit if any).
    fn push(&mut self, text: &str) -> (String, Option<String>) {
        self.pending.push_str(text);
        let stops = self.stops.iter().filter(|s| !s.is_empty());
        // The earliest complete stop string wins.
        if let Some((at, s)) = stops
            .clone()
            .filter_map(|s| self.pending.find(s.as_str()).map(|at| (at, s)))
            .min_by_key(|(at, _)| *at)
        {
            let emit = self.pending[..at].to_owned();
            self.pending.clear();
            return (emit, Some(s.clone()));
        }
        // Keep the longest suffix that is a prefix of some stop string.
        let mut keep = 0;
        for s in stops {
            for (i, _) in self.pending.char_indices() {
                let suffix = &self.pending[i..];
                if suffix.len() > keep && s.starts_with(suffix) {
                    keep = suffix.len();
                }
            }
        }
        let cut = self.pending.len() - keep;
        let emit = self.pending[..cut].to_owned();
        self.pending.drain(..cut);
        (emit, None)
    }

    /// End of generation: everything pending (plus `more`) is final.
    fn flush(&mut self, more: &str) -> String {
        let mut s = std::mem::take(&mut self.pending);
        s.push_str(more);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::StopMatcher;

    #[test]
    fn stop_strings_are_held_back_and_cut() {
        let stops = vec!["\nUser:".to_string(), "END".to_string()];
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("Hello"), ("Hello".into(), None));
        assert_eq!(m.push(" wor"), (" wor".into(), None));
        assert_eq!(m.push("ld\nUs"), ("ld".into(), None));
        assert_eq!(m.push("er: hi"), ("".into(), Some("\nUser:".into())));
        let mut m = StopMatcher::new(&stops);
        assert_eq!(m.push("EN"), ("".into(), None));
        assert_eq!(m.push("x"), ("ENx".into(), None));
        assert_eq!(m.push("E"), ("".into(), None));
        assert_eq!(m.flush(""), "E");
    }
}
