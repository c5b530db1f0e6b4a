// Types for wasm-chord on Node (node/index.js): the browser API (worker/client.d.ts), with a
// directory cache; `load` also takes a file path or a file: URL.
import type { Engine } from '../worker/client.js';
export type * from '../worker/client.js';

export function createEngine(opts?: {
  /** Where downloaded models are kept (default: ~/.cache/wasm-chord). */
  cacheDir?: string;
}): Promise<Engine>;
