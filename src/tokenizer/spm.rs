//! SentencePiece-style tokenization (`tokenizer.ggml.model = llama`), llama.cpp's
//! `llm_tokenizer_spm_session`: start from single characters, repeatedly merge the adjacent pair
//! whose concatenation is the highest-scoring token, then emit each piece as a token or, failing
//! that, as byte tokens.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::vocab::Vocab;
use super::TokenizerError;

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: i32,
    next: i32,
}

struct Bigram {
    score: f32,
    left: i32,
    right: i32,
    size: usize,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Highest score first; on equal scores the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .partial_cmp(&other.score)
            .unwrap_or(Ordering::Equal)
            .then_with(|| other.left.cmp(&self.left))
            .then_with(|| other.right.cmp(&self.right))
    }
}

/// Tokenizes one text fragment (spaces already escaped to U+2581), appending to `out`.
pub(crate) fn tokenize(
    vocab: &Vocab,
    text: &str,
    out: &mut Vec<u32>,
) -> Result<(), TokenizerError> {
    let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
    for (i, (start, c)) in text.char_indices().enumerate() {
        let len = c.len_utf8();
        symbols.push(Symbol {
            start,
            len,
            prev: i as i32 - 1,
            next: if start + len == text.len() {
                -1
            } else {
                i as i32 + 1
            },
        });
    }
    if symbols.is_empty() {
        return Ok(());
    }
    let mut queue = BinaryHeap::new();
    let try_add = |symbols: &[Symbol], queue: &mut BinaryHeap<Bigram>, left: i32, right: i32| {
        if left < 0 || right < 0 {
            return;
        }
        let l = symbols[left as usize];
        let r = symbols[right as usize];
        let piece = &text[l.start..l.start + l.len + r.len];
        if let Some(id) = vocab.token_id(piece) {
            queue.push(Bigram {
                score: vocab.scores[id as usize],
                left,
                right,
                size: piece.len(),
            });
        }
    };
    for i in 1..symbols.len() as i32 {
        try_add(&symbols, &mut queue, i - 1, i);
    }
    while let Some(b) = queue.pop() {
        let (l, r) = (symbols[b.left as usize], symbols[b.right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != b.size {
            continue;
        }
        symbols[b.left as usize].len += r.len;
        symbols[b.right as usize].len = 0;
        symbols[b.left as usize].next = r.next;
        if r.next >= 0 {
            symbols[r.next as usize].prev = b.left;
        }
        let prev = symbols[b.left as usize].prev;
        let next = symbols[b.left as usize].next;
        try_add(&symbols, &mut queue, prev, b.left);
        try_add(&symbols, &mut queue, b.left, next);
    }
    let mut i = 0i32;
    while i != -1 {
        let s = symbols[i as usize];
        let piece = &text[s.start..s.start + s.len];
        match vocab.token_id(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    out.push(byte_to_token(vocab, b)?);
                }
            }
        }
        i = s.next;
    }
    Ok(())
}

/// llama.cpp's `byte_to_token` for SentencePiece: `<0xXX>`, else the byte itself as a token.
/// Where llama.cpp would throw, we fall back to the unknown token.
pub(crate) fn byte_to_token(vocab: &Vocab, b: u8) -> Result<u32, TokenizerError> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let name = [
        b'<',
        b'0',
        b'x',
        HEX[(b >> 4) as usize],
        HEX[(b & 15) as usize],
        b'>',
    ];
    let name = std::str::from_utf8(&name).unwrap_or("");
    if let Some(id) = vocab.token_id(name) {
        return Ok(id);
    }
    if b < 0x80 {
        let one = [b];
        if let Some(id) = std::str::from_utf8(&one)
            .ok()
            .and_then(|s| vocab.token_id(s))
        {
            return Ok(id);
        }
    }
    vocab.unk().ok_or_else(|| {
        TokenizerError::Invalid(format!(
            "the vocabulary has no byte token <0x{b:02X}> and no unknown token"
        ))
    })
}
