//! Incremental GGUF header parser.
//!
//! Layout (little-endian): magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv |
//! n_kv × (string key, u32 type, value) | n_tensors × (string name, u32 n_dims, n_dims × u64 ne,
//! u32 type, u64 offset) | padding to `general.alignment` | tensor data.
//! A string is u64 length + bytes; an array is u32 element type + u64 count + elements.
//!
//! Given the first N bytes of a file, `parse_header` either returns the whole header or says how
//! many bytes it needs at least. Every length and count is checked against caps and against the
//! bytes that can exist before anything is allocated, so no input can make it allocate more than
//! the file justifies, and none can make it panic.

use super::error::GgufError;
use super::value::{Array, Metadata, Value, ValueType};
use super::{GgufHeader, TensorInfo};
use crate::quant::GgmlType;
use std::collections::HashSet;

/// Caps on what a header may declare.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest metadata string or key (bytes). Chat templates reach ~20 KiB; vocab entries are short.
    pub max_string: u64,
    /// Most elements in one metadata array (the largest vocabularies have ~260k tokens and merges).
    pub max_array: u64,
    pub max_kv: u64,
    pub max_tensors: u64,
    /// Deepest nesting of arrays inside arrays.
    pub max_depth: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_string: 64 << 20,
            max_array: 1 << 26,
            max_kv: 1 << 16,
            max_tensors: 1 << 20,
            max_depth: 4,
        }
    }
}

/// ggml's GGML_MAX_NAME: tensor names must be shorter than this.
pub const MAX_TENSOR_NAME: u64 = 64;
/// ggml's GGML_MAX_DIMS.
pub const MAX_DIMS: u32 = 4;
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// Result of parsing a prefix of a file.
#[derive(Debug)]
pub enum HeaderParse {
    Complete(GgufHeader),
    /// The header continues past the bytes given: supply at least this many bytes from the
    /// start of the file (more at once saves re-parsing) and call again.
    NeedBytes(u64),
}

/// Internal control flow: out of bytes (how many are needed in total), or a real error.
enum Stop {
    Need(u64),
    Bad(GgufError),
}

impl From<GgufError> for Stop {
    fn from(e: GgufError) -> Self {
        Stop::Bad(e)
    }
}

type R<T> = Result<T, Stop>;

struct Cursor<'a> {
    buf: &'a [u8],
    pos: u64,
    /// Total file size when known: lengths beyond it are errors, not requests for more bytes.
    file_size: Option<u64>,
    limits: Limits,
}

impl<'a> Cursor<'a> {
    /// Ensure `n` more bytes exist at `pos`.
    fn need(&self, n: u64, field: &dyn Fn() -> String) -> R<()> {
        let end = self.pos.checked_add(n);
        if let Some(size) = self.file_size {
            if end.is_none_or(|e| e > size) {
                return Err(Stop::Bad(GgufError::Truncated {
                    field: field(),
                    offset: self.pos,
                    need: n,
                    available: size.saturating_sub(self.pos),
                }));
            }
        }
        match end {
            Some(e) if e <= self.buf.len() as u64 => Ok(()),
            Some(e) => Err(Stop::Need(e)),
            None => Err(Stop::Bad(GgufError::TooLarge {
                field: field(),
                offset: self.pos,
                value: n,
                limit: u64::MAX - self.pos,
            })),
        }
    }

    fn take(&mut self, n: u64, field: &dyn Fn() -> String) -> R<&'a [u8]> {
        self.need(n, field)?;
        let start = self.pos as usize;
        self.pos += n;
        Ok(&self.buf[start..start + n as usize])
    }

    fn array<const N: usize>(&mut self, field: &dyn Fn() -> String) -> R<[u8; N]> {
        let b = self.take(N as u64, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    fn u32(&mut self, field: &dyn Fn() -> String) -> R<u32> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }

    fn u64(&mut self, field: &dyn Fn() -> String) -> R<u64> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// Bytes a declared count of items could still occupy: what the file has left when its size
    /// is known, otherwise unbounded (the caps then apply, and bytes are requested as needed).
    fn remaining_in_file(&self) -> u64 {
        self.file_size
            .map_or(u64::MAX, |s| s.saturating_sub(self.pos))
    }

    /// Capacity to reserve for `count` items of at least `min_size` bytes: never more than the
    /// bytes in hand could hold, so a lying count cannot make us allocate.
    fn capacity(&self, count: u64, min_size: u64) -> usize {
        let in_hand = (self.buf.len() as u64).saturating_sub(self.pos) / min_size.max(1);
        count.min(in_hand) as usize
    }

    /// A length-prefixed string; `lossy` replaces invalid UTF-8 (values) instead of failing (keys, names).
    fn string(&mut self, field: &dyn Fn() -> String, lossy: bool) -> R<String> {
        let at = self.pos;
        let len = self.u64(field)?;
        if len > self.limits.max_string {
            return Err(Stop::Bad(GgufError::TooLarge {
                field: format!("{} (string length)", field()),
                offset: at,
                value: len,
                limit: self.limits.max_string,
            }));
        }
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) if lossy => Ok(String::from_utf8_lossy(bytes).into_owned()),
            Err(_) => Err(Stop::Bad(GgufError::InvalidUtf8 {
                field: field(),
                offset: at + 8,
            })),
        }
    }

    fn value_type(&mut self, key: &str) -> R<ValueType> {
        let at = self.pos;
        let id = self.u32(&|| format!("metadata key `{key}` value type"))?;
        ValueType::from_id(id).ok_or_else(|| {
            Stop::Bad(GgufError::UnknownValueType {
                key: key.to_owned(),
                offset: at,
                type_id: id,
            })
        })
    }

    fn value(&mut self, key: &str, ty: ValueType) -> R<Value> {
        let f = || format!("metadata key `{key}` value");
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>(&f)?[0]),
            ValueType::I8 => Value::I8(self.array::<1>(&f)?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array(&f)?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array(&f)?)),
            ValueType::U32 => Value::U32(u32::from_le_bytes(self.array(&f)?)),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array(&f)?)),
            ValueType::U64 => Value::U64(u64::from_le_bytes(self.array(&f)?)),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array(&f)?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array(&f)?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array(&f)?)),
            ValueType::Bool => Value::Bool(self.array::<1>(&f)?[0] != 0),
            ValueType::String => Value::String(self.string(&f, true)?),
            ValueType::Array => Value::Array(self.array_value(key, 1)?),
        })
    }

    /// An array body: element type, count, elements.
    fn array_value(&mut self, key: &str, depth: u32) -> R<Array> {
        if depth > self.limits.max_depth {
            return Err(Stop::Bad(GgufError::NestingTooDeep {
                key: key.to_owned(),
                offset: self.pos,
                limit: self.limits.max_depth,
            }));
        }
        let ty = self.value_type(key)?;
        let at = self.pos;
        let count = self.u64(&|| format!("metadata key `{key}` array length"))?;
        let field = || format!("metadata key `{key}` array length");
        if count > self.limits.max_array {
            return Err(Stop::Bad(GgufError::TooLarge {
                field: field(),
                offset: at,
                value: count,
                limit: self.limits.max_array,
            }));
        }
        // Each element takes at least min_size bytes: a count the file cannot hold is an error now.
        let min_bytes = count.saturating_mul(ty.min_size());
        if min_bytes > self.remaining_in_file() {
            return Err(Stop::Bad(GgufError::Truncated {
                field: format!("{} ({count} elements of {})", field(), ty.name()),
                offset: at,
                need: min_bytes,
                available: self.remaining_in_file(),
            }));
        }
        let cap = self.capacity(count, ty.min_size());
        macro_rules! scalars {
            ($variant:ident, $t:ty) => {{
                let n = std::mem::size_of::<$t>() as u64;
                let bytes = self.take(count * n, &|| format!("metadata key `{key}` array data"))?;
                Array::$variant(
                    bytes
                        .chunks_exact(n as usize)
                        .map(|c| <$t>::from_le_bytes(c.try_into().unwrap_or_default()))
                        .collect(),
                )
            }};
        }
        Ok(match ty {
            ValueType::U8 => scalars!(U8, u8),
            ValueType::I8 => scalars!(I8, i8),
            ValueType::U16 => scalars!(U16, u16),
            ValueType::I16 => scalars!(I16, i16),
            ValueType::U32 => scalars!(U32, u32),
            ValueType::I32 => scalars!(I32, i32),
            ValueType::U64 => scalars!(U64, u64),
            ValueType::I64 => scalars!(I64, i64),
            ValueType::F32 => scalars!(F32, f32),
            ValueType::F64 => scalars!(F64, f64),
            ValueType::Bool => {
                let bytes = self.take(count, &|| format!("metadata key `{key}` array data"))?;
                Array::Bool(bytes.iter().map(|&b| b != 0).collect())
            }
            ValueType::String => {
                let mut v = Vec::with_capacity(cap);
                for i in 0..count {
                    v.push(self.string(&|| format!("metadata key `{key}`[{i}]"), true)?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(cap);
                for _ in 0..count {
                    v.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}

fn pad(x: u64, align: u64) -> Option<u64> {
    x.checked_add(align - 1).map(|v| v / align * align)
}

/// Parse a GGUF header from the first `buf.len()` bytes of a file of `file_size` bytes (when known).
pub fn parse_header(buf: &[u8], file_size: Option<u64>) -> Result<HeaderParse, GgufError> {
    parse_header_with_limits(buf, file_size, Limits::default())
}

pub fn parse_header_with_limits(
    buf: &[u8],
    file_size: Option<u64>,
    limits: Limits,
) -> Result<HeaderParse, GgufError> {
    let mut c = Cursor {
        buf,
        pos: 0,
        file_size,
        limits,
    };
    match parse(&mut c) {
        Ok(h) => Ok(HeaderParse::Complete(h)),
        Err(Stop::Need(n)) => Ok(HeaderParse::NeedBytes(n)),
        Err(Stop::Bad(e)) => Err(e),
    }
}

fn parse(c: &mut Cursor) -> R<GgufHeader> {
    let magic: [u8; 4] = c.array(&|| "magic".into())?;
    if &magic != b"GGUF" {
        return Err(GgufError::BadMagic { found: magic }.into());
    }
    let version = c.u32(&|| "version".into())?;
    if version & 0xFFFF == 0 && version != 0 {
        return Err(GgufError::ByteSwapped { version }.into());
    }
    if !(2..=3).contains(&version) {
        return Err(GgufError::UnsupportedVersion { version }.into());
    }

    let at = c.pos;
    let n_tensors = c.u64(&|| "tensor count".into())?;
    check_count(c, "tensor count", at, n_tensors, c.limits.max_tensors, 24)?;
    let at = c.pos;
    let n_kv = c.u64(&|| "metadata key/value count".into())?;
    check_count(c, "metadata key/value count", at, n_kv, c.limits.max_kv, 13)?;

    let mut metadata = Metadata::default();
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..n_kv {
        let key_at = c.pos;
        let key = c.string(&|| format!("metadata key #{i}"), false)?;
        let ty = c.value_type(&key)?;
        let value_at = c.pos;
        let value = c.value(&key, ty)?;
        if key == "general.alignment" {
            let Value::U32(a) = value else {
                return Err(GgufError::WrongKeyType {
                    key,
                    offset: value_at,
                    expected: "u32",
                    found: ty.name(),
                }
                .into());
            };
            if a == 0 || !a.is_power_of_two() {
                return Err(GgufError::BadAlignment {
                    offset: value_at,
                    value: a.into(),
                }
                .into());
            }
            alignment = a.into();
        }
        if !metadata.insert(key.clone(), value) {
            return Err(GgufError::DuplicateKey {
                key,
                offset: key_at,
            }
            .into());
        }
    }

    let mut tensors = Vec::with_capacity(c.capacity(n_tensors, 24));
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let info_at = c.pos;
        let name_len_at = c.pos;
        let name = c.string(&|| format!("tensor #{i} name"), false)?;
        if name.len() as u64 >= MAX_TENSOR_NAME {
            return Err(GgufError::NameTooLong {
                len: name.len() as u64,
                tensor: name,
                offset: name_len_at,
                limit: MAX_TENSOR_NAME - 1,
            }
            .into());
        }
        if !names.insert(name.clone()) {
            return Err(GgufError::DuplicateTensor {
                name,
                offset: info_at,
            }
            .into());
        }
        let dims_at = c.pos;
        let n_dims = c.u32(&|| format!("tensor `{name}` n_dims"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                offset: dims_at,
                n_dims,
            }
            .into());
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims as usize {
            let at = c.pos;
            let ne = c.u64(&|| format!("tensor `{name}` dimension {d}"))?;
            if ne > i64::MAX as u64 {
                return Err(GgufError::BadDim {
                    tensor: name,
                    offset: at,
                    index: d,
                    value: ne,
                }
                .into());
            }
            dims.push(ne);
        }
        // ggml counts elements in int64.
        let n_elements = dims.iter().try_fold(1u64, |acc, &d| {
            acc.checked_mul(d).filter(|&n| n <= i64::MAX as u64)
        });
        let Some(n_elements) = n_elements else {
            return Err(GgufError::ElementCountOverflow {
                tensor: name,
                offset: dims_at,
                shape: dims,
            }
            .into());
        };
        let type_at = c.pos;
        let type_id = c.u32(&|| format!("tensor `{name}` type"))?;
        let Some(ty) = GgmlType::from_id(type_id) else {
            return Err(GgufError::UnknownType {
                tensor: name,
                offset: type_at,
                type_id,
            }
            .into());
        };
        let ne0 = dims.first().copied().unwrap_or(1);
        let block = ty.block_size() as u64;
        if ne0 % block != 0 {
            return Err(GgufError::RowNotBlockMultiple {
                tensor: name,
                offset: type_at,
                ty,
                ne0,
                block,
            }
            .into());
        }
        let Some(n_bytes) = ty.bytes_for(n_elements) else {
            return Err(GgufError::ByteSizeOverflow {
                tensor: name,
                offset: type_at,
            }
            .into());
        };
        let offset_at = c.pos;
        let offset = c.u64(&|| format!("tensor `{name}` data offset"))?;
        tensors.push(TensorInfo {
            name,
            dims,
            ty,
            offset,
            n_elements,
            n_bytes,
            info_offset: offset_at,
        });
    }

    // Tensors are packed in order, each padded to the alignment (what llama.cpp writes and checks).
    let mut expected = 0u64;
    for t in &tensors {
        if t.offset != expected {
            return Err(GgufError::BadTensorOffset {
                tensor: t.name.clone(),
                offset: t.info_offset,
                found: t.offset,
                expected,
            }
            .into());
        }
        expected = pad(t.n_bytes, alignment)
            .and_then(|p| expected.checked_add(p))
            .ok_or_else(|| GgufError::ByteSizeOverflow {
                tensor: t.name.clone(),
                offset: t.info_offset,
            })?;
    }
    let data_size = expected;
    let data_offset = pad(c.pos, alignment).ok_or_else(|| GgufError::TooLarge {
        field: "data section offset".into(),
        offset: c.pos,
        value: c.pos,
        limit: u64::MAX - alignment,
    })?;
    if let (Some(size), Some(last)) = (c.file_size, tensors.last()) {
        // The last tensor needs its bytes, not its trailing padding.
        let end = data_offset
            .checked_add(last.offset)
            .and_then(|o| o.checked_add(last.n_bytes))
            .unwrap_or(u64::MAX);
        if end > size {
            return Err(GgufError::DataBeyondEnd {
                data_offset,
                data_size,
                end,
                file_size: size,
            }
            .into());
        }
    }
    Ok(GgufHeader {
        version,
        metadata,
        tensors,
        alignment,
        data_offset,
        data_size,
    })
}

/// A count must be under its cap, and the file must have room for `count` items of `min_size` bytes.
fn check_count(c: &Cursor, field: &str, at: u64, count: u64, cap: u64, min_size: u64) -> R<()> {
    if count > cap {
        return Err(GgufError::TooLarge {
            field: field.into(),
            offset: at,
            value: count,
            limit: cap,
        }
        .into());
    }
    let need = count.saturating_mul(min_size);
    if need > c.remaining_in_file() {
        return Err(GgufError::Truncated {
            field: format!("{field} ({count})"),
            offset: at,
            need,
            available: c.remaining_in_file(),
        }
        .into());
    }
    Ok(())
}
