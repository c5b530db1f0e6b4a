//! Why a GGUF file was rejected. Every variant names the field (or key, or tensor) and the byte
//! offset at which the problem was found, so a user can look at the file and see it.

use crate::quant::GgmlType;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufError {
    #[error("not a GGUF file: magic at byte offset 0 is {found:?}, expected \"GGUF\"")]
    BadMagic { found: [u8; 4] },

    #[error("GGUF version {version} at byte offset 4 is not supported (supported: 2 and 3)")]
    UnsupportedVersion { version: u32 },

    #[error("GGUF version field at byte offset 4 reads {version:#010x}: the file looks byte-swapped (big-endian), which is not supported")]
    ByteSwapped { version: u32 },

    #[error("{field} at byte offset {offset} needs {need} bytes, but the file has only {available} bytes left (truncated or corrupt)")]
    Truncated {
        field: String,
        offset: u64,
        need: u64,
        available: u64,
    },

    #[error("{field} at byte offset {offset} is {value}, above the limit of {limit}")]
    TooLarge {
        field: String,
        offset: u64,
        value: u64,
        limit: u64,
    },

    #[error("{field} at byte offset {offset} is not valid UTF-8")]
    InvalidUtf8 { field: String, offset: u64 },

    #[error("metadata key `{key}`: unknown value type {type_id} at byte offset {offset}")]
    UnknownValueType {
        key: String,
        offset: u64,
        type_id: u32,
    },

    #[error(
        "metadata key `{key}`: arrays nested deeper than {limit} levels at byte offset {offset}"
    )]
    NestingTooDeep {
        key: String,
        offset: u64,
        limit: u32,
    },

    #[error("duplicate metadata key `{key}` at byte offset {offset}")]
    DuplicateKey { key: String, offset: u64 },

    #[error("metadata key `{key}` at byte offset {offset} has type {found}, expected {expected}")]
    WrongKeyType {
        key: String,
        offset: u64,
        expected: &'static str,
        found: &'static str,
    },

    #[error(
        "general.alignment at byte offset {offset} is {value}: it must be a non-zero power of two"
    )]
    BadAlignment { offset: u64, value: u64 },

    #[error("duplicate tensor name `{name}` at byte offset {offset}")]
    DuplicateTensor { name: String, offset: u64 },

    #[error(
        "tensor `{tensor}` at byte offset {offset}: name is {len} bytes, the limit is {limit}"
    )]
    NameTooLong {
        tensor: String,
        offset: u64,
        len: u64,
        limit: u64,
    },

    #[error(
        "tensor `{tensor}` at byte offset {offset}: {n_dims} dimensions, at most 4 are allowed"
    )]
    TooManyDims {
        tensor: String,
        offset: u64,
        n_dims: u32,
    },

    #[error("tensor `{tensor}` at byte offset {offset}: dimension {index} is {value}, which does not fit a signed 64-bit count")]
    BadDim {
        tensor: String,
        offset: u64,
        index: usize,
        value: u64,
    },

    #[error("tensor `{tensor}` at byte offset {offset}: element count overflows 64 bits (shape {shape:?})")]
    ElementCountOverflow {
        tensor: String,
        offset: u64,
        shape: Vec<u64>,
    },

    #[error("tensor `{tensor}` at byte offset {offset}: unknown tensor type id {type_id}")]
    UnknownType {
        tensor: String,
        offset: u64,
        type_id: u32,
    },

    #[error("tensor `{tensor}` at byte offset {offset}: row length {ne0} is not a multiple of {ty}'s block size {block}")]
    RowNotBlockMultiple {
        tensor: String,
        offset: u64,
        ty: GgmlType,
        ne0: u64,
        block: u64,
    },

    #[error("tensor `{tensor}` at byte offset {offset}: byte size overflows 64 bits")]
    ByteSizeOverflow { tensor: String, offset: u64 },

    #[error("tensor `{tensor}` at byte offset {offset}: data offset is {found}, expected {expected} (tensors must be packed in order, each padded to the alignment)")]
    BadTensorOffset {
        tensor: String,
        offset: u64,
        found: u64,
        expected: u64,
    },

    #[error("tensor data ends at byte {end} (data section at {data_offset} + {data_size} bytes), beyond the end of the {file_size}-byte file")]
    DataBeyondEnd {
        data_offset: u64,
        data_size: u64,
        end: u64,
        file_size: u64,
    },
}
