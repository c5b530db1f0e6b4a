// `make dist` on a plain static host (Python's http.server: no COOP/COEP, no Range, no
// Service-Worker-Allowed), under a sub-path: the service worker takes control and makes the page
// cross-origin isolated, a local model file loads and chats, and the page reloads offline.
// A shell file the service worker cannot cache is reported on the page.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, symlinkSync, cpSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, MODEL_PATH, launchBrowser, nativeReply } from './helpers.mjs';

const DIST = join(ROOT, 'dist');
const T = { timeout: 300_000 };
const log = (...a) => console.log('#', ...a);
let site;
let browser;
const servers = [];

const freePort = () =>
  new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

/** python3 -m http.server over `dir` on `port`; resolves once it answers. */
async function pythonServer(dir, port) {
  const p = spawn('python3', ['-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', dir], { stdio: 'ignore' });
  servers.push(p);
  for (let i = 0; i < 100; i++) {
    try {
      await fetch(`http://127.0.0.1:${port}/`);
      return {
        base: `http://127.0.0.1:${port}`,
        stop: () =>
          new Promise((r) => {
            p.once('exit', () => r());
            p.kill('SIGKILL');
          }),
      };
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('python3 -m http.server did not start');
}

before(() => {
  assert.ok(existsSync(join(DIST, 'index.html')) && existsSync(join(DIST, 'sw.js')), 'dist/ is missing: run make dist');
  assert.ok(existsSync(MODEL_PATH), `${MODEL_PATH} is missing: run scripts/fetch-models`);
  // The site under a sub-path: /apps/chat/ → dist/.
  site = mkdtempSync(join(tmpdir(), 'chord-dist-'));
  rmSync(join(site, 'apps'), { recursive: true, force: true });
  cpSync(DIST, join(site, 'apps/chat'), { recursive: true });
  // A copy that lacks one shell file, for the failure report.
  cpSync(DIST, join(site, 'apps/broken'), { recursive: true });
  rmSync(join(site, 'apps/broken/www/style.css'));
  symlinkSync(MODEL_PATH, join(site, 'model.gguf'));
});

after(async () => {
  await browser?.close();
  for (const p of servers) p.kill('SIGKILL');
  if (site) rmSync(site, { recursive: true, force: true });
});

async function chat(page, text) {
  await page.fill('#temperature', '0');
  await page.fill('#max-tokens', '12');
  await page.fill('#prompt', text);
  await page.click('#send-btn');
  const msg = page.locator('.msg.assistant[data-done]').last();
  await msg.waitFor({ timeout: 120_000 });
  return msg.locator('.text').getAttribute('data-raw');
}

async function loadFile(page) {
  await page.selectOption('#model-select', 'file');
  await page.setInputFiles('#file-input', MODEL_PATH);
  await page.click('#load-btn');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
}

test('dist/ under a sub-path of a plain static server: isolated, a local file chats, offline reload', T, async () => {
  const expected = nativeReply('Hello!', 12);
  const port = await freePort();
  const server = await pythonServer(site, port);
  const head = await fetch(`${server.base}/apps/chat/`);
  assert.equal(head.headers.get('cross-origin-embedder-policy'), null, 'the host sends no COEP itself');
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`${server.base}/apps/chat/`);
  // The service worker takes control, the page reloads once and is then isolated.
  await page.waitForFunction(() => globalThis.crossOriginIsolated === true && !!navigator.serviceWorker.controller, null, { timeout: 60_000 });
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  const scope = await page.evaluate(async () => (await navigator.serviceWorker.ready).scope);
  assert.equal(scope, `${server.base}/apps/chat/`);
  assert.equal(await page.isVisible('#error'), false, await page.textContent('#error'));
  await loadFile(page);
  assert.equal(await page.evaluate(() => window.chord.engine.hardAbort), true, 'shared memory for a hard Stop');
  const threaded = await page.evaluate(async () => (await window.chord.engine.info()).threaded_build);
  assert.equal(threaded, true, 'dist/ holds the threaded build, which the isolated page runs');
  assert.equal(await chat(page, 'Hello!'), expected);

  await server.stop();
  await assert.rejects(fetch(`${server.base}/apps/chat/`), 'the server is down');
  await page.reload();
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  assert.equal(await page.evaluate(() => globalThis.crossOriginIsolated), true, 'still isolated offline');
  await loadFile(page);
  const offline = await page.evaluate(async () => (await window.chord.engine.info()).threaded_build);
  assert.equal(offline, true, 'the threaded build (and its workers\' helper script) came from the cache');
  assert.equal(await chat(page, 'Hello!'), expected);
});

test('a shell file the service worker cannot cache is reported on the page', T, async () => {
  const server = await pythonServer(site, await freePort());
  browser ??= await launchBrowser();
  const page = await browser.context.newPage();
  await page.goto(`${server.base}/apps/broken/`);
  await page.waitForSelector('#error:not([hidden])', { timeout: 60_000 });
  const text = await page.textContent('#error');
  log(text);
  assert.match(text, /could not cache .*apps\/broken\/www\/style\.css \(HTTP 404\)/);
  await server.stop();
});
