// The engine worker on Node (worker_threads): the browser's worker/worker.js, unchanged, with the
// wasm module instantiated from its file, a directory instead of IndexedDB (./fs-store.js) and
// `self` bridged to the parent port.
import { parentPort, workerData } from 'node:worker_threads';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { initSync } from '../pkg/wasm_chord.js';
import * as store from '../worker/store.js';
import { directoryBackend } from './fs-store.js';

store.useBackend(directoryBackend(workerData.cacheDir));
initSync({ module: readFileSync(new URL('../pkg/wasm_chord_bg.wasm', import.meta.url)) });
globalThis.self = globalThis;
globalThis.location ??= { href: pathToFileURL(`${process.cwd()}/`).href };
self.postMessage = (m) => parentPort.postMessage(m);
parentPort.on('message', (data) => self.onmessage?.({ data }));
await import('../worker/worker.js');
