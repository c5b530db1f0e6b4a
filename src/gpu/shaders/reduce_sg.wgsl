// reduce_sg.wgsl: reduce_wg.wgsl's interface (`reduce_rows`, `row_sum`, `reduce_all`; see there)
// over subgroup operations, for devices with wgpu's SUBGROUP feature (natively: Vulkan, Metal,
// D3D12). Never in the browser: kernels.rs prepends it only when the device has the feature
// (and the pipeline's rows span whole subgroups, see below), which wgpu's webgpu backend never
// reports; GpuContext::with_subgroups(false) forces reduce_wg.wgsl for tests. No `enable
// subgroups;`: naga (wgpu 30) rejects that directive as not yet implemented and takes the
// subgroup builtins under the device's SUBGROUP capability instead; Tint would want it, so a
// browser build of this file must prepend it (and Tint rejects enables it does not know, which
// is why the builtins stay out of every other file).
//
// Each subgroup sums its invocations' values with one subgroupAdd and its first invocation
// writes the sum to part[lid / n] (n = the subgroup's size, counted as subgroupAdd(1u) so that
// no builtin argument has to reach the kernel's entry point); after one barrier a row's total is
// the sum of its (WG / ROWS) / n subgroup sums (8 on lavapipe's 8-wide subgroups with 64
// invocations per row, 2 on 32-wide NVIDIA warps), read by whichever invocation needs it. One
// barrier instead of log2(WG / ROWS) + 1.
// Assumes what every native backend does for a one-dimensional workgroup: subgroups are runs of
// n consecutive local_invocation_index values starting at multiples of n, with n a power of two
// ≤ WG / ROWS (kernels.rs checks AdapterInfo::subgroup_max_size against the rows per workgroup
// and uses reduce_wg.wgsl when a subgroup could span two rows).

var<workgroup> part: array<f32, WG>;
var<private> sg_n: u32;

fn subgroup_sums(acc: f32, lid: u32) {
    let s = subgroupAdd(acc);
    sg_n = subgroupAdd(1u);
    if (lid == subgroupBroadcastFirst(lid)) {
        part[lid / sg_n] = s;
    }
    workgroupBarrier();
}

fn reduce_rows(acc: f32, lid: u32) {
    subgroup_sums(acc, lid);
}

fn row_sum(slot: u32) -> f32 {
    let k = (WG / ROWS) / sg_n;
    var t = 0.0;
    for (var i = 0u; i < k; i++) {
        t += part[slot * k + i];
    }
    return t;
}

fn reduce_all(acc: f32, lid: u32) -> f32 {
    subgroup_sums(acc, lid);
    var t = 0.0;
    for (var i = 0u; i < WG / sg_n; i++) {
        t += part[i];
    }
    workgroupBarrier();
    return t;
}
