//! Byte sources that serve ranges: a file natively, a buffer in tests, IndexedDB chunks in the
//! browser. The engine reads the header and each tensor through this, never the whole file at once.

use crate::{Error, Result};

pub trait ByteSource {
    /// Total size in bytes.
    fn size(&self) -> u64;
    /// Fill `buf` from `offset`; an error when the range runs past the end.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
}

fn out_of_range(offset: u64, len: usize, size: u64) -> Error {
    Error::io(
        format!("reading {len} bytes at offset {offset} of a {size}-byte source"),
        std::io::ErrorKind::UnexpectedEof.into(),
    )
}

impl ByteSource for [u8] {
    fn size(&self) -> u64 {
        self.len() as u64
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        let start =
            usize::try_from(offset).map_err(|_| out_of_range(offset, buf.len(), self.size()))?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.get(start..end))
            .ok_or_else(|| out_of_range(offset, buf.len(), self.size()))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ByteSource for Vec<u8> {
    fn size(&self) -> u64 {
        self.as_slice().size()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.as_slice().read_at(offset, buf)
    }
}

/// A file on disk (native only), read with positioned reads.
#[cfg(unix)]
pub struct FileSource {
    file: std::fs::File,
    size: u64,
    path: std::path::PathBuf,
}

#[cfg(unix)]
impl FileSource {
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let ctx = || format!("opening {}", path.display());
        let file = std::fs::File::open(&path).map_err(|e| Error::io(ctx(), e))?;
        let size = file.metadata().map_err(|e| Error::io(ctx(), e))?.len();
        Ok(FileSource { file, size, path })
    }
}

#[cfg(unix)]
impl ByteSource for FileSource {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        self.file.read_exact_at(buf, offset).map_err(|e| {
            Error::io(
                format!(
                    "reading {} bytes at offset {offset} of {}",
                    buf.len(),
                    self.path.display()
                ),
                e,
            )
        })
    }
}

/// Parse the GGUF header from a source, reading only as far as the header goes.
pub fn read_header(src: &dyn ByteSource) -> Result<crate::gguf::GgufHeader> {
    use crate::gguf::{parse_header, HeaderParse};
    let size = src.size();
    let mut want = (1u64 << 20).min(size);
    loop {
        let mut buf = vec![0u8; want as usize];
        src.read_at(0, &mut buf)?;
        match parse_header(&buf, Some(size))? {
            HeaderParse::Complete(h) => return Ok(h),
            // With the size known the parser only asks for bytes that exist.
            HeaderParse::NeedBytes(n) => {
                let next = n.max(want.saturating_mul(2)).min(size);
                if next <= want {
                    return Err(out_of_range(want, 0, size));
                }
                want = next;
            }
        }
    }
}
