//! Incremental detokenization for generation: feed token ids one at a time, get text as soon as
//! it is complete UTF-8.

use super::{Tokenizer, TokenizerError};

/// Turns a stream of token ids into text without ever emitting half a character.
///
/// Each token contributes its piece ([`Tokenizer::token_to_piece`]), as llama.cpp prints tokens
/// while generating. Byte tokens (`<0xE6>` in SentencePiece, single GPT-2 byte characters in BPE)
/// may carry part of a UTF-8 character: those bytes are held back until the character is
/// complete. Bytes that can no longer become valid UTF-8 are emitted as one U+FFFD per maximal
/// invalid sequence (as [`String::from_utf8_lossy`] would), and only once they are proven
/// invalid. [`StreamDecoder::finish`] flushes what is left.
///
/// The concatenated output equals `String::from_utf8_lossy` of all pieces joined. It does not
/// apply the space clean-up of [`Tokenizer::decode`] (llama.cpp does not either when streaming).
#[derive(Debug)]
pub struct StreamDecoder<'a> {
    tokenizer: &'a Tokenizer,
    special: bool,
    pending: Vec<u8>,
}

impl<'a> StreamDecoder<'a> {
    /// With `special`, control tokens produce their text (e.g. `<|im_end|>`); without, nothing.
    pub fn new(tokenizer: &'a Tokenizer, special: bool) -> Self {
        StreamDecoder {
            tokenizer,
            special,
            pending: Vec::new(),
        }
    }

    /// Adds one token; returns the text it completes (possibly empty).
    pub fn push(&mut self, id: u32) -> Result<String, TokenizerError> {
        let piece = self.tokenizer.token_to_piece(id, self.special)?;
        Ok(self.push_bytes(&piece))
    }

    /// Adds raw bytes; returns the text they complete.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut pos = 0;
        loop {
            match std::str::from_utf8(&self.pending[pos..]) {
                Ok(s) => {
                    out.push_str(s);
                    pos = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // Safe: `valid_up_to` bytes were just checked.
                    out.push_str(
                        std::str::from_utf8(&self.pending[pos..pos + valid]).unwrap_or(""),
                    );
                    pos += valid;
                    match e.error_len() {
                        Some(n) => {
                            out.push('\u{FFFD}');
                            pos += n;
                        }
                        // An incomplete character at the end: wait for more bytes.
                        None => break,
                    }
                }
            }
        }
        self.pending.drain(..pos);
        out
    }

    /// Number of bytes held back (the start of an unfinished character).
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Ends the stream: an unfinished character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}
