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

/// Parse the GGUF header from a source, reading only as far as the header goes (the one header
/// loop, `gguf::read_header`, over a sequential reader on the source).
pub fn read_header(src: &dyn ByteSource) -> Result<crate::gguf::GgufHeader> {
    let mut r = SourceReader { src, pos: 0 };
    crate::gguf::read_header(&mut r, Some(src.size()))
}

/// `io::Read` over a [`ByteSource`], from offset 0 on.
struct SourceReader<'a> {
    src: &'a dyn ByteSource,
    pos: u64,
}

impl std::io::Read for SourceReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.src.size().saturating_sub(self.pos);
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        self.src
            .read_at(self.pos, &mut buf[..n])
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.pos += n as u64;
        Ok(n)
    }
}
