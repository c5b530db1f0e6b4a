// attention_common.wgsl: what the attention kernels share, prepended to attention.wgsl,
// attention_rows.wgsl and attention_split.wgsl (kernels::Shader::source_with). The kernel
// declares the caches `kc`, `vc` (array<u32>) and runs with workgroup_size(256).
//
//   k_at(i), v_at(i): element i of the K / V cache, f32 bits or f16 pairs (KV_F16).
//   reduce_max(lid, v), reduce_sum(lid, v) -> f32: over the workgroup, to every invocation
//     (a workgroup-memory tree; call from uniform control flow).

// KV_F16 = 1: the caches hold f16 pairs (pack2x16float, core WGSL: no shader-f16 needed);
// 0: f32 (as bits).
override KV_F16: u32 = 0u;

fn k_at(i: u32) -> f32 {
    if (KV_F16 != 0u) {
        return unpack2x16float(kc[i >> 1u])[i & 1u];
    }
    return bitcast<f32>(kc[i]);
}

fn v_at(i: u32) -> f32 {
    if (KV_F16 != 0u) {
        return unpack2x16float(vc[i >> 1u])[i & 1u];
    }
    return bitcast<f32>(vc[i]);
}

var<workgroup> red: array<f32, 256>;

fn reduce_max(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] = max(red[lid], red[lid + st]);
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}

fn reduce_sum(lid: u32, v: f32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (lid < st) {
            red[lid] += red[lid + st];
        }
        workgroupBarrier();
    }
    let r = red[0];
    workgroupBarrier();
    return r;
}
