//! The WGSL kernels, their bind-group layouts and the pipeline cache.
//!
//! Each kernel lives in its own file under `shaders/`. Kernels over quantized weights
//! (`dequant.wgsl`, `matvec.wgsl`, `matmat.wgsl`) are prefixed with `quant.wgsl` (byte readers) and one
//! `fmt_*.wgsl` (the block format's `unit_scale` / `unit_q4`), joined as plain text; variants are
//! specialised with WGSL `override` constants (`ROWS`, `ACT`), and pipelines are cached by
//! [`PipelineKey`].

use std::collections::HashMap;
use std::sync::Mutex;

use super::{GpuContext, GpuError};
use crate::quant::GgmlType;
use crate::Result;

const QUANT: &str = include_str!("shaders/quant.wgsl");

/// Every shader file, by name: kernels and the helper files they are built from.
pub const SHADER_FILES: &[(&str, &str)] = &[
    ("quant.wgsl", QUANT),
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
    Dequant(GgmlType),
    Matvec(GgmlType),
    /// Quantized matrix × a batch of activations (prefill): [`MATMAT_TOKENS`] tokens per
    /// workgroup share each dequantized weight.
    Matmat(GgmlType),
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
            Kernel::Dequant(_) => "dequant",
            Kernel::Matvec(_) => "matvec",
            Kernel::Matmat(_) => "matmat",
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
            Kernel::KvStore => "kv_store",
        }
    }

    /// The complete WGSL source, or `None` for a format without GPU kernels.
    pub fn source(self) -> Option<String> {
        let main = file(&format!("{}.wgsl", self.name()));
        match self {
            Kernel::Dequant(ty) | Kernel::Matvec(ty) | Kernel::Matmat(ty) => {
                Some([QUANT, format_file(ty)?, main].join("\n"))
            }
            _ => Some(main.to_owned()),
        }
    }

    fn bindings(self) -> &'static [Bind] {
        use Bind::*;
        match self {
            Kernel::Dequant(_) => &[Read, ReadWrite, Uniform],
            Kernel::Matvec(_) | Kernel::RmsNorm => &[Read, Read, ReadWrite, Uniform],
            Kernel::Matmat(_) => &[Read, Read, ReadWrite, Uniform, Uniform],
            Kernel::Rope => &[ReadWrite, Read, Uniform],
            Kernel::Attention => &[Read, Read, Read, ReadWrite, ReadWrite, Uniform],
            Kernel::AttentionSplit => &[Read, Read, Read, ReadWrite, Uniform],
            Kernel::AttentionCombine => &[Read, ReadWrite, Uniform],
            Kernel::Softmax => &[ReadWrite, Uniform],
            Kernel::Gate | Kernel::Add => &[ReadWrite, Read, Uniform],
            Kernel::Argmax | Kernel::Sample => &[Read, ReadWrite, Uniform],
            Kernel::Penalties => &[ReadWrite, Read, Uniform],
            Kernel::KvStore => &[Read, ReadWrite, Uniform, Uniform],
        }
    }

    /// Every kernel, for every format with GPU kernels.
    pub fn all() -> Vec<Kernel> {
        let mut v: Vec<Kernel> = GPU_TYPES.iter().map(|&t| Kernel::Dequant(t)).collect();
        v.extend(GPU_TYPES.iter().map(|&t| Kernel::Matvec(t)));
        v.extend(GPU_TYPES.iter().map(|&t| Kernel::Matmat(t)));
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
        let src = k.source().ok_or_else(|| {
            let ty = match k {
                Kernel::Dequant(t) | Kernel::Matvec(t) | Kernel::Matmat(t) => t,
                _ => GgmlType::F32,
            };
            GpuError::UnsupportedType {
                tensor: k.name().into(),
                ty,
            }
        })?;
        let label = format!("{key:?}");
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(&label),
                source: wgpu::ShaderSource::Wgsl(src.into()),
            });
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
            Kernel::Matvec(_) | Kernel::Matmat(_) => vec![("ROWS", f64::from(key.rows))],
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
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some(key.kernel.name()),
            });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some(key.kernel.name()),
                timestamp_writes: None,
            });
            pass.set_pipeline(&p.pipeline);
            pass.set_bind_group(0, &bg, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.queue.submit([enc.finish()]);
        Ok(())
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
