// The npm package (pkg/, from scripts/build-web): `npm pack`, install the tarball into a fresh
// Vite app, build it, serve the build and stream a chat in headless Chromium (the worker and the
// wasm file must resolve through the bundler); then the same tarball on Node (node --test in
// the app folder: tests/e2e/npm-node.in-app.mjs, copied there as npm-node.test.mjs and run from there).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync, copyFileSync, rmSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, MODEL_PATH, launchBrowser, nativeReply } from './helpers.mjs';
import { startFaultyServer, readModel, sha256 } from './faulty-server.mjs';

const T = { timeout: 600_000 };
const log = (...a) => console.log('#', ...a);
// Vite comes from tests/e2e/node_modules (package.json, installed by scripts/setup): the test
// itself never reaches a registry; the tarball installs offline (it has no dependencies).
const VITE_BIN = join(ROOT, 'tests/e2e/node_modules/.bin/vite');
let app;
let browser;
let servers = [];

before(() => {
  assert.ok(existsSync(join(ROOT, 'pkg/package.json')), 'pkg/ is not the npm package: run scripts/build-web');
  assert.ok(existsSync(MODEL_PATH), `${MODEL_PATH} is missing: run scripts/fetch-models`);
  app = mkdtempSync(join(tmpdir(), 'chord-npm-'));
  const packed = execFileSync('npm', ['pack', join(ROOT, 'pkg'), '--pack-destination', app, '--silent'], { encoding: 'utf8' }).trim().split('\n').pop();
  log('packed', packed);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'chord-npm-e2e', private: true, type: 'module' }));
  assert.ok(existsSync(VITE_BIN), `${VITE_BIN} is missing: run scripts/setup (or npm ci in tests/e2e)`);
  execFileSync('npm', ['install', '--offline', '--no-audit', '--no-fund', '--silent', join(app, packed)], { cwd: app, stdio: 'inherit' });
});

after(async () => {
  await browser?.close();
  for (const s of servers) await s.stop();
  if (app) rmSync(app, { recursive: true, force: true });
});

test('the tarball has the module, the worker, the client, types and the Node entry', () => {
  const pkgDir = join(app, 'node_modules/wasm-chord');
  for (const f of ['package.json', 'wasm_chord.js', 'wasm_chord_bg.wasm', 'threads/wasm_chord.js', 'threads/wasm_chord_bg.wasm', 'threads-relaxed/wasm_chord.js', 'threads-relaxed/wasm_chord_bg.wasm', 'relaxed/wasm_chord.js', 'relaxed/wasm_chord_bg.wasm', 'worker/worker.js', 'worker/client.js', 'worker/client.d.ts', 'worker/pool-worker.js', 'worker/store.js', 'worker/protocol.js', 'worker/adapter.js', 'worker/auto.js', 'node/index.js', 'node/worker.js', 'node/index.d.ts']) {
    assert.ok(existsSync(join(pkgDir, f)), `${f} is in the package`);
  }
});

test('a Vite app built from the tarball streams a chat in Chromium', T, async () => {
  const expected = nativeReply('Hello!', 12);
  writeFileSync(join(app, 'vite.config.js'), "export default { worker: { format: 'es' }, build: { outDir: 'dist', target: 'es2022' } };\n");
  writeFileSync(
    join(app, 'index.html'),
    '<!doctype html><meta charset="utf-8"><title>vite app</title><p id="status">starting</p><p id="reply"></p><script type="module" src="/main.js"></script>\n',
  );
  writeFileSync(
    join(app, 'main.js'),
    `import { createEngine } from 'wasm-chord';
const status = document.getElementById('status');
try {
  const engine = await createEngine();
  await engine.load(new URL('/faulty/model.gguf', location.href).href, { backend: 'cpu' });
  const stream = await engine.chat.completions.create({ messages: [{ role: 'user', content: 'Hello!' }], stream: true, max_tokens: 12, temperature: 0 });
  let text = '';
  for await (const c of stream) text += c.choices[0].delta.content ?? '';
  document.getElementById('reply').textContent = text;
  status.textContent = 'done';
} catch (e) {
  status.textContent = 'error: ' + e.message + ' [' + e.code + ']';
}
`,
  );
  execFileSync(VITE_BIN, ['build', '--logLevel', 'warn'], { cwd: app, stdio: 'inherit' });
  const assets = readdirSync(join(app, 'dist/assets'));
  log('built assets:', assets.join(' '));
  assert.ok(assets.some((a) => a.endsWith('.wasm')), 'the wasm file is an asset of the build');
  assert.ok(assets.some((a) => /worker/.test(a)), 'the worker is bundled');
  const server = await startFaultyServer({ root: join(app, 'dist'), models: { 'model.gguf': readModel(MODEL_PATH) }, chunk: 1 << 24 });
  servers.push(server);
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`${server.base}/index.html`);
  await page.waitForFunction(() => /^(done|error)/.test(document.getElementById('status').textContent), null, { timeout: 240_000 });
  assert.equal(await page.textContent('#status'), 'done');
  assert.equal(await page.textContent('#reply'), expected);
});

test('the tarball on Node: node --test in the installed app', T, async () => {
  const model = readModel(MODEL_PATH);
  const server = await startFaultyServer({ root: app, models: { 'model.gguf': model }, chunk: 1 << 24 });
  servers.push(server);
  copyFileSync(join(ROOT, 'tests/e2e/npm-node.in-app.mjs'), join(app, 'npm-node.test.mjs'));
  // Not as a subtest of this run: the child reports in TAP, not to our test runner.
  const env = { ...process.env };
  delete env.NODE_TEST_CONTEXT;
  // Asynchronously: the model server runs in this process.
  const r = await run(process.execPath, ['--test', 'npm-node.test.mjs'], {
    cwd: app,
    env: {
      ...env,
      CHORD_MODEL_URL: `${server.base}/faulty/model.gguf`,
      CHORD_MODEL_SHA256: sha256(model),
      CHORD_MODEL_PATH: MODEL_PATH,
      CHORD_EXPECTED: nativeReply('Hello!', 12),
    },
  });
  log(r.stdout.split('\n').filter((l) => /^(# |ok|not ok)/.test(l.trim())).join('\n'));
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /# pass [1-9]/);
  assert.match(r.stdout, /# fail 0/);
});

/** spawn → {status, stdout, stderr}, without blocking this process's event loop. */
function run(cmd, args, opts) {
  return new Promise((resolve) => {
    const p = spawn(cmd, args, { ...opts, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 400_000);
    p.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
