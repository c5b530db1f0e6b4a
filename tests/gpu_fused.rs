//! The fused decode kernels (src/gpu/model/fused.rs) against the unfused kernels they replace,
//! run one after the other on the same data: matvec_fused.wgsl (RMSNorm in front, residual add
//! behind) against rmsnorm + matvec + add; matvec_qkv.wgsl against rmsnorm + 3 matvec + bias
//! adds + 2 rope + 2 kv_store, in both RoPE conventions, both KV cache types, mixed formats;
//! matvec_glu.wgsl against rmsnorm + 2 matvec + gate. Natively on Mesa's lavapipe
//! (`WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use common::{nmse, random_matrix, Rng};
use pollster::block_on;
use wasm_chord::gpu::kernels::{suffixed, Layout, PipelineKey, Shader};
use wasm_chord::gpu::model::fused::{self, QkvBuffers, QkvShape, QKV_CS_FLOATS};
use wasm_chord::gpu::model::matvec_once;
use wasm_chord::gpu::uniforms::AddParams;
use wasm_chord::gpu::{GpuContext, GpuMatrix};
use wasm_chord::quant::GgmlType;

const EPS: f32 = 1e-5;

fn context() -> GpuContext {
    match block_on(GpuContext::new()) {
        Ok(c) => {
            eprintln!("adapter: {}", c.describe());
            c
        }
        Err(e) => panic!(
            "{e}\nThe GPU tests need a WebGPU adapter: install `mesa-vulkan-drivers` and set \
             WGPU_BACKEND=vulkan VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json"
        ),
    }
}

fn assert_nmse(what: &str, got: &[f32], want: &[f32], max: f64) {
    let e = nmse(got, want);
    eprintln!("{what}: NMSE {e:.3e}");
    assert!(e <= max, "{what}: NMSE {e:.3e} > {max:.1e}");
}

fn buf(ctx: &GpuContext, v: &[f32]) -> wgpu::Buffer {
    ctx.storage_with("data", bytemuck::cast_slice(v))
}

fn read(ctx: &GpuContext, b: &wgpu::Buffer, n: usize) -> Vec<f32> {
    block_on(ctx.read_f32(b, n)).unwrap()
}

/// rmsnorm.wgsl over one row of `n`: the unfused path's normed input.
fn rmsnorm(ctx: &GpuContext, x: &wgpu::Buffer, wt: &wgpu::Buffer, n: usize) -> wgpu::Buffer {
    let h = ctx.storage_f32("h", n);
    let p = ctx.params("p", &[n as u32, EPS.to_bits()]);
    ctx.run_once(
        PipelineKey::new(Shader::RmsNorm),
        &[x, wt, &h, &p],
        [1, 1, 1],
    )
    .unwrap();
    h
}

/// add.wgsl: y += scale·b over n values.
fn add(ctx: &GpuContext, y: &wgpu::Buffer, b: &wgpu::Buffer, n: usize, scale: f32) {
    let p = ctx.uniform(
        "p",
        &AddParams {
            b_scale: scale,
            ..AddParams::new(n, false)
        },
    );
    ctx.run_once(
        PipelineKey::new(Shader::Add),
        &[y, b, &p],
        [n.div_ceil(64) as u32, 1, 1],
    )
    .unwrap();
}

#[test]
fn suffixing_renames_declarations_and_the_weight_binding_only() {
    let src = "const UNIT_W: u32 = 32u;\nfn unit_q4(b: u32) -> vec4<f32> {\n    \
               return bytes4(w[b]) + vec4<f32>(f32(UNIT_W)) * xv.w;\n}\n";
    let out = suffixed(src, 2);
    assert!(out.contains("const UNIT_W_2: u32 = 32u;"), "{out}");
    assert!(out.contains("fn unit_q4_2(b: u32)"), "{out}");
    assert!(out.contains("w_2[b]"), "{out}");
    assert!(out.contains("f32(UNIT_W_2)"), "{out}");
    // A member access, an undeclared helper and numbers stay.
    assert!(
        out.contains("xv.w;") && out.contains("bytes4(") && out.contains("32u"),
        "{out}"
    );
}

#[test]
fn fused_kernels_are_valid_wgsl_for_mixed_formats() {
    use wgpu::naga;
    let (a, p) = (Layout::Aligned, Layout::Packed);
    for k in [
        Shader::MatvecQkv([
            (GgmlType::Q4_K, a),
            (GgmlType::Q4_K, a),
            (GgmlType::Q6_K, a),
        ]),
        Shader::MatvecQkv([(GgmlType::Q8_0, p), (GgmlType::F16, p), (GgmlType::Q5_0, a)]),
        Shader::MatvecGlu([(GgmlType::Q4_K, a), (GgmlType::Q6_K, p)]),
        Shader::MatvecFused(GgmlType::F32, p),
    ] {
        let src = k.source().expect("a source");
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{k:?}: {}", e.emit_to_string(&src)));
        let caps = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
            .validate(&module)
            .unwrap_or_else(|e| panic!("{k:?}: {}", e.emit_to_string(&src)));
    }
}

/// matvec_fused.wgsl with `norm` / `add` against rmsnorm + matvec + add (the product times
/// `scale`); returns the chunks.
fn check_fused(
    ctx: &GpuContext,
    (ty, layout): (GgmlType, Layout),
    norm: bool,
    add_: bool,
    scale: f32,
) -> usize {
    let (rows, cols) = (37, 768);
    let m = random_matrix(ty, rows, cols, 5 + ty as u64);
    let g = GpuMatrix::upload_as(ctx, &m, layout).unwrap();
    let mut r = Rng(17);
    let (x, wt, y0) = (r.vec(cols), r.vec(cols), r.vec(rows));
    let (xb, wb) = (buf(ctx, &x), buf(ctx, &wt));
    // Unfused.
    let h = if norm {
        rmsnorm(ctx, &xb, &wb, cols)
    } else {
        buf(ctx, &x)
    };
    let y_ref = ctx.storage_f32("y", rows);
    matvec_once(ctx, &g, &h, &y_ref).unwrap();
    let yb = buf(ctx, &y0);
    let want = if add_ {
        add(ctx, &yb, &y_ref, rows, scale);
        read(ctx, &yb, rows)
    } else {
        read(ctx, &y_ref, rows).iter().map(|v| v * scale).collect()
    };
    // Fused.
    let y = buf(ctx, &y0);
    let ends = fused::FusedEnds {
        norm: norm.then_some(EPS),
        add: add_,
        scale,
    };
    let ds = fused::fused_dispatches(ctx, &g, &xb, &wb, &y, ends).unwrap();
    fused::run_dispatches(ctx, &ds);
    let got = read(ctx, &y, rows);
    let what = format!(
        "matvec_fused {ty} {layout:?} norm={norm} add={add_} scale={scale} subgroups={}",
        ctx.subgroups
    );
    assert_nmse(&what, &got, &want, 1e-12);
    g.chunks.len()
}

#[test]
fn fused_matvec_matches_rmsnorm_matvec_and_add() {
    // The device's reductions (subgroups where it has them), then the workgroup-memory path.
    for ctx in [context(), context().with_subgroups(false)] {
        fused_matvecs(&ctx);
    }
    // The output head over a matrix split into row ranges: each range its own dispatch.
    let split = context().with_max_binding(10 * 3 * 210 + 4);
    assert_eq!(
        check_fused(&split, (GgmlType::Q6_K, Layout::Packed), true, false, 1.0),
        4
    );
}

fn fused_matvecs(ctx: &GpuContext) {
    let (a, p) = (Layout::Aligned, Layout::Packed);
    for (i, f) in [
        (GgmlType::Q4_K, a),
        (GgmlType::Q6_K, a),
        (GgmlType::Q8_0, p),
        (GgmlType::Q5_0, a),
        (GgmlType::F16, p),
    ]
    .into_iter()
    .enumerate()
    {
        // Every combination over the formats, not all on each (lavapipe compiles slowly).
        // Scales: Granite's residual_scale on the adds, 1/logit_scale on a head.
        check_fused(ctx, f, i % 2 == 0, true, [1.0, 0.22][i % 2]);
        check_fused(ctx, f, true, i % 2 == 1, [0.125, 1.0][i % 2]);
    }
    check_fused(ctx, (GgmlType::Q4_0, a), false, false, 1.0);
}

struct Qkv {
    formats: [(GgmlType, Layout); 3],
    /// Subgroup reductions where the device has them (else the workgroup-memory path).
    subgroups: bool,
    neox: bool,
    kv_f16: bool,
    bias: bool,
    swa: bool,
}

/// matvec_qkv.wgsl against the unfused chain; n_head 4, n_head_kv 2, head_dim 16.
fn check_qkv(c: &Qkv) {
    let ctx = context().with_kv_f16(c.kv_f16).with_subgroups(c.subgroups);
    let ctx = &ctx;
    let (cols, hd, n_head, n_kv, n_ctx, pos) = (768, 16, 4, 2, 6, 3);
    let rows = [n_head * hd, n_kv * hd, n_kv * hd];
    let mut r = Rng(29);
    let x = r.vec(cols);
    let wt = r.vec(cols);
    let biases: Vec<Vec<f32>> = rows.iter().map(|&n| r.vec(n)).collect();
    let ms: Vec<GpuMatrix> = (0..3)
        .map(|i| {
            let (ty, l) = c.formats[i];
            GpuMatrix::upload_as(ctx, &random_matrix(ty, rows[i], cols, 60 + i as u64), l).unwrap()
        })
        .collect();
    // cos/sin of the position: global table then the sliding-window one (another base).
    let mut cs = Vec::new();
    for base in [10000.0, 1000.0] {
        for f in wasm_chord::cpu::ops::rope_inv_freq(hd, base, 1.0, None) {
            let t = pos as f64 * f;
            cs.extend([t.cos() as f32, t.sin() as f32]);
        }
    }
    let cs_off = if c.swa { hd } else { 0 };
    let q_scale = if c.neox { 0.25 } else { 1.0 };
    let words = |n: usize| if c.kv_f16 { n / 2 } else { n };
    let cache_init: Vec<Vec<f32>> = (0..2)
        .map(|i| Rng(70 + i).vec(words(n_ctx * rows[1 + i as usize])))
        .collect();
    let step = ctx.params("step", &[pos as u32, 1]);
    let (xb, wb) = (buf(ctx, &x), buf(ctx, &wt));

    // Unfused: rmsnorm, the three products, biases, RoPE on Q and K, K and V stored.
    let h = rmsnorm(ctx, &xb, &wb, cols);
    let outs: Vec<wgpu::Buffer> = rows.iter().map(|&n| ctx.storage_f32("out", n)).collect();
    for (i, (m, out)) in ms.iter().zip(&outs).enumerate() {
        matvec_once(ctx, m, &h, out).unwrap();
        if c.bias {
            add(ctx, out, &buf(ctx, &biases[i]), rows[i], 1.0);
        }
    }
    let csb = buf(ctx, &cs);
    for (i, heads, scale) in [(0, n_head, q_scale), (1, n_kv, 1.0)] {
        let p = ctx.params(
            "rope",
            &[
                heads as u32,
                hd as u32,
                hd as u32,
                u32::from(c.neox),
                cs_off as u32,
                f32::to_bits(scale),
                (2 * hd) as u32,
            ],
        );
        let n = heads * hd / 2;
        ctx.run_once(
            PipelineKey::new(Shader::Rope),
            &[&outs[i], &csb, &p],
            [n.div_ceil(64) as u32, 1, 1],
        )
        .unwrap();
    }
    let ref_caches: Vec<wgpu::Buffer> = cache_init.iter().map(|v| buf(ctx, v)).collect();
    for (i, cache) in ref_caches.iter().enumerate() {
        let n = rows[1 + i];
        let p = ctx.params("kv_store", &[n as u32]);
        let key = PipelineKey {
            kv_f16: u32::from(c.kv_f16),
            ..PipelineKey::new(Shader::KvStore)
        };
        ctx.run_once(
            key,
            &[&outs[1 + i], cache, &p, &step],
            [n.div_ceil(64) as u32, 1, 1],
        )
        .unwrap();
    }

    // Fused.
    let mut vecs = wt.clone();
    if c.bias {
        biases.iter().for_each(|b| vecs.extend_from_slice(b));
    }
    let vecs = buf(ctx, &vecs);
    let q = ctx.storage_f32("q", rows[0]);
    let caches: Vec<wgpu::Buffer> = cache_init.iter().map(|v| buf(ctx, v)).collect();
    let mut cs_u = cs.clone();
    cs_u.resize(QKV_CS_FLOATS, 0.0);
    let cs_u = ctx.uniform_with("cs", bytemuck::cast_slice(&cs_u));
    let bufs = QkvBuffers {
        x: &xb,
        vecs: &vecs,
        q: &q,
        k_cache: &caches[0],
        v_cache: &caches[1],
        step: &step,
        cos_sin: &cs_u,
    };
    let shape = QkvShape {
        head_dim: hd,
        neox: c.neox,
        cs_off,
        q_scale,
        eps: EPS,
        has_bias: c.bias,
        kv_f16: c.kv_f16,
    };
    let m3 = [&ms[0], &ms[1], &ms[2]];
    assert!(fused::qkv_fusable(m3, hd, hd, cs_off));
    let d = fused::qkv_dispatch(ctx, m3, &bufs, &shape).unwrap();
    fused::run_dispatches(ctx, &[d]);

    let what = format!(
        "matvec_qkv {:?} neox={} kv_f16={} bias={} swa={}",
        c.formats.map(|f| f.0.to_string()),
        c.neox,
        c.kv_f16,
        c.bias,
        c.swa
    );
    assert_nmse(
        &format!("{what}: Q"),
        &read(ctx, &q, rows[0]),
        &read(ctx, &outs[0], rows[0]),
        1e-12,
    );
    for (i, name) in [(0, "K cache"), (1, "V cache")] {
        let n = words(n_ctx * rows[1 + i]);
        let got = block_on(ctx.read_u32(&caches[i], n)).unwrap();
        let want = block_on(ctx.read_u32(&ref_caches[i], n)).unwrap();
        // Other positions untouched, bit for bit; the step's position by value.
        let row = words(rows[1 + i]);
        let at = pos * row..(pos + 1) * row;
        let outside = |v: &[u32]| [&v[..at.start], &v[at.end..]].concat();
        assert_eq!(
            outside(&got),
            outside(&want),
            "{what}: {name} outside the position"
        );
        let values = |v: &[u32]| -> Vec<f32> {
            v[at.clone()]
                .iter()
                .flat_map(|&w| {
                    if c.kv_f16 {
                        let h = |b: u32| half::f16::from_bits(b as u16).to_f32();
                        vec![h(w & 0xffff), h(w >> 16)]
                    } else {
                        vec![f32::from_bits(w)]
                    }
                })
                .collect()
        };
        assert_nmse(
            &format!("{what}: {name}"),
            &values(&got),
            &values(&want),
            1e-12,
        );
    }
}

#[test]
fn fused_qkv_matches_norm_products_rope_and_kv_store() {
    let (a, p) = (Layout::Aligned, Layout::Packed);
    use GgmlType::*;
    for c in [
        // Q4_K_M: V in Q6_K.
        Qkv {
            formats: [(Q4_K, a), (Q4_K, a), (Q6_K, a)],
            subgroups: true,
            neox: false,
            kv_f16: false,
            bias: false,
            swa: false,
        },
        // qwen2: NeoX RoPE with biases; f16 cache.
        Qkv {
            formats: [(Q5_0, a), (Q8_0, p), (Q4_K, a)],
            subgroups: false,
            neox: true,
            kv_f16: true,
            bias: true,
            swa: false,
        },
        Qkv {
            formats: [(F16, p), (Q4_0, a), (Q6_K, p)],
            subgroups: true,
            neox: true,
            kv_f16: false,
            bias: false,
            swa: true,
        },
        Qkv {
            formats: [(Q4_1, a), (F32, p), (Q8_0, a)],
            subgroups: false,
            neox: false,
            kv_f16: true,
            bias: true,
            swa: true,
        },
    ] {
        check_qkv(&c);
    }
}

#[test]
fn fused_glu_matches_norm_products_and_gate() {
    for ctx in [context(), context().with_subgroups(false)] {
        fused_glu(&ctx);
    }
}

fn fused_glu(ctx: &GpuContext) {
    let (a, p) = (Layout::Aligned, Layout::Packed);
    let (rows, cols) = (37, 768);
    for (act, gate_f, up_f) in [
        (0u32, (GgmlType::Q4_K, a), (GgmlType::Q4_K, a)),
        (1, (GgmlType::Q6_K, a), (GgmlType::Q8_0, p)),
        (0, (GgmlType::Q5_0, p), (GgmlType::F16, p)),
    ] {
        let mut r = Rng(31 + act as u64);
        let (x, wt) = (r.vec(cols), r.vec(cols));
        let up_m = |f: (GgmlType, Layout), seed| {
            GpuMatrix::upload_as(ctx, &random_matrix(f.0, rows, cols, seed), f.1).unwrap()
        };
        let (gm, um) = (up_m(gate_f, 90), up_m(up_f, 91));
        let (xb, wb) = (buf(ctx, &x), buf(ctx, &wt));
        let h = rmsnorm(ctx, &xb, &wb, cols);
        let (gb, ub) = (ctx.storage_f32("g", rows), ctx.storage_f32("u", rows));
        matvec_once(ctx, &gm, &h, &gb).unwrap();
        matvec_once(ctx, &um, &h, &ub).unwrap();
        let pg = ctx.params("gate", &[rows as u32]);
        let key = PipelineKey {
            act,
            ..PipelineKey::new(Shader::Gate)
        };
        ctx.run_once(key, &[&gb, &ub, &pg], [1, 1, 1]).unwrap();
        let want = read(ctx, &gb, rows);
        let y = ctx.storage_f32("y", rows);
        let d = fused::glu_dispatch(ctx, &gm, &um, &xb, &wb, &y, act, EPS).unwrap();
        fused::run_dispatches(ctx, &[d]);
        let what = format!(
            "matvec_glu act={act} {} {} subgroups={}",
            gate_f.0, up_f.0, ctx.subgroups
        );
        assert_nmse(&what, &read(ctx, &y, rows), &want, 1e-12);
    }
}
