//! Constrained decoding: JSON schemas, Lark grammars and regular expressions enforced token by
//! token, so the output always parses (and validates), whatever the sampler draws.
//!
//! The grammar engine is [`llguidance`] (the library llama.cpp and vLLM use), not a home-made
//! one. It was chosen over `outlines-core` because it takes Lark grammars as well as JSON
//! schemas and regexes (outlines-core only compiles regexes and JSON schemas to a DFA), it
//! computes a mask lazily per step from a token trie (~50 µs on 128k vocabularies) instead of
//! precomputing an index over the whole vocabulary per schema (seconds for a large schema, and
//! memory the browser does not have), its JSON-schema support is the broader of the two
//! (`$ref`, `anyOf`, `pattern`, `format`, numeric bounds), it rejects unsupported keywords with a
//! message instead of ignoring them, and it builds for `wasm32-unknown-unknown` with its
//! `default-features = false` (no rayon) plus `wasm` (a clock).
//!
//! How it is used ([`crate::engine`]): before generation the grammar is compiled
//! ([`Constrainer::new`]: a bad grammar or an unsupported schema feature is an error before any
//! token is generated). Each step the mask of allowed tokens is computed on the CPU
//! ([`Constrainer::mask`], a bitmask, bit `i % 32` of word `i / 32` for token `i`); the CPU
//! path sets the logits of disallowed tokens to −∞ before sampling
//! ([`crate::sampling::apply_token_mask`]); the GPU path uploads the bitmask and a small kernel
//! (`gpu/shaders/token_mask.wgsl`) applies it before `argmax.wgsl`/`sample.wgsl`, so a greedy
//! step still reads back 4 bytes. The chosen token is then committed ([`Constrainer::commit`]).
//! Without a constraint none of this runs.
//!
//! The vocabulary llguidance sees is built from our tokenizer ([`token_env`]): each token id's
//! bytes, control tokens marked as special (llguidance's `0xFF` prefix) so that grammar text
//! never matches them, and the end-of-generation tokens as its EOS set.

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
mod vocab;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::TokEnv;
use llguidance::{Matcher, ParserFactory};

pub use vocab::token_env;

/// What the output must match.
#[derive(Clone, Debug, PartialEq)]
pub enum Grammar {
    /// Any JSON object (`response_format: {type: "json_object"}`).
    JsonObject,
    /// JSON that validates against this JSON schema (`response_format: {type: "json_schema"}`).
    /// Keywords llguidance does not support are an error, never silently ignored.
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark dialect (`start:` is the start rule; `%json {schema}`
    /// embeds a JSON schema; see <https://github.com/guidance-ai/llguidance/blob/main/docs/syntax.md>).
    Lark(String),
    /// A regular expression (Rust `regex` syntax) the whole output matches.
    Regex(String),
}

impl Grammar {
    /// The constraint of an OpenAI-style request: `response_format` (`{"type": "text"}`,
    /// `{"type": "json_object"}` or `{"type": "json_schema", "json_schema": {"name", "schema",
    /// "strict"}}`) and our `grammar` extension (a Lark grammar as a string). Unsupported
    /// schema keywords are rejected whether `strict` is true or not (never ignored).
    pub fn from_request(
        response_format: Option<&serde_json::Value>,
        grammar: Option<&serde_json::Value>,
    ) -> crate::Result<Option<Grammar>> {
        use serde_json::Value as Json;
        let bad = |m: String| crate::Error::InvalidRequest(m);
        let from_format = match response_format {
            None | Some(Json::Null) => None,
            Some(f) => match f.get("type").and_then(Json::as_str) {
                Some("text") => None,
                Some("json_object") => Some(Grammar::JsonObject),
                Some("json_schema") => {
                    let js = f.get("json_schema").ok_or_else(|| {
                        bad("response_format json_schema needs \"json_schema\": {\"name\", \"schema\"}".into())
                    })?;
                    match js.get("schema") {
                        Some(schema @ (Json::Object(_) | Json::Bool(_))) => {
                            Some(Grammar::JsonSchema(schema.clone()))
                        }
                        Some(_) => {
                            return Err(bad(
                                "response_format.json_schema.schema must be a JSON schema object"
                                    .into(),
                            ))
                        }
                        None => {
                            return Err(bad(
                                "response_format.json_schema needs a \"schema\"".into(),
                            ))
                        }
                    }
                }
                other => {
                    return Err(bad(format!(
                        "response_format type {other:?} is not \"text\", \"json_object\" or \"json_schema\""
                    )))
                }
            },
        };
        let from_grammar = match grammar {
            None | Some(Json::Null) => None,
            Some(Json::String(g)) => Some(Grammar::Lark(g.clone())),
            Some(_) => return Err(bad("grammar must be a string (a Lark grammar)".into())),
        };
        match (from_format, from_grammar) {
            (Some(_), Some(_)) => Err(bad(
                "give either response_format or grammar, not both".into()
            )),
            (a, b) => Ok(a.or(b)),
        }
    }

    /// The kind, as error messages name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Grammar::JsonObject => "json_object",
            Grammar::JsonSchema(_) => "JSON schema",
            Grammar::Lark(_) => "Lark grammar",
            Grammar::Regex(_) => "regex",
        }
    }

    fn to_llguidance(&self) -> Result<TopLevelGrammar, ConstraintError> {
        Ok(match self {
            Grammar::JsonObject => {
                TopLevelGrammar::from_json_schema(compact(serde_json::json!({"type": "object"})))
            }
            Grammar::JsonSchema(schema) => {
                if !(schema.is_object() || schema.is_boolean()) {
                    return Err(ConstraintError::Compile {
                        kind: self.kind(),
                        message: "a JSON schema must be an object (or true/false)".into(),
                    });
                }
                TopLevelGrammar::from_json_schema(compact(schema.clone()))
            }
            Grammar::Lark(src) => {
                if src.trim().is_empty() {
                    return Err(ConstraintError::Compile {
                        kind: self.kind(),
                        message: "the grammar is empty".into(),
                    });
                }
                TopLevelGrammar::from_lark(src.clone())
            }
            Grammar::Regex(rx) => TopLevelGrammar::from_regex(rx),
        })
    }
}

/// JSON without optional whitespace (`{"a":1,"b":[2,3]}`): small models given free whitespace
/// can emit newlines forever; a schema's own `x-guidance` settings are kept.
fn compact(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(obj) = schema.as_object_mut() {
        obj.entry("x-guidance")
            .or_insert_with(|| serde_json::json!({"whitespace_flexible": false}));
    }
    schema
}

/// Why a constraint could not be set up or followed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConstraintError {
    /// The grammar or schema is malformed or uses something llguidance does not support.
    #[error("the {kind} cannot be used: {message}")]
    Compile { kind: &'static str, message: String },
    /// The vocabulary could not be turned into llguidance's token trie.
    #[error("constrained decoding: the vocabulary is unusable: {0}")]
    Vocabulary(String),
    /// The grammar engine failed during generation (a token outside the mask was committed,
    /// or llguidance hit one of its limits).
    #[error("constrained decoding failed at output token {index}: {message}")]
    Step { index: usize, message: String },
}

/// The grammar compiler for one vocabulary: build once per model, it holds llguidance's
/// per-vocabulary tables.
pub struct ConstraintCompiler {
    factory: ParserFactory,
}

impl std::fmt::Debug for ConstraintCompiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConstraintCompiler")
            .field("n_vocab", &self.factory.tok_env().tok_trie().vocab_size())
            .finish()
    }
}

impl ConstraintCompiler {
    pub fn new(env: &TokEnv) -> Result<Self, ConstraintError> {
        let mut factory = ParserFactory::new_simple(env)
            .map_err(|e| ConstraintError::Vocabulary(e.to_string()))?;
        factory.quiet();
        Ok(ConstraintCompiler { factory })
    }

    /// The number of token ids masks cover (the model's logits count).
    pub fn n_vocab(&self) -> usize {
        self.factory.tok_env().tok_trie().vocab_size()
    }

    /// Compiles `grammar`: errors (syntax, unsupported schema keywords) come here, before
    /// generation.
    pub fn compile(&self, grammar: &Grammar) -> Result<Constrainer, ConstraintError> {
        let top = grammar.to_llguidance()?;
        let compile_err = |message: String| ConstraintError::Compile {
            kind: grammar.kind(),
            message,
        };
        let parser = self
            .factory
            .create_parser(top)
            .map_err(|e| compile_err(e.to_string()))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(compile_err(e));
        }
        Ok(Constrainer {
            matcher,
            mask: Vec::new(),
            n_committed: 0,
        })
    }
}

/// One generation's grammar state.
pub struct Constrainer {
    matcher: Matcher,
    mask: Vec<u32>,
    n_committed: usize,
}

impl std::fmt::Debug for Constrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constrainer")
            .field("n_committed", &self.n_committed)
            .finish()
    }
}

impl Constrainer {
    fn step_err(&self, message: String) -> ConstraintError {
        ConstraintError::Step {
            index: self.n_committed,
            message,
        }
    }

    /// The tokens allowed next, as a bitmask (bit `i % 32` of word `i / 32` set for token `i`).
    /// When the grammar is complete only the end-of-generation tokens are allowed.
    pub fn mask(&mut self) -> Result<&[u32], ConstraintError> {
        let vob = self
            .matcher
            .compute_mask_or_eos()
            .map_err(|e| self.step_err(e.to_string()))?;
        self.mask.clear();
        self.mask.extend_from_slice(vob.as_slice());
        if self.mask.iter().all(|&w| w == 0) {
            return Err(self.step_err("no token is allowed next".into()));
        }
        Ok(&self.mask)
    }

    /// Advances the grammar by the chosen token.
    pub fn commit(&mut self, id: u32) -> Result<(), ConstraintError> {
        self.matcher
            .consume_token(id)
            .map_err(|e| self.step_err(e.to_string()))?;
        self.n_committed += 1;
        Ok(())
    }

    /// The output is complete: the grammar allows nothing but the end.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// The output so far is a complete match (it may still go on).
    pub fn is_accepting(&mut self) -> bool {
        self.matcher.is_accepting().unwrap_or(false)
    }
}
