//! llguidance's view of our vocabulary: a token trie of each id's bytes.
//!
//! As llama.cpp builds it (`common/llguidance.cpp`): a normal, byte or user-defined token is the
//! bytes it detokenizes to ([`Tokenizer::token_to_piece`]); a control or unknown token is its
//! text behind llguidance's special-token marker `0xFF`, so that no grammar text ever matches
//! it (a Lark grammar names it as `<|im_end|>` or `<[151645]>`); ids past the tokenizer's
//! vocabulary (models whose output rows are padded) are empty and never allowed. The
//! end-of-generation tokens are llguidance's EOS set: the only tokens allowed once the grammar is
//! complete. Tokenization of grammar literals is llguidance's greedy one over the trie
//! (`ApproximateTokEnv`): llguidance then does not rely on it being canonical.

use std::sync::Arc;

use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

use super::ConstraintError;
use crate::tokenizer::{TokenAttr, Tokenizer};

/// The token environment for a model with `n_vocab` logits (≥ the tokenizer's vocabulary).
pub fn token_env(tokenizer: &Tokenizer, n_vocab: usize) -> Result<TokEnv, ConstraintError> {
    let v = tokenizer.vocab();
    let n = n_vocab.max(v.n_tokens());
    let n_u32 = u32::try_from(n)
        .map_err(|_| ConstraintError::Vocabulary(format!("{n} tokens do not fit in u32 ids")))?;
    let special = TokenAttr::CONTROL | TokenAttr::UNKNOWN;
    let mut words: Vec<Vec<u8>> = Vec::with_capacity(n);
    for id in 0..n_u32 {
        let word = match v.token_attr(id) {
            None => Vec::new(),
            Some(attr) if attr.intersects(special) => {
                let text = v.token_text(id).unwrap_or_default();
                if text.is_empty() {
                    Vec::new()
                } else {
                    let mut w = Vec::with_capacity(text.len() + 1);
                    w.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    w.extend_from_slice(text.as_bytes());
                    w
                }
            }
            Some(_) => tokenizer
                .token_to_piece(id, true)
                .map_err(|e| ConstraintError::Vocabulary(e.to_string()))?
                .into_owned(),
        };
        words.push(word);
    }
    let eog: Vec<u32> = v.eog_ids().filter(|&id| id < n_u32).collect();
    let eos = v
        .eos()
        .filter(|id| eog.contains(id))
        .or_else(|| eog.first().copied())
        .ok_or_else(|| {
            ConstraintError::Vocabulary(
                "the vocabulary has no end-of-generation token to end a constrained output".into(),
            )
        })?;
    let info = TokRxInfo {
        vocab_size: n_u32,
        tok_eos: eos,
        tok_bos: v.bos(),
        tok_pad: v.pad(),
        tok_unk: v.unk(),
        tok_end_of_turn: v.eot(),
    };
    let trie = TokTrie::from(&info, &words).with_eos_tokens(&eog);
    Ok(Arc::new(ApproximateTokEnv::new(trie)))
}
