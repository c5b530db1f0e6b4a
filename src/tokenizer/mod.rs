//! Tokenizers built from GGUF metadata, matching llama.cpp token for token.
//!
//! * [`Vocab`] holds the vocabulary as llama.cpp resolves it (`llama-vocab.cpp`): defaults for
//!   missing keys, special tokens found by their text, the end-of-generation set.
//! * [`Tokenizer`] encodes text: special-token partitioning (`tokenizer_st_partition`), then
//!   SentencePiece (`llama`) or byte-level BPE (`gpt2`) with the pre-tokenizer named by
//!   `tokenizer.ggml.pre`.
//! * Decoding: [`Tokenizer::token_to_piece`], [`Tokenizer::decode`] (llama.cpp's
//!   `llama_detokenize`) and [`StreamDecoder`], which never splits a UTF-8 character.

/// Chat moved to [`crate::chat`] (it is not a tokenizer concern); this path stays so that code
/// written against it keeps building.
pub use crate::chat as chat_template;

mod bpe;
mod index;
mod pretokenize;
mod spm;
mod stdhash;
mod stream;
mod unicode;
mod unicode_data;
mod vocab;

use std::borrow::Cow;

pub use pretokenize::PreType;
pub use stream::StreamDecoder;
pub use vocab::{TokenAttr, Vocab, VocabData, VocabType};

use pretokenize::PreTokenizer;

/// Why a vocabulary could not be loaded or a text not be (de)tokenized.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error(
        "tokenizer: unsupported tokenizer model `{0}` (tokenizer.ggml.model); supported are \
         `llama` (SentencePiece) and `gpt2` (byte-level BPE)"
    )]
    UnsupportedModel(String),
    #[error("tokenizer: unknown pre-tokenizer `{0}` (tokenizer.ggml.pre)")]
    UnknownPreTokenizer(String),
    #[error("tokenizer: pre-tokenizer `{0}` (tokenizer.ggml.pre) is not supported yet")]
    UnsupportedPreTokenizer(String),
    #[error("tokenizer: metadata key `{key}`: {problem}")]
    Metadata { key: String, problem: String },
    #[error("tokenizer: token id {id} is out of range (the vocabulary has {n_vocab} tokens)")]
    TokenOutOfRange { id: u32, n_vocab: usize },
    #[error("tokenizer: {0}")]
    Invalid(String),
}

/// A vocabulary ready to encode and decode.
#[derive(Debug)]
pub struct Tokenizer {
    vocab: Vocab,
    pre: Option<PreTokenizer>,
}

/// A piece of input after special-token partitioning.
#[derive(Clone, Copy, Debug)]
enum Fragment {
    Text { start: usize, end: usize },
    Token(u32),
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl Tokenizer {
    /// Prepares a vocabulary for use (compiles its pre-tokenizer).
    pub fn new(vocab: Vocab) -> Result<Tokenizer, TokenizerError> {
        let pre = match vocab.pre_type() {
            Some(t) => Some(PreTokenizer::new(t)?),
            None => None,
        };
        Ok(Tokenizer { vocab, pre })
    }

    /// The tokenizer of a GGUF file's metadata.
    pub fn from_gguf(header: &crate::gguf::GgufHeader) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::new(Vocab::from_gguf(header)?)
    }

    pub fn vocab(&self) -> &Vocab {
        &self.vocab
    }

    /// Tokenizes `text` like llama.cpp's `llama_tokenize` / `common_tokenize`.
    ///
    /// * `add_special`: prepend BOS / append EOS when the vocabulary asks for them
    ///   (`tokenizer.ggml.add_bos_token`, `add_eos_token`).
    /// * `parse_special`: special-token texts in the input (such as `<|im_start|>`) become their
    ///   tokens. Without it they are tokenized as plain text; user-defined tokens are matched
    ///   either way, as in llama.cpp.
    pub fn encode(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        let v = &self.vocab;
        let fragments = self.partition(text, parse_special);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        let need = |id: Option<u32>, what: &str| {
            id.ok_or_else(|| {
                TokenizerError::Invalid(format!("the vocabulary asks for {what} but has none"))
            })
        };
        if add_special && v.add_bos() {
            out.push(need(v.bos(), "a BOS token")?);
        }
        match v.vocab_type() {
            VocabType::Spm => {
                let mut prev_special = true;
                let mut buf = String::new();
                for f in fragments {
                    match f {
                        Fragment::Text { start, end } => {
                            buf.clear();
                            if v.add_space_prefix && prev_special {
                                buf.push('\u{2581}');
                            }
                            for c in text[start..end].chars() {
                                buf.push(if c == ' ' { '\u{2581}' } else { c });
                            }
                            spm::tokenize(v, &buf, &mut out)?;
                            prev_special = false;
                        }
                        Fragment::Token(id) => {
                            out.push(id);
                            prev_special = true;
                        }
                    }
                }
            }
            VocabType::Bpe => {
                let pre = self.pre.as_ref().ok_or_else(|| {
                    TokenizerError::Invalid("BPE vocabulary without a pre-tokenizer".into())
                })?;
                for f in fragments {
                    match f {
                        Fragment::Text { start, end } => {
                            for word in pre.split(&text[start..end], true)? {
                                bpe::tokenize_word(v, &word, &mut out);
                            }
                        }
                        Fragment::Token(id) => out.push(id),
                    }
                }
            }
        }
        if add_special && v.add_eos() {
            out.push(need(v.eos(), "an EOS token")?);
        }
        Ok(out)
    }

    /// llama.cpp's `tokenizer_st_partition`: for each special token, longest first, split every
    /// text fragment at its occurrences.
    fn partition(&self, text: &str, parse_special: bool) -> Vec<Fragment> {
        let v = &self.vocab;
        let mut frags = Vec::new();
        if text.is_empty() {
            return frags;
        }
        frags.push(Fragment::Text {
            start: 0,
            end: text.len(),
        });
        let bytes = text.as_bytes();
        for &id in &v.special_cache {
            let attr = v.attrs[id as usize];
            if !parse_special && attr.intersects(TokenAttr::CONTROL | TokenAttr::UNKNOWN) {
                continue;
            }
            let pat = v.texts[id as usize].as_str();
            if pat.is_empty() || !frags.iter().any(|f| matches!(f, Fragment::Text { start, end } if text[*start..*end].contains(pat))) {
                continue;
            }
            let mut next = Vec::with_capacity(frags.len() + 2);
            for f in frags {
                let (mut base, end) = match f {
                    Fragment::Text { start, end } => (start, end),
                    tok => {
                        next.push(tok);
                        continue;
                    }
                };
                loop {
                    let Some(rel) = text[base..end].find(pat) else {
                        if base < end {
                            next.push(Fragment::Text { start: base, end });
                        }
                        break;
                    };
                    let m = base + rel;
                    if m > base {
                        let mut left_end = m;
                        if attr.intersects(TokenAttr::LSTRIP) {
                            while left_end > base && is_c_space(bytes[left_end - 1]) {
                                left_end -= 1;
                            }
                        }
                        if left_end > base {
                            next.push(Fragment::Text {
                                start: base,
                                end: left_end,
                            });
                        }
                    }
                    next.push(Fragment::Token(id));
                    let mut right = m + pat.len();
                    if right >= end {
                        break;
                    }
                    if attr.intersects(TokenAttr::RSTRIP) {
                        while right < end && is_c_space(bytes[right]) {
                            right += 1;
                        }
                    }
                    base = right;
                }
            }
            frags = next;
        }
        frags
    }

    /// The bytes a token stands for, as llama.cpp's `llama_token_to_piece` (no space
    /// stripping). Control and unknown tokens give their text only with `special`.
    /// Byte tokens give one byte, which may be part of a UTF-8 character.
    pub fn token_to_piece(&self, id: u32, special: bool) -> Result<Cow<'_, [u8]>, TokenizerError> {
        let v = &self.vocab;
        let attr = v.token_attr(id).ok_or(TokenizerError::TokenOutOfRange {
            id,
            n_vocab: v.n_tokens(),
        })?;
        let text = v.texts[id as usize].as_str();
        let special_attr = TokenAttr::UNKNOWN | TokenAttr::CONTROL;
        if !special && attr.intersects(special_attr) {
            return Ok(Cow::Borrowed(&[]));
        }
        if attr.intersects(special_attr | TokenAttr::USER_DEFINED) {
            return Ok(Cow::Borrowed(text.as_bytes()));
        }
        if attr.intersects(TokenAttr::NORMAL) {
            return Ok(match v.vocab_type() {
                VocabType::Spm => {
                    if text.contains('\u{2581}') {
                        Cow::Owned(text.replace('\u{2581}', " ").into_bytes())
                    } else {
                        Cow::Borrowed(text.as_bytes())
                    }
                }
                VocabType::Bpe => Cow::Owned(decode_byte_level(text)),
            });
        }
        if attr.intersects(TokenAttr::BYTE) {
            return Ok(Cow::Owned(vec![token_to_byte(text)]));
        }
        Ok(Cow::Borrowed(&[]))
    }

    /// Detokenizes like llama.cpp's `llama_detokenize` and returns the raw bytes.
    ///
    /// * `remove_special`: drop a leading BOS / trailing EOS that `add_special` would add.
    /// * `unparse_special`: render control tokens as their text.
    ///
    /// A SentencePiece tokenizer with a space prefix drops the first token's leading space;
    /// BPE tokenizers marked for clean-up remove spaces before `.,!?` and in contractions.
    pub fn detokenize(
        &self,
        ids: &[u32],
        remove_special: bool,
        unparse_special: bool,
    ) -> Result<Vec<u8>, TokenizerError> {
        let v = &self.vocab;
        let mut ids = ids;
        let mut remove_space = v.add_space_prefix;
        if remove_special && v.add_bos() && !ids.is_empty() && Some(ids[0]) == v.bos() {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special && v.add_eos() && !ids.is_empty() && Some(ids[ids.len() - 1]) == v.eos() {
            ids = &ids[..ids.len() - 1];
        }
        let mut text = Vec::new();
        for &id in ids {
            let piece = self.token_to_piece(id, unparse_special)?;
            let piece: &[u8] = &piece;
            let piece = if remove_space && piece.first() == Some(&b' ') {
                &piece[1..]
            } else {
                piece
            };
            remove_space = false;
            text.extend_from_slice(piece);
        }
        if v.clean_spaces {
            clean_up_spaces(&mut text);
        }
        Ok(text)
    }

    /// Decodes ids to text the way llama.cpp's detokenizer does for display (`remove_special`
    /// off); invalid UTF-8 becomes U+FFFD. With `special`, control tokens appear as their text.
    pub fn decode(&self, ids: &[u32], special: bool) -> Result<String, TokenizerError> {
        let bytes = self.detokenize(ids, false, special)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// A decoder for generated tokens fed one at a time; see [`StreamDecoder`].
    pub fn stream_decoder(&self, special: bool) -> StreamDecoder<'_> {
        StreamDecoder::new(self, special)
    }
}

/// llama.cpp's `token_to_byte`: the two hex digits of `<0xXX>` (as `strtol` reads them).
fn token_to_byte(text: &str) -> u8 {
    let digits = text.as_bytes().get(3..text.len().min(5)).unwrap_or(&[]);
    let mut v: u32 = 0;
    for &d in digits {
        match (d as char).to_digit(16) {
            Some(x) => v = v * 16 + x,
            None => break,
        }
    }
    v as u8
}

/// llama.cpp's `llama_decode_text`: GPT-2 byte characters back to bytes. A character outside the
/// byte map is written out as `[UNK_BYTE_0x..<token>]`, as llama.cpp does.
fn decode_byte_level(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).as_bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// The three clean-up passes of `llama_detokenize` (`clean_spaces`), byte for byte.
fn clean_up_spaces(text: &mut Vec<u8>) {
    let t = text;
    // first pass: " ?", " !", " .", " ,"
    let total1 = t.len();
    let mut total = usize::from(total1 > 0);
    for i in 1..total1 {
        let x = t[i];
        if t[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            total -= 1;
        }
        t[total] = x;
        total += 1;
    }
    // second pass: strip a single apostrophe between spaces
    let total2 = total;
    total = usize::from(total2 > 0);
    let mut i = 1;
    while i < total2 {
        let x = t[i];
        if x == b'\'' && i + 1 < total2 && t[i - 1] == b' ' && t[i + 1] == b' ' {
            total -= 1;
            i += 1;
            t[i] = 0;
        }
        t[total] = x;
        total += 1;
        i += 1;
    }
    // third pass: apostrophe contractions
    let total3 = total;
    total = usize::from(total3 > 0);
    for i in 1..total3 {
        let x = t[i];
        if t[i - 1] == b' ' && x == b'\'' && i + 1 < total3 {
            let x1 = t[i + 1];
            if x1 == b's' || x1 == b'm' {
                total -= 1;
            } else if x1 != b't' && x1 != b'd' && i + 2 < total3 {
                let x2 = t[i + 2];
                if x2 == b'e' && (x1 == b'r' || x1 == b'v') {
                    total -= 1;
                }
            }
        }
        t[total] = x;
        total += 1;
    }
    t.truncate(total);
}

#[cfg(test)]
mod tests;
