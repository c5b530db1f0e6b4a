//! GGUF, llama.cpp's model format: an incremental, distrustful header reader, metadata values
//! and the well-known keys.
//!
//! The header is parsed from a prefix of the file ([`parse_header`]); tensor data is never read
//! here. Callers fetch a tensor's bytes from `data_offset + tensor.offset` by whatever means they
//! have (a file natively, IndexedDB chunks in the browser).

mod error;
mod keys;
mod reader;
mod value;

pub use error::GgufError;
pub use keys::RopeScaling;
pub use reader::{
    parse_header, parse_header_with_limits, HeaderParse, Limits, DEFAULT_ALIGNMENT, MAX_DIMS,
    MAX_TENSOR_NAME,
};
pub use value::{Array, Metadata, Value, ValueType};

use crate::quant::GgmlType;
use crate::{Error, Result};
use std::io::Read;
use std::path::Path;

/// Everything before the tensor data.
#[derive(Clone, Debug)]
pub struct GgufHeader {
    pub version: u32,
    pub metadata: Metadata,
    /// In file order; offsets increase.
    pub tensors: Vec<TensorInfo>,
    /// `general.alignment`, default 32.
    pub alignment: u64,
    /// Absolute byte offset of the data section (aligned).
    pub data_offset: u64,
    /// Bytes of the data section, every tensor padded to the alignment.
    pub data_size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    pub name: String,
    /// Shape in GGUF/ggml order: `dims[0]` is the row length (contiguous), then rows, ...
    pub dims: Vec<u64>,
    pub ty: GgmlType,
    /// Byte offset relative to the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
    /// Where this tensor's `offset` field sits in the file (for error messages).
    pub info_offset: u64,
}

impl TensorInfo {
    /// Row length (`dims[0]`), 1 for a scalar.
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows (product of the other dimensions).
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }
}

impl GgufHeader {
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Absolute byte range of a tensor's data in the file.
    pub fn tensor_range(&self, t: &TensorInfo) -> std::ops::Range<u64> {
        let start = self.data_offset + t.offset;
        start..start + t.n_bytes
    }

    /// Bytes the file must have: the data section up to the end of the last tensor.
    pub fn min_file_size(&self) -> u64 {
        self.tensors
            .last()
            .map_or(self.data_offset, |t| self.tensor_range(t).end)
    }
}

/// Read a header from a stream, pulling bytes only as far as the header goes.
/// `file_size`, when known, turns impossible lengths into errors instead of reads.
pub fn read_header(r: &mut impl Read, file_size: Option<u64>) -> Result<GgufHeader> {
    let mut buf = Vec::new();
    let mut want: u64 = 1 << 20;
    let mut eof = false;
    loop {
        if let Some(size) = file_size {
            want = want.min(size);
        }
        if (buf.len() as u64) < want && !eof {
            let need = want - buf.len() as u64;
            let got = r
                .by_ref()
                .take(need)
                .read_to_end(&mut buf)
                .map_err(|e| Error::io("reading GGUF header", e))?;
            eof = (got as u64) < need;
        }
        // At end of stream the size is known: let the parser report what is missing.
        let size = if eof {
            Some(buf.len() as u64)
        } else {
            file_size
        };
        match parse_header(&buf, size)? {
            HeaderParse::Complete(h) => return Ok(h),
            HeaderParse::NeedBytes(n) => {
                if eof {
                    // Unreachable in practice: with the size known the parser never asks for more.
                    return Err(Error::io(
                        "reading GGUF header",
                        std::io::ErrorKind::UnexpectedEof.into(),
                    ));
                }
                want = n.max(want.saturating_mul(2));
            }
        }
    }
}

/// Read the header of a GGUF file on disk.
pub fn read_header_from_path(path: impl AsRef<Path>) -> Result<GgufHeader> {
    let path = path.as_ref();
    let ctx = || format!("opening {}", path.display());
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(ctx(), e))?;
    let size = f.metadata().map_err(|e| Error::io(ctx(), e))?.len();
    read_header(&mut f, Some(size))
}

/// Read one tensor's raw bytes from a GGUF file on disk.
pub fn read_tensor_bytes(
    path: impl AsRef<Path>,
    header: &GgufHeader,
    t: &TensorInfo,
) -> Result<Vec<u8>> {
    use std::io::{Seek, SeekFrom};
    let path = path.as_ref();
    let ctx = || format!("reading tensor `{}` from {}", t.name, path.display());
    let range = header.tensor_range(t);
    let len = usize::try_from(t.n_bytes)
        .map_err(|_| Error::io(ctx(), std::io::ErrorKind::OutOfMemory.into()))?;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(ctx(), e))?;
    f.seek(SeekFrom::Start(range.start))
        .map_err(|e| Error::io(ctx(), e))?;
    let mut buf = vec![0u8; len];
    f.read_exact(&mut buf).map_err(|e| Error::io(ctx(), e))?;
    Ok(buf)
}
