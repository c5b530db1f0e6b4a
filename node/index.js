// wasm-chord on Node >= 20: the same API as in the browser (worker/client.js), on the CPU path,
// in a worker thread; downloaded models are cached in a directory (resumable, verified like the
// browser's IndexedDB cache). A model is an http(s) URL, a file: URL or a file path.
//
//   import { createEngine } from 'wasm-chord';
//   const engine = await createEngine({ cacheDir: '.models' });
//   await engine.load('https://…/model.gguf', { sha256 });
import { Worker } from 'node:worker_threads';
import { resolve } from 'node:path';
import { homedir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { createEngineFrom } from '../worker/client.js';

/** A browser-style Worker over a worker_threads Worker. */
function browserStyle(w) {
  return {
    postMessage: (m) => w.postMessage(m),
    terminate: () => w.terminate(),
    set onmessage(f) {
      w.on('message', (data) => f({ data }));
    },
    set onerror(f) {
      w.on('error', (e) => f({ message: e && e.message ? e.message : String(e), preventDefault() {} }));
    },
    set onmessageerror(f) {
      w.on('messageerror', () => f());
    },
  };
}

export async function createEngine({ cacheDir = resolve(homedir(), '.cache', 'wasm-chord') } = {}) {
  const dir = resolve(cacheDir);
  const engine = await createEngineFrom(() => {
    const w = new Worker(new URL('./worker.js', import.meta.url), { workerData: { cacheDir: dir } });
    return browserStyle(w);
  });
  const load = engine.load.bind(engine);
  engine.load = (source, opts) => {
    if (typeof source === 'string' && !/^(https?|file|blob):/i.test(source)) source = pathToFileURL(resolve(source)).href;
    return load(source, { ...opts, backend: 'cpu' });
  };
  return engine;
}
