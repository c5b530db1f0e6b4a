//! Fast lookups for the vocabulary: a string-to-id index that stores only ids (the texts stay in
//! the vocabulary), and an Fx-style hasher for the merge tables. Loading Gemma 3's 262k tokens
//! this way avoids a second copy of every token text and SipHash's cost.

use std::hash::{BuildHasherDefault, Hasher};

/// rustc's Fx hash: fast on short keys, not DoS-resistant (the keys come from the model file).
#[derive(Default, Clone, Copy)]
pub(crate) struct FxHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(w));
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64);
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.hash
    }
}

pub(crate) type FxBuild = BuildHasherDefault<FxHasher>;
pub(crate) type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuild>;

fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write(s.as_bytes());
    h.add(s.len() as u64);
    // Spread the high bits into the low ones used for the slot.
    h.hash ^ (h.hash >> 29)
}

const EMPTY: u32 = u32::MAX;

/// Token text to id, open addressing over ids; the texts live in the vocabulary.
#[derive(Clone, Debug, Default)]
pub(crate) struct TokenIndex {
    slots: Vec<u32>,
}

impl TokenIndex {
    /// Indexes `texts`; on a duplicate text returns the two ids.
    pub(crate) fn build(texts: &[String]) -> Result<TokenIndex, (u32, u32)> {
        let cap = (texts.len() * 2).next_power_of_two().max(16);
        let mask = cap - 1;
        let mut slots = vec![EMPTY; cap];
        for (id, t) in texts.iter().enumerate() {
            let mut i = hash_str(t) as usize & mask;
            loop {
                let s = slots[i];
                if s == EMPTY {
                    slots[i] = id as u32;
                    break;
                }
                if texts[s as usize] == *t {
                    return Err((s, id as u32));
                }
                i = (i + 1) & mask;
            }
        }
        Ok(TokenIndex { slots })
    }

    #[inline]
    pub(crate) fn get(&self, texts: &[String], key: &str) -> Option<u32> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.slots.len() - 1;
        let mut i = hash_str(key) as usize & mask;
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if texts[s as usize] == key {
                return Some(s);
            }
            i = (i + 1) & mask;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_finds_every_text_and_rejects_duplicates() {
        let texts: Vec<String> = (0..1000).map(|i| format!("tok{i}")).collect();
        let idx = TokenIndex::build(&texts).unwrap();
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(idx.get(&texts, t), Some(i as u32));
        }
        assert_eq!(idx.get(&texts, "nope"), None);
        assert_eq!(idx.get(&texts, ""), None);
        let dup = vec!["a".to_string(), "b".to_string(), "a".to_string()];
        assert_eq!(TokenIndex::build(&dup).unwrap_err(), (0, 2));
    }
}
