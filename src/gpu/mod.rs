//! The WebGPU backend, on wgpu: Vulkan (or Metal/DX12) natively, the browser's WebGPU on wasm32.
//!
//! - [`device`]: adapter and device set-up with the adapter's own limits, buffer helpers and
//!   never-blocking readbacks (`map_async` awaited through a future).
//! - [`kernels`]: the WGSL kernels (`shaders/*.wgsl`, one kernel per file), their bind-group
//!   layouts and a pipeline cache keyed by [`kernels::PipelineKey`].
//! - [`weights`]: weight matrices uploaded still quantized, split into row ranges where a tensor
//!   exceeds `maxStorageBufferBindingSize`.
//! - `bench` (native): kernel timing for `chord bench --kernels`.
//! - [`selftest`]: a known-answer test of the adapter (one small matrix product per block
//!   format, argmax and sampling) that `auto` runs before trusting the GPU with a model.
//! - [`uniforms`]: the layer kernels' parameters, `#[repr(C)]` structs mirroring their WGSL.
//! - [`token_mask`]: constrained decoding's bitmask of allowed tokens applied before argmax/sampling.
//! - [`model`]: the forward pass, one command submission per decode step or per batch of prompt
//!   tokens; greedy and sampled decoding on the GPU (4-byte readbacks, the first token after
//!   the prompt included). A decode step runs fused kernels ([`model::fused`]): 5 dispatches
//!   per layer.
//!
//! Every kernel has an f32 path and reduces in workgroup memory, so it runs where neither
//! shader-f16 nor subgroups exist (Chromium on SwiftShader).

#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod device;
pub mod kernels;
pub mod model;
pub mod selftest;
pub mod token_mask;
pub mod uniforms;
pub mod weights;

pub use device::GpuContext;
pub use model::{
    BatchToken, DecodeCounters, GpuBatch, GpuModel, GpuSampling, PendingToken, StepStats,
};
pub use weights::GpuMatrix;

use crate::quant::GgmlType;

/// Why the GPU backend could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error("no WebGPU adapter found ({0}); natively install `mesa-vulkan-drivers` (or a GPU driver) and set WGPU_BACKEND=vulkan, in a browser enable WebGPU")]
    NoAdapter(String),
    #[error("the GPU device could not be created: {0}")]
    Device(String),
    #[error("`{what}` needs {needed} bytes in one GPU buffer but the device allows {limit} (maxStorageBufferBindingSize / maxBufferSize)")]
    TooLarge {
        what: String,
        needed: u64,
        limit: u64,
    },
    #[error(
        "tensor `{tensor}`: type {ty} has no GPU kernel (supported: {})",
        kernels::gpu_type_names()
    )]
    UnsupportedType { tensor: String, ty: GgmlType },
    #[error("reading a result back from the GPU failed: {0}")]
    Readback(String),
    /// The device refused a shader or a command (a validation error outside any error scope).
    #[error("the GPU rejected a shader or command: {0}")]
    Rejected(String),
    /// The device was lost (driver reset, GPU process crash, too long a submission).
    #[error("the GPU device was lost ({0}); reload the model to start a new device, or use the CPU backend")]
    Lost(String),
    /// The adapter computed a wrong answer in [`selftest::run`].
    #[error("the GPU adapter failed its self-test: {0}")]
    SelfTest(String),
    /// `backend: 'auto'` declined the adapter (a software renderer, or slower than the CPU).
    #[error("{0}")]
    Unsuitable(String),
}
