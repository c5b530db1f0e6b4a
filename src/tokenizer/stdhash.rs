//! The iteration order of llama.cpp's `std::unordered_map<std::string, llama_token>` vocabulary
//! map, as GNU libstdc++ (which the reference llama.cpp builds use) produces it.
//!
//! llama.cpp finds some special tokens by their text while iterating over that map, keeping the
//! first match: e.g. SmolLM2 has both `<|endoftext|>` and `<|im_end|>`, and whichever comes first
//! in the map becomes the EOT token. To pick the same one we replay the map's construction: the
//! string hash (`std::_Hash_bytes`, a MurmurHash2 variant), the prime bucket counts of
//! `_Prime_rehash_policy`, and the node order of `_M_insert_bucket_begin` and `_M_rehash_aux`.
//! This runs only when a vocabulary has more than one candidate for such a token.

/// `std::hash<std::string>` on 64-bit libstdc++: `_Hash_bytes(ptr, len, 0xc70f6907)`.
pub(crate) fn hash_bytes(data: &[u8]) -> u64 {
    const MUL: u64 = (0xc6a4_a793u64 << 32) + 0x5bd1_e995;
    const SEED: u64 = 0xc70f_6907;
    fn shift_mix(v: u64) -> u64 {
        v ^ (v >> 47)
    }
    let len = data.len();
    let mut hash = SEED ^ (len as u64).wrapping_mul(MUL);
    let aligned = len & !7;
    for chunk in data[..aligned].chunks_exact(8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let d = shift_mix(u64::from_le_bytes(w).wrapping_mul(MUL)).wrapping_mul(MUL);
        hash ^= d;
        hash = hash.wrapping_mul(MUL);
    }
    let rest = &data[aligned..];
    if !rest.is_empty() {
        let mut d = 0u64;
        for &b in rest.iter().rev() {
            d = (d << 8) + b as u64;
        }
        hash ^= d;
        hash = hash.wrapping_mul(MUL);
    }
    hash = shift_mix(hash).wrapping_mul(MUL);
    shift_mix(hash)
}

/// libstdc++'s `__prime_list` (the part below 2^33, far beyond any vocabulary).
const PRIMES: &[u64] = &[
    2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71, 73, 79, 83, 89, 97,
    103, 109, 113, 127, 137, 139, 149, 157, 167, 179, 193, 199, 211, 227, 241, 257, 277, 293, 313,
    337, 359, 383, 409, 439, 467, 503, 541, 577, 619, 661, 709, 761, 823, 887, 953, 1031, 1109,
    1193, 1289, 1381, 1493, 1613, 1741, 1879, 2029, 2179, 2357, 2549, 2753, 2971, 3209, 3469, 3739,
    4027, 4349, 4703, 5087, 5503, 5953, 6427, 6949, 7517, 8123, 8783, 9497, 10273, 11113, 12011,
    12983, 14033, 15173, 16411, 17749, 19183, 20753, 22447, 24281, 26267, 28411, 30727, 33223,
    35933, 38873, 42043, 45481, 49201, 53201, 57557, 62233, 67307, 72817, 78779, 85229, 92203,
    99733, 107897, 116731, 126271, 136607, 147793, 159871, 172933, 187091, 202409, 218971, 236897,
    256279, 277261, 299951, 324503, 351061, 379787, 410857, 444487, 480881, 520241, 562841, 608903,
    658753, 712697, 771049, 834181, 902483, 976369, 1056323, 1142821, 1236397, 1337629, 1447153,
    1565659, 1693859, 1832561, 1982627, 2144977, 2320627, 2510653, 2716249, 2938679, 3179303,
    3439651, 3721303, 4026031, 4355707, 4712381, 5098259, 5515729, 5967347, 6456007, 6984629,
    7556579, 8175383, 8844859, 9569143, 10352717, 11200489, 12117689, 13109983, 14183539, 15345007,
    16601593, 17961079, 19431899, 21023161, 22744717, 24607243, 26622317, 28802401, 31160981,
    33712729, 36473443, 39460231, 42691603, 46187573, 49969847, 54061849, 58488943, 63278561,
    68460391, 74066549, 80131819, 86693767, 93793069, 101473717, 109783337, 118773397, 128499677,
    139022417, 150406843, 162723577, 176048909, 190465427, 206062531, 222936881, 241193053,
    260944219, 282312799, 305431229, 330442829, 357502601, 386778277, 418451333, 452718089,
    489790921, 529899637, 573292817, 620239453, 671030513, 725980837, 785430967, 849749479,
    919334987, 994618837, 1076067617, 1164186217, 1259520799, 1362662261, 1474249943, 1594975441,
    1725587117, 1866894511, 2019773507, 2185171673, 2364114217, 2557710269, 2767159799, 2993761039,
    3238918481, 3504151727, 3791104843, 4101556399, 4294967291, 6442450933, 8589934583,
];

/// `_Prime_rehash_policy` with `max_load_factor` 1.
struct RehashPolicy {
    next_resize: u64,
}

impl RehashPolicy {
    fn next_bkt(&mut self, n: u64) -> u64 {
        const FAST: [u8; 14] = [2, 2, 2, 3, 5, 5, 7, 7, 11, 11, 11, 11, 13, 13];
        if n < FAST.len() as u64 {
            if n == 0 {
                return 1;
            }
            let b = FAST[n as usize] as u64;
            self.next_resize = b;
            return b;
        }
        let candidates = &PRIMES[6..PRIMES.len() - 1];
        let i = candidates.partition_point(|&p| p < n);
        if i == candidates.len() {
            self.next_resize = u64::MAX;
            PRIMES[PRIMES.len() - 1]
        } else {
            self.next_resize = candidates[i];
            candidates[i]
        }
    }

    fn need_rehash(&mut self, n_bkt: u64, n_elt: u64, n_ins: u64) -> Option<u64> {
        if n_elt + n_ins <= self.next_resize {
            return None;
        }
        let floor = if self.next_resize == 0 { 11 } else { 0 };
        let min_bkts = (n_elt + n_ins).max(floor);
        if min_bkts >= n_bkt {
            Some(self.next_bkt((min_bkts + 1).max(n_bkt * 2)))
        } else {
            self.next_resize = n_bkt;
            None
        }
    }
}

const NIL: u32 = u32::MAX;
const EMPTY: u32 = u32::MAX;
const BEFORE_BEGIN: u32 = u32::MAX - 1;

/// Keys inserted in order with `map[key] = i` (keys must be distinct); returns the indices in the
/// order a range-for over the map visits them.
pub(crate) fn iteration_order<'a>(keys: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u32> {
    let n = keys.len();
    let hashes: Vec<u64> = keys.map(hash_bytes).collect();
    let mut next = vec![NIL; n];
    let mut head = NIL; // _M_before_begin._M_nxt
    let mut buckets: Vec<u32> = vec![EMPTY; 1];
    let mut policy = RehashPolicy { next_resize: 0 };

    fn get(head: u32, next: &[u32], before: u32) -> u32 {
        if before == BEFORE_BEGIN {
            head
        } else {
            next[before as usize]
        }
    }
    fn set(head: &mut u32, next: &mut [u32], before: u32, v: u32) {
        if before == BEFORE_BEGIN {
            *head = v;
        } else {
            next[before as usize] = v;
        }
    }

    for i in 0..n {
        let n_bkt = buckets.len() as u64;
        if let Some(new_n) = policy.need_rehash(n_bkt, i as u64, 1) {
            // _M_rehash_aux (unique keys)
            let mut nb = vec![EMPTY; new_n as usize];
            let mut p = head;
            head = NIL;
            let mut bbegin_bkt = 0usize;
            while p != NIL {
                let nx = next[p as usize];
                let bkt = (hashes[p as usize] % new_n) as usize;
                if nb[bkt] == EMPTY {
                    next[p as usize] = head;
                    head = p;
                    nb[bkt] = BEFORE_BEGIN;
                    if next[p as usize] != NIL {
                        nb[bbegin_bkt] = p;
                    }
                    bbegin_bkt = bkt;
                } else {
                    let before = nb[bkt];
                    next[p as usize] = get(head, &next, before);
                    set(&mut head, &mut next, before, p);
                }
                p = nx;
            }
            buckets = nb;
        }
        let n_bkt = buckets.len() as u64;
        let bkt = (hashes[i] % n_bkt) as usize;
        let node = i as u32;
        // _M_insert_bucket_begin
        if buckets[bkt] != EMPTY {
            let before = buckets[bkt];
            next[i] = get(head, &next, before);
            set(&mut head, &mut next, before, node);
        } else {
            next[i] = head;
            head = node;
            if next[i] != NIL {
                let nb = (hashes[next[i] as usize] % n_bkt) as usize;
                buckets[nb] = node;
            }
            buckets[bkt] = BEFORE_BEGIN;
        }
    }

    let mut order = Vec::with_capacity(n);
    let mut p = head;
    while p != NIL {
        order.push(p);
        p = next[p as usize];
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_libstdcxx() {
        // std::hash<std::string>{}("abc") with GCC 12's libstdc++ on x86-64.
        assert_eq!(hash_bytes(b"abc"), 3663726644998027833);
    }

    #[test]
    fn order_matches_libstdcxx() {
        // Inserting "t0".."t29" with `m[key] = i` and iterating visits them in this order
        // (GCC 12 libstdc++).
        let keys: Vec<String> = (0..30).map(|i| format!("t{i}")).collect();
        let order = iteration_order(keys.iter().map(|k| k.as_bytes()));
        assert_eq!(order.len(), 30);
        assert_eq!(order, EXPECTED_T30);
    }

    const EXPECTED_T30: [u32; 30] = [
        11, 8, 12, 29, 24, 9, 5, 6, 4, 2, 15, 1, 27, 10, 7, 13, 16, 0, 25, 14, 17, 3, 26, 28, 18,
        22, 23, 20, 19, 21,
    ];
}
