//! Weights for the GPU: the model's one loader (`model::load_weights`) over a sink that uploads
//! each matrix straight from the source into GPU buffers, or a [`ModelWeights`] already in
//! memory uploaded matrix by matrix. The tensor-name → role mapping, fused-tensor splits and
//! shape checks are the CPU's, by construction.

use super::super::{GpuContext, GpuMatrix};
use crate::gguf::GgufHeader;
use crate::model::{load_weights, Config, MatrixSink, ModelWeights, TensorSlice};
use crate::source::ByteSource;
use crate::Result;

/// [`ModelWeights`] with its matrices uploaded: each layer a `LayerWeights<GpuMatrix>`
/// (matrices on the GPU, vectors on the host, expanded to f32).
pub(super) type GpuWeights = ModelWeights<GpuMatrix>;

/// Uploads each matrix (or row range of a fused one) from `src` into GPU buffers, in the
/// context's layout for its type.
struct GpuSink<'a> {
    ctx: &'a GpuContext,
    src: &'a dyn ByteSource,
}

impl MatrixSink for GpuSink<'_> {
    type Matrix = GpuMatrix;
    fn matrix(&mut self, t: &TensorSlice<'_>) -> Result<GpuMatrix> {
        let ty = t.info.ty;
        let layout = self.ctx.layout_for(ty);
        GpuMatrix::upload_from(
            self.ctx,
            &t.name,
            ty,
            (t.rows, t.cols),
            self.src,
            t.offset,
            layout,
        )
    }
}

/// Upload weights already in memory.
pub(super) fn upload(ctx: &GpuContext, w: &ModelWeights) -> Result<GpuWeights> {
    w.try_map(|q| GpuMatrix::upload(ctx, q))
}

/// Read and upload every weight the architecture needs, tensor by tensor, through the model's
/// one loader (which checks every shape against `cfg`).
pub(super) fn stream(
    ctx: &GpuContext,
    h: &GgufHeader,
    src: &dyn ByteSource,
    cfg: &mut Config,
) -> Result<GpuWeights> {
    load_weights(h, src, cfg, &mut GpuSink { ctx, src })
}
