//! The vocabulary: tokens, scores, types, merges and special ids, resolved from GGUF metadata
//! with llama.cpp's defaults and fix-ups (`llama_vocab::impl::load` in `llama-vocab.cpp`).

use std::collections::BTreeSet;

use super::index::{FxHashMap, TokenIndex};
use super::pretokenize::{pre_config, PreConfig, PreType};
use super::{stdhash, TokenizerError};
use crate::gguf::{GgufHeader, Value};

/// Token attributes, as llama.cpp's `llama_token_attr` bit flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TokenAttr(pub u32);

impl TokenAttr {
    pub const UNDEFINED: TokenAttr = TokenAttr(0);
    pub const UNKNOWN: TokenAttr = TokenAttr(1 << 0);
    pub const UNUSED: TokenAttr = TokenAttr(1 << 1);
    pub const NORMAL: TokenAttr = TokenAttr(1 << 2);
    pub const CONTROL: TokenAttr = TokenAttr(1 << 3);
    pub const USER_DEFINED: TokenAttr = TokenAttr(1 << 4);
    pub const BYTE: TokenAttr = TokenAttr(1 << 5);
    pub const NORMALIZED: TokenAttr = TokenAttr(1 << 6);
    pub const LSTRIP: TokenAttr = TokenAttr(1 << 7);
    pub const RSTRIP: TokenAttr = TokenAttr(1 << 8);
    pub const SINGLE_WORD: TokenAttr = TokenAttr(1 << 9);

    /// True when any of `other`'s bits are set.
    pub fn intersects(self, other: TokenAttr) -> bool {
        self.0 & other.0 != 0
    }

    /// The attribute of a GGUF `tokenizer.ggml.token_type` value.
    pub fn from_token_type(t: i32) -> TokenAttr {
        match t {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        }
    }
}

impl std::ops::BitOr for TokenAttr {
    type Output = TokenAttr;
    fn bitor(self, rhs: TokenAttr) -> TokenAttr {
        TokenAttr(self.0 | rhs.0)
    }
}

/// The tokenizer algorithm (`tokenizer.ggml.model`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VocabType {
    /// `llama`: SentencePiece-style, merges by score, byte fallback.
    Spm,
    /// `gpt2`: byte-level BPE with ranked merges and a regex pre-tokenizer.
    Bpe,
}

/// A vocabulary as plain data, before llama.cpp's defaults are applied. `None` means "not in the
/// metadata"; [`Vocab::new`] then uses the default llama.cpp uses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VocabData {
    /// `tokenizer.ggml.model`: `llama` or `gpt2`.
    pub model: String,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (at least as many as tokens).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` (at least as many as tokens).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`, each `"left right"` (required for `gpt2`).
    pub merges: Option<Vec<String>>,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unk: Option<u32>,
    pub sep: Option<u32>,
    pub pad: Option<u32>,
    pub mask: Option<u32>,
    pub fim_pre: Option<u32>,
    pub fim_suf: Option<u32>,
    pub fim_mid: Option<u32>,
    pub fim_pad: Option<u32>,
    pub fim_rep: Option<u32>,
    pub fim_sep: Option<u32>,
    pub add_bos: Option<bool>,
    pub add_eos: Option<bool>,
    pub add_sep: Option<bool>,
    pub add_space_prefix: Option<bool>,
    /// `general.name` (llama.cpp sets per-token strip flags for Phi-3 by name).
    pub model_name: Option<String>,
    /// `general.architecture`.
    pub architecture: Option<String>,
}

/// Marks a merge part that is neither a token nor a known merge string.
pub(crate) const NO_SID: u32 = u32::MAX;

/// A loaded vocabulary with llama.cpp's defaults, special-token detection and end-of-generation
/// set applied.
#[derive(Clone, Debug)]
pub struct Vocab {
    pub(crate) kind: VocabType,
    model: String,
    pre: String,
    pub(crate) pre_type: Option<PreType>,
    pub(crate) texts: Vec<String>,
    pub(crate) scores: Vec<f32>,
    pub(crate) attrs: Vec<TokenAttr>,
    index: TokenIndex,
    /// BPE merges by (left, right) string id: (rank, merged string id). String ids below the
    /// vocabulary size are token ids; above it, merge strings that are not tokens.
    pub(crate) merges: FxHashMap<(u32, u32), (u32, u32)>,
    pub(crate) merge_strings: FxHashMap<String, u32>,
    bos: Option<u32>,
    eos: Option<u32>,
    eot: Option<u32>,
    eom: Option<u32>,
    unk: Option<u32>,
    sep: Option<u32>,
    pad: Option<u32>,
    mask: Option<u32>,
    fim_pre: Option<u32>,
    fim_suf: Option<u32>,
    fim_mid: Option<u32>,
    fim_pad: Option<u32>,
    fim_rep: Option<u32>,
    fim_sep: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    add_sep: bool,
    pub(crate) add_space_prefix: bool,
    pub(crate) clean_spaces: bool,
    pub(crate) ignore_merges: bool,
    eog: BTreeSet<u32>,
    /// Control, user-defined and unknown tokens, longest text first (llama.cpp's
    /// `cache_special_tokens`).
    pub(crate) special_cache: Vec<u32>,
}

// Token texts llama.cpp recognizes when the metadata does not name the token
// (`llama_vocab::impl::load`, "auto-detect special tokens by text").
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];
const EOM_TEXTS: &[&str] = &["<|eom_id|>"];
const FIM_PRE_TEXTS: &[&str] = &[
    "<|fim_prefix|>",
    "<fim-prefix>",
    "<fim_prefix>",
    "<｜fim▁begin｜>",
    "<PRE>",
    "▁<PRE>",
    "<|code_prefix|>",
    "<|prefix|>",
];
const FIM_SUF_TEXTS: &[&str] = &[
    "<|fim_suffix|>",
    "<fim-suffix>",
    "<fim_suffix>",
    "<｜fim▁hole｜>",
    "<SUF>",
    "▁<SUF>",
    "<|code_suffix|>",
    "<|suffix|>",
];
const FIM_MID_TEXTS: &[&str] = &[
    "<|fim_middle|>",
    "<fim-middle>",
    "<fim_middle>",
    "<｜fim▁end｜>",
    "<MID>",
    "▁<MID>",
    "<|code_middle|>",
    "<|middle|>",
];
const FIM_PAD_TEXTS: &[&str] = &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"];
const FIM_REP_TEXTS: &[&str] = &[
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<reponame>",
];
const FIM_SEP_TEXTS: &[&str] = &["<|file_sep|>"];
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

fn meta_err(key: &str, problem: impl Into<String>) -> TokenizerError {
    TokenizerError::Metadata {
        key: key.to_string(),
        problem: problem.into(),
    }
}

impl VocabData {
    /// Reads the `tokenizer.ggml.*` keys of a GGUF header.
    pub fn from_gguf(header: &GgufHeader) -> Result<VocabData, TokenizerError> {
        let md = &header.metadata;
        let get = |k: &str| md.get(k);
        let string = |k: &str| -> Result<Option<String>, TokenizerError> {
            match get(k) {
                None => Ok(None),
                Some(v) => v.as_str().map(|s| Some(s.to_string())).ok_or_else(|| {
                    meta_err(k, format!("expected a string, found {}", v.type_name()))
                }),
            }
        };
        let boolean = |k: &str| -> Result<Option<bool>, TokenizerError> {
            match get(k) {
                None => Ok(None),
                Some(v) => v.as_bool().map(Some).ok_or_else(|| {
                    meta_err(k, format!("expected a bool, found {}", v.type_name()))
                }),
            }
        };
        // Ids: any integer type; a negative or huge value is out of range (ignored later).
        let id = |k: &str| -> Result<Option<u32>, TokenizerError> {
            match get(k) {
                None => Ok(None),
                Some(v) => match v.as_i64() {
                    Some(x) => Ok(Some(u32::try_from(x).unwrap_or(u32::MAX))),
                    None if v.as_u64().is_some() => Ok(Some(u32::MAX)),
                    None => Err(meta_err(
                        k,
                        format!("expected an integer token id, found {}", v.type_name()),
                    )),
                },
            }
        };
        let array = |k: &str| -> Result<Option<&crate::gguf::Array>, TokenizerError> {
            match get(k) {
                None => Ok(None),
                Some(Value::Array(a)) => Ok(Some(a)),
                Some(v) => Err(meta_err(
                    k,
                    format!("expected an array, found {}", v.type_name()),
                )),
            }
        };

        const TOKENS: &str = "tokenizer.ggml.tokens";
        let model = string("tokenizer.ggml.model")?.ok_or_else(|| {
            meta_err(
                "tokenizer.ggml.model",
                "missing (the file has no tokenizer)",
            )
        })?;
        let tokens = match array(TOKENS)? {
            None => return Err(meta_err(TOKENS, "missing (the file has no vocabulary)")),
            Some(a) => a
                .as_strings()
                .ok_or_else(|| {
                    meta_err(
                        TOKENS,
                        format!("expected strings, found {}", a.element_type().name()),
                    )
                })?
                .to_vec(),
        };
        let scores = match array("tokenizer.ggml.scores")? {
            None => None,
            Some(crate::gguf::Array::F32(v)) => Some(v.clone()),
            Some(crate::gguf::Array::I32(v)) => Some(v.iter().map(|&x| x as f32).collect()),
            Some(a) => {
                return Err(meta_err(
                    "tokenizer.ggml.scores",
                    format!(
                        "expected f32 or i32 values, found {}",
                        a.element_type().name()
                    ),
                ))
            }
        };
        let token_types = match array("tokenizer.ggml.token_type")? {
            None => None,
            Some(a) => Some(
                a.as_i32s()
                    .ok_or_else(|| {
                        meta_err(
                            "tokenizer.ggml.token_type",
                            format!("expected i32 values, found {}", a.element_type().name()),
                        )
                    })?
                    .to_vec(),
            ),
        };
        let merges = match array("tokenizer.ggml.merges")? {
            None => None,
            Some(a) => Some(
                a.as_strings()
                    .ok_or_else(|| {
                        meta_err(
                            "tokenizer.ggml.merges",
                            format!("expected strings, found {}", a.element_type().name()),
                        )
                    })?
                    .to_vec(),
            ),
        };
        let n = tokens.len() as u32;
        // The deprecated prefix/suffix/middle keys override the fim_* keys when in range.
        let fim = |new: &str, old: &str| -> Result<Option<u32>, TokenizerError> {
            let a = id(new)?;
            let b = id(old)?;
            Ok(match (a, b) {
                (_, Some(b)) if b < n => Some(b),
                (Some(a), _) => Some(a),
                (None, b) => b,
            })
        };
        Ok(VocabData {
            model,
            pre: string("tokenizer.ggml.pre")?,
            tokens,
            scores,
            token_types,
            merges,
            bos: id("tokenizer.ggml.bos_token_id")?,
            eos: id("tokenizer.ggml.eos_token_id")?,
            eot: id("tokenizer.ggml.eot_token_id")?,
            eom: id("tokenizer.ggml.eom_token_id")?,
            unk: id("tokenizer.ggml.unknown_token_id")?,
            sep: id("tokenizer.ggml.seperator_token_id")?,
            pad: id("tokenizer.ggml.padding_token_id")?,
            mask: id("tokenizer.ggml.mask_token_id")?,
            fim_pre: fim(
                "tokenizer.ggml.fim_pre_token_id",
                "tokenizer.ggml.prefix_token_id",
            )?,
            fim_suf: fim(
                "tokenizer.ggml.fim_suf_token_id",
                "tokenizer.ggml.suffix_token_id",
            )?,
            fim_mid: fim(
                "tokenizer.ggml.fim_mid_token_id",
                "tokenizer.ggml.middle_token_id",
            )?,
            fim_pad: id("tokenizer.ggml.fim_pad_token_id")?,
            fim_rep: id("tokenizer.ggml.fim_rep_token_id")?,
            fim_sep: id("tokenizer.ggml.fim_sep_token_id")?,
            add_bos: boolean("tokenizer.ggml.add_bos_token")?,
            add_eos: boolean("tokenizer.ggml.add_eos_token")?,
            add_sep: boolean("tokenizer.ggml.add_sep_token")?,
            add_space_prefix: boolean("tokenizer.ggml.add_space_prefix")?,
            model_name: string("general.name").ok().flatten(),
            architecture: string("general.architecture").ok().flatten(),
        })
    }
}

impl Vocab {
    /// Reads the vocabulary of a GGUF header.
    pub fn from_gguf(header: &GgufHeader) -> Result<Vocab, TokenizerError> {
        Vocab::new(VocabData::from_gguf(header)?)
    }

    /// Builds a vocabulary from plain data, applying llama.cpp's defaults.
    pub fn new(mut data: VocabData) -> Result<Vocab, TokenizerError> {
        let kind = match data.model.as_str() {
            "llama" => VocabType::Spm,
            "gpt2" => VocabType::Bpe,
            other => return Err(TokenizerError::UnsupportedModel(other.to_string())),
        };
        let n = data.tokens.len();
        if n == 0 {
            return Err(meta_err("tokenizer.ggml.tokens", "the vocabulary is empty"));
        }
        if n >= u32::MAX as usize - 1 {
            return Err(meta_err("tokenizer.ggml.tokens", "too many tokens"));
        }
        let pre_name = data.pre.clone().unwrap_or_default();

        // Defaults per tokenizer type.
        let mut bos;
        let eos;
        let mut unk = None;
        let (sep, pad, mask): (Option<u32>, Option<u32>, Option<u32>) = (None, None, None);
        let mut pre_type = None;
        let mut add_space_prefix;
        let mut add_bos;
        let mut add_eos = false;
        let mut add_sep = false;
        let clean_spaces;
        let mut ignore_merges = false;
        match kind {
            VocabType::Spm => {
                bos = Some(1);
                eos = Some(2);
                unk = Some(0);
                add_space_prefix = true;
                clean_spaces = false;
                add_bos = true;
            }
            VocabType::Bpe => {
                bos = Some(11);
                eos = Some(11);
                let PreConfig {
                    pre_type: t,
                    clean_spaces: c,
                    ignore_merges: im,
                    add_bos: ab,
                    add_sep: asep,
                    no_default_bos,
                } = pre_config(&pre_name)?;
                if no_default_bos {
                    bos = None;
                }
                pre_type = Some(t);
                add_space_prefix = false;
                clean_spaces = c;
                ignore_merges = im;
                add_bos = ab;
                add_sep = asep;
            }
        }
        if let Some(v) = data.add_space_prefix {
            add_space_prefix = v;
        }

        let check_len = |key: &str, len: usize| -> Result<(), TokenizerError> {
            if len < n {
                Err(meta_err(key, format!("has {len} entries for {n} tokens")))
            } else {
                Ok(())
            }
        };
        if let Some(s) = &data.scores {
            check_len("tokenizer.ggml.scores", s.len())?;
        }
        if let Some(t) = &data.token_types {
            check_len("tokenizer.ggml.token_type", t.len())?;
        }

        let mut texts = std::mem::take(&mut data.tokens);
        for (i, t) in texts.iter_mut().enumerate() {
            if t.is_empty() {
                *t = format!("[EMPTY_{i}]");
            }
        }
        let index = TokenIndex::build(&texts).map_err(|(a, b)| {
            meta_err(
                "tokenizer.ggml.tokens",
                format!(
                    "token {:?} appears twice (ids {a} and {b})",
                    texts[b as usize]
                ),
            )
        })?;
        let lookup = |s: &str| index.get(&texts, s);
        let scores: Vec<f32> = match &data.scores {
            Some(s) => s[..n].to_vec(),
            None => vec![0.0; n],
        };
        let mut attrs: Vec<TokenAttr> = match &data.token_types {
            Some(t) => t[..n]
                .iter()
                .map(|&x| TokenAttr::from_token_type(x))
                .collect(),
            None => vec![TokenAttr::NORMAL; n],
        };

        let (merges, merge_strings) = match kind {
            VocabType::Bpe => match &data.merges {
                Some(m) => build_merges(m, &lookup, n)?,
                None => {
                    return Err(meta_err(
                        "tokenizer.ggml.merges",
                        "missing (required for a `gpt2` tokenizer)",
                    ))
                }
            },
            VocabType::Spm => (FxHashMap::default(), FxHashMap::default()),
        };

        // Special token ids: a default out of range is dropped; a metadata id out of range keeps
        // the default.
        let resolve = |default: Option<u32>, meta: Option<u32>| -> Option<u32> {
            let mut v = default.filter(|&d| (d as usize) < n);
            if let Some(m) = meta {
                if (m as usize) < n {
                    v = Some(m);
                }
            }
            v
        };
        let bos = resolve(bos, data.bos);
        let eos = resolve(eos, data.eos);
        let mut eot = resolve(None, data.eot);
        let mut eom = resolve(None, data.eom);
        let unk = resolve(unk, data.unk);
        let sep = resolve(sep, data.sep);
        let pad = resolve(pad, data.pad);
        let mask = resolve(mask, data.mask);
        let mut fim_pre = resolve(None, data.fim_pre);
        let mut fim_suf = resolve(None, data.fim_suf);
        let mut fim_mid = resolve(None, data.fim_mid);
        let mut fim_pad = resolve(None, data.fim_pad);
        let mut fim_rep = resolve(None, data.fim_rep);
        let mut fim_sep = resolve(None, data.fim_sep);

        if let Some(v) = data.add_bos {
            add_bos = v;
        }
        if let Some(v) = data.add_eos {
            add_eos = v;
        }
        if let Some(v) = data.add_sep {
            add_sep = v;
        }

        // Auto-detect special tokens by text; llama.cpp keeps the first match in its hash map's
        // iteration order.
        let mut order: Option<Vec<u32>> = None;
        {
            let mut detect = |slot: &mut Option<u32>, names: &[&str]| {
                if slot.is_some() {
                    return;
                }
                let cands: Vec<u32> = names.iter().filter_map(|name| lookup(name)).collect();
                let chosen = match cands.len() {
                    0 => return,
                    1 => cands[0],
                    _ => {
                        let order = order.get_or_insert_with(|| {
                            stdhash::iteration_order(texts.iter().map(|t| t.as_bytes()))
                        });
                        match order.iter().find(|id| cands.contains(id)) {
                            Some(&id) => id,
                            None => cands[0],
                        }
                    }
                };
                *slot = Some(chosen);
                let a = &mut attrs[chosen as usize];
                *a = *a | TokenAttr::CONTROL;
            };
            detect(&mut eot, EOT_TEXTS);
            detect(&mut eom, EOM_TEXTS);
            detect(&mut fim_pre, FIM_PRE_TEXTS);
            detect(&mut fim_suf, FIM_SUF_TEXTS);
            detect(&mut fim_mid, FIM_MID_TEXTS);
            detect(&mut fim_pad, FIM_PAD_TEXTS);
            detect(&mut fim_rep, FIM_REP_TEXTS);
            detect(&mut fim_sep, FIM_SEP_TEXTS);
        }

        // Control tokens named "unused" are unused.
        for (a, t) in attrs.iter_mut().zip(&texts) {
            if a.intersects(TokenAttr::CONTROL)
                && !a.intersects(TokenAttr::UNUSED)
                && t.contains("unused")
            {
                *a = *a | TokenAttr::UNUSED;
            }
        }

        // End-of-generation tokens.
        let mut eog = BTreeSet::new();
        eog.extend(fim_pad);
        eog.extend(fim_rep);
        eog.extend(fim_sep);
        for name in EOG_TEXTS {
            if let Some(id) = lookup(name) {
                eog.insert(id);
                let a = &mut attrs[id as usize];
                *a = *a | TokenAttr::CONTROL;
            }
        }
        for name in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = lookup(name) {
                attrs[id as usize] = TokenAttr::USER_DEFINED;
            }
        }
        eog.extend(eos);
        eog.extend(eot);
        eog.extend(eom);
        {
            let text_of = |id: u32| texts[id as usize].as_str();
            let has = |s: &str| eog.iter().any(|&id| text_of(id) == s);
            let end_id = eog
                .iter()
                .copied()
                .rev()
                .find(|&id| text_of(id) == "<|end|>");
            let has_return = has("<|return|>");
            let has_call = has("<|call|>") || has("<|calls|>");
            let has_flush = has("<|flush|>");
            if let Some(end_id) = end_id {
                if has_call && (has_return || has_flush) {
                    eog.remove(&end_id);
                    attrs[end_id as usize] = TokenAttr::USER_DEFINED;
                }
            }
            let s_id = eog.iter().copied().rev().find(|&id| text_of(id) == "</s>");
            if let Some(s_id) = s_id {
                if eog.iter().any(|&id| text_of(id) == "<|tool_response>") {
                    eog.remove(&s_id);
                    attrs[s_id as usize] = TokenAttr::NORMAL;
                }
            }
        }

        // Special tokens for the partition step, longest first. llama.cpp uses std::sort, whose
        // order among equal lengths is unspecified; ties only matter for overlapping texts of
        // the same length, which real vocabularies do not have. We keep id order.
        let mut special_cache: Vec<u32> = (0..n as u32)
            .filter(|&id| {
                attrs[id as usize]
                    .intersects(TokenAttr::CONTROL | TokenAttr::USER_DEFINED | TokenAttr::UNKNOWN)
            })
            .collect();
        special_cache.sort_by(|&a, &b| texts[b as usize].len().cmp(&texts[a as usize].len()));

        // Per-token strip attributes llama.cpp sets by model.
        {
            let contains_any = |s: &str, subs: &[&str]| subs.iter().any(|x| s.contains(x));
            let name = data
                .model_name
                .clone()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let arch = data.architecture.clone().unwrap_or_default();
            let mut set = |text: &str, attr: TokenAttr, on: bool| {
                if let Some(id) = lookup(text) {
                    let a = &mut attrs[id as usize];
                    *a = if on {
                        *a | attr
                    } else {
                        TokenAttr(a.0 & !attr.0)
                    };
                }
            };
            if contains_any(&pre_name, &["jina-v2-de", "jina-v2-es", "jina-v2-code"])
                || contains_any(&arch, &["nomic-bert-moe", "jina-bert-v3"])
            {
                set("<mask>", TokenAttr::LSTRIP, true);
            } else if contains_any(&name, &["phi-3", "phi3"]) {
                for &id in &special_cache {
                    let a = &mut attrs[id as usize];
                    *a = *a | TokenAttr::RSTRIP;
                }
                let mut set = |text: &str, on: bool| {
                    if let Some(id) = lookup(text) {
                        let a = &mut attrs[id as usize];
                        *a = if on {
                            *a | TokenAttr::RSTRIP
                        } else {
                            TokenAttr(a.0 & !TokenAttr::RSTRIP.0)
                        };
                    }
                };
                set("</s>", true);
                for t in ["<unk>", "<s>", "<|endoftext|>"] {
                    set(t, false);
                }
            } else if name.contains("modern-bert") {
                set("[MASK]", TokenAttr::LSTRIP, true);
            }
        }

        Ok(Vocab {
            kind,
            model: data.model,
            pre: pre_name,
            pre_type,
            texts,
            scores,
            attrs,
            index,
            merges,
            merge_strings,
            bos,
            eos,
            eot,
            eom,
            unk,
            sep,
            pad,
            mask,
            fim_pre,
            fim_suf,
            fim_mid,
            fim_pad,
            fim_rep,
            fim_sep,
            add_bos,
            add_eos,
            add_sep,
            add_space_prefix,
            clean_spaces,
            ignore_merges,
            eog,
            special_cache,
        })
    }

    /// `SentencePiece` or byte-level BPE.
    pub fn vocab_type(&self) -> VocabType {
        self.kind
    }
    /// `tokenizer.ggml.model`.
    pub fn model(&self) -> &str {
        &self.model
    }
    /// `tokenizer.ggml.pre` (empty when missing).
    pub fn pre(&self) -> &str {
        &self.pre
    }
    /// The pre-tokenizer of a BPE vocabulary.
    pub fn pre_type(&self) -> Option<PreType> {
        self.pre_type
    }
    /// Number of tokens.
    pub fn n_tokens(&self) -> usize {
        self.texts.len()
    }
    /// The token's text as stored in the vocabulary (`▁` for spaces in SentencePiece, GPT-2
    /// byte characters in BPE).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.texts.get(id as usize).map(|s| s.as_str())
    }
    pub fn token_score(&self, id: u32) -> Option<f32> {
        self.scores.get(id as usize).copied()
    }
    pub fn token_attr(&self, id: u32) -> Option<TokenAttr> {
        self.attrs.get(id as usize).copied()
    }
    /// The id of a token text, if it is in the vocabulary.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.index.get(&self.texts, text)
    }
    /// Control or unknown tokens: they have no text unless asked for.
    pub fn is_control(&self, id: u32) -> bool {
        self.token_attr(id)
            .is_some_and(|a| a.intersects(TokenAttr::CONTROL))
    }
    pub fn bos(&self) -> Option<u32> {
        self.bos
    }
    pub fn eos(&self) -> Option<u32> {
        self.eos
    }
    pub fn eot(&self) -> Option<u32> {
        self.eot
    }
    pub fn eom(&self) -> Option<u32> {
        self.eom
    }
    pub fn unk(&self) -> Option<u32> {
        self.unk
    }
    pub fn sep(&self) -> Option<u32> {
        self.sep
    }
    pub fn pad(&self) -> Option<u32> {
        self.pad
    }
    pub fn mask(&self) -> Option<u32> {
        self.mask
    }
    pub fn fim_pre(&self) -> Option<u32> {
        self.fim_pre
    }
    pub fn fim_suf(&self) -> Option<u32> {
        self.fim_suf
    }
    pub fn fim_mid(&self) -> Option<u32> {
        self.fim_mid
    }
    pub fn fim_pad(&self) -> Option<u32> {
        self.fim_pad
    }
    pub fn fim_rep(&self) -> Option<u32> {
        self.fim_rep
    }
    pub fn fim_sep(&self) -> Option<u32> {
        self.fim_sep
    }
    /// Whether encoding with special tokens prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }
    /// Whether encoding with special tokens appends EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
    pub fn add_sep(&self) -> bool {
        self.add_sep
    }
    /// SentencePiece: a space is put before the text (and removed again when decoding).
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }
    /// Decoding removes spaces before punctuation (`clean_up_tokenization_spaces`).
    pub fn clean_spaces(&self) -> bool {
        self.clean_spaces
    }
    /// Tokens that end generation, ascending.
    pub fn eog_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.eog.iter().copied()
    }
    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The string id of a text for BPE merging (see [`Vocab::merges`]).
    pub(crate) fn sid(&self, text: &str) -> u32 {
        match self.token_id(text) {
            Some(id) => id,
            None => self.merge_strings.get(text).copied().unwrap_or(NO_SID),
        }
    }
}

type Merges = (FxHashMap<(u32, u32), (u32, u32)>, FxHashMap<String, u32>);

/// Parses `"left right"` merges into ranked string-id pairs. The first merge of a pair wins, as
/// in llama.cpp.
fn build_merges(
    merges: &[String],
    lookup: &dyn Fn(&str) -> Option<u32>,
    n_tokens: usize,
) -> Result<Merges, TokenizerError> {
    let mut extra: FxHashMap<String, u32> = FxHashMap::default();
    let mut parts: Vec<(u32, u32)> = Vec::with_capacity(merges.len());
    let intern = |s: &str, extra: &mut FxHashMap<String, u32>| -> u32 {
        if let Some(id) = lookup(s) {
            return id;
        }
        if let Some(&id) = extra.get(s) {
            return id;
        }
        let id = (n_tokens + extra.len()) as u32;
        extra.insert(s.to_string(), id);
        id
    };
    let mut splits: Vec<usize> = Vec::with_capacity(merges.len());
    for (i, m) in merges.iter().enumerate() {
        // llama.cpp splits at the first space after the first byte.
        let pos = m
            .as_bytes()
            .iter()
            .skip(1)
            .position(|&b| b == b' ')
            .map(|p| p + 1)
            .ok_or_else(|| {
                meta_err(
                    "tokenizer.ggml.merges",
                    format!("entry {i} ({m:?}) is not two parts separated by a space"),
                )
            })?;
        let (a, b) = (&m[..pos], &m[pos + 1..]);
        let la = intern(a, &mut extra);
        let lb = intern(b, &mut extra);
        parts.push((la, lb));
        splits.push(pos);
    }
    let mut map = FxHashMap::with_capacity_and_hasher(merges.len(), Default::default());
    let mut buf = String::new();
    for (rank, (m, (&(la, lb), &pos))) in merges.iter().zip(parts.iter().zip(&splits)).enumerate() {
        buf.clear();
        buf.push_str(&m[..pos]);
        buf.push_str(&m[pos + 1..]);
        let result = match lookup(buf.as_str()) {
            Some(id) => id,
            None => extra.get(buf.as_str()).copied().unwrap_or(NO_SID),
        };
        map.entry((la, lb)).or_insert((rank as u32, result));
    }
    Ok((map, extra))
}
