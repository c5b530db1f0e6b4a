// A third-party page (examples/embed.html) that uses only worker/client.js and pkg/ streams a
// reply equal to the native engine's greedy one.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL, makeModelsDir, startServer, launchBrowser, nativeReply } from './helpers.mjs';

let models;
let server;
let browser;

after(async () => {
  await browser?.close();
  server?.stop();
  models?.cleanup();
});

test('the minimal embed example streams a reply', { timeout: 240_000 }, async () => {
  const expected = nativeReply('Hello!', 12);
  models = makeModelsDir();
  server = await startServer(['--models', models.dir]);
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  const requested = new Set();
  page.on('request', (r) => requested.add(new URL(r.url()).pathname));
  await page.goto(`${server.base}/examples/embed.html?model=/models/${MODEL}`);
  await page.waitForFunction(() => /^(done|error)/.test(document.getElementById('status').textContent), null, {
    timeout: 180_000,
  });
  assert.equal(await page.textContent('#status'), 'done');
  assert.equal(await page.textContent('#reply'), expected);
  const app = [...requested].filter((p) => p.startsWith('/www/') || p === '/' || p === '/index.html');
  assert.deepEqual(app, [], 'the embed page needs none of the chat page');
});
