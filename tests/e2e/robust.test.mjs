// Nothing corrupt, nothing crashes (issue 17), against tests/e2e/faulty-server.mjs:
// - downloads: a wrong Content-Range, a flipped byte, a file changed mid-download without
//   validators each end in a clear error or a correct file, never a corrupt cached model;
// - a crafted model fails cleanly, is marked unusable (no reload loop), and the worker stays
//   usable; a trap inside the wasm module gets a fresh worker;
// - bad API input gets `invalid` errors naming the field.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, launchBrowser } from './helpers.mjs';
import { startFaultyServer, readModel, sha256, openEnginePage } from './faulty-server.mjs';

const T = { timeout: 120_000 };
const CHUNK = 256 * 1024;
const TINY = join(ROOT, 'models/tiny-random-llama-q4_k_m.gguf');
let server;
let browser;
let page;
let tiny;
let changed;
let crafted;
const log = (...a) => console.log('#', ...a);

/** The tiny model with a u32 metadata value replaced (found by its key). */
function withU32(buf, key, value) {
  const out = Buffer.from(buf);
  const k = Buffer.from(key);
  const at = out.indexOf(k);
  assert.ok(at > 0, `${key} in the tiny model`);
  assert.equal(out.readUInt32LE(at + k.length), 4, `${key} is a u32`);
  out.writeUInt32LE(value, at + k.length + 4);
  return out;
}

before(async () => {
  assert.ok(existsSync(TINY), `${TINY} is missing: run scripts/fetch-models`);
  assert.ok(existsSync(join(ROOT, 'pkg/wasm_chord_bg.wasm')), 'pkg/ is missing: run scripts/build-web');
  tiny = readModel(TINY);
  changed = Buffer.from(tiny);
  // Same size, other bytes in the last two chunks (tensor data): the first 6 requests get the
  // old file, the rest the new one, so the mix differs from both.
  for (let i = 5 * CHUNK + 100; i < 5 * CHUNK + 4196; i++) changed[i] ^= 0x55;
  for (let i = changed.length - 4096; i < changed.length; i++) changed[i] ^= 0x55;
  // More heads than embedding values (256): before issue 17 a division by zero in the loader.
  crafted = withU32(withU32(tiny, 'llama.attention.head_count_kv', 512), 'llama.attention.head_count', 512);
  server = await startFaultyServer({
    root: ROOT,
    models: { 'tiny.gguf': tiny, 'crafted.gguf': crafted },
    changed: { 'tiny.gguf': changed },
    chunk: CHUNK,
    changeAfter: 6,
  });
  browser = await launchBrowser();
  page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await openEnginePage(page, server);
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

/** engine.load(url, opts) in the page → {info} or {error: {code, message}}. */
const load = (url, opts = {}) =>
  page.evaluate(
    async ({ url, opts }) => {
      try {
        return { info: await window.engine.load(url, opts) };
      } catch (e) {
        return { error: { code: e.code, message: e.message } };
      }
    },
    { url, opts: { chunkSize: 256 * 1024, backend: 'cpu', ...opts } },
  );
const cached = (url) => page.evaluate(async (url) => (await window.engine.cache.list()).find((m) => m.url === url) || null, url);
const url = (name, q) => `${server.base}/faulty/${name}?${q}`;

test('a 206 from the wrong offset is refused with bad_response and nothing is cached', T, async () => {
  const u = url('tiny.gguf', 'fault=shift&id=1');
  const r = await load(u);
  log(JSON.stringify(r.error));
  assert.equal(r.error?.code, 'bad_response', JSON.stringify(r));
  assert.match(r.error.message, /asked for bytes 262144-524287\/1616160, the server sent bytes 262145-524288\/1616160/);
  const c = await cached(u);
  assert.ok(!c || (!c.complete && c.stored === CHUNK), `only the good first chunk may stay: ${JSON.stringify(c)}`);
});

test('a flipped byte with a known sha256 is re-fetched: the second pass gives the right file', T, async () => {
  const u = url('tiny.gguf', 'fault=flip-once&id=2');
  const r = await load(u, { sha256: sha256(tiny) });
  assert.ok(r.info, JSON.stringify(r.error));
  const c = await cached(u);
  assert.equal(c.complete, true);
  assert.equal(c.sha256, sha256(tiny));
  assert.equal(c.verified, true);
  assert.equal(server.requests('?fault=flip-once&id=2'), 2 * Math.ceil(tiny.length / CHUNK), 'one pass, then one more');
});

test('a byte flipped on every pass ends in integrity and nothing cached', T, async () => {
  const u = url('tiny.gguf', 'fault=flip&id=3');
  const r = await load(u, { sha256: sha256(tiny) });
  assert.equal(r.error?.code, 'integrity', JSON.stringify(r));
  assert.match(r.error.message, new RegExp(`expected ${sha256(tiny)}`));
  assert.equal(await cached(u), null, 'no corrupt model is kept');
});

test('the host LFS hash (X-Linked-Etag) catches a flipped byte without a sha256 option', T, async () => {
  const u = url('tiny.gguf', 'fault=linked-flip&id=4');
  const r = await load(u);
  assert.ok(r.info, JSON.stringify(r.error));
  const c = await cached(u);
  assert.equal(c.sha256, sha256(tiny));
  assert.equal(c.verified, true);
});

test('a file changed mid-download without validators: with its sha256 the right file, and a warning without', T, async () => {
  const u = url('tiny.gguf', 'fault=change&id=5');
  const r = await load(u, { sha256: sha256(changed) });
  assert.ok(r.info, JSON.stringify(r.error));
  const c = await cached(u);
  assert.equal(c.sha256, sha256(changed), 'the cached bytes are the new file, whole');
  assert.equal(c.canDetectChange, false);
  assert.match(c.warning, /neither ETag nor Last-Modified/);
  const u2 = url('tiny.gguf', 'fault=none&id=6');
  assert.ok((await load(u2)).info);
  const c2 = await cached(u2);
  assert.equal(c2.canDetectChange, true);
  assert.equal(c2.warning, null);
  assert.equal(c2.sha256, sha256(tiny), 'the hash is recorded even when none was given');
  assert.equal(c2.verified, false);
});

test('a crafted model fails cleanly, is marked unusable, and the worker stays usable', T, async () => {
  const u = url('crafted.gguf', 'fault=none&id=7');
  const a = await load(u);
  assert.equal(a.error?.code, 'bad_metadata', JSON.stringify(a));
  assert.match(a.error.message, /attention\.head_count/);
  assert.deepEqual((await cached(u)).unusable, a.error);
  const before = server.requests('?fault=none&id=7');
  const b = await load(u);
  assert.equal(b.error?.code, 'unusable', JSON.stringify(b));
  assert.match(b.error.message, /bad_metadata/);
  assert.equal(server.requests('?fault=none&id=7'), before, 'not downloaded again');
  // The same worker loads a good model afterwards.
  const good = await load(url('tiny.gguf', 'fault=none&id=6'));
  assert.ok(good.info, JSON.stringify(good.error));
  assert.equal(good.info.n_embd, 256);
  // Deleting the entry allows a fresh try.
  assert.equal(await page.evaluate((u) => window.engine.cache.delete(u), u), true);
  assert.equal((await load(u)).error?.code, 'bad_metadata');
});

test('a trap inside the wasm module: fatal for that request, the cached model marked, a fresh worker after', T, async () => {
  const u = url('tiny.gguf', 'fault=none&id=8');
  const a = await load(u, { __testTrap: true });
  assert.equal(a.error?.code, 'fatal', JSON.stringify(a));
  assert.match(a.error.message, /test trap/);
  assert.equal((await cached(u)).unusable?.code, 'fatal');
  // The next request goes to a fresh worker and module.
  const b = await load(url('tiny.gguf', 'fault=none&id=6'));
  assert.ok(b.info, JSON.stringify(b.error));
  const c = await load(u);
  assert.equal(c.error?.code, 'unusable', 'no crash loop on the marked file');
});

test('bad API input gets invalid errors that name the field', T, async () => {
  assert.ok((await load(url('tiny.gguf', 'fault=none&id=6'))).info);
  const cases = await page.evaluate(async () => {
    const e = window.engine;
    const err = async (f) => {
      try {
        await f();
        return null;
      } catch (x) {
        return { code: x.code, message: x.message };
      }
    };
    const chat = (p) => err(() => e.chat.completions.create({ messages: [{ role: 'user', content: 'hi' }], ...p }));
    return {
      max_tokens: await chat({ max_tokens: 1e300 }),
      max_tokens_neg: await chat({ max_tokens: -1 }),
      n_ctx: await chat({ n_ctx: 2 ** 40 }),
      temperature: await chat({ temperature: -1 }),
      top_p: await chat({ top_p: 2 }),
      top_k: await chat({ top_k: 1.5 }),
      min_p: await chat({ min_p: 'x' }),
      repeat_penalty: await chat({ repeat_penalty: 0 }),
      presence_penalty: await chat({ presence_penalty: 9 }),
      frequency_penalty: await chat({ frequency_penalty: -9 }),
      seed: await chat({ seed: -3 }),
      stop: await chat({ stop: [1] }),
      stop_empty: await chat({ stop: '' }),
      messages: await err(() => e.chat.completions.create({ messages: [{ content: 'no role' }] })),
      messages_shape: await err(() => e.chat.completions.create({ messages: ['hi'] })),
      source: await err(() => e.load('ftp://example.org/m.gguf')),
      chunkSize: await err(() => e.load(location.origin + '/faulty/tiny.gguf', { chunkSize: 5 })),
      sha256: await err(() => e.load(location.origin + '/faulty/tiny.gguf', { sha256: 'abc' })),
      backend: await err(() => e.load(location.origin + '/faulty/tiny.gguf?fault=none&id=6', { backend: 'tpu' })),
    };
  });
  const names = {
    max_tokens_neg: 'max_tokens',
    stop_empty: 'stop',
    messages: 'messages[0].role',
    messages_shape: 'messages[0]',
  };
  for (const [k, v] of Object.entries(cases)) {
    assert.ok(v, `${k}: accepted`);
    assert.equal(v.code, 'invalid', `${k}: ${JSON.stringify(v)}`);
    assert.ok(v.message.includes(names[k] ?? k), `${k}: the message names the field: ${v.message}`);
  }
});
