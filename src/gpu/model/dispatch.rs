//! Recorded dispatches (pipeline, bind group, workgroup counts) and their encoding, and the
//! dispatch lists of a matrix product: matvec.wgsl for one token, matmat.wgsl for a batch.

use super::super::kernels::{groups_2d, PipelineKey, Shader, MATMAT_TOKENS};
use super::super::{GpuContext, GpuMatrix};
use crate::Result;

/// When a recorded dispatch runs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum When {
    Always,
    /// Single-pass attention: contexts up to `split_attention_from` positions.
    Short,
    /// Split-K attention: longer contexts.
    Long,
}

/// Which batches a recorded dispatch runs for.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    Any,
    /// One token (a decode step): matvec.wgsl.
    Single,
    /// Several tokens (prefill): matmat.wgsl.
    Multi,
}

/// What a recorded dispatch does with a layer's KV cache: the batched step of independent
/// sequences ([`super::batch`]) replaces these with their per-slot variants.
#[derive(Clone, Copy)]
pub(crate) enum Role {
    Other,
    /// kv_store.wgsl of `layer`: its `n` keys (`v` false) or values.
    KvStore {
        layer: usize,
        v: bool,
        n: usize,
    },
    /// One of `layer`'s attention dispatches (single-pass, split-K or combine), of `shape`.
    Attention {
        layer: usize,
        shape: crate::gpu::uniforms::AttentionParams,
    },
}

/// One recorded dispatch: a pipeline, its bind group and workgroup counts (opaque outside the crate;
/// tests run them with [`fused::run_dispatches`](super::fused::run_dispatches)).
#[derive(Clone)]
pub struct Dispatch {
    pub(crate) pipeline: wgpu::ComputePipeline,
    pub(crate) group: wgpu::BindGroup,
    pub(crate) groups: [u32; 3],
    pub(crate) when: When,
    pub(crate) batch: Batch,
    /// Tokens per workgroup along z (1, or [`MATMAT_TOKENS`] for matmat.wgsl).
    pub(crate) tile: u32,
    pub(crate) role: Role,
}

pub(crate) fn make_dispatch(
    ctx: &GpuContext,
    key: PipelineKey,
    bufs: &[&wgpu::Buffer],
    groups: [u32; 3],
) -> Result<Dispatch> {
    Ok(Dispatch {
        pipeline: ctx.pipeline(key)?.pipeline,
        group: ctx.bind(key, bufs)?,
        groups,
        when: When::Always,
        batch: Batch::Any,
        tile: 1,
        role: Role::Other,
    })
}

/// Rows per workgroup of matvec.wgsl (and matmat.wgsl) for a matrix of `cols` columns: each row
/// gets a power of two of invocations (8 to 64) close to its number of quads (4 weights), so
/// short rows do not leave most of the workgroup idle.
pub fn matvec_rows(cols: usize) -> u32 {
    let per_row = (cols / 4).next_power_of_two().clamp(8, 64);
    (256 / per_row) as u32
}

/// The dispatches of y = W·x, one per row range of W (each writes its rows of y).
pub(crate) fn matvec_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    matvec_dispatches_rows(ctx, m, x, y, matvec_rows(m.cols))
}

/// [`matvec_dispatches`] with `rows` rows per workgroup (a power of two ≤ 256; benchmarks
/// sweep it).
pub(crate) fn matvec_dispatches_rows(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    rows: u32,
) -> Result<Vec<Dispatch>> {
    row_dispatches(ctx, m, (Shader::Matvec(m.ty, m.layout), rows), &[x, y], 1)
}

/// The dispatches of Y = W·X over a batch of tokens (matmat.wgsl; X and Y token-major, `step`
/// holds the step's position and its number of tokens), one per row range of W; workgroup z
/// is a tile of [`MATMAT_TOKENS`] tokens.
pub(crate) fn matmat_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    step: &wgpu::Buffer,
) -> Result<Vec<Dispatch>> {
    let rows = matvec_rows(m.cols);
    let kernel = (Shader::Matmat(m.ty, m.layout), rows);
    row_dispatches(ctx, m, kernel, &[x, y, step], MATMAT_TOKENS as u32)
}

/// One dispatch of `kernel` (matvec.wgsl or matmat.wgsl, with its rows per workgroup) per row
/// range of `m`: bindings (chunk, io[0], io[1], params, io[2..]), params (rows of the chunk,
/// cols, row_bytes, first row, rows of W).
fn row_dispatches(
    ctx: &GpuContext,
    m: &GpuMatrix,
    (kernel, rows): (Shader, u32),
    io: &[&wgpu::Buffer],
    tile: u32,
) -> Result<Vec<Dispatch>> {
    let key = PipelineKey {
        rows,
        ..PipelineKey::new(kernel)
    };
    m.chunks
        .iter()
        .map(|c| {
            let p = ctx.params(
                &m.name,
                &[
                    c.rows as u32,
                    m.cols as u32,
                    m.row_bytes as u32,
                    c.row_start as u32,
                    m.rows as u32,
                ],
            );
            let groups = groups_2d(c.rows.div_ceil(key.rows as usize));
            let mut bindings = vec![&c.buffer, io[0], io[1], &p];
            bindings.extend_from_slice(&io[2..]);
            let mut d = make_dispatch(ctx, key, &bindings, groups)?;
            d.tile = tile;
            Ok(d)
        })
        .collect()
}

/// Run Y = W·X once for `n_tok` tokens (X: `n_tok` rows of `cols`, Y: `n_tok` rows of `rows`)
/// with matmat.wgsl (for tests and benchmarks): one submission.
pub fn matmat_once(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
    n_tok: usize,
) -> Result<()> {
    let step = ctx.params("matmat batch", &[0, n_tok as u32]);
    let ds = matmat_dispatches(ctx, m, x, y, &step)?;
    let cmd = ctx.one_pass("matmat", |pass| {
        encode_batch(pass, &ds, n_tok as u32, false);
    });
    ctx.queue.submit([cmd]);
    Ok(())
}

/// Run y = W·x once (for tests and one-off products): one submission.
pub fn matvec_once(
    ctx: &GpuContext,
    m: &GpuMatrix,
    x: &wgpu::Buffer,
    y: &wgpu::Buffer,
) -> Result<()> {
    let ds = matvec_dispatches(ctx, m, x, y)?;
    ctx.queue.submit([ctx.one_pass("matvec", |pass| {
        encode(pass, &ds);
    })]);
    Ok(())
}

/// Encode `ds` over a batch of `nb` tokens (workgroup z is the token, or a tile of tokens for
/// matmat.wgsl), with the split-K attention when `long`, else the single-pass one, and the
/// matrix products for one token (matvec) or for several (matmat).
/// Returns how many dispatches it encoded.
pub(crate) fn encode_batch(
    pass: &mut wgpu::ComputePass<'_>,
    ds: &[Dispatch],
    nb: u32,
    long: bool,
) -> usize {
    let skip = if long { When::Short } else { When::Long };
    let skip_batch = if nb > 1 { Batch::Single } else { Batch::Multi };
    let mut n = 0;
    for d in ds
        .iter()
        .filter(|d| d.when != skip && d.batch != skip_batch)
    {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], nb.div_ceil(d.tile));
        n += 1;
    }
    n
}

/// Encode `ds` as recorded; returns how many.
pub(crate) fn encode(pass: &mut wgpu::ComputePass<'_>, ds: &[Dispatch]) -> usize {
    for d in ds {
        pass.set_pipeline(&d.pipeline);
        pass.set_bind_group(0, &d.group, &[]);
        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
    }
    ds.len()
}
