//! Byte-level BPE (`tokenizer.ggml.model = gpt2`), llama.cpp's `llm_tokenizer_bpe_session`:
//! within each pre-tokenized word, repeatedly apply the lowest-ranked merge (leftmost first).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::vocab::{Vocab, NO_SID};

#[derive(Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: i32,
    next: i32,
    /// String id of the symbol's text (token id, merge string id or [`NO_SID`]).
    sid: u32,
}

/// Candidate merges: (rank, left, right, size, merged sid); the smallest rank, then the leftmost
/// pair, comes first.
type Queue = BinaryHeap<Reverse<(u32, i32, i32, usize, u32)>>;

/// Tokenizes one pre-tokenized (byte-encoded) word, appending to `out`.
pub(crate) fn tokenize_word(vocab: &Vocab, word: &str, out: &mut Vec<u32>) {
    if word.is_empty() {
        return;
    }
    if vocab.ignore_merges {
        if let Some(id) = vocab.token_id(word) {
            out.push(id);
            return;
        }
    }
    let mut symbols: Vec<Symbol> = Vec::with_capacity(word.len());
    for (i, (start, c)) in word.char_indices().enumerate() {
        let len = c.len_utf8();
        symbols.push(Symbol {
            start,
            len,
            prev: i as i32 - 1,
            next: if start + len == word.len() {
                -1
            } else {
                i as i32 + 1
            },
            sid: vocab.sid(&word[start..start + len]),
        });
    }
    let mut queue: Queue = BinaryHeap::new();
    let add = |symbols: &[Symbol], queue: &mut BinaryHeap<_>, left: i32, right: i32| {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        if l.sid == NO_SID || r.sid == NO_SID {
            return;
        }
        if let Some(&(rank, merged)) = vocab.merges.get(&(l.sid, r.sid)) {
            queue.push(Reverse((rank, left, right, l.len + r.len, merged)));
        }
    };
    for i in 1..symbols.len() as i32 {
        add(&symbols, &mut queue, i - 1, i);
    }
    while let Some(Reverse((_, left, right, size, merged))) = queue.pop() {
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        if l.len == 0 || r.len == 0 || l.len + r.len != size {
            continue;
        }
        let ls = &mut symbols[left as usize];
        ls.len += r.len;
        ls.next = r.next;
        ls.sid = merged;
        let prev = ls.prev;
        symbols[right as usize].len = 0;
        if r.next >= 0 {
            symbols[r.next as usize].prev = left;
        }
        add(&symbols, &mut queue, prev, left);
        add(&symbols, &mut queue, left, r.next);
    }
    for s in &symbols {
        if s.len == 0 {
            continue;
        }
        let piece = &word[s.start..s.start + s.len];
        match vocab.token_id(piece) {
            Some(id) => out.push(id),
            None => {
                // llama.cpp looks up each byte as a one-byte token; only ASCII can match.
                for &b in piece.as_bytes() {
                    if b < 0x80 {
                        let one = [b];
                        if let Some(id) = std::str::from_utf8(&one)
                            .ok()
                            .and_then(|t| vocab.token_id(t))
                        {
                            out.push(id);
                        }
                    }
                }
            }
        }
    }
}
