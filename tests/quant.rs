//! Reference dequantizers against fixtures made by the `gguf` PyPI package 0.19.0
//! (`scripts/gen-quant-fixtures.py`; see `tests/fixtures/quant/README.md`).
//!
//! Every supported type is checked bit for bit: synthetic blocks of all 23 types, all 65536
//! F16 / BF16 bit patterns, one real tensor per (model, type) read straight from the models, and
//! real weights quantized to each IQ format and MXFP4 by llama.cpp's own quantizer
//! (`scripts/gen-iq-real-fixtures.py`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde_json::Value;
use wasm_chord::quant::{dequantize, dequantize_to_vec, GgmlType, QuantError};

/// Models made with llama.cpp's quantizer presets for the Q5_K and IQ formats (fetch-models).
const PRESET_MODELS: [&str; 2] = [
    "smollm2-135m-instruct-iq4_xs.gguf",
    "smollm2-135m-instruct-pad768-q5_k_m.gguf",
];

fn fixtures() -> PathBuf {
    common::root().join("tests/fixtures/quant")
}

fn read_json(name: &str) -> Value {
    let p = fixtures().join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap()
}

fn read_f32s(rel: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixtures().join(rel)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn ty(name: &str) -> GgmlType {
    GgmlType::ALL
        .into_iter()
        .find(|t| t.name() == name)
        .unwrap_or_else(|| panic!("unknown type {name}"))
}

/// 64-bit FNV-1a over the little-endian bytes of `values`, as 16 hex digits.
fn fnv1a64(values: &[f32]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for b in v.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Index and bits of the first value whose bits differ, if any.
fn first_mismatch(got: &[f32], want: &[f32]) -> Option<(usize, u32, u32)> {
    got.iter()
        .zip(want)
        .enumerate()
        .find(|(_, (g, w))| g.to_bits() != w.to_bits())
        .map(|(i, (g, w))| (i, g.to_bits(), w.to_bits()))
}

#[test]
fn synthetic_blocks_are_bit_exact() {
    let manifest = read_json("synthetic.json");
    let blocks = manifest["blocks"].as_array().unwrap();
    let mut seen: Vec<GgmlType> = Vec::new();
    for e in blocks {
        let t = ty(e["type"].as_str().unwrap());
        let input = std::fs::read(fixtures().join(e["input"].as_str().unwrap())).unwrap();
        let want = read_f32s(e["expected"].as_str().unwrap());
        let n = e["elements"].as_u64().unwrap() as usize;
        assert_eq!(
            (input.len(), want.len()),
            (e["bytes"].as_u64().unwrap() as usize, n)
        );
        let got = dequantize_to_vec(t, &input, n).unwrap_or_else(|err| panic!("{t}: {err}"));
        assert_eq!(
            first_mismatch(&got, &want),
            None,
            "{t}: (index, got bits, want bits)"
        );
        assert_eq!(fnv1a64(&got), e["fnv1a64"].as_str().unwrap(), "{t}");
        seen.push(t);
    }
    let supported: Vec<GgmlType> = GgmlType::ALL
        .into_iter()
        .filter(|t| t.is_supported())
        .collect();
    for t in &supported {
        assert!(seen.contains(t), "no synthetic fixture for {t}");
    }
    assert_eq!(seen.len(), 23);
}

#[test]
fn every_f16_and_bf16_bit_pattern_is_exact() {
    let manifest = read_json("synthetic.json");
    let all: Vec<u8> = (0..=u16::MAX).flat_map(|h| h.to_le_bytes()).collect();
    let entries = manifest["all_bit_patterns"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        let t = ty(e["type"].as_str().unwrap());
        let got = dequantize_to_vec(t, &all, 65536).unwrap();
        // NaN payloads included: the fixture's numpy conversion keeps them, and so do we.
        assert_eq!(fnv1a64(&got), e["fnv1a64"].as_str().unwrap(), "{t}");
    }
}

#[test]
fn real_tensors_are_bit_exact() {
    let manifest = read_json("real.json");
    let tensors = manifest["tensors"].as_array().unwrap();
    assert!(
        tensors.len() >= 6 * 3,
        "too few real tensors: {}",
        tensors.len()
    );
    let mut models_seen = std::collections::BTreeSet::new();
    for e in tensors {
        let model = e["model"].as_str().unwrap();
        let name = e["tensor"].as_str().unwrap();
        let t = ty(e["type"].as_str().unwrap());
        let offset = e["offset"].as_u64().unwrap();
        let n_bytes = e["bytes"].as_u64().unwrap() as usize;
        let n = e["elements"].as_u64().unwrap() as usize;
        let shape: Vec<usize> = e["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(shape.iter().product::<usize>(), n, "{model} {name}");
        assert_eq!(
            t.bytes_for(n as u64),
            Some(n_bytes as u64),
            "{model} {name}"
        );

        let mut f = File::open(common::model_path(model)).unwrap();
        f.seek(SeekFrom::Start(offset)).unwrap();
        let mut data = vec![0u8; n_bytes];
        f.read_exact(&mut data).unwrap();

        let got = dequantize_to_vec(t, &data, n).unwrap_or_else(|err| panic!("{name}: {err}"));
        let want_first = read_f32s(e["first"].as_str().unwrap());
        assert_eq!(want_first.len(), n.min(1024));
        assert_eq!(
            first_mismatch(&got, &want_first),
            None,
            "{model} {name} {t}: (index, got bits, want bits)"
        );
        assert_eq!(
            fnv1a64(&got),
            e["fnv1a64"].as_str().unwrap(),
            "{model} {name} {t}"
        );
        check_sums(&got, e, &format!("{model} {name}"));
        models_seen.insert(model);
    }
    // The six test models and llama.cpp's Q5_K_M and IQ4_XS presets of SmolLM2.
    for model in common::TEST_MODELS.iter().chain(&PRESET_MODELS) {
        assert!(models_seen.contains(model), "no real tensor from {model}");
    }
    assert_eq!(
        models_seen.len(),
        common::TEST_MODELS.len() + PRESET_MODELS.len()
    );
}

/// Compare the sums loosely: numpy's are pairwise, ours sequential.
fn check_sums(got: &[f32], e: &Value, what: &str) {
    let n = got.len() as f64;
    let sum: f64 = got.iter().map(|&v| v as f64).sum();
    let sum_sq: f64 = got.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let (want_sum, want_sq) = (e["sum"].as_f64().unwrap(), e["sum_sq"].as_f64().unwrap());
    assert!(
        (sum - want_sum).abs() <= 1e-9 * want_sq.sqrt() * n.sqrt() + 1e-9,
        "{what}: sum {sum} vs {want_sum}"
    );
    assert!(
        (sum_sq - want_sq).abs() <= 1e-9 * want_sq,
        "{what}: sum of squares {sum_sq} vs {want_sq}"
    );
}

#[test]
fn llama_cpp_quantized_iq_tensors_are_bit_exact() {
    let manifest = read_json("llama.json");
    let tensors = manifest["tensors"].as_array().unwrap();
    let mut seen = Vec::new();
    for e in tensors {
        let t = ty(e["type"].as_str().unwrap());
        let data = std::fs::read(fixtures().join(e["input"].as_str().unwrap())).unwrap();
        let n = e["elements"].as_u64().unwrap() as usize;
        assert_eq!(data.len(), e["bytes"].as_u64().unwrap() as usize, "{t}");
        let got = dequantize_to_vec(t, &data, n).unwrap_or_else(|err| panic!("{t}: {err}"));
        let want_first = read_f32s(e["first"].as_str().unwrap());
        assert_eq!(want_first.len(), 1024);
        assert_eq!(
            first_mismatch(&got, &want_first),
            None,
            "{t}: (index, got bits, want bits)"
        );
        assert_eq!(fnv1a64(&got), e["fnv1a64"].as_str().unwrap(), "{t}");
        check_sums(&got, e, t.name());
        seen.push(t);
    }
    use GgmlType::*;
    for t in [
        IQ4_NL, IQ4_XS, IQ3_XXS, IQ3_S, IQ2_XXS, IQ2_XS, IQ2_S, IQ1_S, IQ1_M, MXFP4,
    ] {
        assert!(seen.contains(&t), "no llama.cpp-quantized fixture for {t}");
    }
}

#[test]
fn wrong_byte_counts_are_errors() {
    let mut out = vec![0.0; 256];
    let err = dequantize(GgmlType::Q4_K, &[0; 143], &mut out).unwrap_err();
    assert_eq!(
        err,
        QuantError::ByteCount {
            ty: GgmlType::Q4_K,
            elements: 256,
            expected: 144,
            got: 143
        }
    );
    assert!(err.to_string().contains("Q4_K"), "{err}");
    // Too many bytes is as wrong as too few.
    assert!(matches!(
        dequantize(GgmlType::Q6_K, &[0; 211], &mut out),
        Err(QuantError::ByteCount { expected: 210, .. })
    ));
    assert!(matches!(
        dequantize(GgmlType::F16, &[0; 511], &mut out),
        Err(QuantError::ByteCount { expected: 512, .. })
    ));
    assert!(matches!(
        dequantize_to_vec(GgmlType::Q8_0, &[0; 34], 64),
        Err(QuantError::ByteCount { expected: 68, .. })
    ));
}

#[test]
fn partial_blocks_are_errors() {
    let mut out = vec![0.0; 100];
    let err = dequantize(GgmlType::Q8_0, &[0; 34 * 4], &mut out).unwrap_err();
    assert_eq!(
        err,
        QuantError::PartialBlock {
            ty: GgmlType::Q8_0,
            elements: 100,
            block: 32
        }
    );
    let msg = err.to_string();
    assert!(msg.contains("Q8_0") && msg.contains("100"), "{msg}");
    for t in [GgmlType::Q2_K, GgmlType::Q3_K, GgmlType::Q5_K] {
        assert!(matches!(
            dequantize_to_vec(t, &[], 128),
            Err(QuantError::PartialBlock { block: 256, .. })
        ));
    }
}

#[test]
fn unsupported_types_are_named() {
    for t in [
        GgmlType::TQ1_0,
        GgmlType::TQ2_0,
        GgmlType::Q8_1,
        GgmlType::Q8_K,
    ] {
        let (bs, ts) = t.block_geometry();
        let mut out = vec![0.0; bs];
        let err = dequantize(t, &vec![0; ts], &mut out).unwrap_err();
        assert_eq!(err, QuantError::Unsupported(t));
        assert!(err.to_string().contains(t.name()), "{err}");
        assert_eq!(
            dequantize_to_vec(t, &[], 0),
            Err(QuantError::Unsupported(t))
        );
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    // Any length, any content: a result, never a panic, for every known type.
    let mut state = 0x1234_5678_9abc_def0u64;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    for t in GgmlType::ALL {
        for n in [0, 1, 31, 32, 255, 256, 512] {
            for len in [0, 17, 144, 176, 210, 1024] {
                let mut out = vec![0.0; n];
                let r = dequantize(t, &bytes[..len], &mut out);
                if r.is_ok() {
                    assert_eq!(t.bytes_for(n as u64), Some(len as u64));
                }
            }
        }
    }
}
