// Offline: after one visit the service worker serves the app shell and the model comes from
// IndexedDB, with the server stopped.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { MODEL, makeModelsDir, startServer, launchBrowser, nativeReply } from './helpers.mjs';

let models;
let server;
let browser;
const log = (...a) => console.log('#', ...a);

after(async () => {
  await browser?.close();
  server?.stop();
  models?.cleanup();
});

test('the page and the model work with the server stopped', { timeout: 240_000 }, async () => {
  const expected = nativeReply('Hello!', 12);
  models = makeModelsDir();
  server = await startServer(['--models', models.dir]);
  browser = await launchBrowser();
  const page = await browser.context.newPage();
  page.on('pageerror', (e) => log('page error:', e.message));
  await page.goto(`${server.base}/`);
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  await page.evaluate(() => navigator.serviceWorker.ready.then(() => true));
  const url = `${server.base}/models/${MODEL}`;
  await page.selectOption('#model-select', url);
  await page.click('#load-btn');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });

  server.stop();
  await new Promise((r) => setTimeout(r, 300));
  await assert.rejects(fetch(`${server.base}/`), 'the server is down');
  await page.reload();
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
  const item = page.locator(`#cache-list li[data-url="${url}"]`);
  await item.locator('button', { hasText: 'Use' }).click();
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
  await page.fill('#temperature', '0');
  await page.fill('#max-tokens', '12');
  await page.fill('#prompt', 'Hello!');
  await page.click('#send-btn');
  const msg = page.locator('.msg.assistant[data-done]');
  await msg.waitFor({ timeout: 120_000 });
  assert.equal(await msg.locator('.text').getAttribute('data-raw'), expected);
});
