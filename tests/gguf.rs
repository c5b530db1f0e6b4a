//! GGUF reader: one test per rejection rule on malformed files built in memory, each asserting the
//! error names the field and offset; plus valid files of every value type, incremental parsing,
//! and a corruption sweep that must never panic.

use wasm_chord::gguf::{
    parse_header, parse_header_with_limits, Array, GgufError, HeaderParse, Limits, Value,
};
use wasm_chord::quant::GgmlType;

/// Little-endian GGUF writer for building test files.
#[derive(Default, Clone)]
struct W(Vec<u8>);

impl W {
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).bytes(s.as_bytes())
    }
    /// Magic, version, counts.
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        W::default()
            .bytes(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }
    fn kv_u32(self, key: &str, v: u32) -> Self {
        self.str(key).u32(4).u32(v)
    }
    fn kv_str(self, key: &str, v: &str) -> Self {
        self.str(key).u32(8).str(v)
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Self {
        let mut w = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            w = w.u64(d);
        }
        w.u32(ty).u64(offset)
    }
    /// Pad to `align` and append `n` data bytes.
    fn data(mut self, align: usize, n: usize) -> Self {
        while !self.0.len().is_multiple_of(align) {
            self.0.push(0);
        }
        self.0.extend(std::iter::repeat_n(0x11u8, n));
        self
    }
}

fn parse_full(b: &[u8]) -> Result<wasm_chord::gguf::GgufHeader, GgufError> {
    match parse_header(b, Some(b.len() as u64))? {
        HeaderParse::Complete(h) => Ok(h),
        HeaderParse::NeedBytes(n) => panic!("complete file asked for {n} bytes"),
    }
}

#[track_caller]
fn rejects(b: &[u8]) -> (GgufError, String) {
    let e = parse_full(b).expect_err("malformed file was accepted");
    let msg = e.to_string();
    (e, msg)
}

#[track_caller]
fn assert_mentions(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} does not mention {p:?}");
    }
}

/// A valid two-tensor file: F32 [4] then Q8_0 [32, 2].
fn valid(version: u32) -> Vec<u8> {
    W::header(version, 2, 2)
        .kv_str("general.architecture", "llama")
        .kv_u32("llama.block_count", 2)
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[32, 2], 8, 32)
        .data(32, 32 + 68)
        .0
}

#[test]
fn valid_v2_and_v3_parse() {
    for v in [2, 3] {
        let h = parse_full(&valid(v)).unwrap();
        assert_eq!(h.version, v);
        assert_eq!(h.architecture().unwrap(), "llama");
        assert_eq!(h.block_count().unwrap(), 2);
        assert_eq!(h.tensors.len(), 2);
        assert_eq!(h.tensors[1].ty, GgmlType::Q8_0);
        assert_eq!(h.tensors[1].dims, vec![32, 2]);
        assert_eq!(h.tensors[1].n_bytes, 68);
        assert_eq!(h.data_offset % 32, 0);
        assert_eq!(h.tensor_range(&h.tensors[1]).start, h.data_offset + 32);
        assert_eq!(h.alignment, 32);
    }
}

#[test]
fn every_value_type_and_nested_arrays_round_trip() {
    let mut w = W::header(3, 0, 15)
        .str("u8")
        .u32(0)
        .bytes(&[200])
        .str("i8")
        .u32(1)
        .bytes(&[0xff])
        .str("u16")
        .u32(2)
        .bytes(&500u16.to_le_bytes())
        .str("i16")
        .u32(3)
        .bytes(&(-500i16).to_le_bytes())
        .str("u32")
        .u32(4)
        .u32(70000)
        .str("i32")
        .u32(5)
        .bytes(&(-70000i32).to_le_bytes())
        .str("f32")
        .u32(6)
        .bytes(&1.5f32.to_le_bytes())
        .str("bool")
        .u32(7)
        .bytes(&[1])
        .str("string")
        .u32(8)
        .str("héllo")
        .str("u64")
        .u32(10)
        .u64(1 << 40)
        .str("i64")
        .u32(11)
        .bytes(&(-1i64 << 40).to_le_bytes())
        .str("f64")
        .u32(12)
        .bytes(&2.25f64.to_le_bytes())
        .str("strings")
        .u32(9)
        .u32(8)
        .u64(3)
        .str("a")
        .str("")
        .str("ccc");
    // [[1, 2], [3]] as nested u32 arrays
    w = w
        .str("nested")
        .u32(9)
        .u32(9)
        .u64(2)
        .u32(4)
        .u64(2)
        .u32(1)
        .u32(2)
        .u32(4)
        .u64(1)
        .u32(3);
    w = w.str("bools").u32(9).u32(7).u64(2).bytes(&[0, 1]);
    let h = parse_full(&w.0).unwrap();
    let m = &h.metadata;
    assert_eq!(m.get("u8"), Some(&Value::U8(200)));
    assert_eq!(m.get("i8"), Some(&Value::I8(-1)));
    assert_eq!(m.get("u16"), Some(&Value::U16(500)));
    assert_eq!(m.get("i16"), Some(&Value::I16(-500)));
    assert_eq!(m.get("u32"), Some(&Value::U32(70000)));
    assert_eq!(m.get("i32"), Some(&Value::I32(-70000)));
    assert_eq!(m.get("f32"), Some(&Value::F32(1.5)));
    assert_eq!(m.get("bool"), Some(&Value::Bool(true)));
    assert_eq!(m.get("string").and_then(|v| v.as_str()), Some("héllo"));
    assert_eq!(m.get("u64"), Some(&Value::U64(1 << 40)));
    assert_eq!(m.get("i64"), Some(&Value::I64(-1 << 40)));
    assert_eq!(m.get("f64"), Some(&Value::F64(2.25)));
    assert_eq!(
        m.get("strings")
            .and_then(|v| v.as_array())
            .and_then(|a| a.as_strings()),
        Some(&["a".to_string(), String::new(), "ccc".to_string()][..])
    );
    assert_eq!(
        m.get("nested"),
        Some(&Value::Array(Array::Array(vec![
            Array::U32(vec![1, 2]),
            Array::U32(vec![3])
        ])))
    );
    assert_eq!(
        m.get("bools"),
        Some(&Value::Array(Array::Bool(vec![false, true])))
    );
    assert_eq!(m.len(), 15);
    // Typed accessors check types.
    assert_eq!(h.get_u64("u16").unwrap(), Some(500));
    assert!(h.get_u64("i16").is_err());
    let e = h.get_str("u8").unwrap_err().to_string();
    assert_mentions(&e, &["u8", "expected a string", "found u8"]);
}

#[test]
fn custom_alignment_pads_offsets_and_data_section() {
    let b = W::header(3, 2, 1)
        .kv_u32("general.alignment", 64)
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[8], 0, 64)
        .data(64, 64 + 32)
        .0;
    let h = parse_full(&b).unwrap();
    assert_eq!(h.alignment, 64);
    assert_eq!(h.data_offset % 64, 0);
    assert_eq!(h.tensors[1].offset, 64);
}

#[test]
fn incremental_parse_asks_for_more_then_completes() {
    let full = valid(3);
    let h = parse_full(&full).unwrap();
    let header_end = h.tensors.last().unwrap().info_offset as usize + 8;
    // Every prefix shorter than the header asks for more than it has, and never errors.
    for n in 0..header_end {
        match parse_header(&full[..n], None).unwrap() {
            HeaderParse::NeedBytes(k) => {
                assert!(
                    k as usize > n && k as usize <= header_end,
                    "prefix {n} asked for {k}"
                )
            }
            HeaderParse::Complete(_) => panic!("prefix {n} parsed as complete"),
        }
    }
    // Following the requests reaches the header in a few steps.
    let mut have = 0usize;
    let mut steps = 0;
    loop {
        steps += 1;
        match parse_header(&full[..have], None).unwrap() {
            HeaderParse::NeedBytes(k) => have = k as usize,
            HeaderParse::Complete(h2) => {
                assert_eq!(h2.tensors, h.tensors);
                break;
            }
        }
        assert!(steps < 100);
    }
    // The header is complete without the tensor data.
    assert!(matches!(
        parse_header(&full[..header_end], None).unwrap(),
        HeaderParse::Complete(_)
    ));
}

#[test]
fn rejects_bad_magic() {
    let mut b = valid(3);
    b[..4].copy_from_slice(b"GGML");
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::BadMagic { .. }));
    assert_mentions(&msg, &["magic", "offset 0", "GGUF"]);
}

#[test]
fn rejects_unsupported_versions() {
    for v in [1u32, 4, 0xffff_fffe] {
        let mut b = valid(3);
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let (e, msg) = rejects(&b);
        assert_eq!(e, GgufError::UnsupportedVersion { version: v });
        assert_mentions(&msg, &["version", &v.to_string(), "offset 4"]);
    }
}

#[test]
fn rejects_byte_swapped_version_with_hint() {
    let mut b = valid(3);
    b[4..8].copy_from_slice(&3u32.to_be_bytes());
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::ByteSwapped { .. }));
    assert_mentions(&msg, &["byte-swapped", "big-endian", "offset 4"]);
}

#[test]
fn rejects_truncated_file() {
    let full = valid(3);
    let h = parse_full(&full).unwrap();
    let cut = h.tensors[0].info_offset as usize; // inside the first tensor info
    let (e, msg) = rejects(&full[..cut]);
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    assert_mentions(&msg, &["tensor `a` data offset", "truncated"]);
}

#[test]
fn rejects_string_longer_than_cap() {
    let b = W::header(3, 0, 1).u64(1 << 40).bytes(&[0; 16]).0;
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::TooLarge { .. }), "{e:?}");
    assert_mentions(
        &msg,
        &["metadata key #0", "string length", "offset 24", "limit"],
    );
}

#[test]
fn rejects_string_longer_than_file_before_allocating() {
    let b = W::header(3, 0, 1).u64(1000).bytes(b"abcdefghij").0;
    let (e, msg) = rejects(&b);
    assert!(
        matches!(e, GgufError::Truncated { need: 1000, .. }),
        "{e:?}"
    );
    assert_mentions(&msg, &["metadata key #0", "offset 32", "1000"]);
}

#[test]
fn rejects_array_count_over_cap() {
    let b = W::header(3, 0, 1).str("k").u32(9).u32(4).u64(u64::MAX).0;
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::TooLarge { .. }), "{e:?}");
    assert_mentions(&msg, &["`k` array length", "limit"]);
}

#[test]
fn rejects_array_count_beyond_file_before_allocating() {
    // 2^25 strings would need at least 256 MiB; the file is tiny.
    let b = W::header(3, 0, 1)
        .str("k")
        .u32(9)
        .u32(8)
        .u64(1 << 25)
        .str("x")
        .0;
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    assert_mentions(&msg, &["`k` array length", "33554432 elements of string"]);
    // Without a known file size the parser asks for bytes instead of reserving them.
    let big = W::header(3, 0, 1).str("k").u32(9).u32(8).u64(1 << 25).0;
    assert!(matches!(
        parse_header(&big, None).unwrap(),
        HeaderParse::NeedBytes(_)
    ));
}

#[test]
fn rejects_counts_over_caps_and_beyond_file() {
    let limits = Limits {
        max_tensors: 10,
        max_kv: 10,
        ..Limits::default()
    };
    let b = W::header(3, 11, 0).0;
    let e = parse_header_with_limits(&b, Some(b.len() as u64), limits).unwrap_err();
    assert_mentions(
        &e.to_string(),
        &["tensor count", "offset 8", "11", "limit of 10"],
    );
    let b = W::header(3, 0, 11).0;
    let e = parse_header_with_limits(&b, Some(b.len() as u64), limits).unwrap_err();
    assert_mentions(
        &e.to_string(),
        &["metadata key/value count", "offset 16", "11"],
    );
    // Within caps but more than the file could hold.
    let (e, msg) = rejects(&W::header(3, 1000, 0).0);
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    assert_mentions(&msg, &["tensor count (1000)", "offset 8"]);
}

#[test]
fn rejects_invalid_utf8_key() {
    let b = W::header(3, 0, 1)
        .u64(2)
        .bytes(&[0xff, 0xfe])
        .u32(4)
        .u32(1)
        .0;
    let (e, msg) = rejects(&b);
    assert!(
        matches!(e, GgufError::InvalidUtf8 { offset: 32, .. }),
        "{e:?}"
    );
    assert_mentions(&msg, &["metadata key #0", "UTF-8", "offset 32"]);
}

#[test]
fn rejects_unknown_value_type() {
    let b = W::header(3, 0, 1).str("weird").u32(13).u32(0).0;
    let (e, msg) = rejects(&b);
    assert!(
        matches!(e, GgufError::UnknownValueType { type_id: 13, .. }),
        "{e:?}"
    );
    assert_mentions(&msg, &["`weird`", "value type 13", "offset 37"]);
}

#[test]
fn rejects_arrays_nested_too_deep() {
    let mut w = W::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..6 {
        w = w.u32(9).u64(1);
    }
    let w = w.u32(4).u64(0);
    let (e, msg) = rejects(&w.0);
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e:?}");
    assert_mentions(&msg, &["`deep`", "nested deeper"]);
}

#[test]
fn rejects_duplicate_key() {
    let b = W::header(3, 0, 2).kv_u32("x.y", 1).kv_u32("x.y", 2).0;
    let (e, msg) = rejects(&b);
    assert_eq!(
        e,
        GgufError::DuplicateKey {
            key: "x.y".into(),
            offset: 43
        }
    );
    assert_mentions(&msg, &["duplicate metadata key `x.y`", "offset 43"]);
}

#[test]
fn rejects_alignment_of_wrong_type_or_value() {
    let b = W::header(3, 0, 1)
        .str("general.alignment")
        .u32(10)
        .u64(32)
        .0;
    let (e, msg) = rejects(&b);
    assert!(
        matches!(
            e,
            GgufError::WrongKeyType {
                expected: "u32",
                found: "u64",
                ..
            }
        ),
        "{e:?}"
    );
    assert_mentions(&msg, &["general.alignment", "expected u32"]);
    for bad in [0u32, 3, 48] {
        let b = W::header(3, 0, 1).kv_u32("general.alignment", bad).0;
        let (e, msg) = rejects(&b);
        assert!(matches!(e, GgufError::BadAlignment { .. }), "{e:?}");
        assert_mentions(
            &msg,
            &["general.alignment", "power of two", &bad.to_string()],
        );
    }
}

#[test]
fn rejects_duplicate_tensor_name() {
    let b = W::header(3, 2, 0)
        .tensor("t", &[4], 0, 0)
        .tensor("t", &[4], 0, 32)
        .data(32, 48)
        .0;
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::DuplicateTensor { .. }), "{e:?}");
    assert_mentions(&msg, &["duplicate tensor name `t`", "offset"]);
}

#[test]
fn rejects_tensor_name_too_long() {
    let name = "n".repeat(64);
    let b = W::header(3, 1, 0).tensor(&name, &[4], 0, 0).data(32, 16).0;
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::NameTooLong { len: 64, .. }), "{e:?}");
    assert_mentions(&msg, &["name is 64 bytes", "limit is 63"]);
}

#[test]
fn rejects_more_than_four_dims() {
    let b = W::header(3, 1, 0)
        .tensor("t", &[1, 1, 1, 1, 1], 0, 0)
        .data(32, 4)
        .0;
    let (e, msg) = rejects(&b);
    assert!(
        matches!(e, GgufError::TooManyDims { n_dims: 5, .. }),
        "{e:?}"
    );
    assert_mentions(&msg, &["tensor `t`", "5 dimensions", "offset 33"]);
}

#[test]
fn rejects_dimension_beyond_i64() {
    let b = W::header(3, 1, 0).tensor("t", &[4, 1 << 63], 0, 0).0;
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::BadDim { index: 1, .. }), "{e:?}");
    assert_mentions(&msg, &["tensor `t`", "dimension 1"]);
}

#[test]
fn rejects_element_count_overflow() {
    let b = W::header(3, 1, 0).tensor("t", &[1 << 32, 1 << 32], 0, 0).0;
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::ElementCountOverflow { .. }), "{e:?}");
    assert_mentions(&msg, &["tensor `t`", "element count overflows"]);
}

#[test]
fn rejects_unknown_and_retired_tensor_types() {
    for id in [4u32, 31, 40, 999] {
        let b = W::header(3, 1, 0).tensor("t", &[32], id, 0).0;
        let (e, msg) = rejects(&b);
        assert!(
            matches!(e, GgufError::UnknownType { type_id, .. } if type_id == id),
            "{e:?}"
        );
        assert_mentions(
            &msg,
            &["tensor `t`", &format!("unknown tensor type id {id}")],
        );
    }
}

#[test]
fn rejects_row_not_multiple_of_block() {
    let b = W::header(3, 1, 0).tensor("t", &[576, 2], 12, 0).0; // Q4_K needs rows of 256
    let (e, msg) = rejects(&b);
    assert!(
        matches!(
            e,
            GgufError::RowNotBlockMultiple {
                ne0: 576,
                block: 256,
                ..
            }
        ),
        "{e:?}"
    );
    assert_mentions(&msg, &["tensor `t`", "row length 576", "Q4_K", "256"]);
}

#[test]
fn rejects_byte_size_overflow() {
    let b = W::header(3, 1, 0).tensor("t", &[1 << 62], 28, 0).0; // F64: 2^65 bytes
    let (e, msg) = rejects(&b);
    assert!(matches!(e, GgufError::ByteSizeOverflow { .. }), "{e:?}");
    assert_mentions(&msg, &["tensor `t`", "byte size overflows"]);
}

#[test]
fn rejects_tensor_offset_not_running_padded_sum() {
    // F32 [4] = 16 bytes padded to 32: the second tensor must start at 32, not 16.
    let b = W::header(3, 2, 0)
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[4], 0, 16)
        .data(32, 48)
        .0;
    let (e, msg) = rejects(&b);
    assert!(
        matches!(
            e,
            GgufError::BadTensorOffset {
                found: 16,
                expected: 32,
                ..
            }
        ),
        "{e:?}"
    );
    assert_mentions(&msg, &["tensor `b`", "data offset is 16, expected 32"]);
    let b = W::header(3, 1, 0).tensor("a", &[4], 0, 32).data(32, 48).0;
    assert!(matches!(
        rejects(&b).0,
        GgufError::BadTensorOffset {
            found: 32,
            expected: 0,
            ..
        }
    ));
}

#[test]
fn rejects_tensor_data_beyond_end_of_file() {
    let full = valid(3);
    let (e, msg) = rejects(&full[..full.len() - 1]);
    assert!(matches!(e, GgufError::DataBeyondEnd { .. }), "{e:?}");
    assert_mentions(&msg, &["tensor data ends at byte", "beyond the end"]);
}

/// Flip, truncate and overwrite bytes of a valid header: the parser must return, never panic,
/// and never allocate more than the bytes justify (the process would abort).
#[test]
fn corrupted_headers_never_panic() {
    let base = W::header(3, 2, 3)
        .kv_str("general.architecture", "llama")
        .str("tokenizer.ggml.tokens")
        .u32(9)
        .u32(8)
        .u64(3)
        .str("a")
        .str("b")
        .str("c")
        .kv_u32("general.alignment", 32)
        .tensor("a", &[4], 0, 0)
        .tensor("b", &[32, 2], 8, 32)
        .data(32, 100)
        .0;
    parse_full(&base).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let header_len = 200.min(base.len());
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..1 + rnd() % 3 {
            let i = (rnd() % header_len as u64) as usize;
            b[i] = match rnd() % 4 {
                0 => 0xff,
                1 => 0,
                2 => b[i] ^ (1 << (rnd() % 8)),
                _ => rnd() as u8,
            };
        }
        let cut = if rnd() % 4 == 0 {
            (rnd() % b.len() as u64) as usize
        } else {
            b.len()
        };
        let _ = parse_header(&b[..cut], Some(cut as u64));
        let _ = parse_header(&b[..cut], None);
    }
}
