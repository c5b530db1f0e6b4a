// The model cache in a directory, for Node (the browser keeps it in IndexedDB): the storage
// backend of worker/store.js, so downloads resume and are verified exactly as in the browser.
//
//   DIR/<key>.json       the manifest (key: the first 32 hex digits of SHA-256(url))
//   DIR/<key>/<i>.bin    chunk i
//   DIR/sessions/<key>.bin and .json   saved sessions (the engine's saveSession)
// Writes go to a temporary file renamed into place, a chunk before its manifest, so a crash
// leaves at worst a chunk the manifest does not count yet.
import { createHash } from 'node:crypto';
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CODE, makeError } from '../worker/protocol.js';

const keyOf = (url) => createHash('sha256').update(url).digest('hex').slice(0, 32);

function writeAtomic(path, data) {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, data);
  renameSync(tmp, path);
}

/** A file region read synchronously: what worker/store.js's chunkReader reads from. */
function fileChunk(path) {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  closeSync(fd);
  return {
    size,
    readSync(from, n) {
      const out = new Uint8Array(n);
      const fd = openSync(path, 'r');
      try {
        let got = 0;
        while (got < n) {
          const r = readSync(fd, out, got, n - got, from + got);
          if (r === 0) break;
          got += r;
        }
        return got === n ? out : out.subarray(0, got);
      } finally {
        closeSync(fd);
      }
    },
  };
}

export function directoryBackend(dir) {
  mkdirSync(dir, { recursive: true });
  const manifestPath = (url) => join(dir, `${keyOf(url)}.json`);
  const chunkDir = (url) => join(dir, keyOf(url));
  return {
    async getManifest(url) {
      try {
        const m = JSON.parse(readFileSync(manifestPath(url), 'utf8'));
        return m.url === url ? m : null;
      } catch {
        return null;
      }
    },
    async putManifest(m) {
      writeAtomic(manifestPath(m.url), JSON.stringify(m));
    },
    async putChunk(m, index, bytes) {
      mkdirSync(chunkDir(m.url), { recursive: true });
      writeAtomic(join(chunkDir(m.url), `${index}.bin`), bytes);
      writeAtomic(manifestPath(m.url), JSON.stringify(m));
    },
    async deleteModel(url) {
      const had = (await this.getManifest(url)) !== null;
      rmSync(manifestPath(url), { force: true });
      rmSync(chunkDir(url), { recursive: true, force: true });
      return had;
    },
    async allManifests() {
      const out = [];
      for (const f of readdirSync(dir)) {
        if (!f.endsWith('.json')) continue;
        try {
          out.push(JSON.parse(readFileSync(join(dir, f), 'utf8')));
        } catch {
          /* a foreign or half-written file */
        }
      }
      return out;
    },
    async chunks(url, first = 0, last = Infinity) {
      let names;
      try {
        names = readdirSync(chunkDir(url));
      } catch {
        return [];
      }
      return names
        .map((f) => /^(\d+)\.bin$/.exec(f))
        .filter(Boolean)
        .map((m) => Number(m[1]))
        .filter((i) => i >= first && i <= last)
        .sort((a, b) => a - b)
        .map((i) => fileChunk(join(chunkDir(url), `${i}.bin`)));
    },
    // Saved sessions: DIR/sessions/<key>.bin (the bytes) and <key>.json (the facts).
    async putSession(rec) {
      const d = join(dir, 'sessions');
      mkdirSync(d, { recursive: true });
      const { data, ...facts } = rec;
      writeAtomic(join(d, `${keyOf(rec.key)}.bin`), data);
      writeAtomic(join(d, `${keyOf(rec.key)}.json`), JSON.stringify(facts));
    },
    async getSession(key) {
      const base = join(dir, 'sessions', keyOf(key));
      try {
        const facts = JSON.parse(readFileSync(`${base}.json`, 'utf8'));
        return { ...facts, data: new Uint8Array(readFileSync(`${base}.bin`)) };
      } catch {
        return null;
      }
    },
    async deleteSession(key) {
      const base = join(dir, 'sessions', keyOf(key));
      const had = (await this.getSession(key)) !== null;
      rmSync(`${base}.json`, { force: true });
      rmSync(`${base}.bin`, { force: true });
      return had;
    },
    async allSessions() {
      const d = join(dir, 'sessions');
      const out = [];
      let names = [];
      try {
        names = readdirSync(d);
      } catch {
        return out;
      }
      for (const f of names) {
        if (!f.endsWith('.json')) continue;
        try {
          out.push(JSON.parse(readFileSync(join(d, f), 'utf8')));
        } catch {
          /* half-written */
        }
      }
      return out;
    },
    async estimate() {
      try {
        const s = statfsSync(dir);
        let usage = 0;
        for (const m of await this.allManifests()) usage += (m.done || []).filter(Boolean).length * (m.chunkSize || 0);
        return { usage, quota: usage + s.bavail * s.bsize };
      } catch {
        return {};
      }
    },
    /** A local model file (a file: URL), read synchronously: { size, read(offset, length) }. */
    openFile(url) {
      let c;
      try {
        c = fileChunk(fileURLToPath(url));
      } catch (e) {
        throw makeError(CODE.IO, `opening ${url}: ${e.message}`);
      }
      return { size: c.size, read: (offset, length) => c.readSync(offset, length) };
    },
  };
}
