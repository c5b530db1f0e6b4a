// One worker of the threaded build's CPU pool (rayon on Web Workers, started by
// wasm-bindgen-rayon's `initThreadPool`), wrapped so that its crash is seen.
//
// A panic (or any trap: out of memory) in a pool thread kills only that worker; the engine
// worker then stays blocked in rayon (Atomics.wait) for good, so it can neither notice nor
// report anything. So each pool worker reports its own crash, past the blocked engine worker,
// on a BroadcastChannel the page's client listens to (worker/client.js): the engine worker
// (worker/worker.js) starts its pool workers from a blob of this script, after a first line
// that sets the channel's name and wasm-bindgen-rayon's own worker script:
//
//   self.__chordPool = { channel: <name, one per engine worker>, script: <its script's URL> };
//
// Messages: { type: 'pool-crash', message } at once, then, when the module can still say it,
// { type: 'pool-crash', message, panic } with the panic's text (`lastPanic`, kept by the panic
// hook in shared memory).
const config = self.__chordPool ?? {};
const channel = new BroadcastChannel(config.channel || 'wasm-chord-pool');

// The module's URL, from wasm-bindgen-rayon's init message: where `lastPanic` is asked.
let mainJS = null;
self.addEventListener('message', (ev) => {
  if (ev.data && ev.data.type === 'wasm_bindgen_worker_init' && typeof ev.data.mainJS === 'string') mainJS = ev.data.mainJS;
});

let reported = false;
async function report(reason) {
  if (reported) return;
  reported = true;
  const message = reason && reason.message ? `${reason.name || 'Error'}: ${reason.message}` : String(reason);
  // First what happened, in case asking the module below never returns.
  channel.postMessage({ type: 'pool-crash', message });
  try {
    const pkg = mainJS ? await import(mainJS) : null;
    const panic = pkg && typeof pkg.lastPanic === 'function' ? pkg.lastPanic() : null;
    if (panic) channel.postMessage({ type: 'pool-crash', message, panic });
  } catch {
    /* the module is too broken to ask: the first report stands */
  }
}
// wasm-bindgen-rayon runs the thread's loop inside a promise callback, so its trap arrives as an
// unhandled rejection; a throw outside one as an error event.
self.addEventListener('unhandledrejection', (ev) => report(ev.reason));
self.addEventListener('error', (ev) => report(ev.error ?? ev.message));

// The init message can arrive before wasm-bindgen-rayon's script has added its listener: keep
// what comes meanwhile, then hand it on.
const held = [];
const hold = (ev) => {
  held.push(ev);
  ev.stopImmediatePropagation();
};
self.addEventListener('message', hold);
import(config.script).then(
  () => {
    self.removeEventListener('message', hold);
    for (const ev of held) self.dispatchEvent(new MessageEvent('message', { data: ev.data, ports: [...ev.ports] }));
  },
  (e) => report(new Error(`the thread's script could not start (${e && e.message ? e.message : e})`)),
);
