//! Every WGSL kernel: validated by naga (with and without shader-f16), then compared with the
//! CPU reference on a real adapter (natively: Mesa's lavapipe, `WGPU_BACKEND=vulkan
//! VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json`). Dequantization must be exact
//! (≤ 1 ulp); everything else is compared by normalised mean squared error.
#![cfg(not(target_arch = "wasm32"))]

use pollster::block_on;
use wasm_chord::cpu::matmul::{matmul, Kernel};
use wasm_chord::cpu::ops;
use wasm_chord::gpu::kernels::{
    aligned_block, groups_2d, layouts, unit_weights, Layout, PipelineKey, Shader, FORMATS,
    GPU_TYPES, SHADER_FILES,
};
use wasm_chord::gpu::model::{
    matmat_once, matvec_once, penalties_once, sample_once, GPU_TOP_K_MAX, SAMPLE_ON_HOST,
};
use wasm_chord::gpu::uniforms::{
    AddParams, CausalConvParams, DeltaRuleParams, SoftcapParams, StepParams,
};
use wasm_chord::gpu::GpuSampling;
use wasm_chord::gpu::{GpuContext, GpuMatrix};
use wasm_chord::quant::{self, GgmlType};
use wasm_chord::sampling::{Rng as SamplingRng, Sampler, SamplerConfig};

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

/// A small deterministic generator (xorshift).
mod common;
use common::{cols_for, nmse, random_matrix, Rng};

fn assert_nmse(what: &str, got: &[f32], want: &[f32], max: f64) {
    let e = nmse(got, want);
    eprintln!("{what}: NMSE {e:.3e}");
    assert!(e <= max, "{what}: NMSE {e:.3e} > {max:.1e}");
}

#[test]
fn every_shader_is_valid_wgsl_with_and_without_f16() {
    use wgpu::naga;
    for (name, src) in SHADER_FILES {
        assert!(
            src.starts_with("// "),
            "{name} must open with a header comment"
        );
    }
    for k in Shader::all() {
        let src = k.source().expect("a source for every kernel");
        // The browser's variant: no subgroup builtins (wgpu's webgpu backend has no subgroups,
        // and Tint would want an `enable` it may not know).
        assert!(!src.contains("subgroupAdd("), "{k:?}");
        let module = naga::front::wgsl::parse_str(&src)
            .unwrap_or_else(|e| panic!("{k:?}: {}", e.emit_to_string(&src)));
        // The baseline of every WebGPU device (unpack2x16float is core WGSL; wgpu grants it
        // through the SHADER_F16_IN_F32 downlevel flag), then plus shader-f16.
        let base = naga::valid::Capabilities::SHADER_FLOAT16_IN_FLOAT32;
        for caps in [base, base | naga::valid::Capabilities::SHADER_FLOAT16] {
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                .validate(&module)
                .unwrap_or_else(|e| panic!("{k:?} ({caps:?}): {}", e.emit_to_string(&src)));
        }
        // The subgroup variant of the matvec family (native devices with SUBGROUP).
        let sg = k.source_with(true).expect("a source");
        assert_eq!(k.reduces(), sg.contains("subgroupAdd("), "{k:?}");
        if k.reduces() {
            let module = naga::front::wgsl::parse_str(&sg)
                .unwrap_or_else(|e| panic!("{k:?} (subgroups): {}", e.emit_to_string(&sg)));
            let caps = base | naga::valid::Capabilities::SUBGROUP;
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
                .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(naga::valid::SubgroupOperationSet::all())
                .validate(&module)
                .unwrap_or_else(|e| panic!("{k:?} (subgroups): {}", e.emit_to_string(&sg)));
        }
    }
}

#[test]
fn q4_k_is_read_in_unit_pairs_and_the_others_one_quad_at_a_time() {
    for f in &FORMATS {
        for layout in layouts(f.ty) {
            for k in [
                Shader::Matvec(f.ty, layout),
                Shader::Matmat(f.ty, layout),
                Shader::MatvecFused(f.ty, layout),
            ] {
                let src = k.source().unwrap();
                assert_eq!(src.contains("pair_qs"), f.ty == GgmlType::Q4_K, "{k:?}");
                assert_eq!(src.contains("pair_qs"), f.pairs, "{k:?}");
            }
        }
    }
}

/// The value of `const NAME: u32 = Nu;` in a reader, if it declares one.
fn wgsl_const(src: &str, name: &str) -> Option<usize> {
    let decl = format!("const {name}: u32 = ");
    let at = src.find(&decl)? + decl.len();
    let digits: String = src[at..].chars().take_while(char::is_ascii_digit).collect();
    Some(digits.parse().expect("a decimal constant"))
}

#[test]
fn the_readers_16_entry_tables_are_ggmls() {
    // IQ4_NL / IQ4_XS / MXFP4 keep their value tables as four words of i8 in a WGSL vector.
    use wasm_chord::quant::grids::{KVALUES_IQ4NL, KVALUES_MXFP4};
    for (file, want) in [
        ("fmt_iq4_nl.wgsl", KVALUES_IQ4NL),
        ("fmt_iq4_xs.wgsl", KVALUES_IQ4NL),
        ("fmt_mxfp4.wgsl", KVALUES_MXFP4),
    ] {
        let src = SHADER_FILES.iter().find(|(n, _)| *n == file).unwrap().1;
        let decl = "const KVALUES: vec4<u32> = vec4<u32>(";
        let at = src.find(decl).expect("a KVALUES vector") + decl.len();
        let words: Vec<u32> = src[at..src[at..].find(')').unwrap() + at]
            .split(',')
            .map(|w| {
                let w = w.trim().trim_start_matches("0x").trim_end_matches('u');
                u32::from_str_radix(w, 16).unwrap()
            })
            .collect();
        let got: Vec<i8> = words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .map(|b| b as i8)
            .collect();
        assert_eq!(got, want, "{file}");
    }
}

#[test]
fn the_format_table_agrees_with_the_readers() {
    let readers: Vec<&str> = SHADER_FILES
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| n.starts_with("fmt_"))
        .collect();
    assert_eq!(readers.len(), FORMATS.len(), "one reader per format");
    for f in FORMATS {
        let src = SHADER_FILES
            .iter()
            .find(|(n, _)| *n == f.file)
            .unwrap_or_else(|| panic!("{}: {} is not in SHADER_FILES", f.ty, f.file))
            .1;
        let c = |name| wgsl_const(src, name);
        let (bs, ts) = f.ty.block_geometry();
        let what = format!("{} ({})", f.ty, f.file);
        assert_eq!(c("UNIT_W"), Some(f.unit_weights), "{what}: UNIT_W");
        let units = c("UNITS_PER_BLOCK").expect("UNITS_PER_BLOCK");
        let block_bytes = c("BLOCK_BYTES").expect("BLOCK_BYTES");
        if bs == 1 {
            // Plain floats: a "block" of the reader is one unit.
            assert_eq!((units, block_bytes), (1, f.unit_weights * ts), "{what}");
        } else {
            assert_eq!((units * f.unit_weights, block_bytes), (bs, ts), "{what}");
        }
        let step = c("STEP_QUADS").expect("STEP_QUADS");
        assert!(
            step >= 1 && (f.unit_weights / 4) % step == 0,
            "{what}: STEP_QUADS"
        );
        assert_eq!(c("ALIGN_LEAD"), f.align_lead, "{what}: ALIGN_LEAD");
        let table_bytes = f.table.map_or(0, |t| 4 * t().len());
        assert_eq!(
            c("TABLE_BYTES").unwrap_or(0),
            table_bytes,
            "{what}: TABLE_BYTES"
        );
        assert_eq!(unit_weights(f.ty), f.unit_weights);
    }
}

fn within_ulp(a: f32, b: f32) -> bool {
    a == b || (a.to_bits() as i64 - b.to_bits() as i64).abs() <= 1
}

#[test]
fn dequantize_matches_the_reference_exactly() {
    let ctx = context();
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let (rows, cols) = (3, cols_for(ty));
        let m = random_matrix(ty, rows, cols, 11 + i as u64);
        let mut want = vec![0f32; rows * cols];
        quant::dequantize(ty, &m.data, &mut want).unwrap();
        for layout in layouts(ty) {
            // Uploaded as the model uploads it (repacked for Layout::Aligned).
            let g = GpuMatrix::upload_as(&ctx, &m, layout).unwrap();
            assert_eq!(g.layout, layout);
            let y = ctx.storage_f32("y", rows * cols);
            let n_units = rows * cols / unit_weights(ty);
            let p = ctx.params("p", &[n_units as u32, 0, 0, 1f32.to_bits()]);
            ctx.run_once(
                PipelineKey::new(Shader::Dequant(ty, layout)),
                &[&g.chunks[0].buffer, &y, &p],
                groups_2d(n_units.div_ceil(64)),
            )
            .unwrap();
            let got = block_on(ctx.read_f32(&y, rows * cols)).unwrap();
            let bad = got.iter().zip(&want).position(|(&g, &w)| !within_ulp(g, w));
            assert!(
                bad.is_none(),
                "{ty} {layout:?}: element {bad:?}: {} vs {}",
                got[bad.unwrap()],
                want[bad.unwrap()]
            );
            eprintln!(
                "dequantize {ty} {layout:?}: {} values exact (≤ 1 ulp)",
                got.len()
            );
        }
    }
}

#[test]
fn real_iq_tensors_quantized_by_llama_cpp_match_the_reference() {
    // tests/fixtures/quant/llama.json: 16 rows × 1536 of SmolLM2's blk.0.ffn_down.weight quantized
    // by ggml_quantize_chunk into each IQ format and MXFP4 (scripts/gen-iq-real-fixtures.py).
    // Dequantization must equal the CPU reference exactly in every layout, and matvec / matmat
    // stay within the error bound.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/quant");
    let index: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/llama.json"))
            .expect("tests/fixtures/quant/llama.json (committed with the quant fixtures)"),
    )
    .unwrap();
    let (rows, cols) = (
        index["source"]["rows"].as_u64().unwrap() as usize,
        index["source"]["cols"].as_u64().unwrap() as usize,
    );
    let ctx = context();
    let mut seen = Vec::new();
    for t in index["tensors"].as_array().unwrap() {
        let name = t["type"].as_str().unwrap();
        let ty = *GgmlType::ALL.iter().find(|ty| ty.name() == name).unwrap();
        let path = format!("{dir}/{}", t["input"].as_str().unwrap());
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let m = wasm_chord::model::QMatrix {
            name: format!("llama.cpp {name}"),
            ty,
            rows,
            cols,
            row_bytes: data.len() / rows,
            data,
        };
        let mut want = vec![0f32; rows * cols];
        quant::dequantize(ty, &m.data, &mut want).unwrap();
        let x = Rng(7).vec(cols * 3);
        let mut want_y = vec![0f32; rows * 3];
        matmul(&m, &x, &mut want_y, 3, Kernel::Reference).unwrap();
        let xb = ctx.storage_with("x", bytemuck::cast_slice(&x));
        for layout in layouts(ty) {
            let g = GpuMatrix::upload_as(&ctx, &m, layout).unwrap();
            let y = ctx.storage_f32("y", rows * cols);
            let n_units = rows * cols / unit_weights(ty);
            let p = ctx.params("p", &[n_units as u32, 0, 0, 1f32.to_bits()]);
            ctx.run_once(
                PipelineKey::new(Shader::Dequant(ty, layout)),
                &[&g.chunks[0].buffer, &y, &p],
                groups_2d(n_units.div_ceil(64)),
            )
            .unwrap();
            let got = block_on(ctx.read_f32(&y, rows * cols)).unwrap();
            let bad = got.iter().zip(&want).position(|(&g, &w)| !within_ulp(g, w));
            assert!(bad.is_none(), "{ty} {layout:?}: element {bad:?} differs");
            let yb = ctx.storage_f32("y", rows * 3);
            matmat_once(&ctx, &g, &xb, &yb, 3).unwrap();
            let got = block_on(ctx.read_f32(&yb, rows * 3)).unwrap();
            assert_nmse(
                &format!("llama.cpp {ty} {layout:?} matmat"),
                &got,
                &want_y,
                1e-10,
            );
            matvec_once(&ctx, &g, &xb, &yb).unwrap();
            let got = block_on(ctx.read_f32(&yb, rows)).unwrap();
            assert_nmse(
                &format!("llama.cpp {ty} {layout:?} matvec"),
                &got,
                &want_y[..rows],
                1e-10,
            );
        }
        seen.push(ty);
    }
    assert_eq!(seen.len(), 10, "every IQ format and MXFP4: {seen:?}");
}

#[test]
fn repacked_blocks_are_word_aligned() {
    // What the bytes hold is checked by dequantizing them (above); here the geometry.
    let ctx = context();
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        let m = random_matrix(ty, 5, cols_for(ty), 41 + i as u64);
        let g = GpuMatrix::upload_as(&ctx, &m, Layout::Aligned).unwrap();
        let ts = ty.block_geometry().1;
        match aligned_block(ty) {
            Some((lead, stride)) => {
                assert!(stride % 4 == 0 && stride >= lead + ts && stride < lead + ts + 4);
                assert_eq!(
                    (g.layout, g.row_bytes),
                    (Layout::Aligned, m.row_bytes / ts * stride)
                );
            }
            // Formats aligned already are uploaded unchanged.
            None => assert_eq!((g.layout, g.row_bytes), (Layout::Packed, m.row_bytes)),
        }
    }
}

fn check_matvec(
    ctx: &GpuContext,
    (ty, layout): (GgmlType, Layout),
    rows: usize,
    seed: u64,
    what: &str,
) -> usize {
    let cols = cols_for(ty);
    let m = random_matrix(ty, rows, cols, seed);
    let x = Rng(seed + 100).vec(cols);
    let mut want = vec![0f32; rows];
    matmul(&m, &x, &mut want, 1, Kernel::Reference).unwrap();
    let g = GpuMatrix::upload_as(ctx, &m, layout).unwrap();
    let xb = ctx.storage_with("x", bytemuck::cast_slice(&x));
    let y = ctx.storage_f32("y", rows);
    matvec_once(ctx, &g, &xb, &y).unwrap();
    let got = block_on(ctx.read_f32(&y, rows)).unwrap();
    assert_nmse(&format!("matvec {ty} {layout:?}{what}"), &got, &want, 1e-10);
    g.chunks.len()
}

/// A context on the workgroup-memory reductions (reduce_wg.wgsl, the browser's path) whatever
/// the device has.
fn context_wg() -> GpuContext {
    let ctx = context().with_subgroups(false);
    assert!(!ctx.subgroups);
    ctx
}

#[test]
fn matvec_matches_the_reference() {
    // On the device's path (subgroup reductions where it has SUBGROUP: lavapipe does), then on
    // the workgroup-memory path.
    let ctx = context();
    let key = PipelineKey::new(Shader::Matvec(GgmlType::Q4_K, Layout::Aligned));
    eprintln!(
        "subgroups: {} (sizes {}..={}), matvec uses them: {}",
        ctx.subgroups,
        ctx.info.subgroup_min_size,
        ctx.info.subgroup_max_size,
        ctx.uses_subgroups(key)
    );
    if ctx.features.contains(wgpu::Features::SUBGROUP) {
        assert!(ctx.uses_subgroups(key), "the subgroup path is not tested");
    }
    for (ctx, what) in [(ctx, " (device)"), (context_wg(), " (workgroup)")] {
        for (i, &ty) in GPU_TYPES.iter().enumerate() {
            for layout in layouts(ty) {
                // 37 rows: not a multiple of the rows per workgroup.
                check_matvec(&ctx, (ty, layout), 37, 21 + i as u64, what);
            }
        }
    }
}

#[test]
fn paired_q4_k_matvec_over_rows_of_many_blocks() {
    // Rows of 9 blocks (2304 weights, 288 words of qs): lanes wrap over the blocks and pairs
    // several times at every ROWS, on both reduction paths.
    for ctx in [context(), context_wg()] {
        for rows in [1, 5, 64] {
            for layout in layouts(GgmlType::Q4_K) {
                let m = random_matrix(GgmlType::Q4_K, rows, 2304, 70 + rows as u64);
                let x = Rng(71).vec(2304);
                let mut want = vec![0f32; rows];
                matmul(&m, &x, &mut want, 1, Kernel::Reference).unwrap();
                let g = GpuMatrix::upload_as(&ctx, &m, layout).unwrap();
                let xb = ctx.storage_with("x", bytemuck::cast_slice(&x));
                let y = ctx.storage_f32("y", rows);
                matvec_once(&ctx, &g, &xb, &y).unwrap();
                let got = block_on(ctx.read_f32(&y, rows)).unwrap();
                let what = format!("Q4_K {layout:?} {rows}x2304 subgroups={}", ctx.subgroups);
                assert_nmse(&what, &got, &want, 1e-10);
            }
        }
    }
}

#[test]
fn matvec_is_the_same_with_and_without_shader_runtime_checks() {
    // The default compiles our kernels without wgpu's bounds clamps and loop bounding (they
    // cost ~13% of a decode step on an H200); a browser always checks. Same results either way.
    let checked = context().with_shader_checks(true);
    assert!(checked.shader_checks);
    for (ty, layout) in [
        (GgmlType::Q4_K, Layout::Aligned),
        (GgmlType::Q8_0, Layout::Packed),
    ] {
        check_matvec(&checked, (ty, layout), 37, 51, " (checked)");
    }
}

#[test]
fn matvec_over_a_matrix_split_into_row_ranges() {
    // Pretend one binding holds 10 rows of Q6_K (and 10 of Q8_0): 37 rows become 4 buffers.
    let ctx = context();
    let ctx = ctx.with_max_binding(10 * 3 * 210 + 4);
    let (q6, q8) = (GgmlType::Q6_K, GgmlType::Q8_0);
    assert_eq!(
        check_matvec(&ctx, (q6, Layout::Packed), 37, 3, " (split)"),
        4
    );
    assert!(check_matvec(&ctx, (q8, Layout::Packed), 37, 4, " (split)") > 1);
    // Repacked rows are longer (3 · 212 bytes): 9 to a buffer.
    assert_eq!(
        check_matvec(&ctx, (q6, Layout::Aligned), 37, 3, " (split)"),
        5
    );
}

#[test]
fn every_format_over_a_matrix_split_into_row_ranges() {
    // One binding holds 10 rows of each format (as uploaded, after its lookup table if it has
    // one): 37 rows become 4 buffers, for matvec and matmat alike, in every layout.
    let mut ctx = context_wg();
    let limit = ctx.max_binding;
    for (i, f) in FORMATS.iter().enumerate() {
        let ty = f.ty;
        let table = f.table.map_or(0, |t| 4 * t().len()) as u64;
        for layout in layouts(ty) {
            ctx.max_binding = limit;
            let m = random_matrix(ty, 1, cols_for(ty), 1);
            let one_row = GpuMatrix::upload_as(&ctx, &m, layout).unwrap();
            ctx.max_binding = table + 10 * one_row.row_bytes as u64 + 4;
            let seed = 61 + i as u64;
            assert_eq!(
                check_matvec(&ctx, (ty, layout), 37, seed, " (split)"),
                4,
                "{ty} {layout:?}"
            );
            assert_eq!(
                check_matmat(&ctx, (ty, layout), 37, 9, seed, " (split)"),
                4,
                "{ty} {layout:?}"
            );
        }
    }
}

/// Y = W·X for `n_tok` tokens with matmat.wgsl against the CPU reference, and against
/// matvec.wgsl run token by token (the same arithmetic: equal bit for bit). Returns the number
/// of row ranges of the uploaded matrix.
fn check_matmat(
    ctx: &GpuContext,
    (ty, layout): (GgmlType, Layout),
    rows: usize,
    n_tok: usize,
    seed: u64,
    what: &str,
) -> usize {
    // Compared bit for bit with matvec below: its workgroup-memory path sums in matmat's order.
    assert!(!ctx.subgroups, "check_matmat wants context_wg()");
    let cols = cols_for(ty);
    let m = random_matrix(ty, rows, cols, seed);
    let x = Rng(seed + 200).vec(cols * n_tok);
    let mut want = vec![0f32; rows * n_tok];
    matmul(&m, &x, &mut want, n_tok, Kernel::Reference).unwrap();
    let g = GpuMatrix::upload_as(ctx, &m, layout).unwrap();
    let xb = ctx.storage_with("x", bytemuck::cast_slice(&x));
    let y = ctx.storage_f32("y", rows * n_tok);
    matmat_once(ctx, &g, &xb, &y, n_tok).unwrap();
    let got = block_on(ctx.read_f32(&y, rows * n_tok)).unwrap();
    assert_nmse(
        &format!("matmat {ty} {layout:?} ({n_tok} tokens){what}"),
        &got,
        &want,
        1e-10,
    );
    // Every token row against matvec.wgsl on that token alone.
    for t in 0..n_tok {
        let xt = ctx.storage_with("x", bytemuck::cast_slice(&x[t * cols..(t + 1) * cols]));
        let yt = ctx.storage_f32("y", rows);
        matvec_once(ctx, &g, &xt, &yt).unwrap();
        let one = block_on(ctx.read_f32(&yt, rows)).unwrap();
        assert_eq!(
            one,
            got[t * rows..(t + 1) * rows],
            "matmat {ty} {layout:?}{what}: token {t} differs from matvec"
        );
    }
    g.chunks.len()
}

#[test]
fn matmat_matches_the_reference() {
    let ctx = context_wg();
    for (i, &ty) in GPU_TYPES.iter().enumerate() {
        for layout in layouts(ty) {
            // 37 rows and 13 tokens: neither a multiple of the workgroup's rows nor of its 8
            // tokens.
            check_matmat(&ctx, (ty, layout), 37, 13, 31 + i as u64, "");
        }
    }
    // Fewer tokens than a tile, and exactly two tiles.
    check_matmat(&ctx, (GgmlType::Q4_K, Layout::Packed), 19, 3, 5, "");
    check_matmat(&ctx, (GgmlType::Q6_K, Layout::Aligned), 19, 16, 6, "");
}

#[test]
fn matmat_over_a_matrix_split_into_row_ranges() {
    let ctx = context_wg().with_max_binding(10 * 3 * 210 + 4);
    let (q6, q8) = (GgmlType::Q6_K, GgmlType::Q8_0);
    assert_eq!(
        check_matmat(&ctx, (q6, Layout::Packed), 37, 11, 7, " (split)"),
        4
    );
    assert!(check_matmat(&ctx, (q8, Layout::Aligned), 37, 9, 8, " (split)") > 1);
}

#[test]
fn rmsnorm_matches_the_reference() {
    let ctx = context();
    let (n, rows) = (576, 3);
    let mut r = Rng(7);
    let x = r.vec(n * rows);
    let w = r.vec(n);
    let mut want = vec![0f32; n * rows];
    for (o, xi) in want.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        ops::rmsnorm(o, xi, &w, 1e-5);
    }
    let (xb, wb) = (
        ctx.storage_with("x", bytemuck::cast_slice(&x)),
        ctx.storage_with("w", bytemuck::cast_slice(&w)),
    );
    let y = ctx.storage_f32("y", n * rows);
    let p = ctx.params("p", &[n as u32, 1e-5f32.to_bits()]);
    ctx.run_once(
        PipelineKey::new(Shader::RmsNorm),
        &[&xb, &wb, &y, &p],
        [rows as u32, 1, 1],
    )
    .unwrap();
    let got = block_on(ctx.read_f32(&y, n * rows)).unwrap();
    assert_nmse("rmsnorm", &got, &want, 1e-12);
}

#[test]
fn rope_matches_the_reference_in_both_conventions() {
    let ctx = context();
    let (heads, hd) = (3, 64);
    for (neox, n_rot, scale) in [
        (false, 64, 1.0),
        (true, 64, 0.125),
        (false, 32, 1.0),
        (true, 48, 0.5),
    ] {
        let pos = 1234;
        let inv = ops::rope_inv_freq(n_rot, 10000.0, 1.0, None);
        let x = Rng(9).vec(heads * hd);
        let mut want = x.clone();
        for h in want.chunks_exact_mut(hd) {
            ops::rope(h, pos, &inv, neox);
            h.iter_mut().for_each(|v| *v *= scale);
        }
        let cs: Vec<f32> = inv
            .iter()
            .flat_map(|f| {
                let t = pos as f64 * f;
                [t.cos() as f32, t.sin() as f32]
            })
            .collect();
        let v = ctx.storage_with("v", bytemuck::cast_slice(&x));
        let csb = ctx.storage_with("cs", bytemuck::cast_slice(&cs));
        let p = ctx.params(
            "p",
            &[
                heads as u32,
                hd as u32,
                n_rot as u32,
                u32::from(neox),
                0,
                f32::to_bits(scale),
            ],
        );
        ctx.run_once(
            PipelineKey::new(Shader::Rope),
            &[&v, &csb, &p],
            [((heads * hd / 2).div_ceil(64)) as u32, 1, 1],
        )
        .unwrap();
        let got = block_on(ctx.read_f32(&v, heads * hd)).unwrap();
        assert_nmse(
            &format!("rope neox={neox} n_rot={n_rot}"),
            &got,
            &want,
            1e-12,
        );
    }
}

#[test]
fn attention_matches_the_reference() {
    let ctx = context();
    // 6 Q heads over 2 KV heads, head_dim 64, 300 cached positions of a 512 context.
    let (n_head, n_kv_head, hd, n_ctx) = (6, 2, 64, 512);
    let group = n_head / n_kv_head;
    let kv_dim = n_kv_head * hd;
    let mut r = Rng(13);
    let q = r.vec(n_head * hd);
    let kc = r.vec(n_ctx * kv_dim);
    let vc = r.vec(n_ctx * kv_dim);
    for (n_kv, first, kq_scale) in [(300, 0, 0.125), (300, 300 - 128, 1.0), (1, 0, 0.125)] {
        let mut want = vec![0f32; n_head * hd];
        for h in 0..n_head {
            let kvh = h / group;
            let qh = &q[h * hd..(h + 1) * hd];
            let mut s: Vec<f32> = (first..n_kv)
                .map(|j| {
                    let k = &kc[j * kv_dim + kvh * hd..j * kv_dim + (kvh + 1) * hd];
                    qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * kq_scale
                })
                .collect();
            ops::softmax(&mut s);
            for (i, a) in s.iter().enumerate() {
                let j = first + i;
                for d in 0..hd {
                    want[h * hd + d] += a * vc[j * kv_dim + kvh * hd + d];
                }
            }
        }
        let b = |l, v: &[f32]| ctx.storage_with(l, bytemuck::cast_slice(v));
        let (qb, kb, vb) = (b("q", &q), b("k", &kc), b("v", &vc));
        let o = ctx.storage_f32("o", n_head * hd);
        let sc = ctx.storage_f32("scores", n_head * n_ctx);
        let p = ctx.params(
            "p",
            &[
                n_ctx as u32,
                group as u32,
                hd as u32,
                hd as u32,
                kv_dim as u32,
                kv_dim as u32,
                first as u32,
                n_kv as u32,
                f32::to_bits(kq_scale),
            ],
        );
        ctx.run_once(
            PipelineKey::new(Shader::Attention),
            &[&qb, &kb, &vb, &o, &sc, &p],
            [n_head as u32, 1, 1],
        )
        .unwrap();
        let got = block_on(ctx.read_f32(&o, n_head * hd)).unwrap();
        assert_nmse(
            &format!("attention n_kv={n_kv} first={first}"),
            &got,
            &want,
            1e-10,
        );
    }
}

#[test]
fn softmax_matches_the_reference() {
    let ctx = context();
    let (n, rows) = (1000, 2);
    let x: Vec<f32> = Rng(17).vec(n * rows).iter().map(|v| v * 20.0).collect();
    let mut want = x.clone();
    want.chunks_exact_mut(n).for_each(ops::softmax);
    let v = ctx.storage_with("v", bytemuck::cast_slice(&x));
    let p = ctx.params("p", &[n as u32]);
    ctx.run_once(
        PipelineKey::new(Shader::Softmax),
        &[&v, &p],
        [rows as u32, 1, 1],
    )
    .unwrap();
    let got = block_on(ctx.read_f32(&v, n * rows)).unwrap();
    assert_nmse("softmax", &got, &want, 1e-10);
}

#[test]
fn gated_activations_and_add_match_the_reference() {
    let ctx = context();
    let n = 1500;
    let mut r = Rng(19);
    let g: Vec<f32> = r.vec(n).iter().map(|v| v * 12.0).collect();
    let u = r.vec(n);
    for (act, f) in [(0u32, ops::silu as fn(f32) -> f32), (1, ops::gelu_tanh)] {
        let want: Vec<f32> = g.iter().zip(&u).map(|(&a, &b)| f(a) * b).collect();
        let gb = ctx.storage_with("g", bytemuck::cast_slice(&g));
        let ub = ctx.storage_with("u", bytemuck::cast_slice(&u));
        let p = ctx.params("p", &[n as u32]);
        let key = PipelineKey {
            act,
            ..PipelineKey::new(Shader::Gate)
        };
        ctx.run_once(key, &[&gb, &ub, &p], [n.div_ceil(64) as u32, 1, 1])
            .unwrap();
        let got = block_on(ctx.read_f32(&gb, n)).unwrap();
        assert_nmse(&format!("gate act={act}"), &got, &want, 1e-11);
    }
    // y = (y + b_scale·b)·y_scale: plain, and with Granite's and Gemma 4's scales (powers of
    // two and 1.25: exact products, so the sums match the host's exactly).
    for (b_scale, y_scale) in [(1.0f32, 1.0f32), (0.5, 1.25)] {
        let want: Vec<f32> = g
            .iter()
            .zip(&u)
            .map(|(a, b)| (a + b_scale * b) * y_scale)
            .collect();
        let gb = ctx.storage_with("g", bytemuck::cast_slice(&g));
        let ub = ctx.storage_with("u", bytemuck::cast_slice(&u));
        let p = AddParams {
            b_scale,
            y_scale,
            ..AddParams::new(n, true)
        };
        let p = ctx.uniform("p", &p);
        ctx.run_once(
            PipelineKey::new(Shader::Add),
            &[&gb, &ub, &p],
            [n.div_ceil(64) as u32, 1, 1],
        )
        .unwrap();
        assert_eq!(
            block_on(ctx.read_f32(&gb, n)).unwrap(),
            want,
            "{b_scale} {y_scale}"
        );
    }
}

/// causal_conv.wgsl against its CPU twin (`cpu::short_conv`, reference), five tokens in one
/// dispatch: Qwen3.5's form (SiLU after, 4 taps) and LFM2's gated one (B·x before, C· after,
/// 3 taps); the outputs and the state left behind.
#[test]
fn causal_conv_matches_the_cpu_twin() {
    use wasm_chord::cpu::short_conv::{causal_conv_step_reference, short_conv_step};
    let ctx = context();
    let mut r = Rng(31);
    let (n, n_tok) = (100usize, 5usize);
    for (gated, taps) in [(0u32, 4usize), (1, 3)] {
        let width = if gated == 1 { 3 * n } else { n };
        let input = r.vec(n_tok * width);
        let w = r.vec(n * taps);
        let state0 = r.vec((taps - 1) * n);
        let (mut state, mut want) = (state0.clone(), vec![0f32; n_tok * n]);
        let mut bx = vec![0f32; n];
        for t in 0..n_tok {
            let (row, y) = (
                &input[t * width..(t + 1) * width],
                &mut want[t * n..(t + 1) * n],
            );
            if gated == 1 {
                let (b, rest) = row.split_at(n);
                let (c, x) = rest.split_at(n);
                short_conv_step(&mut state, &w, (b, c, x), &mut bx, y, Kernel::Reference);
            } else {
                causal_conv_step_reference(&mut state, &w, row, y);
                y.iter_mut().for_each(|v| *v = ops::silu(*v));
            }
        }
        let bufs = [
            ctx.storage_with("input", bytemuck::cast_slice(&input)),
            ctx.storage_with("w", bytemuck::cast_slice(&w)),
            ctx.storage_with("state", bytemuck::cast_slice(&state0)),
            ctx.storage_f32("y", n_tok * n),
            ctx.uniform(
                "p",
                &CausalConvParams {
                    n: n as u32,
                    taps: taps as u32,
                },
            ),
            ctx.uniform(
                "step",
                &StepParams {
                    pos: 0,
                    n_tokens: n_tok as u32,
                },
            ),
        ];
        let key = PipelineKey {
            gated,
            ..PipelineKey::new(Shader::CausalConv)
        };
        let refs: Vec<&wgpu::Buffer> = bufs.iter().collect();
        ctx.run_once(key, &refs, [n.div_ceil(64) as u32, 1, 1])
            .unwrap();
        let got = block_on(ctx.read_f32(&bufs[3], n_tok * n)).unwrap();
        assert_nmse(
            &format!("causal_conv GATED {gated} output"),
            &got,
            &want,
            1e-12,
        );
        let got_state = block_on(ctx.read_f32(&bufs[2], state.len())).unwrap();
        assert_eq!(got_state, state, "GATED {gated}: the state left behind");
    }
}

/// causal_conv.wgsl (SiLU) then delta_rule.wgsl, three tokens in one dispatch each, against
/// the CPU reference `delta_net_step` token by token: more value heads than key heads, a head
/// size that is not a power of two; the outputs and both states left behind.
#[test]
fn delta_rule_matches_the_cpu_reference() {
    use wasm_chord::cpu::delta_net::{delta_net_step, DeltaInputs, DeltaParams};
    use wasm_chord::model::DeltaNetSpec;
    let ctx = context();
    let mut r = Rng(37);
    let spec = DeltaNetSpec {
        head_dim: 24,
        k_heads: 2,
        v_heads: 4,
        conv_taps: 4,
    };
    let (s, hv, n_tok) = (spec.head_dim, spec.v_heads, 3usize);
    let (cd, vd) = (spec.conv_dim(), spec.value_dim());
    let conv_w: Vec<f32> = r.vec(cd * 4).iter().map(|v| v * 0.5).collect();
    let dt_bias = r.vec(hv);
    let a: Vec<f32> = r.vec(hv).iter().map(|v| -v.abs() - 0.1).collect();
    let norm = r.vec(s);
    let eps = 1e-6;
    let (qkv, z) = (r.vec(n_tok * cd), r.vec(n_tok * vd));
    let beta: Vec<f32> = r.vec(n_tok * hv).iter().map(|v| v * 3.0).collect();
    let alpha: Vec<f32> = r.vec(n_tok * hv).iter().map(|v| v * 3.0).collect();
    let conv_len = 3 * cd;
    let state0: Vec<f32> = r
        .vec(conv_len + hv * s * s)
        .iter()
        .map(|v| v * 0.3)
        .collect();
    // The CPU reference, token by token.
    let p = DeltaParams {
        spec,
        conv: &conv_w,
        dt_bias: &dt_bias,
        a: &a,
        norm: &norm,
        eps,
    };
    let (mut state, mut want) = (state0.clone(), vec![0f32; n_tok * vd]);
    let mut scratch = vec![0f32; cd];
    for t in 0..n_tok {
        let x = DeltaInputs {
            qkv: &qkv[t * cd..(t + 1) * cd],
            z: &z[t * vd..(t + 1) * vd],
            beta: &beta[t * hv..(t + 1) * hv],
            alpha: &alpha[t * hv..(t + 1) * hv],
        };
        let o = &mut want[t * vd..(t + 1) * vd];
        delta_net_step(&p, &x, &mut state, &mut scratch, o, Kernel::Reference);
    }
    // The GPU: the convolution, then the rule.
    let f = |label: &str, v: &[f32]| ctx.storage_with(label, bytemuck::cast_slice(v));
    let (qkv_b, conv_b) = (f("qkv", &qkv), f("conv taps", &conv_w));
    let conv_state = f("conv state", &state0[..conv_len]);
    let mats = f("mats", &state0[conv_len..]);
    let convolved = ctx.storage_f32("convolved", n_tok * cd);
    let step = ctx.uniform(
        "step",
        &StepParams {
            pos: 0,
            n_tokens: n_tok as u32,
        },
    );
    let cp = ctx.uniform(
        "conv",
        &CausalConvParams {
            n: cd as u32,
            taps: 4,
        },
    );
    let bufs = [&qkv_b, &conv_b, &conv_state, &convolved, &cp, &step];
    ctx.run_once(
        PipelineKey::new(Shader::CausalConv),
        &bufs,
        [cd.div_ceil(64) as u32, 1, 1],
    )
    .unwrap();
    let vecs: Vec<f32> = dt_bias.iter().chain(&a).chain(&norm).copied().collect();
    let (z_b, beta_b, alpha_b, vecs_b) = (
        f("z", &z),
        f("beta", &beta),
        f("alpha", &alpha),
        f("vecs", &vecs),
    );
    let out = ctx.storage_f32("out", n_tok * vd);
    let dp = ctx.uniform(
        "rule",
        &DeltaRuleParams {
            s: s as u32,
            k_heads: spec.k_heads as u32,
            v_heads: hv as u32,
            conv_dim: cd as u32,
            eps,
        },
    );
    let bufs = [
        &convolved, &z_b, &beta_b, &alpha_b, &vecs_b, &mats, &out, &dp, &step,
    ];
    ctx.run_once(
        PipelineKey::new(Shader::DeltaRule),
        &bufs,
        [hv as u32, 1, 1],
    )
    .unwrap();
    let got = block_on(ctx.read_f32(&out, n_tok * vd)).unwrap();
    assert_nmse("delta_rule output", &got, &want, 1e-10);
    let got_mats = block_on(ctx.read_f32(&mats, hv * s * s)).unwrap();
    assert_nmse("delta_rule state", &got_mats, &state[conv_len..], 1e-10);
    let got_conv = block_on(ctx.read_f32(&conv_state, conv_len)).unwrap();
    assert_eq!(got_conv, state[..conv_len], "the convolution's state");
}

/// softcap.wgsl: cap·tanh(v/cap), large logits included (tanh saturates, no NaN).
#[test]
fn softcap_matches_the_reference() {
    let ctx = context();
    let n = 70_000;
    let mut r = Rng(23);
    let mut v: Vec<f32> = r.vec(n).iter().map(|x| x * 80.0).collect();
    v[..4].copy_from_slice(&[1e30, -1e30, 0.0, 3e4]);
    let cap = 30.0f32;
    let want: Vec<f32> = v.iter().map(|x| cap * (x / cap).tanh()).collect();
    let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
    let p = ctx.uniform("p", &SoftcapParams { n: n as u32, cap });
    let groups = wasm_chord::gpu::kernels::groups_2d(n.div_ceil(64));
    ctx.run_once(PipelineKey::new(Shader::Softcap), &[&vb, &p], groups)
        .unwrap();
    let got = block_on(ctx.read_f32(&vb, n)).unwrap();
    let worst = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "softcap differs by {worst}");
}

#[test]
fn argmax_takes_the_first_maximum() {
    let ctx = context();
    for (n, at, tie) in [
        (49152usize, 31337usize, Some(40000usize)),
        (7, 6, None),
        (151936, 3, Some(100)),
    ] {
        let mut v = Rng(n as u64).vec(n);
        v[at] = 5.0;
        if let Some(t) = tie {
            v[t] = 5.0;
        }
        let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
        let o = ctx.storage_f32("o", 1);
        let p = ctx.params("p", &[n as u32]);
        ctx.run_once(PipelineKey::new(Shader::Argmax), &[&vb, &o, &p], [1, 1, 1])
            .unwrap();
        let got = block_on(ctx.read_u32(&o, 1)).unwrap()[0] as usize;
        assert_eq!(got, wasm_chord::sampling::argmax(&v), "n={n}");
    }
}

#[test]
fn a_row_larger_than_one_binding_is_a_typed_error() {
    let ctx = context().with_max_binding(256);
    let m = random_matrix(GgmlType::Q4_K, 2, 768, 1);
    let err = GpuMatrix::upload(&ctx, &m)
        .err()
        .expect("a 432-byte row cannot fit 256 bytes");
    assert_eq!(err.code(), "gpu");
    assert!(
        err.to_string().contains("maxStorageBufferBindingSize"),
        "{err}"
    );
}

#[test]
fn kv_store_appends_at_the_step_position() {
    let ctx = context();
    let (n, n_ctx, pos) = (192, 8, 5);
    let src = Rng(23).vec(n);
    let s = ctx.storage_with("src", bytemuck::cast_slice(&src));
    let dst = ctx.storage_f32("cache", n * n_ctx);
    let p = ctx.params("p", &[n as u32]);
    let step = ctx.params("step", &[pos as u32]);
    ctx.run_once(
        PipelineKey::new(Shader::KvStore),
        &[&s, &dst, &p, &step],
        [n.div_ceil(64) as u32, 1, 1],
    )
    .unwrap();
    let got = block_on(ctx.read_f32(&dst, n * n_ctx)).unwrap();
    let mut want = vec![0f32; n * n_ctx];
    want[pos * n..(pos + 1) * n].copy_from_slice(&src);
    assert_eq!(got, want);
}

/// Sample `v` on the GPU (`sample.wgsl`) with `s`.
fn gpu_sample(ctx: &GpuContext, vb: &wgpu::Buffer, n: usize, s: &GpuSampling) -> u32 {
    block_on(sample_once(ctx, vb, n, s)).unwrap()
}

/// The CPU sampler's candidates for `cfg` over `v`: its order, cut by top-k, top-p (at
/// temperature 1) and min-p. Also whether a choice may flip by rounding: top_p, min_p or `u`
/// within `eps` of a boundary.
fn cpu_kept(v: &[f32], cfg: &SamplerConfig, u: f64, eps: f64) -> (Vec<(usize, f32)>, bool) {
    let mut cand: Vec<(usize, f32)> = v
        .iter()
        .copied()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .collect();
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if cfg.top_k > 0 {
        cand.truncate(cfg.top_k);
    }
    let probs = |c: &[(usize, f32)], t: f64| {
        let e: Vec<f64> = c
            .iter()
            .map(|&(_, l)| ((f64::from(l) - f64::from(c[0].1)) / t).exp())
            .collect();
        let s: f64 = e.iter().sum();
        e.into_iter().map(|x| x / s).collect::<Vec<_>>()
    };
    let mut near = false;
    if cfg.top_p < 1.0 {
        let mut acc = 0.0;
        for (i, p) in probs(&cand, 1.0).into_iter().enumerate() {
            acc += p;
            near |= (acc - f64::from(cfg.top_p)).abs() < eps;
            if acc >= f64::from(cfg.top_p) {
                cand.truncate(i + 1);
                break;
            }
        }
    }
    if cfg.min_p > 0.0 {
        let p = probs(&cand, 1.0);
        near |= p
            .iter()
            .any(|&x| (x / p[0] - f64::from(cfg.min_p)).abs() < eps);
        let keep = p
            .iter()
            .take_while(|&&x| x >= p[0] * f64::from(cfg.min_p))
            .count();
        cand.truncate(keep.max(1));
    }
    let mut acc = 0.0;
    for p in probs(&cand, f64::from(cfg.temperature)) {
        acc += p;
        near |= (acc - u).abs() < eps;
    }
    (cand, near)
}

fn near_boundary(v: &[f32], cfg: &SamplerConfig, u: f64, eps: f64) -> bool {
    cpu_kept(v, cfg, u, eps).1
}

#[test]
fn sampling_with_top_k_one_is_the_argmax() {
    let ctx = context();
    for (n, at, tie) in [(49152usize, 31337usize, Some(40000usize)), (7, 6, None)] {
        let mut v = Rng(n as u64 + 1).vec(n);
        v[at] = 5.0;
        if let Some(t) = tie {
            v[t] = 5.0;
        }
        let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
        for (temperature, u) in [(1.0, 0.999), (0.7, 0.0), (0.0, 0.5)] {
            let s = GpuSampling {
                temperature,
                top_k: 1,
                top_p: 1.0,
                uniform: u,
                ..Default::default()
            };
            let got = gpu_sample(&ctx, &vb, n, &s) as usize;
            assert_eq!(got, wasm_chord::sampling::argmax(&v), "n={n} {s:?}");
        }
    }
}

#[test]
fn sampling_matches_the_cpu_sampler_given_the_same_uniform() {
    let ctx = context();
    let n = 3000;
    let mut v: Vec<f32> = Rng(77).vec(n).into_iter().map(|x| x * 6.0).collect();
    // Ties (ordered by id on both sides), a NaN and infinities (never candidates).
    v[10] = 5.5;
    v[2500] = 5.5;
    v[11] = 5.9;
    v[12] = f32::NAN;
    v[13] = f32::NEG_INFINITY;
    let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
    let (mut same, mut flipped) = (0, 0);
    for (i, &(temperature, top_k, top_p)) in [
        (0.8f32, 40usize, 0.9f32),
        (1.0, 64, 1.0),
        (1.5, 10, 0.5),
        (0.3, 20, 0.95),
        (2.0, 64, 0.99),
        (1.0, 5, 1.0),
    ]
    .iter()
    .enumerate()
    {
        let cfg = SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed: 1000 + i as u64,
            ..Default::default()
        };
        let mut cpu = Sampler::new(cfg.clone());
        // The sampler draws one next_f64 per token: mirror its stream for the GPU.
        let mut rng = SamplingRng::new(cfg.seed);
        for _ in 0..150 {
            let u = rng.next_f64();
            let want = cpu.sample(&mut v.clone(), &[]);
            let s = GpuSampling {
                temperature,
                top_k,
                top_p,
                uniform: u,
                ..Default::default()
            };
            let got = gpu_sample(&ctx, &vb, n, &s);
            if got == want {
                same += 1;
            } else {
                assert!(
                    near_boundary(&v, &cfg, u, 1e-5),
                    "{cfg:?} u={u}: GPU chose {got}, CPU {want}"
                );
                flipped += 1;
            }
        }
    }
    eprintln!("sampling vs CPU: {same} equal, {flipped} at a rounding boundary");
    assert!(flipped <= 2);
}

#[test]
fn sampling_over_the_whole_vocabulary_and_min_p_match_the_cpu_sampler() {
    // top_k 0 (every token) and min-p. sample.wgsl extracts 64 candidates and normalises over
    // every logit, so it decides exactly whenever the top-p or min-p cut, or the draw, falls
    // among them; otherwise (and for 64 < top_k < n) it answers SAMPLE_ON_HOST, which must only
    // happen when the CPU's kept set is larger than the candidates.
    let ctx = context();
    let n = 3000;
    let flat: Vec<f32> = Rng(41).vec(n).into_iter().map(|x| x * 2.0).collect();
    let mut peaked = flat.clone();
    for (i, id) in [7usize, 900, 901, 2999, 1500, 33].into_iter().enumerate() {
        peaked[id] = 9.0 - i as f32 * 0.7;
    }
    peaked[44] = f32::NAN;
    peaked[45] = f32::INFINITY;
    peaked[46] = f32::NEG_INFINITY;
    let (mut on_gpu, mut on_host, mut flipped) = (0, 0, 0);
    for (i, &(v, temperature, top_k, top_p, min_p)) in [
        (&peaked, 1.0f32, 0usize, 1.0f32, 0.0f32),
        (&peaked, 0.7, 0, 0.9, 0.0),
        (&peaked, 1.0, 0, 1.0, 0.05),
        (&peaked, 1.3, 0, 0.97, 0.01),
        (&flat, 1.0, 0, 0.95, 0.0),
        (&flat, 0.9, 40, 1.0, 0.3),
        (&flat, 1.0, 0, 1.0, 0.5),
        (&peaked, 1.0, 100, 1.0, 0.0),
    ]
    .iter()
    .enumerate()
    {
        let vb = ctx.storage_with("v", bytemuck::cast_slice(v));
        let cfg = SamplerConfig {
            temperature,
            top_k,
            top_p,
            min_p,
            seed: 2000 + i as u64,
            ..Default::default()
        };
        let mut cpu = Sampler::new(cfg.clone());
        let mut rng = SamplingRng::new(cfg.seed);
        for _ in 0..60 {
            let u = rng.next_f64();
            let want = cpu.sample(&mut v.clone(), &[]);
            let s = GpuSampling::new(&cfg, u);
            let got = gpu_sample(&ctx, &vb, n, &s);
            let (kept, near) = cpu_kept(v, &cfg, u, 1e-5);
            if got == SAMPLE_ON_HOST {
                assert!(
                    kept.len() > GPU_TOP_K_MAX,
                    "{cfg:?} u={u}: left to the host, but the CPU keeps {} tokens",
                    kept.len()
                );
                on_host += 1;
            } else if got == want {
                on_gpu += 1;
            } else {
                assert!(near, "{cfg:?} u={u}: GPU chose {got}, CPU {want}");
                flipped += 1;
            }
        }
    }
    eprintln!(
        "whole vocabulary / min-p: {on_gpu} decided on the GPU, {on_host} left to the host, \
         {flipped} at a rounding boundary"
    );
    assert!(on_gpu >= 200 && on_host >= 60 && flipped <= 2);
}

#[test]
fn penalties_match_the_cpu_sampler() {
    let ctx = context();
    let n = 1000;
    let v: Vec<f32> = Rng(43).vec(n).into_iter().map(|x| x * 5.0).collect();
    // Repeats, an id past the vocabulary (skipped), and old tokens outside the window.
    let history = [
        11u32, 12, 13, 3, 5, 3, 999, 2000, 7, 3, 5, 42, 0, 3, 500, 501, 502,
    ];
    for (repeat_penalty, presence_penalty, frequency_penalty, penalty_last_n) in [
        (1.3f32, 0.5f32, 0.2f32, 14usize),
        (0.8, 0.0, 0.0, 64),
        (1.0, 0.0, 0.3, 5),
        (1.1, 0.25, 0.0, 0),
    ] {
        let cfg = SamplerConfig {
            repeat_penalty,
            presence_penalty,
            frequency_penalty,
            penalty_last_n,
            ..Default::default()
        };
        let mut want = v.clone();
        Sampler::new(cfg.clone()).apply_penalties(&mut want, &history);
        let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
        let s = GpuSampling::new(&cfg, 0.0);
        penalties_once(&ctx, &vb, n, &s, &history).unwrap();
        let got = block_on(ctx.read_f32(&vb, n)).unwrap();
        let bad = got.iter().zip(&want).position(|(&g, &w)| !within_ulp(g, w));
        assert!(
            bad.is_none(),
            "{cfg:?}: logit {bad:?}: GPU {} CPU {}",
            got[bad.unwrap()],
            want[bad.unwrap()]
        );
        let changed = want.iter().zip(&v).filter(|(a, b)| a != b).count();
        eprintln!("penalties {cfg:?}: {changed} logits changed, equal to the CPU (≤ 1 ulp)");
        assert!(penalty_last_n == 0 || changed > 0);
    }
}

#[test]
fn sampled_frequencies_match_the_softmax() {
    let ctx = context();
    let n = 40;
    let temperature = 0.8f32;
    let v: Vec<f32> = Rng(5).vec(n).into_iter().map(|x| x * 3.0).collect();
    let vb = ctx.storage_with("v", bytemuck::cast_slice(&v));
    let mx = v.iter().copied().fold(f32::MIN, f32::max);
    let e: Vec<f64> = v
        .iter()
        .map(|&l| (f64::from(l - mx) / f64::from(temperature)).exp())
        .collect();
    let sum: f64 = e.iter().sum();
    // Stratified uniforms (i + ½)/N: each token's share is within 1/N of its probability;
    // then seeded draws, within 5 standard deviations.
    let draws = 1500usize;
    let mut stratified = vec![0usize; n];
    let mut seeded = vec![0usize; n];
    let mut rng = SamplingRng::new(9);
    for i in 0..draws {
        for (u, counts) in [
            ((i as f64 + 0.5) / draws as f64, &mut stratified),
            (rng.next_f64(), &mut seeded),
        ] {
            let s = GpuSampling {
                temperature,
                top_k: 64,
                top_p: 1.0,
                uniform: u,
                ..Default::default()
            };
            counts[gpu_sample(&ctx, &vb, n, &s) as usize] += 1;
        }
    }
    let mut worst = 0f64;
    for t in 0..n {
        let p = e[t] / sum;
        let fs = stratified[t] as f64 / draws as f64;
        assert!(
            (fs - p).abs() <= 1.0 / draws as f64 + 1e-5,
            "token {t}: stratified share {fs}, softmax {p}"
        );
        let fr = seeded[t] as f64 / draws as f64;
        let sd = (p * (1.0 - p) / draws as f64).sqrt();
        worst = worst.max((fr - p).abs() / sd.max(1e-12));
        assert!(
            (fr - p).abs() <= 5.0 * sd + 1e-9,
            "token {t}: seeded share {fr}, softmax {p}"
        );
    }
    eprintln!("sampled frequencies: seeded draws within {worst:.2} standard deviations");
}

#[test]
fn split_k_attention_matches_the_single_pass_kernel() {
    // A batch of 3 tokens at positions 599..602 of a 1024 context (4 chunks of 256), with and
    // without a sliding window; 8 Q heads over 2 KV heads, head_dim 64.
    let ctx = context();
    let (n_head, n_kv_head, hd, n_ctx, nb) = (8usize, 2usize, 64usize, 1024usize, 3usize);
    let group = n_head / n_kv_head;
    let kv_dim = n_kv_head * hd;
    let n_split = n_ctx.div_ceil(wasm_chord::gpu::kernels::SPLIT_CHUNK);
    let mut r = Rng(21);
    let q: Vec<f32> = r.vec(nb * n_head * hd).iter().map(|x| x * 4.0).collect();
    let kc = r.vec(n_ctx * kv_dim);
    let vc = r.vec(n_ctx * kv_dim);
    let b = |l, v: &[f32]| ctx.storage_with(l, bytemuck::cast_slice(v));
    let (qb, kb, vb) = (b("q", &q), b("k", &kc), b("v", &vc));
    for (n_kv, window) in [(600usize, 0usize), (600, 300), (1, 0), (256, 0), (1022, 0)] {
        let nb = nb.min(n_ctx + 1 - n_kv);
        let p = ctx.params(
            "p",
            &[
                n_ctx as u32,
                group as u32,
                hd as u32,
                hd as u32,
                kv_dim as u32,
                kv_dim as u32,
                0,
                n_kv as u32,
                f32::to_bits(0.125),
                window as u32,
                n_split as u32,
            ],
        );
        let n_out = nb * n_head * hd;
        let single = ctx.storage_f32("single", n_out);
        let split = ctx.storage_f32("split", n_out);
        let sc = ctx.storage_f32("scores", nb * n_head * n_ctx);
        let part = ctx.storage_f32("part", nb * n_head * n_split * (2 + hd));
        let (nh, ns) = (n_head as u32, n_split as u32);
        ctx.run_once(
            PipelineKey::new(Shader::Attention),
            &[&qb, &kb, &vb, &single, &sc, &p],
            [nh, 1, nb as u32],
        )
        .unwrap();
        ctx.run_once(
            PipelineKey::new(Shader::AttentionSplit),
            &[&qb, &kb, &vb, &part, &p],
            [nh, ns, nb as u32],
        )
        .unwrap();
        ctx.run_once(
            PipelineKey::new(Shader::AttentionCombine),
            &[&part, &split, &p],
            [nh, 1, nb as u32],
        )
        .unwrap();
        let got_single = block_on(ctx.read_f32(&single, n_out)).unwrap();
        let got_split = block_on(ctx.read_f32(&split, n_out)).unwrap();
        // CPU reference: token t attends to first..n_kv + t.
        let mut want = vec![0f32; n_out];
        for t in 0..nb {
            let end = n_kv + t;
            let first = if window > 0 {
                end.saturating_sub(window)
            } else {
                0
            };
            for h in 0..n_head {
                let kvh = h / group;
                let row = t * n_head + h;
                let qh = &q[row * hd..(row + 1) * hd];
                let mut s: Vec<f32> = (first..end)
                    .map(|j| {
                        let k = &kc[j * kv_dim + kvh * hd..j * kv_dim + (kvh + 1) * hd];
                        qh.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * 0.125
                    })
                    .collect();
                ops::softmax(&mut s);
                for (i, a) in s.iter().enumerate() {
                    let j = first + i;
                    for d in 0..hd {
                        want[row * hd + d] += a * vc[j * kv_dim + kvh * hd + d];
                    }
                }
            }
        }
        let what = format!("n_kv={n_kv} window={window} batch={nb}");
        assert_nmse(
            &format!("split-K vs single-pass, {what}"),
            &got_split,
            &got_single,
            1e-10,
        );
        assert_nmse(&format!("split-K vs CPU, {what}"), &got_split, &want, 1e-10);
        assert_nmse(
            &format!("single-pass vs CPU, {what}"),
            &got_single,
            &want,
            1e-10,
        );
    }
}
