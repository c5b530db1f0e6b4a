// IndexedDB chunk store and resumable downloader (runs in the worker).
//
// One manifest per model URL: { url, size, etag, lastModified, chunkSize, done: [bool],
// complete, name, updated, sha256, expectedSha256, verified, unusable }. Chunks are stored as they arrive under [url, index], so a reload or a
// network failure resumes from the first missing chunk. A changed ETag/Last-Modified starts over.
// Chunks are stored as Blobs: reading the cache back yields handles whose bytes stay on disk, and
// the engine reads each tensor's bytes synchronously (FileReaderSync) when it needs them, so
// neither the JS heap nor wasm memory ever holds the whole model.
//
// Verification: every 206 must carry the Content-Range asked for (start, end, total); the bytes
// are hashed (SHA-256, incrementally, by the wasm module's hasher) as the chunks are stored, and
// when a hash is known (the `sha256` load option, or a host's `X-Linked-Etag` LFS hash) a model
// is marked complete only if it matches. A mismatch starts the download over once, then fails
// with `integrity` and leaves nothing cached. Without ETag/Last-Modified a change of the file
// on the server cannot be seen between requests: listModels() says so (`canDetectChange`).

import { CODE, makeError } from './protocol.js';

const DB_NAME = 'wasm-chord';
// 2: the 'sessions' store (saved KV caches of conversations) was added.
const DB_VERSION = 2;
export const DEFAULT_CHUNK = 16 * 1024 * 1024;
const RETRIES = 4;

let dbPromise = null;
function db() {
  if (!dbPromise) {
    dbPromise = new Promise((resolve, reject) => {
      const req = indexedDB.open(DB_NAME, DB_VERSION);
      req.onupgradeneeded = () => {
        const d = req.result;
        if (!d.objectStoreNames.contains('manifests')) d.createObjectStore('manifests', { keyPath: 'url' });
        if (!d.objectStoreNames.contains('chunks')) d.createObjectStore('chunks');
        if (!d.objectStoreNames.contains('sessions')) d.createObjectStore('sessions', { keyPath: 'key' });
      };
      req.onsuccess = () => resolve(req.result);
      req.onerror = () => reject(makeError(CODE.STORAGE, `IndexedDB: ${req.error}`));
    });
  }
  return dbPromise;
}

function txDone(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(storageError(tx.error));
    tx.onabort = () => reject(storageError(tx.error));
  });
}

function storageError(e) {
  if (e && e.name === 'QuotaExceededError') {
    return makeError(CODE.QUOTA, 'the browser ran out of storage for this model: delete cached models or free disk space');
  }
  return makeError(CODE.STORAGE, `IndexedDB: ${e && e.message ? e.message : e}`);
}

const mb = (b) => (b / 1048576).toFixed(b < 1048576 * 10 ? 1 : 0);

function reqP(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(storageError(r.error));
  });
}

/**
 * Where manifests and chunks live: IndexedDB in browsers. Node (node/worker.js) swaps in a
 * directory with useBackend(). A chunk is a Blob, bytes, or `{ size, readSync(from, n) }`.
 */
const indexedDbBackend = {
  async getManifest(url) {
    const tx = (await db()).transaction('manifests', 'readonly');
    return (await reqP(tx.objectStore('manifests').get(url))) || null;
  },
  async putManifest(m) {
    const tx = (await db()).transaction('manifests', 'readwrite');
    tx.objectStore('manifests').put(m);
    await txDone(tx);
  },
  /** One chunk and its manifest in one transaction. */
  async putChunk(m, index, bytes) {
    const tx = (await db()).transaction(['chunks', 'manifests'], 'readwrite');
    tx.objectStore('chunks').put(new Blob([bytes]), [m.url, index]);
    tx.objectStore('manifests').put(m);
    await txDone(tx);
  },
  async deleteModel(url) {
    const tx = (await db()).transaction(['chunks', 'manifests'], 'readwrite');
    const had = await reqP(tx.objectStore('manifests').count(url));
    tx.objectStore('manifests').delete(url);
    tx.objectStore('chunks').delete(IDBKeyRange.bound([url, 0], [url, Infinity]));
    await txDone(tx);
    return had > 0;
  },
  async allManifests() {
    const tx = (await db()).transaction('manifests', 'readonly');
    return reqP(tx.objectStore('manifests').getAll());
  },
  /** Chunks first..last of `url`, in order (those present). */
  async chunks(url, first = 0, last = Infinity) {
    const tx = (await db()).transaction('chunks', 'readonly');
    return reqP(tx.objectStore('chunks').getAll(IDBKeyRange.bound([url, first], [url, last])));
  },
  async estimate() {
    return globalThis.navigator?.storage?.estimate ? navigator.storage.estimate() : {};
  },
  /** A saved session: { key, data: Blob, ...facts }, replacing the one of the same key. */
  async putSession(rec) {
    const tx = (await db()).transaction('sessions', 'readwrite');
    tx.objectStore('sessions').put({ ...rec, data: new Blob([rec.data]) });
    await txDone(tx);
  },
  /** The saved session of `key` with its bytes (a Uint8Array), or null. */
  async getSession(key) {
    const tx = (await db()).transaction('sessions', 'readonly');
    const rec = await reqP(tx.objectStore('sessions').get(key));
    if (!rec) return null;
    return { ...rec, data: new Uint8Array(await rec.data.arrayBuffer()) };
  },
  async deleteSession(key) {
    const tx = (await db()).transaction('sessions', 'readwrite');
    const had = await reqP(tx.objectStore('sessions').count(key));
    tx.objectStore('sessions').delete(key);
    await txDone(tx);
    return had > 0;
  },
  async allSessions() {
    const tx = (await db()).transaction('sessions', 'readonly');
    return reqP(tx.objectStore('sessions').getAll());
  },
};

let backend = indexedDbBackend;

/** Replace the storage (Node: a directory); call before any other function of this module. */
export function useBackend(b) {
  backend = b;
}

/** A local file (Node: a file: URL) as { size, read(offset, length) }, where the backend has files. */
export function openFile(url) {
  if (!backend.openFile) throw makeError(CODE.INVALID, `source: ${url}: local files are opened as File objects in a browser`);
  return backend.openFile(url);
}

export const canOpenFiles = () => typeof backend.openFile === 'function';

export function getManifest(url) {
  return backend.getManifest(url);
}

function putManifest(m) {
  return backend.putManifest(m);
}

function putChunk(m, index, bytes) {
  m.done[index] = true;
  m.updated = Date.now();
  return backend.putChunk(m, index, bytes);
}

export function deleteModel(url) {
  return backend.deleteModel(url);
}

export async function listModels() {
  const all = await backend.allManifests();
  return all.map((m) => {
    const canDetectChange = !!(m.etag || m.lastModified);
    return {
      url: m.url,
      name: m.name,
      size: m.size,
      stored: storedBytes(m),
      complete: !!m.complete,
      etag: m.etag,
      updated: m.updated,
      sha256: m.sha256 ?? null,
      // true: the bytes matched a SHA-256 known before the download.
      verified: !!m.verified,
      canDetectChange,
      warning: canDetectChange
        ? null
        : 'the server sent neither ETag nor Last-Modified: a file changed on the server during a resumed download cannot be detected (pass sha256 to load to verify it)',
      unusable: m.unusable ?? null,
    };
  });
}

/** Remember that the engine failed on this cached model, so it is not loaded again in a loop. */
export async function markUnusable(url, err) {
  const m = await getManifest(url);
  if (!m) return;
  m.unusable = { code: err.code || CODE.INTERNAL, message: String(err.message || err) };
  await putManifest(m);
}

function unusableError(m) {
  return makeError(
    CODE.UNUSABLE,
    `${m.url} is cached but the engine failed on it before [${m.unusable.code}]: ${m.unusable.message} (delete it from the cache to download it again)`,
  );
}

/** One stored chunk's bytes. */
async function storedChunk(url, i) {
  const [c] = await backend.chunks(url, i, i);
  if (c === undefined) throw makeError(CODE.STORAGE, `chunk ${i} of ${url} is missing from the cache`);
  return chunkBytes(c);
}

/** SHA-256 of the chunks stored so far (0..n-1), fed into `hasher`. */
async function hashStored(m, n, hasher) {
  for (let i = 0; i < n; i++) hasher.update(await storedChunk(m.url, i));
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The LFS SHA-256 some model hosts send as X-Linked-Etag (when CORS exposes it). */
function linkedSha(res) {
  const v = (res.headers.get('X-Linked-Etag') || '').replace(/^W\//, '').replace(/"/g, '').toLowerCase();
  return HEX64.test(v) ? v : null;
}

/** Throws `integrity` (with a restart flag) when the computed digest is not the expected one. */
function checkDigest(m, digest, expected) {
  m.sha256 = digest;
  m.verified = false;
  if (!expected) return;
  if (digest !== expected) {
    throw Object.assign(
      makeError(CODE.INTEGRITY, `${m.url}: the downloaded bytes have SHA-256 ${digest}, expected ${expected}; nothing was kept`),
      { restart: true },
    );
  }
  m.verified = true;
}

/**
 * The Content-Range of a 206 must be the range asked for: `start`, then `end` (or the end of the
 * file, for the first request before the size is known) and, when known, the file's `size`.
 * Returns the total size.
 */
function checkRange(url, res, start, wantEnd, size) {
  const raw = res.headers.get('Content-Range') || '';
  const cr = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(raw.trim());
  if (!cr) {
    throw makeError(CODE.BAD_RESPONSE, `${url}: a 206 response without a usable Content-Range (${JSON.stringify(raw)}; is Content-Range exposed by CORS?)`);
  }
  const [s, e, t] = cr.slice(1).map(Number);
  const end = Math.min(wantEnd, t - 1);
  if (s !== start || e !== end || (size !== null && t !== size) || e >= t) {
    const asked = `bytes ${start}-${end}/${size ?? '*'}`;
    throw makeError(CODE.BAD_RESPONSE, `${url}: asked for ${asked}, the server sent ${raw}: nothing was stored`);
  }
  return t;
}

// Saved sessions (the KV cache of a conversation, from the engine's saveSession): stored beside
// the models, by the page's key. The engine checks the bytes (checksum, model) on restore.

/** Store a session's bytes under `key` with its facts (model, tokens, precision). */
export async function putSession(key, data, facts) {
  const rec = { ...facts, key, bytes: data.byteLength, saved: Date.now(), data };
  try {
    await backend.putSession(rec);
  } catch (e) {
    if (e && e.code === CODE.QUOTA) {
      throw makeError(CODE.QUOTA, `the browser has no room for this session (${mb(data.byteLength)} MB): delete saved sessions or cached models`);
    }
    throw e && e.code ? e : storageError(e);
  }
  const { data: _, ...listed } = rec;
  return listed;
}

/** The session saved under `key` ({ ...facts, data: Uint8Array }), or a bad_session error. */
export async function getSession(key) {
  const rec = await backend.getSession(key);
  if (!rec) throw makeError(CODE.BAD_SESSION, `no session is saved under ${JSON.stringify(key)}`);
  return rec;
}

export function deleteSession(key) {
  return backend.deleteSession(key);
}

/** Every saved session's facts (no bytes), newest first. */
export async function listSessions() {
  const all = await backend.allSessions();
  return all.map(({ data: _, ...facts }) => facts).sort((a, b) => b.saved - a.saved);
}

export async function usage() {
  const est = await backend.estimate();
  const models = await listModels();
  const sessions = backend.allSessions ? await listSessions() : [];
  return {
    usage: est.usage ?? null,
    quota: est.quota ?? null,
    models: models.reduce((a, m) => a + m.stored, 0),
    sessions: sessions.reduce((a, s) => a + s.bytes, 0),
  };
}

function storedBytes(m) {
  let n = 0;
  for (let i = 0; i < m.done.length; i++) if (m.done[i]) n += chunkLength(m, i);
  return n;
}

function chunkLength(m, i) {
  return Math.min(m.chunkSize, m.size - i * m.chunkSize);
}

/** All chunks of a complete model, in order: Blob handles (or bytes, from older caches). */
export async function readChunks(m) {
  const all = await backend.chunks(m.url);
  const n = m.done.length;
  if (all.length !== n) {
    throw makeError(CODE.BAD_RESPONSE, `the cache holds ${all.length} of ${n} chunks of ${m.url}: download it again`);
  }
  return all.map((c, i) => {
    const u = c instanceof Blob || c instanceof Uint8Array || typeof c.readSync === 'function' ? c : new Uint8Array(c);
    const len = u instanceof Uint8Array ? u.length : u.size;
    if (len !== chunkLength(m, i)) {
      throw makeError(CODE.BAD_RESPONSE, `cached chunk ${i} of ${m.url} has ${len} bytes, expected ${chunkLength(m, i)}: download it again`);
    }
    return u;
  });
}

/** The bytes of one stored chunk (Blob or bytes). */
async function chunkBytes(c) {
  if (c instanceof Blob) return new Uint8Array(await c.arrayBuffer());
  if (typeof c.readSync === 'function') return c.readSync(0, c.size);
  return c instanceof Uint8Array ? c : new Uint8Array(c);
}

/**
 * A synchronous read(offset, length) over in-order chunks of `chunkSize` (Blobs or bytes).
 * Blob slices are read with FileReaderSync (dedicated workers only), one slice per call.
 */
export function chunkReader(chunks, chunkSize) {
  let fr = null;
  return (offset, length) => {
    const out = new Uint8Array(length);
    let pos = 0;
    while (pos < length) {
      const at = offset + pos;
      const ci = Math.floor(at / chunkSize);
      const c = chunks[ci];
      if (!c) throw makeError(CODE.IO, `offset ${at} is past the end of the model`);
      const from = at - ci * chunkSize;
      const clen = c instanceof Uint8Array ? c.length : c.size;
      const n = Math.min(length - pos, clen - from);
      if (typeof c.readSync === 'function') {
        const part = c.readSync(from, n);
        if (part.length !== n) throw makeError(CODE.IO, `a cached chunk returned ${part.length} of ${n} bytes`);
        out.set(part, pos);
      } else if (c instanceof Blob) {
        fr ??= new FileReaderSync();
        let part;
        try {
          part = new Uint8Array(fr.readAsArrayBuffer(c.slice(from, from + n)));
        } catch (e) {
          throw makeError(CODE.IO, `reading the cached model failed (has the site's storage been cleared?): ${e.message || e}`);
        }
        if (part.length !== n) throw makeError(CODE.IO, `a cached chunk returned ${part.length} of ${n} bytes`);
        out.set(part, pos);
      } else {
        out.set(c.subarray(from, from + n), pos);
      }
      pos += n;
    }
    return out;
  };
}

function basename(url) {
  try {
    const p = new URL(url, self.location.href).pathname;
    return decodeURIComponent(p.slice(p.lastIndexOf('/') + 1)) || url;
  } catch {
    return url;
  }
}

function validator(res) {
  return { etag: res.headers.get('ETag'), lastModified: res.headers.get('Last-Modified') };
}

function sameFile(m, v) {
  if (m.etag && v.etag) return m.etag === v.etag;
  if (m.lastModified && v.lastModified) return m.lastModified === v.lastModified;
  return true;
}

function httpError(url, res) {
  const what = res.status === 404 ? 'not found' : res.statusText || 'error';
  return makeError(CODE.HTTP, `HTTP ${res.status} (${what}) fetching ${url}`);
}

const sleep = (ms, signal) =>
  new Promise((resolve, reject) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(t);
      reject(makeError(CODE.ABORTED, 'download aborted'));
    });
  });

/** Progress reporter: at most 10 events a second, with speed and ETA. */
function progressReporter(onProgress, total) {
  let last = 0;
  const t0 = performance.now();
  let base = null;
  return (loaded, phase = 'download', force = false) => {
    const now = performance.now();
    if (base === null) base = loaded; // bytes already cached do not count towards speed
    if (!force && now - last < 100) return;
    last = now;
    const secs = (now - t0) / 1000;
    const speed = secs > 0 ? (loaded - base) / secs : 0;
    const eta = speed > 0 && total ? (total - loaded) / speed : null;
    onProgress({ phase, loaded, total, speed, eta });
  };
}

/**
 * Make sure `url` is fully in IndexedDB. `check(bytes, total)` validates the first bytes
 * (GGUF header): it returns {complete} or throws; on a throw the entry is removed.
 * Returns the complete manifest.
 */
export async function download(url, { chunkSize = DEFAULT_CHUNK, onProgress = () => {}, signal, check, sha256 = null, newHasher = null }) {
  let m = await getManifest(url);
  if (m && m.unusable) throw unusableError(m);
  if (m && sha256 && m.expectedSha256 && m.expectedSha256 !== sha256) {
    // Asked for other bytes than the cached (or half-cached) ones.
    await deleteModel(url);
    m = null;
  }
  if (m && m.complete) {
    if (!sha256 || m.sha256 === sha256) return m;
    if (!m.sha256 && newHasher) {
      const h = newHasher();
      await hashStored(m, m.done.length, h);
      m.sha256 = h.finish();
      h.free?.();
    }
    if (m.sha256 === sha256) {
      m.verified = true;
      m.expectedSha256 = sha256;
      await putManifest(m);
      return m;
    }
    await deleteModel(url);
    m = null;
  }
  let restarts = 0;
  for (;;) {
    try {
      return await downloadOnce(url, m, { chunkSize, onProgress, signal, check, sha256, newHasher });
    } catch (e) {
      if (e && e.restart && restarts++ < 2 && !(e.code === CODE.INTEGRITY && restarts > 1)) {
        await deleteModel(url);
        m = null;
        continue;
      }
      if (e && e.code === CODE.INTEGRITY) await deleteModel(url);
      throw e && e.restart ? makeError(e.code, e.message) : e;
    }
  }
}

async function fetchRange(url, start, end, signal) {
  const headers = { Range: `bytes=${start}-${end}` };
  return fetch(url, { headers, signal, cache: 'no-store' });
}

async function downloadOnce(url, m, { chunkSize, onProgress, signal, check, sha256, newHasher }) {
  // First request: the first missing chunk (chunk 0 for a new download).
  let first = 0;
  if (m) {
    first = m.done.findIndex((d) => !d);
    if (first < 0) first = m.done.length;
  }
  const cs = m ? m.chunkSize : chunkSize;
  const start = first * cs;
  let res;
  try {
    res = await fetchRange(url, start, start + cs - 1, signal);
  } catch (e) {
    if (signal?.aborted) throw makeError(CODE.ABORTED, 'download aborted');
    throw makeError(CODE.NETWORK, `could not fetch ${url}: ${e.message || e} (the download resumes where it stopped)`);
  }
  if (res.status === 416 && m) {
    throw Object.assign(makeError(CODE.BAD_RESPONSE, 'the file changed on the server'), { restart: true });
  }
  if (!res.ok) {
    await res.body?.cancel();
    if (!m) await deleteModel(url);
    throw httpError(url, res);
  }
  const v = validator(res);
  if (m && !sameFile(m, v)) {
    await res.body?.cancel();
    throw Object.assign(makeError(CODE.BAD_RESPONSE, 'the file changed on the server'), { restart: true });
  }
  if (res.status === 200) {
    if (m && first > 0) {
      // The server stopped honouring Range: start over with one streamed response.
      await res.body?.cancel();
      throw Object.assign(makeError(CODE.BAD_RESPONSE, 'the server ignores Range'), { restart: true });
    }
    return streamWhole(url, res, v, chunkSize, onProgress, signal, check, sha256 || linkedSha(res), newHasher);
  }
  if (res.status !== 206) {
    await res.body?.cancel();
    throw makeError(CODE.BAD_RESPONSE, `unexpected HTTP ${res.status} for a range request to ${url}`);
  }
  let total;
  try {
    total = checkRange(url, res, start, start + cs - 1, null);
  } catch (e) {
    await res.body?.cancel();
    throw e;
  }
  if (m && m.size !== total) {
    await res.body?.cancel();
    throw Object.assign(makeError(CODE.BAD_RESPONSE, 'the file size changed on the server'), { restart: true });
  }
  if (!m) {
    try {
      await ensureQuota(total);
    } catch (e) {
      await res.body?.cancel();
      throw e;
    }
    m = {
      url,
      name: basename(url),
      size: total,
      etag: v.etag,
      lastModified: v.lastModified,
      chunkSize: cs,
      done: new Array(Math.max(1, Math.ceil(total / cs))).fill(false),
      complete: false,
      updated: Date.now(),
      expectedSha256: sha256 || linkedSha(res),
    };
  }
  const expected = m.expectedSha256 || null;
  const hasher = newHasher ? newHasher() : null;
  // Resuming: the hash covers the chunks stored before too.
  if (hasher) await hashStored(m, first, hasher);
  const report = progressReporter(onProgress, total);
  let loaded = storedBytes(m);
  report(loaded, 'download', true);
  let headerOk = m.headerOk || false;
  let pending = res;
  for (let i = first; i < m.done.length; i++) {
    if (m.done[i]) {
      if (hasher) hasher.update(await storedChunk(url, i));
      continue;
    }
    const want = chunkLength(m, i);
    let bytes = null;
    for (let attempt = 0; ; attempt++) {
      try {
        if (!pending) pending = await fetchRange(url, i * cs, i * cs + want - 1, signal);
        const r = pending;
        pending = null;
        if (r.status !== 206) {
          await r.body?.cancel();
          if (r.status === 200 || r.status === 416) throw Object.assign(makeError(CODE.BAD_RESPONSE, 'the server stopped honouring Range'), { restart: true });
          throw httpError(url, r);
        }
        if (!sameFile(m, validator(r))) {
          await r.body?.cancel();
          throw Object.assign(makeError(CODE.BAD_RESPONSE, 'the file changed on the server'), { restart: true });
        }
        try {
          checkRange(url, r, i * cs, i * cs + want - 1, m.size);
        } catch (e) {
          await r.body?.cancel();
          throw e;
        }
        bytes = await readBody(r, want, (n) => report(loaded + n));
        if (bytes.length !== want) {
          throw makeError(CODE.NETWORK, `chunk ${i} of ${url}: got ${bytes.length} bytes, expected ${want}`);
        }
        break;
      } catch (e) {
        if (signal?.aborted) throw makeError(CODE.ABORTED, 'download aborted');
        if (e && (e.restart || e.code === CODE.HTTP || e.code === CODE.BAD_RESPONSE)) throw e;
        if (attempt >= RETRIES) {
          const msg = e && e.message ? e.message : String(e);
          throw makeError(CODE.NETWORK, `downloading ${url} failed at ${loaded} of ${total} bytes: ${msg} (it resumes from there next time)`);
        }
        await sleep(250 * 2 ** attempt, signal);
      }
    }
    if (!headerOk && check) {
      headerOk = await runCheck(m, i, bytes, check);
    }
    if (hasher) hasher.update(bytes);
    await putChunk(m, i, bytes);
    loaded += bytes.length;
    report(loaded);
  }
  if (hasher) {
    const digest = hasher.finish();
    hasher.free?.();
    checkDigest(m, digest, expected);
  }
  m.complete = true;
  m.headerOk = true;
  await putManifest(m);
  report(loaded, 'download', true);
  return m;
}

/** Validate the header from the chunks so far; throws (and removes the entry) on bad bytes. */
async function runCheck(m, i, bytes, check) {
  let prefix = bytes;
  if (i > 0) {
    const earlier = await readPrefix(m, i);
    prefix = concat([...earlier, bytes]);
  }
  try {
    const r = check(prefix, m.size);
    if (r && r.complete) {
      m.headerOk = true;
      return true;
    }
    return false;
  } catch (e) {
    await deleteModel(m.url);
    throw e;
  }
}

async function readPrefix(m, n) {
  const all = await backend.chunks(m.url, 0, n - 1);
  return Promise.all(all.map(chunkBytes));
}

function concat(parts) {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    const u = p instanceof Uint8Array ? p : new Uint8Array(p);
    out.set(u, o);
    o += u.length;
  }
  return out;
}

async function readBody(res, want, onBytes) {
  const out = new Uint8Array(want);
  let n = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (n + value.length > want) {
      await reader.cancel();
      throw makeError(CODE.BAD_RESPONSE, `the server sent more than the ${want} bytes asked for`);
    }
    out.set(value, n);
    n += value.length;
    onBytes(n);
  }
  return n === want ? out : out.subarray(0, n);
}

async function ensureQuota(total) {
  const { usage = 0, quota } = await backend.estimate();
  if (quota && quota - usage < total) {
    throw makeError(CODE.QUOTA, `this model needs ${mb(total)} MB but the browser allows only ${mb(quota - usage)} MB more for this site: delete cached models or free disk space`);
  }
}

/** A server without Range: one streamed response, written chunk by chunk. */
async function streamWhole(url, res, v, chunkSize, onProgress, signal, check, expected, newHasher) {
  const lenHeader = res.headers.get('Content-Length');
  const total = lenHeader ? Number(lenHeader) : null;
  if (total !== null) await ensureQuota(total);
  await deleteModel(url);
  const m = {
    url,
    name: basename(url),
    size: total ?? 0,
    etag: v.etag,
    lastModified: v.lastModified,
    chunkSize,
    done: total !== null ? new Array(Math.max(1, Math.ceil(total / chunkSize))).fill(false) : [],
    complete: false,
    updated: Date.now(),
    expectedSha256: expected,
  };
  const hasher = newHasher ? newHasher() : null;
  const report = progressReporter(onProgress, total);
  const reader = res.body.getReader();
  let buf = new Uint8Array(chunkSize);
  let fill = 0;
  let index = 0;
  let loaded = 0;
  let headerOk = false;
  const flush = async () => {
    const bytes = buf.slice(0, fill);
    if (!headerOk && check && total !== null) headerOk = await runCheck(m, index, bytes, check);
    if (m.done.length <= index) m.done.push(false);
    if (hasher) hasher.update(bytes);
    await putChunk(m, index, bytes);
    index++;
    fill = 0;
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      let off = 0;
      while (off < value.length) {
        const n = Math.min(value.length - off, chunkSize - fill);
        buf.set(value.subarray(off, off + n), fill);
        fill += n;
        off += n;
        loaded += n;
        if (fill === chunkSize) await flush();
      }
      report(loaded);
    }
  } catch (e) {
    // Without Range nothing can resume: drop the partial entry.
    await deleteModel(url);
    if (signal?.aborted) throw makeError(CODE.ABORTED, 'download aborted');
    throw makeError(CODE.NETWORK, `downloading ${url} failed after ${loaded} bytes: ${e.message || e}`);
  }
  if (fill > 0) await flush();
  if (total !== null && loaded !== total) {
    await deleteModel(url);
    throw makeError(CODE.BAD_RESPONSE, `${url}: received ${loaded} bytes, Content-Length said ${total}`);
  }
  m.size = loaded;
  if (!headerOk && check) {
    // Unknown length up front: check the header now that the size is known.
    try {
      check(concat(await readPrefix(m, index)), loaded);
    } catch (e) {
      await deleteModel(url);
      throw e;
    }
  }
  if (hasher) {
    const digest = hasher.finish();
    hasher.free?.();
    checkDigest(m, digest, expected);
  }
  m.complete = true;
  m.headerOk = true;
  await putManifest(m);
  report(loaded, 'download', true);
  return m;
}
