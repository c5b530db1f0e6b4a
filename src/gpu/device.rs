//! Adapter and device set-up, buffer helpers and readbacks that never block the web's event loop.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use super::kernels::PipelineCache;
use super::GpuError;
use crate::Result;

/// Whether kernels are compiled with wgpu's runtime checks unless a context says otherwise.
pub const SHADER_CHECKS: bool = false;

/// Keeps the first fault: later ones are usually its consequences.
fn record_fault(slot: &Mutex<Option<GpuError>>, e: GpuError) {
    if let Ok(mut f) = slot.lock() {
        f.get_or_insert(e);
    }
}

/// A device with the adapter's own limits and the optional features we use.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub info: wgpu::AdapterInfo,
    /// Features enabled on the device (SHADER_F16 and SUBGROUP when the adapter has them).
    pub features: wgpu::Features,
    pub limits: wgpu::Limits,
    /// Largest buffer that one binding may cover: min(maxStorageBufferBindingSize, maxBufferSize).
    pub max_binding: u64,
    /// Models built on this context keep their KV cache in f16 (half the memory and bandwidth;
    /// see [`GpuContext::with_kv_f16`]). Off by default: f32, exact against the CPU reference.
    pub kv_f16: bool,
    /// Upload every matrix whose blocks are not word-aligned in this layout (`None`: the
    /// measured default per format, [`default_layout`](super::weights::default_layout)).
    pub layout: Option<super::kernels::Layout>,
    /// Compile the kernels with wgpu's shader runtime checks (bounds clamps on every buffer
    /// index, loop bounding, integer-division guards); see [`GpuContext::with_shader_checks`].
    pub shader_checks: bool,
    /// Reduce the matvec-family kernels' rows through subgroup operations (reduce_sg.wgsl):
    /// on when the device has SUBGROUP (never in a browser); [`GpuContext::with_subgroups`]
    /// turns it off so tests compare both paths on one device.
    pub subgroups: bool,
    pub(crate) pipelines: PipelineCache,
    /// Buffers and bind groups created through this context's helpers ([`GpuContext::created`]).
    created: std::sync::atomic::AtomicUsize,
    /// The first error the device reported outside any error scope (a rejected shader or
    /// command), or its loss; [`GpuContext::check`] turns it into a typed error. Natively wgpu
    /// would panic on such an error; in a browser it would only be logged to the console while
    /// every later submission silently does nothing.
    fault: Arc<Mutex<Option<GpuError>>>,
}

impl GpuContext {
    /// A high-performance adapter (WGPU_BACKEND selects the backend natively), with its limits and
    /// optional features.
    pub async fn new() -> Result<GpuContext> {
        let desc = wgpu::InstanceDescriptor::new_without_display_handle_from_env();
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                force_fallback_adapter: false,
                compatible_surface: None,
                apply_limit_buckets: false,
            })
            .await
            .map_err(|e| GpuError::NoAdapter(e.to_string()))?;
        let info = adapter.get_info();
        let limits = adapter.limits();
        let wanted = wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wasm-chord"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| GpuError::Device(e.to_string()))?;
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let fault: Arc<Mutex<Option<GpuError>>> = Default::default();
        let sink = fault.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            record_fault(&sink, GpuError::Rejected(e.to_string()))
        }));
        let sink = fault.clone();
        device.set_device_lost_callback(move |reason, message| {
            if reason != wgpu::DeviceLostReason::Destroyed {
                record_fault(&sink, GpuError::Lost(format!("{reason:?}: {message}")))
            }
        });
        Ok(GpuContext {
            device,
            queue,
            info,
            features,
            limits,
            max_binding,
            kv_f16: false,
            layout: None,
            shader_checks: SHADER_CHECKS,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            pipelines: PipelineCache::default(),
            created: Default::default(),
            fault,
        })
    }

    /// The first error the device reported since the last check (a shader or command it
    /// rejected, or the device's loss), as a typed error. Readbacks call it, so a step whose
    /// submission the device refused never returns a stale result.
    pub fn check(&self) -> Result<()> {
        let fault = self.fault.lock().ok().and_then(|mut f| f.take());
        match fault {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Pretend that one binding holds at most `bytes` (tests the splitting of large tensors).
    pub fn with_max_binding(mut self, bytes: u64) -> Self {
        self.max_binding = self.max_binding.min(bytes);
        self
    }

    /// Keep the KV cache of models built on this context in f16 (`on`) or f32. The f16 cache is
    /// stored as `pack2x16float` pairs, core WGSL, so it needs no shader-f16 feature and runs on
    /// every adapter; logits move by NMSE ~1e-6 against the f32 cache.
    pub fn with_kv_f16(mut self, on: bool) -> Self {
        self.kv_f16 = on;
        self
    }

    /// Upload weights in `layout` (benchmarks compare the layouts; `None`: the default).
    pub fn with_layout(mut self, layout: Option<super::kernels::Layout>) -> Self {
        self.layout = layout;
        self
    }

    /// Compile kernels with (`true`) or without wgpu's shader runtime checks. Without, indices
    /// are trusted to stay inside their bindings (they do by construction; every kernel is
    /// tested against the CPU reference) and out-of-range reads are left to the driver's
    /// robust buffer access. A browser checks every shader itself either way.
    pub fn with_shader_checks(mut self, on: bool) -> Self {
        self.shader_checks = on;
        self
    }

    /// Reduce through subgroups where the device has them (`on`, the default) or always in
    /// workgroup memory, the browser's path (`false`; tests compare the two on one device).
    /// Drops the pipelines compiled so far.
    pub fn with_subgroups(mut self, on: bool) -> Self {
        self.subgroups = on && self.features.contains(wgpu::Features::SUBGROUP);
        self.pipelines = PipelineCache::default();
        self
    }

    /// The layout matrices of `ty` are uploaded in.
    pub fn layout_for(&self, ty: crate::quant::GgmlType) -> super::kernels::Layout {
        self.layout
            .unwrap_or_else(|| super::weights::default_layout(ty))
    }

    /// One line for logs: adapter name, backend, device type, features.
    pub fn describe(&self) -> String {
        format!(
            "{} ({:?}, {:?}, driver {}), f16: {}, subgroups: {}, max binding {} MiB",
            self.info.name,
            self.info.backend,
            self.info.device_type,
            self.info.driver,
            self.features.contains(wgpu::Features::SHADER_F16),
            self.features.contains(wgpu::Features::SUBGROUP),
            self.max_binding >> 20
        )
    }

    /// How many buffers and bind groups this context's helpers have created so far (every GPU
    /// object the engine makes goes through them; a test checks a decode step makes none).
    pub fn created(&self) -> usize {
        self.created.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_created(&self) {
        self.created
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// A uniform buffer holding `data` (padded to 16 bytes), rewritable with `write_buffer`.
    pub fn uniform_with(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        self.count_created();
        let size = data.len().max(16).next_multiple_of(16);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut padded = data.to_vec();
        padded.resize(size, 0);
        self.queue.write_buffer(&buf, 0, &padded);
        buf
    }

    /// A uniform buffer holding `v` (a kernel's `Params`), rewritable with `write_buffer`.
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, v: &T) -> wgpu::Buffer {
        self.uniform_with(label, bytemuck::bytes_of(v))
    }

    /// Fail with `TooLarge` when `bytes` cannot be one binding.
    pub fn check_fits(&self, what: &str, bytes: u64) -> Result<()> {
        if bytes > self.max_binding {
            return Err(GpuError::TooLarge {
                what: what.to_owned(),
                needed: bytes,
                limit: self.max_binding,
            }
            .into());
        }
        Ok(())
    }

    /// A storage buffer holding `data` (padded to 4 bytes), also a copy source and destination.
    pub fn storage_with(&self, label: &str, data: &[u8]) -> wgpu::Buffer {
        self.count_created();
        let size = (data.len().max(4)).next_multiple_of(4);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if data.len() == size {
            self.queue.write_buffer(&buf, 0, data);
        } else {
            let mut padded = data.to_vec();
            padded.resize(size, 0);
            self.queue.write_buffer(&buf, 0, &padded);
        }
        buf
    }

    /// A zeroed storage buffer of `n` f32.
    pub fn storage_f32(&self, label: &str, n: usize) -> wgpu::Buffer {
        self.count_created();
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (n.max(1) * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer of kernel parameters (eight 32-bit words; f32 as bits).
    pub fn params(&self, label: &str, words: &[u32]) -> wgpu::Buffer {
        self.count_created();
        let mut w = [0u32; 12];
        w[..words.len()].copy_from_slice(words);
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: 48,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buf, 0, bytemuck::cast_slice(&w));
        buf
    }

    /// A buffer to map for reading `size` bytes.
    pub fn staging(&self, label: &str, size: u64) -> wgpu::Buffer {
        self.count_created();
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: size.next_multiple_of(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Map `staging` (already copied into by a submitted command buffer) and return its first
    /// `len` bytes. Awaits the map callback: natively it polls the device, on the web the
    /// browser's event loop completes it.
    pub async fn map_read(&self, staging: &wgpu::Buffer, len: usize) -> Result<Vec<u8>> {
        self.map_read_after(staging, len, None).await
    }

    /// [`GpuContext::map_read`] of a buffer whose last copy is in submission `after`: natively
    /// the wait is for that submission only, not for later ones (a pipelined decode step
    /// queued behind it keeps running). `None`: every submission so far. On the web the map
    /// resolves when the copy is done, whatever follows it.
    pub async fn map_read_after(
        &self,
        staging: &wgpu::Buffer,
        len: usize,
        after: Option<wgpu::SubmissionIndex>,
    ) -> Result<Vec<u8>> {
        let (tx, rx) = oneshot();
        staging
            .slice(..)
            .map_async(wgpu::MapMode::Read, move |r| tx.send(r));
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: after,
                timeout: None,
            })
            .map_err(|e| GpuError::Readback(e.to_string()))?;
        // On the web the map resolves when the copy is done; no index to wait for.
        #[cfg(target_arch = "wasm32")]
        let _ = after;
        let mapped = rx.await.map_err(|e| GpuError::Readback(e.to_string()));
        // A rejected submission leaves the staging buffer as it was: report why instead.
        if let Err(e) = self.check() {
            if mapped.is_ok() {
                staging.unmap();
            }
            return Err(e);
        }
        mapped?;
        let out = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| GpuError::Readback(e.to_string()))?[..len]
            .to_vec();
        staging.unmap();
        Ok(out)
    }

    /// Copy `n` f32 from `src` back to the host (one submission).
    pub async fn read_f32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<f32>> {
        let bytes = (n * 4) as u64;
        let staging = self.staging("readback", bytes);
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        enc.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let b = self.map_read(&staging, n * 4).await?;
        Ok(bytemuck::pod_collect_to_vec(&b))
    }

    /// Copy `n` u32 from `src` back to the host.
    pub async fn read_u32(&self, src: &wgpu::Buffer, n: usize) -> Result<Vec<u32>> {
        let f = self.read_f32(src, n).await?;
        Ok(f.into_iter().map(f32::to_bits).collect())
    }
}

/// A one-value channel whose receiver is a future: the map callback sends, the readback awaits.
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

struct Sender<T>(Arc<Mutex<Slot<T>>>);
struct Receiver<T>(Arc<Mutex<Slot<T>>>);

fn oneshot<T>() -> (Sender<T>, Receiver<T>) {
    let s = Arc::new(Mutex::new(Slot {
        value: None,
        waker: None,
    }));
    (Sender(s.clone()), Receiver(s))
}

impl<T> Sender<T> {
    fn send(self, v: T) {
        let waker = {
            let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
            s.value = Some(v);
            s.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Receiver<T> {
    type Output = T;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match s.value.take() {
            Some(v) => Poll::Ready(v),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
