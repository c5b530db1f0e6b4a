//! Weight matrices on the GPU, still in their block formats: byte for byte ([`Layout::Packed`]),
//! or as word-aligned blocks read with single loads ([`Layout::Aligned`]: Q4_K, Q4_1 and the
//! other formats whose blocks are whole words already as they are, the others padded to whole
//! words; [`default_layout`] picks by measurement). A matrix larger than one binding
//! (`maxStorageBufferBindingSize`) is split into row ranges, each its own buffer; a matrix-vector
//! product then runs one dispatch per range. Formats that look values up in a grid (the IQ
//! formats) carry it in every buffer, ahead of the first row
//! ([`GpuFormat::table`](super::kernels::GpuFormat::table); fmt_iq2_xxs.wgsl says why).

pub use super::kernels::Layout;
use super::kernels::{aligned_block, gpu_format, unit_weights};
use super::{GpuContext, GpuError};
use crate::model::QMatrix;
use crate::quant::GgmlType;
use crate::source::ByteSource;
use crate::Result;

/// Rows `row_start..row_start + rows` of a matrix, in one buffer.
#[derive(Clone)]
pub struct WeightChunk {
    pub buffer: wgpu::Buffer,
    pub row_start: usize,
    pub rows: usize,
}

/// The layout the model uploads `ty` in: aligned wherever a format has it. On an H200 aligned
/// reads were 21–47% faster for every such format, well worth the padding (+1% Q6_K … +11%
/// Q4_0); docs/performance.md has the measurements.
pub fn default_layout(ty: GgmlType) -> Layout {
    match aligned_block(ty) {
        Some(_) => Layout::Aligned,
        None => Layout::Packed,
    }
}

/// A quantized matrix on the GPU: `rows` × `cols`, row-major, `row_bytes` per row (of the
/// uploaded layout).
#[derive(Clone)]
pub struct GpuMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub layout: Layout,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    pub chunks: Vec<WeightChunk>,
}

impl GpuMatrix {
    /// Upload a matrix already in memory, in the context's layout.
    pub fn upload(ctx: &GpuContext, q: &QMatrix) -> Result<GpuMatrix> {
        Self::upload_as(ctx, q, ctx.layout_for(q.ty))
    }

    /// Upload a matrix already in memory, in `layout`.
    pub fn upload_as(ctx: &GpuContext, q: &QMatrix, layout: Layout) -> Result<GpuMatrix> {
        Self::upload_from(ctx, &q.name, q.ty, (q.rows, q.cols), &q.data, 0, layout)
    }

    /// Upload `rows` × `cols` of `ty` read from `src` at `offset`, chunk by chunk, straight into
    /// mapped GPU buffers (the whole tensor is never held in memory at once), repacking the
    /// blocks on the way for [`Layout::Aligned`] (which falls back to packed for formats that
    /// are aligned already).
    pub fn upload_from(
        ctx: &GpuContext,
        name: &str,
        ty: GgmlType,
        (rows, cols): (usize, usize),
        src: &dyn ByteSource,
        offset: u64,
        layout: Layout,
    ) -> Result<GpuMatrix> {
        let Some(format) = gpu_format(ty) else {
            return Err(GpuError::UnsupportedType {
                tensor: name.to_owned(),
                ty,
            }
            .into());
        };
        // The lookup table the reader finds before the first block (IQ grids), if any.
        let table: Vec<u8> = format
            .table
            .map(|t| t().iter().flat_map(|w| w.to_le_bytes()).collect())
            .unwrap_or_default();
        let (bs, ts) = ty.block_geometry();
        let unit = unit_weights(ty).max(bs);
        if !cols.is_multiple_of(unit) {
            return Err(crate::Error::BadModelTensor {
                tensor: name.to_owned(),
                problem: format!("{cols} columns are not whole {unit}-element units of {ty}"),
            });
        }
        // (zero bytes before each block, block stride) in the buffer.
        let (layout, (lead, stride)) = match (layout, aligned_block(ty)) {
            (Layout::Aligned, Some(g)) => (Layout::Aligned, g),
            _ => (Layout::Packed, (0, ts)),
        };
        let file_row_bytes = cols / bs * ts;
        let row_bytes = cols / bs * stride;
        let fixed = table.len() as u64 + 4;
        ctx.check_fits(
            &format!("one row of tensor {name}"),
            row_bytes as u64 + fixed,
        )?;
        let per_chunk = ((ctx.max_binding - fixed) / row_bytes as u64).max(1) as usize;
        let mut chunks = Vec::new();
        let mut row_start = 0;
        while row_start < rows {
            let n = per_chunk.min(rows - row_start);
            let len = table.len() + n * row_bytes;
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
                // Through an 8 MiB bounce buffer of whole blocks: mapped memory is write-only.
                let start = offset + (row_start * file_row_bytes) as u64;
                let file_len = n * file_row_bytes;
                let mut tmp = vec![0u8; file_len.min((8 << 20) / ts * ts)];
                let mut out = vec![
                    0u8;
                    if stride == ts {
                        0
                    } else {
                        tmp.len() / ts * stride
                    }
                ];
                m.slice(..table.len()).copy_from_slice(&table);
                let (mut at, mut to) = (0, table.len());
                while at < file_len {
                    let k = tmp.len().min(file_len - at);
                    src.read_at(start + at as u64, &mut tmp[..k])?;
                    if stride == ts {
                        m.slice(to..to + k).copy_from_slice(&tmp[..k]);
                        to += k;
                    } else {
                        let o = &mut out[..k / ts * stride];
                        for (b, r) in tmp[..k].chunks_exact(ts).zip(o.chunks_exact_mut(stride)) {
                            r[lead..lead + ts].copy_from_slice(b);
                        }
                        m.slice(to..to + o.len()).copy_from_slice(o);
                        to += o.len();
                    }
                    at += k;
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
            layout,
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
