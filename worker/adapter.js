// Which WebGPU adapter a browser offers, and whether 'auto' would use it: shared by the worker
// (the local backend choice) and the client's `backend: 'auto'` route (local or remote).

/** Software renderers 'auto' never picks (their decode is ~100x slower than the CPU path's). */
export const SOFTWARE_ADAPTER = /swiftshader|llvmpipe|lavapipe|softpipe|basic render|\bwarp\b/i;

/**
 * The browser's WebGPU adapter as 'auto' sees it: `{ adapter, name, hardware, why }`.
 * `hardware` is true for an adapter that is neither a fallback adapter (`isFallbackAdapter`)
 * nor a software renderer by name; otherwise `why` says what was found instead.
 * `gpu` is `navigator.gpu` (undefined where the browser has no WebGPU).
 */
export async function probeAdapter(gpu) {
  if (!gpu) return { adapter: null, name: null, hardware: false, why: 'this browser has no WebGPU' };
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' }).catch(() => null);
  if (!adapter) return { adapter: null, name: null, hardware: false, why: 'WebGPU has no adapter here' };
  const i = adapter.info || {};
  const name = [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(' ') || null;
  const soft = (name || '').match(SOFTWARE_ADAPTER);
  if (i.isFallbackAdapter || adapter.isFallbackAdapter || soft) {
    const what = soft ? soft[0] : 'a fallback adapter';
    return { adapter, name, hardware: false, why: `the only WebGPU adapter is a software renderer (${what}: ${name || 'unnamed'})` };
  }
  return { adapter, name, hardware: true, why: null };
}
