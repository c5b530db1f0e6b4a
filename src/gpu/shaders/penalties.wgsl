// penalties.wgsl: repetition, presence and frequency penalties on the logits, in place, before
// sample.wgsl (`Sampler::apply_penalties`' rule): for each distinct recent token t seen c
// times, l = l / repeat if l > 0 else l · repeat (when repeat ≠ 1 and > 0), then
// l −= c · frequency + presence. The host counts the recent tokens (the last penalty_last_n of
// the history) and writes the (id, count) pairs; ids ≥ n are skipped.
//
// Bindings (group 0):
//   0 v: array<f32>         logits (n), read-write
//   1 seen: array<u32>      pairs (id, count), n_seen of them, read-only
//   2 p: Params (uniform)   n, n_seen, repeat, presence, frequency
// Geometry: workgroup_size(64), a single workgroup: dispatch (1, 1, 1); invocation i takes the
//   pairs i, i + 64, … (ids are distinct: no two invocations touch one logit).

struct Params {
    n: u32,
    n_seen: u32,
    repeat: f32,
    presence: f32,
    frequency: f32,
}

@group(0) @binding(0) var<storage, read_write> v: array<f32>;
@group(0) @binding(1) var<storage, read> seen: array<u32>;
@group(0) @binding(2) var<uniform> p: Params;

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    for (var i = lid; i < p.n_seen; i += 64u) {
        let t = seen[2u * i];
        if (t >= p.n) {
            continue;
        }
        var l = v[t];
        if (p.repeat != 1.0 && p.repeat > 0.0) {
            if (l > 0.0) {
                l = l / p.repeat;
            } else {
                l = l * p.repeat;
            }
        }
        l -= f32(seen[2u * i + 1u]) * p.frequency + p.presence;
        v[t] = l;
    }
}
