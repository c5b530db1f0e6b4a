// wasm-chord from its packed tarball on Node (copied into the installed app and run there by
// tests/e2e/npm.test.mjs): the browser's API on the CPU path, a directory cache that resumes and
// verifies, local files.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEngine } from 'wasm-chord';

const { CHORD_MODEL_URL: URL_, CHORD_MODEL_SHA256: SHA, CHORD_MODEL_PATH: PATH, CHORD_EXPECTED: EXPECTED } = process.env;
assert.ok(URL_ && SHA && PATH && EXPECTED !== undefined, 'run through tests/e2e/npm.test.mjs');
const cacheDir = mkdtempSync(join(tmpdir(), 'chord-node-cache-'));
const engines = [];
after(() => {
  for (const e of engines) e.terminate();
  rmSync(cacheDir, { recursive: true, force: true });
});

async function reply(engine) {
  const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hello!' }], stream: true, max_tokens: 12, temperature: 0 });
  let text = '';
  for await (const c of stream) text += c.choices[0].delta.content ?? '';
  return text;
}

test('download into the directory cache, verified, then chat', { timeout: 300_000 }, async () => {
  const engine = await createEngine({ cacheDir });
  engines.push(engine);
  const info = await engine.load(URL_, { sha256: SHA });
  assert.equal(info.backend, 'cpu');
  const [entry] = (await engine.cache.list()).filter((m) => m.url === URL_);
  assert.equal(entry.complete, true);
  assert.equal(entry.verified, true);
  assert.equal(entry.sha256, SHA);
  assert.ok(readdirSync(cacheDir).some((f) => f.endsWith('.json')), 'a manifest in the cache directory');
  assert.equal(await reply(engine), EXPECTED);
});

test('an aborted download resumes from the cache directory in a new engine', { timeout: 300_000 }, async () => {
  const url = `${URL_}?resume`;
  const a = await createEngine({ cacheDir });
  engines.push(a);
  const ac = new AbortController();
  await assert.rejects(
    a.load(url, { signal: ac.signal, onProgress: (p) => p.phase === 'download' && p.loaded >= 40 * 2 ** 20 && ac.abort() }),
    (e) => e.code === 'aborted',
  );
  a.terminate();
  const b = await createEngine({ cacheDir });
  engines.push(b);
  let first = null;
  await b.load(url, { onProgress: (p) => p.phase === 'download' && first === null && (first = p.loaded) });
  assert.ok(first >= 32 * 2 ** 20, `resumed at ${first} bytes`);
  const [entry] = (await b.cache.list()).filter((m) => m.url === url);
  assert.equal(entry.sha256, SHA, 'the resumed file hashes to the right SHA-256');
});

test('a local file path loads and chats', { timeout: 300_000 }, async () => {
  const engine = await createEngine({ cacheDir });
  engines.push(engine);
  const info = await engine.load(PATH);
  assert.equal(info.url, null);
  assert.equal(await reply(engine), EXPECTED);
  const bad = await engine.load('/nonexistent/model.gguf').catch((e) => e);
  assert.ok(bad instanceof Error && bad.code, `a missing file is a coded error: ${bad}`);
});
