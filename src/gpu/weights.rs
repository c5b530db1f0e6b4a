//! Weight matrices on the GPU, still in their block formats (uploaded byte for byte, no
//! repacking: the kernels read unaligned blocks through `quant.wgsl`'s byte helpers). A matrix
//! larger than one binding (`maxStorageBufferBindingSize`) is split into row ranges, each its own
//! buffer; a matrix-vector product then runs one dispatch per range.

use super::kernels::{format_file, unit_weights};
use super::{GpuContext, GpuError};
use crate::model::QMatrix;
use crate::quant::GgmlType;
use crate::source::ByteSource;
use crate::Result;

/// Rows `row_start..row_start + rows` of a matrix, in one buffer.
pub struct WeightChunk {
    pub buffer: wgpu::Buffer,
    pub row_start: usize,
    pub rows: usize,
}

/// A quantized matrix on the GPU: `rows` × `cols`, row-major, `row_bytes` per row.
pub struct GpuMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    pub chunks: Vec<WeightChunk>,
}

impl GpuMatrix {
    /// Upload a matrix already in memory.
    pub fn upload(ctx: &GpuContext, q: &QMatrix) -> Result<GpuMatrix> {
        Self::upload_from(ctx, &q.name, q.ty, q.rows, q.cols, &q.data, 0)
    }

    /// Upload `rows` × `cols` of `ty` read from `src` at `offset`, chunk by chunk, straight into
    /// mapped GPU buffers (the whole tensor is never held in memory at once).
    pub fn upload_from(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        src: &dyn ByteSource,
        offset: u64,
    ) -> Result<GpuMatrix> {
        if format_file(ty).is_none() {
            return Err(GpuError::UnsupportedType {
                tensor: name.to_owned(),
                ty,
            }
            .into());
        }
        let (bs, ts) = ty.block_geometry();
        let unit = unit_weights(ty).max(bs);
        if !cols.is_multiple_of(unit) {
            return Err(crate::Error::BadModelTensor {
                tensor: name.to_owned(),
                problem: format!("{cols} columns are not whole {unit}-element units of {ty}"),
            });
        }
        let row_bytes = cols / bs * ts;
        ctx.check_fits(&format!("one row of tensor {name}"), row_bytes as u64 + 4)?;
        let per_chunk = ((ctx.max_binding - 4) / row_bytes as u64).max(1) as usize;
        let mut chunks = Vec::new();
        let mut row_start = 0;
        while row_start < rows {
            let n = per_chunk.min(rows - row_start);
            let len = n * row_bytes;
            let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(name),
                size: (len as u64).next_multiple_of(4),
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: true,
            });
            {
                let mut m = buffer
                    .slice(..)
                    .get_mapped_range_mut()
                    .map_err(|e| GpuError::Device(format!("mapping {name}: {e}")))?;
                // Through an 8 MiB bounce buffer: mapped memory is write-only.
                let start = offset + (row_start * row_bytes) as u64;
                let mut tmp = vec![0u8; len.min(8 << 20)];
                let mut at = 0;
                while at < len {
                    let n = tmp.len().min(len - at);
                    src.read_at(start + at as u64, &mut tmp[..n])?;
                    m.slice(at..at + n).copy_from_slice(&tmp[..n]);
                    at += n;
                }
            }
            buffer.unmap();
            chunks.push(WeightChunk {
                buffer,
                row_start,
                rows: n,
            });
            row_start += n;
        }
        Ok(GpuMatrix {
            name: name.to_owned(),
            ty,
            rows,
            cols,
            row_bytes,
            chunks,
        })
    }

    /// The chunk holding row `r`, and `r`'s index within it.
    pub fn chunk_of(&self, r: usize) -> (usize, usize) {
        let i = self
            .chunks
            .iter()
            .position(|c| r < c.row_start + c.rows)
            .unwrap_or(self.chunks.len() - 1);
        (i, r - self.chunks[i].row_start)
    }

    /// Bytes held on the GPU.
    pub fn bytes(&self) -> usize {
        self.rows * self.row_bytes
    }
}
