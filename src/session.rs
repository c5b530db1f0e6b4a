//! Saved sessions: the KV cache of a conversation written out and read back, so that a page
//! that reloads continues a long chat without prefilling it again (`engine.saveSession()` /
//! `restoreSession()`). None of WebLLM, wllama or transformers.js keeps a cache across reloads;
//! llama-server's `/slots/{id}?action=save` is the nearest thing, and it stores the cache as is.
//!
//! A session is the ids the cache holds and, per layer, the keys and values of those positions,
//! and a hybrid model's recurrent layers' state after them (LFM2's convolution inputs, Qwen3.5's
//! delta-net state), nothing else: restoring one into an engine of the same model makes the next prompt that
//! starts with those ids prefill only the rest ([`crate::engine::Engine::cached_ids`]).
//!
//! Format (little-endian), checked whole before anything is restored:
//! ```text
//! magic    "CHORDKV\0"
//! version  u32 (2; version 1, which had no states, still reads)
//! model    [u8; 32]   SHA-256 of the model's description (architecture, name, tensor table)
//! format   u32        0: f32 values, 1: f16 values (IEEE half, round to nearest even)
//! n_layer  u32, then per layer: key width u32, value width u32 (values per position),
//!          state length u32 (f32 values of its recurrent state; 0 for attention; not in v1)
//! n_ids    u32, then the ids (u32 each)
//! per layer: keys (n_ids × key width values), then values (n_ids × value width values)
//! per layer: its recurrent state after the n_ids positions (f32 always: it is small)
//! sha256   [u8; 32]   of every byte before it
//! ```
//! f16 halves an f32 cache (the default: a browser's storage quota is the limit). An f16 cache
//! (the GPU's `kv_f16`) is saved as f16 either way, losslessly. f32 restores bit for bit.

use crate::gguf::GgufHeader;
use crate::{Error, Result};
use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"CHORDKV\0";
const VERSION: u32 = 2;

/// How the values of a saved session are stored.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvPrecision {
    /// IEEE half: half the bytes of an f32 cache, rounded.
    #[default]
    F16,
    /// As the cache holds them (an f32 cache restores bit for bit).
    F32,
}

impl KvPrecision {
    /// `"f16"` or `"f32"`.
    pub fn parse(name: &str) -> Result<KvPrecision> {
        match name {
            "f16" => Ok(KvPrecision::F16),
            "f32" => Ok(KvPrecision::F32),
            other => Err(Error::InvalidRequest(format!(
                "precision {other:?} is unknown: use \"f16\" or \"f32\""
            ))),
        }
    }

    fn bytes(self) -> usize {
        match self {
            KvPrecision::F16 => 2,
            KvPrecision::F32 => 4,
        }
    }
}

/// Keys and values of positions `0..n` of every layer, in a cache's own element type, and each
/// recurrent layer's state after them.
pub struct KvLayers {
    pub precision: KvPrecision,
    /// Per layer: (keys, values), `n × width` values each, little-endian.
    pub layers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Per layer: its recurrent state (empty for an attention layer).
    pub states: Vec<Vec<f32>>,
}

/// A saved session, decoded and checked.
pub struct SavedSession {
    pub ids: Vec<u32>,
    /// Per layer (key width, value width).
    pub widths: Vec<(usize, usize)>,
    pub kv: KvLayers,
}

/// SHA-256 of what makes two models' caches interchangeable: the architecture, the name and
/// the tensor table (names, types, shapes, offsets). Fine-tunes of one base with the same
/// layout and name are not told apart.
pub fn model_fingerprint(header: &GgufHeader) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header.architecture().unwrap_or("").as_bytes());
    h.update([0]);
    h.update(header.model_name().ok().flatten().unwrap_or("").as_bytes());
    h.update([0]);
    for t in &header.tensors {
        h.update(t.name.as_bytes());
        h.update([0]);
        h.update(format!("{:?}", t.ty).as_bytes());
        for d in &t.dims {
            h.update(d.to_le_bytes());
        }
        h.update(t.offset.to_le_bytes());
    }
    h.update(header.data_size.to_le_bytes());
    h.finalize().into()
}

fn f32_to_f16(src: &[u8]) -> Vec<u8> {
    src.chunks_exact(4)
        .flat_map(|b| {
            let x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            half::f16::from_f32(x).to_le_bytes()
        })
        .collect()
}

fn f16_to_f32(src: &[u8]) -> Vec<u8> {
    src.chunks_exact(2)
        .flat_map(|b| {
            half::f16::from_le_bytes([b[0], b[1]])
                .to_f32()
                .to_le_bytes()
        })
        .collect()
}

impl KvLayers {
    /// The same values in `precision` (f32 → f16 rounds; f16 → f32 is exact).
    pub fn to_precision(self, precision: KvPrecision) -> KvLayers {
        let convert: fn(&[u8]) -> Vec<u8> = match (self.precision, precision) {
            (a, b) if a == b => return self,
            (KvPrecision::F32, KvPrecision::F16) => f32_to_f16,
            _ => f16_to_f32,
        };
        KvLayers {
            precision,
            layers: self
                .layers
                .iter()
                .map(|(k, v)| (convert(k), convert(v)))
                .collect(),
            states: self.states,
        }
    }

    /// f32 values of layer `l`'s keys and values.
    pub fn f32_layer(&self, l: usize) -> (Vec<f32>, Vec<f32>) {
        let (k, v) = &self.layers[l];
        let to = |b: &[u8]| -> Vec<f32> {
            let b = match self.precision {
                KvPrecision::F32 => std::borrow::Cow::Borrowed(b),
                KvPrecision::F16 => std::borrow::Cow::Owned(f16_to_f32(b)),
            };
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        (to(k), to(v))
    }
}

/// Encodes a session: `kv` holds `ids.len()` positions of each layer of `widths`, and its
/// states.
pub fn encode(
    fingerprint: &[u8; 32],
    ids: &[u32],
    widths: &[(usize, usize)],
    kv: KvLayers,
    precision: KvPrecision,
) -> Vec<u8> {
    // An f16 cache is saved as f16 whatever was asked: f32 would only double the bytes.
    let kv = match kv.precision {
        KvPrecision::F16 => kv,
        KvPrecision::F32 => kv.to_precision(precision),
    };
    let per_pos: usize = widths.iter().map(|(k, v)| k + v).sum();
    let mut out = Vec::with_capacity(96 + 8 * widths.len() + 4 * ids.len() * (1 + per_pos) + 32);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(fingerprint);
    out.extend_from_slice(&u32::from(kv.precision == KvPrecision::F16).to_le_bytes());
    out.extend_from_slice(&(widths.len() as u32).to_le_bytes());
    for (l, &(k, v)) in widths.iter().enumerate() {
        out.extend_from_slice(&(k as u32).to_le_bytes());
        out.extend_from_slice(&(v as u32).to_le_bytes());
        let state = kv.states.get(l).map_or(0, |s| s.len());
        out.extend_from_slice(&(state as u32).to_le_bytes());
    }
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for id in ids {
        out.extend_from_slice(&id.to_le_bytes());
    }
    for (k, v) in &kv.layers {
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    for s in &kv.states {
        out.extend_from_slice(bytemuck::cast_slice(s));
    }
    let sum: [u8; 32] = Sha256::digest(&out).into();
    out.extend_from_slice(&sum);
    out
}

fn bad(why: impl Into<String>) -> Error {
    Error::BadSession(why.into())
}

/// Reads what [`encode`] wrote, checking everything: the checksum, the model it was saved
/// with (`fingerprint`), the layer widths (`widths`), the recurrent states' lengths (`states`)
/// and that every length adds up.
pub fn decode(
    bytes: &[u8],
    fingerprint: &[u8; 32],
    widths: &[(usize, usize)],
    states: &[usize],
) -> Result<SavedSession> {
    if bytes.len() < MAGIC.len() + 4 + 32 + 32 || &bytes[..8] != MAGIC {
        return Err(bad("the data is not a saved session (no CHORDKV header)"));
    }
    let (body, sum) = bytes.split_at(bytes.len() - 32);
    if Sha256::digest(body).as_slice() != sum {
        return Err(bad(
            "the saved session is corrupt (its checksum does not match)",
        ));
    }
    let mut r = Reader { b: body, at: 8 };
    let version = r.u32()?;
    if version != VERSION && version != 1 {
        return Err(bad(format!(
            "the saved session has format version {version}, this engine reads {VERSION}"
        )));
    }
    if r.take(32)? != fingerprint {
        return Err(bad(
            "the session was saved with another model: load that model to restore it",
        ));
    }
    let precision = match r.u32()? {
        0 => KvPrecision::F32,
        1 => KvPrecision::F16,
        p => return Err(bad(format!("unknown value format {p}"))),
    };
    let n_layer = r.u32()? as usize;
    if n_layer != widths.len() {
        return Err(bad(format!(
            "the session has {n_layer} layers, the model {}",
            widths.len()
        )));
    }
    let mut saved_widths = Vec::with_capacity(n_layer);
    for (l, &(mk, mv)) in widths.iter().enumerate() {
        let (k, v) = (r.u32()? as usize, r.u32()? as usize);
        if (k, v) != (mk, mv) {
            return Err(bad(format!(
                "a layer's key/value widths are {k}/{v}, the model's {mk}/{mv}"
            )));
        }
        let state = if version == 1 { 0 } else { r.u32()? as usize };
        let want = states.get(l).copied().unwrap_or(0);
        if state != want {
            return Err(bad(format!(
                "layer {l}'s recurrent state has {state} values, the model's {want}"
            )));
        }
        saved_widths.push((k, v));
    }
    let n = r.u32()? as usize;
    let ids: Vec<u32> = r
        .take(n.checked_mul(4).ok_or_else(|| bad("too many ids"))?)?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let el = precision.bytes();
    let mut layers = Vec::with_capacity(n_layer);
    for &(k, v) in &saved_widths {
        let len = |w: usize| {
            n.checked_mul(w)
                .and_then(|x| x.checked_mul(el))
                .ok_or_else(|| bad("a layer is too large"))
        };
        let keys = r.take(len(k)?)?.to_vec();
        let values = r.take(len(v)?)?.to_vec();
        layers.push((keys, values));
    }
    let mut saved_states = Vec::with_capacity(n_layer);
    for l in 0..n_layer {
        let len = states.get(l).copied().unwrap_or(0);
        let b = r.take(
            len.checked_mul(4)
                .ok_or_else(|| bad("a state is too large"))?,
        )?;
        saved_states.push(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    if r.at != body.len() {
        return Err(bad(format!(
            "{} bytes follow the last layer",
            body.len() - r.at
        )));
    }
    Ok(SavedSession {
        ids,
        widths: saved_widths,
        kv: KvLayers {
            precision,
            layers,
            states: saved_states,
        },
    })
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| {
                bad(format!(
                    "the saved session ends early (at byte {})",
                    self.at
                ))
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u32>, Vec<(usize, usize)>, KvLayers) {
        let ids = vec![1, 2, 3];
        let widths = vec![(2, 4), (2, 2)];
        let layers = widths
            .iter()
            .enumerate()
            .map(|(l, &(k, v))| {
                let f = |w: usize, s: f32| -> Vec<u8> {
                    (0..3 * w)
                        .flat_map(|i| (s * (i as f32 + 0.25) + l as f32).to_le_bytes())
                        .collect()
                };
                (f(k, 1.0), f(v, -0.5))
            })
            .collect();
        // Layer 1 is recurrent: 5 floats of state after the positions.
        let kv = KvLayers {
            precision: KvPrecision::F32,
            layers,
            states: vec![vec![], vec![0.5, -1.0, 2.25, 3e-3, 7.0]],
        };
        (ids, widths, kv)
    }

    /// The sample's recurrent state lengths per layer.
    const STATES: [usize; 2] = [0, 5];

    #[test]
    fn round_trips_in_both_precisions_and_rejects_what_is_wrong() {
        let fp = [7u8; 32];
        for p in [KvPrecision::F32, KvPrecision::F16] {
            let (ids, widths, kv) = sample();
            let want: Vec<_> = (0..2).map(|l| kv.f32_layer(l)).collect();
            let bytes = encode(&fp, &ids, &widths, kv, p);
            let s = decode(&bytes, &fp, &widths, &STATES).unwrap();
            assert_eq!(s.ids, ids);
            assert_eq!(s.kv.precision, p);
            // States stay f32 whatever the precision.
            assert_eq!(s.kv.states, sample().2.states);
            for (l, w) in want.iter().enumerate() {
                // The sample's values are exact in f16 too.
                assert_eq!(&s.kv.f32_layer(l), w);
            }
        }
        let (ids, widths, kv) = sample();
        let bytes = encode(&fp, &ids, &widths, kv, KvPrecision::F16);
        let msg = |r: Result<SavedSession>| match r {
            Err(e @ Error::BadSession(_)) => e.to_string(),
            Err(e) => panic!("wrong error kind: {e}"),
            Ok(_) => panic!("accepted"),
        };
        assert!(msg(decode(&bytes, &[8u8; 32], &widths, &STATES)).contains("another model"));
        assert!(msg(decode(&bytes, &fp, &widths[..1], &STATES)).contains("layers"));
        assert!(msg(decode(&bytes, &fp, &[(2, 4), (4, 2)], &STATES)).contains("widths"));
        assert!(msg(decode(&bytes, &fp, &widths, &[0, 4])).contains("recurrent state"));
        let mut flipped = bytes.clone();
        flipped[60] ^= 1;
        assert!(msg(decode(&flipped, &fp, &widths, &STATES)).contains("corrupt"));
        assert!(msg(decode(&bytes[..40], &fp, &widths, &STATES)).contains("not a saved session"));
        assert!(msg(decode(b"hello", &fp, &widths, &STATES)).contains("not a saved session"));
        // Every truncation is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut], &fp, &widths, &STATES).is_err());
        }
    }
}
