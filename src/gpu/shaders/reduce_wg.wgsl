// reduce_wg.wgsl: the reductions of the matvec-family kernels (matvec.wgsl, matvec_fused.wgsl,
// matvec_glu.wgsl, matvec_qkv.wgsl) in workgroup memory: core WGSL, so every device, the browser
// included (wgpu's webgpu backend has no subgroups).
// reduce_sg.wgsl is the same interface over subgroup operations, prepended instead when the
// device has SUBGROUP (kernels::Shader::source_with). The kernel declares `WG` (its workgroup
// size, 256) and `ROWS`; a row is WG / ROWS consecutive invocations.
//
//   reduce_rows(acc, lid): Σ acc over each row's invocations; then `row_sum(slot)` is row
//     slot's total to every invocation. Call from uniform control flow (it has barriers).
//   reduce_all(acc, lid) -> f32: Σ acc over the workgroup, to every invocation; `part` may be
//     reused after it (it ends with a barrier).
// Here: a tree of WG / ROWS halvings with a barrier each (log2(WG / ROWS) + 1 barriers); the
// order of the sums is matmat.wgsl's, so a batched product equals matvec's bit for bit.

var<workgroup> part: array<f32, WG>;

fn reduce_rows(acc: f32, lid: u32) {
    let tpr = WG / ROWS;
    let lane = lid % tpr;
    part[lid] = acc;
    workgroupBarrier();
    for (var st = tpr / 2u; st > 0u; st >>= 1u) {
        if (lane < st) {
            part[lid] += part[lid + st];
        }
        workgroupBarrier();
    }
}

fn row_sum(slot: u32) -> f32 {
    return part[slot * (WG / ROWS)];
}

fn reduce_all(acc: f32, lid: u32) -> f32 {
    part[lid] = acc;
    workgroupBarrier();
    for (var st = WG / 2u; st > 0u; st >>= 1u) {
        if (lid < st) {
            part[lid] += part[lid + st];
        }
        workgroupBarrier();
    }
    let t = part[0];
    workgroupBarrier();
    return t;
}
