// What this device can hold, for the model cards' "fits on this device". Browsers say little:
// navigator.deviceMemory is the RAM in GiB, rounded down and capped at 8 (Chrome; Firefox and
// Safari have none); navigator.storage.estimate() is the storage this site may still use; a WebGPU
// adapter gives its buffer limits but not its memory. So the verdict says "may not fit" whenever
// it cannot tell, and every verdict carries the reasons it was based on.

const GiB = 2 ** 30;
/** The wasm32 CPU path: weights, KV cache and runtime share one 4 GiB memory. */
const WASM_LIMIT = 3.5e9;

/** `{memory, memoryCapped, storage: {usage, quota, free} | null, gpu: {...} | null}` */
export async function probeDevice() {
  const dev = { memory: null, memoryCapped: false, storage: null, gpu: null };
  if (typeof navigator.deviceMemory === 'number' && navigator.deviceMemory > 0) {
    dev.memory = navigator.deviceMemory * GiB;
    dev.memoryCapped = navigator.deviceMemory >= 8;
  }
  try {
    const e = await navigator.storage?.estimate?.();
    if (e && e.quota) dev.storage = { usage: e.usage ?? 0, quota: e.quota, free: Math.max(0, e.quota - (e.usage ?? 0)) };
  } catch {
    /* no estimate */
  }
  try {
    if (navigator.gpu) {
      const timeout = new Promise((r) => setTimeout(() => r(null), 3000));
      const adapter = await Promise.race([navigator.gpu.requestAdapter({ powerPreference: 'high-performance' }), timeout]);
      if (adapter) {
        const i = adapter.info || {};
        dev.gpu = {
          name: [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || 'WebGPU adapter',
          fallback: !!(i.isFallbackAdapter || adapter.isFallbackAdapter),
          maxBufferSize: adapter.limits.maxBufferSize,
          maxStorageBufferBindingSize: adapter.limits.maxStorageBufferBindingSize,
        };
      }
    }
  } catch {
    /* no adapter */
  }
  return dev;
}

export const bytes = (b) => (b == null ? '?' : b >= 1e9 ? `${(b / 1e9).toFixed(b >= 1e10 ? 0 : 1)} GB` : `${Math.round(b / 1e6)} MB`);

/** One line about the device, for the model picker. */
export function describeDevice(dev) {
  const parts = [];
  parts.push(dev.memory == null ? 'memory not reported' : `${dev.memoryCapped ? 'at least ' : 'about '}${dev.memory / GiB} GB memory`);
  if (dev.storage) parts.push(`${bytes(dev.storage.free)} of storage free for this site`);
  if (dev.gpu) {
    parts.push(`WebGPU: ${dev.gpu.name}${dev.gpu.fallback ? ' (software)' : ''}, buffers up to ${bytes(dev.gpu.maxBufferSize)} (bindings ${bytes(dev.gpu.maxStorageBufferBindingSize)})`);
  } else {
    parts.push('no WebGPU here: models run on the CPU');
  }
  return parts.join(' · ');
}

/**
 * Whether a model of `size` bytes fits: `{level: 'fits' | 'maybe' | 'no', label, why}`.
 * `cached`: its bytes are already stored (no storage needed). `gpuOnly`: too big for the wasm CPU path.
 */
export function fitFor({ size, gpuOnly = false, cached = false }, dev) {
  // Weights (quantized, as stored), plus the KV cache, activations and the runtime.
  const need = size * 1.15 + 150e6;
  const why = [`needs about ${bytes(need)} of memory`];
  const gpu = dev.gpu && !dev.gpu.fallback ? dev.gpu : null;
  let level = 'fits';
  const worse = (l) => {
    if (l === 'no' || (l === 'maybe' && level === 'fits')) level = l;
  };
  if (gpuOnly || need > WASM_LIMIT) {
    if (!gpu) {
      why.push('too big for the CPU path (wasm memory is 4 GB) and there is no hardware WebGPU here');
      worse('no');
    } else {
      why.push(`WebGPU only; the GPU's memory is not reported (buffers up to ${bytes(gpu.maxBufferSize)})`);
      worse('maybe');
      if (gpu.maxStorageBufferBindingSize < 128 * 2 ** 20) {
        why.push(`the adapter binds only ${bytes(gpu.maxStorageBufferBindingSize)} at once`);
      }
    }
  }
  if (!cached && dev.storage) {
    if (size > dev.storage.free) {
      why.push(`the download needs ${bytes(size)} of storage, ${bytes(dev.storage.free)} is free`);
      worse('no');
    } else if (size > dev.storage.free * 0.8) {
      why.push(`the download takes most of the ${bytes(dev.storage.free)} of storage left`);
      worse('maybe');
    }
  }
  if (dev.memory == null) {
    why.push('the browser does not say how much memory this device has');
    if (need > 1e9) worse('maybe');
  } else if (need > dev.memory && !dev.memoryCapped) {
    why.push(`this device has about ${bytes(dev.memory)}`);
    worse('no');
  } else if (need > dev.memory * 0.5) {
    why.push(`more than half of the ${dev.memoryCapped ? 'at least ' : ''}${bytes(dev.memory)} this device reports`);
    worse('maybe');
  }
  const label = level === 'no' ? 'Too big for this device' : level === 'maybe' ? 'May not fit' : dev.memory == null ? 'Likely fits' : 'Fits this device';
  return { level, label, why: why.join('; ') };
}
