//! The WGSL kernels, their bind-group layouts and the pipeline cache.
//!
//! Each kernel lives in its own file under `shaders/`. Kernels over quantized weights
//! (`dequant.wgsl`, `matvec.wgsl`, `matmat.wgsl`) are prefixed with `quant.wgsl` (value helpers),
//! one `layout_*.wgsl` (how blocks sit in the buffer: [`Layout`]) and one `fmt_*.wgsl` (the block
//! format's `unit_scale` / `unit_q4`), joined as plain text; variants are specialised with WGSL
//! `override` constants (`ROWS`, `ACT`), and pipelines are cached by [`PipelineKey`].

use std::collections::HashMap;
use std::sync::Mutex;

use super::{GpuContext, GpuError};
use crate::quant::GgmlType;
use crate::Result;

const QUANT: &str = include_str!("shaders/quant.wgsl");

/// Every shader file, by name: kernels and the helper files they are built from.
pub const SHADER_FILES: &[(&str, &str)] = &[
    ("quant.wgsl", QUANT),
    (
        "layout_packed.wgsl",
        include_str!("shaders/layout_packed.wgsl"),
    ),
    (
        "layout_aligned.wgsl",
        include_str!("shaders/layout_aligned.wgsl"),
    ),
    ("fmt_q4_k.wgsl", include_str!("shaders/fmt_q4_k.wgsl")),
    ("fmt_q6_k.wgsl", include_str!("shaders/fmt_q6_k.wgsl")),
    ("fmt_q5_0.wgsl", include_str!("shaders/fmt_q5_0.wgsl")),
    ("fmt_q8_0.wgsl", include_str!("shaders/fmt_q8_0.wgsl")),
    ("fmt_q4_0.wgsl", include_str!("shaders/fmt_q4_0.wgsl")),
    ("fmt_q4_1.wgsl", include_str!("shaders/fmt_q4_1.wgsl")),
    ("fmt_f16.wgsl", include_str!("shaders/fmt_f16.wgsl")),
    ("fmt_f32.wgsl", include_str!("shaders/fmt_f32.wgsl")),
    ("dequant.wgsl", include_str!("shaders/dequant.wgsl")),
    ("matvec.wgsl", include_str!("shaders/matvec.wgsl")),
    ("matmat.wgsl", include_str!("shaders/matmat.wgsl")),
    ("rmsnorm.wgsl", include_str!("shaders/rmsnorm.wgsl")),
    ("rope.wgsl", include_str!("shaders/rope.wgsl")),
    ("attention.wgsl", include_str!("shaders/attention.wgsl")),
    (
        "attention_split.wgsl",
        include_str!("shaders/attention_split.wgsl"),
    ),
    (
        "attention_combine.wgsl",
        include_str!("shaders/attention_combine.wgsl"),
    ),
    ("softmax.wgsl", include_str!("shaders/softmax.wgsl")),
    ("gate.wgsl", include_str!("shaders/gate.wgsl")),
    ("add.wgsl", include_str!("shaders/add.wgsl")),
    ("argmax.wgsl", include_str!("shaders/argmax.wgsl")),
    ("sample.wgsl", include_str!("shaders/sample.wgsl")),
    ("penalties.wgsl", include_str!("shaders/penalties.wgsl")),
    ("token_mask.wgsl", include_str!("shaders/token_mask.wgsl")),
    ("kv_store.wgsl", include_str!("shaders/kv_store.wgsl")),
];

fn file(name: &str) -> &'static str {
    SHADER_FILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .unwrap_or("")
}

/// Block formats with GPU kernels.
pub const GPU_TYPES: [GgmlType; 8] = [
    GgmlType::Q4_K,
    GgmlType::Q6_K,
    GgmlType::Q5_0,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::F16,
    GgmlType::F32,
];

/// The format helper file of `ty`, or `None` when the GPU has no kernel for it.
pub fn format_file(ty: GgmlType) -> Option<&'static str> {
    use GgmlType::*;
    let name = match ty {
        Q4_K => "fmt_q4_k.wgsl",
        Q6_K => "fmt_q6_k.wgsl",
        Q5_0 => "fmt_q5_0.wgsl",
        Q8_0 => "fmt_q8_0.wgsl",
        Q4_0 => "fmt_q4_0.wgsl",
        Q4_1 => "fmt_q4_1.wgsl",
        F16 => "fmt_f16.wgsl",
        F32 => "fmt_f32.wgsl",
        _ => return None,
    };
    Some(file(name))
}

/// How a matrix's blocks sit in its GPU buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// The GGUF bytes unchanged; unaligned fields are read through two-word funnel shifts
    /// (`layout_packed.wgsl`).
    Packed,
    /// Word-aligned blocks read with single loads (`layout_aligned.wgsl`): Q4_K and Q4_1 as
    /// they are, Q6_K, Q8_0, Q5_0 and Q4_0 repacked at upload, each block padded to whole
    /// words (see [`aligned_block`]).
    Aligned,
}

/// For a block format `layout_aligned.wgsl` reads: the zero bytes put before each block and the
/// block size in the buffer (Q4_K and Q4_1: as in the file).
pub fn aligned_block(ty: GgmlType) -> Option<(usize, usize)> {
    use GgmlType::*;
    let lead = match ty {
        Q6_K | Q4_K | Q4_1 => 0,
        Q8_0 | Q5_0 | Q4_0 => 2,
        _ => return None,
    };
    let bytes = ty.block_geometry().1;
    Some((lead, (lead + bytes).next_multiple_of(4)))
}

/// The layouts `ty` can be uploaded in: packed, and aligned where the format has it.
pub fn layouts(ty: GgmlType) -> Vec<Layout> {
    let mut v = vec![Layout::Packed];
    v.extend(aligned_block(ty).map(|_| Layout::Aligned));
    v
}

/// Weights per unit (the granularity of `dequant.wgsl`): 16 for Q6_K, 4 for F16/F32, else 32.
/// Kernels read four weights at a time (`unit_q4`).
pub fn unit_weights(ty: GgmlType) -> usize {
    match ty {
        GgmlType::Q6_K => 16,
        GgmlType::F16 | GgmlType::F32 => 4,
        _ => 32,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Dequant(GgmlType, Layout),
    Matvec(GgmlType, Layout),
    /// Quantized matrix × a batch of activations (prefill): [`MATMAT_TOKENS`] tokens per
    /// workgroup share each dequantized weight.
    Matmat(GgmlType, Layout),
    RmsNorm,
    Rope,
    Attention,
    /// Split-K attention, pass 1: partial softmax statistics per chunk of 256 positions.
    AttentionSplit,
    /// Split-K attention, pass 2: merge the chunks.
    AttentionCombine,
    Softmax,
    Gate,
    Add,
    Argmax,
    Sample,
    Penalties,
    /// Constrained decoding: the grammar's bitmask of allowed tokens applied to the logits.
    TokenMask,
    KvStore,
}

/// A pipeline: the kernel plus its `override` constants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub kernel: Kernel,
    /// `ROWS` of matvec.wgsl and matmat.wgsl (rows per workgroup; a power of two ≤ 256).
    pub rows: u32,
    /// `ACT` of gate.wgsl: 0 SiLU, 1 GELU (tanh).
    pub act: u32,
    /// `KV_F16` of kv_store.wgsl, attention.wgsl and attention_split.wgsl: 1 when the KV cache
    /// holds f16 pairs, 0 for f32.
    pub kv_f16: u32,
}

impl PipelineKey {
    pub fn new(kernel: Kernel) -> Self {
        PipelineKey {
            kernel,
            rows: 4,
            act: 0,
            kv_f16: 0,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Bind {
    Read,
    ReadWrite,
    Uniform,
}

impl Kernel {
    fn name(self) -> &'static str {
        match self {
            Kernel::Dequant(..) => "dequant",
            Kernel::Matvec(..) => "matvec",
            Kernel::Matmat(..) => "matmat",
            Kernel::RmsNorm => "rmsnorm",
            Kernel::Rope => "rope",
            Kernel::Attention => "attention",
            Kernel::AttentionSplit => "attention_split",
            Kernel::AttentionCombine => "attention_combine",
            Kernel::Softmax => "softmax",
            Kernel::Gate => "gate",
            Kernel::Add => "add",
            Kernel::Argmax => "argmax",
            Kernel::Sample => "sample",
            Kernel::Penalties => "penalties",
            Kernel::TokenMask => "token_mask",
            Kernel::KvStore => "kv_store",
        }
    }

    /// The complete WGSL source, or `None` for a format without GPU kernels (or without an
    /// aligned layout, for [`Layout::Aligned`]).
    pub fn source(self) -> Option<String> {
        let main = file(&format!("{}.wgsl", self.name()));
        match self {
            Kernel::Dequant(ty, l) | Kernel::Matvec(ty, l) | Kernel::Matmat(ty, l) => {
                let layout = match l {
                    Layout::Packed => file("layout_packed.wgsl"),
                    Layout::Aligned => {
                        aligned_block(ty)?;
                        file("layout_aligned.wgsl")
                    }
                };
                Some([QUANT, layout, format_file(ty)?, main].join("\n"))
            }
            _ => Some(main.to_owned()),
        }
    }

    /// The block format and layout a kernel over quantized weights reads.
    pub fn weights(self) -> Option<(GgmlType, Layout)> {
        match self {
            Kernel::Dequant(t, l) | Kernel::Matvec(t, l) | Kernel::Matmat(t, l) => Some((t, l)),
            _ => None,
        }
    }

    fn bindings(self) -> &'static [Bind] {
        use Bind::*;
        match self {
            Kernel::Dequant(..) => &[Read, ReadWrite, Uniform],
            Kernel::Matvec(..) | Kernel::RmsNorm => &[Read, Read, ReadWrite, Uniform],
            Kernel::Matmat(..) => &[Read, Read, ReadWrite, Uniform, Uniform],
            Kernel::Rope => &[ReadWrite, Read, Uniform],
            Kernel::Attention => &[Read, Read, Read, ReadWrite, ReadWrite, Uniform],
            Kernel::AttentionSplit => &[Read, Read, Read, ReadWrite, Uniform],
            Kernel::AttentionCombine => &[Read, ReadWrite, Uniform],
            Kernel::Softmax => &[ReadWrite, Uniform],
            Kernel::Gate | Kernel::Add => &[ReadWrite, Read, Uniform],
            Kernel::Argmax | Kernel::Sample => &[Read, ReadWrite, Uniform],
            Kernel::Penalties | Kernel::TokenMask => &[ReadWrite, Read, Uniform],
            Kernel::KvStore => &[Read, ReadWrite, Uniform, Uniform],
        }
    }

    /// Every kernel, for every format with GPU kernels and each of its layouts.
    pub fn all() -> Vec<Kernel> {
        let mut v = Vec::new();
        for &t in &GPU_TYPES {
            for l in layouts(t) {
                v.extend([
                    Kernel::Dequant(t, l),
                    Kernel::Matvec(t, l),
                    Kernel::Matmat(t, l),
                ]);
            }
        }
        v.extend([
            Kernel::RmsNorm,
            Kernel::Rope,
            Kernel::Attention,
            Kernel::AttentionSplit,
            Kernel::AttentionCombine,
            Kernel::Softmax,
            Kernel::Gate,
            Kernel::Add,
            Kernel::Argmax,
            Kernel::Sample,
            Kernel::Penalties,
            Kernel::TokenMask,
            Kernel::KvStore,
        ]);
        v
    }
}

/// A compiled pipeline with its explicit bind-group layout.
#[derive(Clone)]
pub struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// Pipelines, created on first use and then shared.
#[derive(Default)]
pub(crate) struct Kernels {
    cache: Mutex<HashMap<PipelineKey, Pipeline>>,
}

impl GpuContext {
    /// The pipeline for `key`, compiled on first use.
    pub fn pipeline(&self, key: PipelineKey) -> Result<Pipeline> {
        let mut cache = self.kernels.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = cache.get(&key) {
            return Ok(p.clone());
        }
        let k = key.kernel;
        let src = k.source().ok_or_else(|| GpuError::UnsupportedType {
            tensor: k.name().into(),
            ty: k.weights().map_or(GgmlType::F32, |(t, _)| t),
        })?;
        let label = format!("{key:?}");
        let desc = wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        };
        let module = if self.shader_checks {
            self.device.create_shader_module(desc)
        } else {
            // SAFETY: our own kernels, not user input: every index stays inside its binding by
            // construction (tests compare each kernel with the CPU reference on every shape
            // class) and every loop is bounded by its parameters.
            unsafe {
                let checks = wgpu::ShaderRuntimeChecks::unchecked();
                self.device.create_shader_module_trusted(desc, checks)
            }
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = k
            .bindings()
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: match b {
                    Bind::Uniform => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                    Bind::Read | Bind::ReadWrite => wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Storage {
                            read_only: *b == Bind::Read,
                        },
                        has_dynamic_offset: false,
                        min_binding_size: None,
                    },
                },
                count: None,
            })
            .collect();
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(&label),
                entries: &entries,
            });
        let pl = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(&label),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let constants: Vec<(&str, f64)> = match k {
            Kernel::Matvec(..) | Kernel::Matmat(..) => vec![("ROWS", f64::from(key.rows))],
            Kernel::Gate => vec![("ACT", f64::from(key.act))],
            Kernel::KvStore | Kernel::Attention | Kernel::AttentionSplit => {
                vec![("KV_F16", f64::from(key.kv_f16))]
            }
            _ => vec![],
        };
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: Some(&pl),
                module: &module,
                entry_point: Some("main"),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        let p = Pipeline { pipeline, layout };
        cache.insert(key, p.clone());
        Ok(p)
    }

    /// A bind group for `key`'s layout over whole buffers, in binding order.
    pub fn bind(&self, key: PipelineKey, buffers: &[&wgpu::Buffer]) -> Result<wgpu::BindGroup> {
        let p = self.pipeline(key)?;
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        Ok(self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(key.kernel.name()),
            layout: &p.layout,
            entries: &entries,
        }))
    }

    /// Encode and submit one dispatch (tests and one-off work; the model batches its dispatches).
    pub fn run_once(
        &self,
        key: PipelineKey,
        buffers: &[&wgpu::Buffer],
        groups: [u32; 3],
    ) -> Result<()> {
        let p = self.pipeline(key)?;
        let bg = self.bind(key, buffers)?;
        let cmd = self.one_pass(key.kernel.name(), |pass| {
            pass.set_pipeline(&p.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        });
        self.queue.submit([cmd]);
        Ok(())
    }

    /// A command buffer holding one compute pass that `fill` records (one-off products, tests
    /// and benchmarks; a model step records its own).
    pub fn one_pass(
        &self,
        label: &str,
        fill: impl FnOnce(&mut wgpu::ComputePass<'_>),
    ) -> wgpu::CommandBuffer {
        let desc = wgpu::CommandEncoderDescriptor { label: Some(label) };
        let mut enc = self.device.create_command_encoder(&desc);
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(label),
                timestamp_writes: None,
            });
            fill(&mut pass);
        }
        enc.finish()
    }
}

/// Tokens per workgroup of matmat.wgsl (its `TOK`).
pub const MATMAT_TOKENS: usize = 8;

/// Cache positions per workgroup of attention_split.wgsl.
pub const SPLIT_CHUNK: usize = 256;

/// Workgroups for `n` groups of work, spread over x and y (≤ 32768 along x).
pub fn groups_2d(n: usize) -> [u32; 3] {
    let n = n.max(1);
    let x = n.min(32768);
    [x as u32, n.div_ceil(32768) as u32, 1]
}
