// The chat page (issue 12, part 4) on the wasm CPU path with SmolLM2-135M: the empty state and
// the model cards, a chat whose second turn comes from the cache (cached tokens and time to first
// token under each reply), regenerate, conversations in IndexedDB that survive a reload (renamed,
// deleted), the saved-session hooks, Markdown (list, table, code block with a copy button), no
// script from model text, the model switcher, a chat longer than the context, and screenshots at
// desktop and phone sizes in tests/e2e/artifacts/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { symlinkSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { MODEL, MODEL_PATH, makeModelsDir, startServer, launchBrowser, nativeReply, ensureArtifacts } from './helpers.mjs';

const TINY = 'tiny-random-llama-q4_k_m.gguf';
const T = { timeout: 240_000 };
const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };
const Q1 = 'What is the capital of France?';
const Q2 = 'And of Italy?';
const N = 12;

let models;
let server;
let browser;
let page;
let url;
const problems = []; // page errors and dialogs: none may happen
const log = (...a) => console.log('#', ...a);

before(async () => {
  models = makeModelsDir();
  symlinkSync(join(dirname(MODEL_PATH), TINY), join(models.dir, TINY));
  server = await startServer(['--models', models.dir]);
  url = `${server.base}/models/${MODEL}`;
  browser = await launchBrowser();
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.base });
  page = await browser.context.newPage();
  page.on('pageerror', (e) => {
    problems.push(`page error: ${e.message}`);
    log('page error:', e.message);
  });
  page.on('dialog', (d) => {
    problems.push(`dialog: ${d.message()}`);
    d.dismiss();
  });
  await page.setViewportSize(DESKTOP);
  await page.goto(`${server.base}/?nosw`);
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  models?.cleanup();
});

async function shot(name, size) {
  if (size) await page.setViewportSize(size);
  await page.waitForTimeout(300); // the sidebar's slide, a repaint
  const path = join(ensureArtifacts(), name);
  await page.screenshot({ path });
  log('screenshot:', path);
}

/** Send `text` at temperature 0; resolves with the reply once it is done and stored. */
async function send(text, { maxTokens = N } = {}) {
  await page.fill('#temperature', '0');
  await page.fill('#max-tokens', String(maxTokens));
  const n = await page.locator('#messages .msg.assistant').count();
  await page.fill('#prompt', text);
  await page.click('#send-btn');
  const msg = page.locator('#messages .msg.assistant').nth(n);
  await msg.and(page.locator('[data-saved]')).waitFor({ timeout: 120_000 });
  return msg;
}

const raw = (msg) => msg.locator('.text').getAttribute('data-raw');

/** The numbers under a reply. */
const numbers = (msg) =>
  msg.evaluate((el) => {
    const c = el.querySelector('.meta .cached');
    const t = el.querySelector('.meta .ttft');
    return { cached: c ? Number(c.dataset.cached) : null, prompt: c ? Number(c.dataset.prompt) : null, ttft: t ? Number(t.dataset.ms) : null, text: el.querySelector('.meta').textContent };
  });

async function reload() {
  await page.reload();
  await page.waitForSelector('body[data-state="idle"]', { timeout: 60_000 });
}

/** Load a model from the sidebar's picker. */
async function loadFromPicker(modelUrl) {
  await page.selectOption('#model-select', modelUrl);
  await page.click('#load-btn');
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
}

/** Put a chat record straight into the page's IndexedDB store (www/chats.js's format). */
function storeChat(chat) {
  return page.evaluate(async (chat) => {
    const db = await new Promise((res, rej) => {
      const r = indexedDB.open('chord-chats', 1);
      r.onupgradeneeded = () => r.result.createObjectStore('chats', { keyPath: 'id' }).createIndex('updated', 'updated');
      r.onsuccess = () => res(r.result);
      r.onerror = () => rej(r.error);
    });
    await new Promise((res, rej) => {
      const t = db.transaction('chats', 'readwrite');
      t.objectStore('chats').put(chat);
      t.oncomplete = res;
      t.onerror = () => rej(t.error);
    });
    db.close();
  }, chat);
}

async function openChat(id) {
  await page.click(`#chat-list .chat-item[data-id="${id}"] .chat-open`);
  await page.waitForFunction((id) => window.chord.chat?.id === id, id);
}

test('before a model is loaded: an empty state that says what to do, model cards, a phone layout', T, async () => {
  assert.equal(await page.isVisible('#empty'), true);
  assert.match(await page.textContent('#empty-title'), /runs in your browser/);
  assert.match(await page.textContent('#empty-lead'), /Pick a model/);
  assert.equal(await page.isDisabled('#prompt'), true);
  await page.waitForSelector('#model-cards .card[data-fit]', { timeout: 10_000 });
  const cards = await page.$$eval('#model-cards .card', (cs) =>
    cs.map((c) => ({ url: c.dataset.url, name: c.querySelector('.card-name').textContent, meta: c.querySelector('.card-meta').textContent, fit: c.dataset.fit, label: c.querySelector('.fit').textContent, why: c.querySelector('.fit').title, button: c.querySelector('.card-load').textContent })),
  );
  log(`${cards.length} cards; device: ${await page.textContent('#device-line')}`);
  assert.ok(cards.length >= 13, 'the curated models and this server’s');
  const local = cards.find((c) => c.url === url);
  assert.ok(local, 'a card for the server’s model');
  assert.match(local.meta, /^105\.\d MB · This server$/);
  assert.equal(local.fit, 'fits', local.why);
  assert.equal(local.button, 'Download & load');
  const big = cards.find((c) => c.name === 'Qwen3-8B');
  assert.match(big.meta, /WebGPU only/);
  assert.notEqual(big.fit, 'fits', 'a WebGPU-only model is not said to fit without a look at the GPU');
  assert.match(big.why, /WebGPU/);
  if (!(await page.evaluate(async () => !!(await navigator.gpu?.requestAdapter())))) assert.equal(big.fit, 'no');
  for (const c of cards) assert.match(c.label, /^(Fits this device|Likely fits|May not fit|Too big for this device)/);
  assert.match(await page.textContent('#device-line'), /^This device: .*memory.*(WebGPU)/);
  await shot('page-desktop-empty.png', DESKTOP);

  // A phone: the sidebar hides behind the menu button.
  await shot('page-phone-empty.png', PHONE);
  assert.equal(await page.isVisible('#menu-btn'), true);
  assert.equal(await page.isVisible('#side'), false);
  await page.click('#menu-btn');
  assert.equal(await page.getAttribute('#menu-btn', 'aria-expanded'), 'true');
  await page.waitForFunction(() => document.getElementById('side').getBoundingClientRect().left >= 0);
  assert.equal(await page.isVisible('#new-chat-btn'), true);
  await shot('page-phone-menu.png');
  await page.keyboard.press('Escape');
  assert.equal(await page.getAttribute('#menu-btn', 'aria-expanded'), 'false');
  await page.setViewportSize(DESKTOP);
  assert.equal(await page.isVisible('#menu-btn'), false);
  assert.equal(await page.isVisible('#side'), true);
});

test('load from a card; the second turn comes from the cache; regenerate', T, async () => {
  const expected = nativeReply(Q1, N);
  const card = page.locator(`#model-cards .card[data-url="${url}"]`);
  await card.locator('.card-load').click();
  await page.waitForSelector('body[data-state="ready"]', { timeout: 120_000 });
  assert.equal(await card.locator('.card-load').textContent(), 'Loaded');
  assert.match(await page.textContent('#empty-title'), /help/);
  assert.equal(await page.isVisible('#suggestions .suggestion >> nth=0'), true);

  const first = await send(Q1);
  assert.equal(await raw(first), expected, 'greedy, equal to the native engine');
  assert.equal(await page.isVisible('#empty'), false);
  assert.equal(await page.textContent('#chat-title'), Q1);
  const n1 = await numbers(first);
  log('turn 1:', n1.text);
  assert.equal(n1.cached, 0, 'a fresh model has nothing cached');
  assert.ok(n1.prompt > 0 && n1.ttft > 0, JSON.stringify(n1));

  const second = await send(Q2);
  const n2 = await numbers(second);
  log('turn 2:', n2.text);
  assert.ok(n2.cached > 0, `the second turn reuses the first: ${n2.text}`);
  assert.ok(n2.cached < n2.prompt);
  assert.match(n2.text, /\d+ of \d+ prompt tokens cached.*first token \d+\.\d\d s/);

  // Regenerate: only on the last reply; the same greedy text, the whole prompt from the cache.
  assert.equal(await first.locator('.regen-btn').isVisible(), false);
  assert.equal(await second.locator('.regen-btn').isVisible(), true);
  const before = await raw(second);
  await second.evaluate((el) => (el.dataset.old = '1'));
  await second.locator('.regen-btn').click();
  const again = page.locator('#messages .msg.assistant:not([data-old])').nth(1);
  await again.and(page.locator('[data-saved]')).waitFor({ timeout: 120_000 });
  assert.equal(await page.locator('#messages .msg.assistant[data-old]').count(), 0, 'the old reply is replaced');
  assert.equal(await page.locator('#messages .msg.assistant').count(), 2);
  assert.equal(await raw(again), before);
  const n3 = await numbers(again);
  log('regenerated:', n3.text);
  assert.equal(n3.prompt, n2.prompt);
  assert.ok(n3.cached > n2.cached && n3.cached >= n3.prompt - 1, `a regenerate reuses the whole prompt: ${n3.text}`);
  assert.equal(await page.evaluate(() => window.chord.chat.messages.length), 4);
  await shot('page-desktop-chat.png', DESKTOP);
  await shot('page-phone-chat.png', PHONE);
  await page.setViewportSize(DESKTOP);
});

test('conversations survive a reload: two chats, one renamed, one deleted', T, async () => {
  const firstId = await page.evaluate(() => window.chord.chat.id);
  const texts = () => page.$$eval('#messages .msg .text', (els) => els.map((e) => e.dataset.raw));
  const firstTexts = await texts();
  await page.click('#new-chat-btn');
  assert.equal(await page.isVisible('#empty'), true);
  await send('What is 2+2?', { maxTokens: 8 });
  const secondId = await page.evaluate(() => window.chord.chat.id);
  assert.notEqual(secondId, firstId);
  const item = (id) => page.locator(`#chat-list .chat-item[data-id="${id}"]`);
  await item(secondId).waitFor();
  assert.equal(await item(secondId).getAttribute('aria-current'), 'true');

  await item(firstId).locator('.chat-rename').click();
  await page.fill('#chat-list .chat-title-input', 'Renamed chat');
  await page.press('#chat-list .chat-title-input', 'Enter');
  await item(firstId).locator('.chat-name', { hasText: 'Renamed chat' }).waitFor();

  await item(secondId).locator('.chat-delete').click();
  await item(secondId).locator('.chat-delete-confirm').click();
  await item(secondId).waitFor({ state: 'detached' });
  assert.equal(await page.isVisible('#empty'), true, 'deleting the open chat opens a new one');

  await reload();
  const ids = await page.$$eval('#chat-list .chat-item', (lis) => lis.map((li) => li.dataset.id));
  assert.ok(ids.includes(firstId) && !ids.includes(secondId), JSON.stringify(ids));
  assert.equal(await item(firstId).locator('.chat-name').textContent(), 'Renamed chat');
  assert.equal(await page.isVisible('#empty'), true, 'a reload starts a new chat');
  await openChat(firstId);
  assert.deepEqual(await texts(), firstTexts);
  assert.equal(await page.textContent('#chat-title'), 'Renamed chat');
  const n = await numbers(page.locator('#messages .msg.assistant').last());
  assert.ok(n.cached > 0, 'the numbers under a reply are kept');
});

const MD = [
  'Here is a plan:',
  '',
  '1. **Pack** light',
  '2. Leave *early*',
  '',
  '- apples',
  '- pears',
  '',
  '| Planet | Moons |',
  '|---|---|',
  '| Earth | 1 |',
  '| Mars | 2 |',
  '',
  '```python',
  'def reverse(s):',
  '    return s[::-1]',
  '```',
].join('\n');

test('replies render as Markdown: a list, a table, a code block with a copy button', T, async () => {
  const id = 'c-test-markdown';
  await storeChat({
    id,
    title: 'Markdown sample',
    created: Date.now(),
    updated: Date.now(),
    model: null,
    session: null,
    messages: [
      { role: 'user', content: 'Plan a trip, list fruit, count moons and reverse a string.' },
      { role: 'assistant', content: MD, meta: { model: 'SmolLM2-135M-Instruct', prompt_tokens: 40, cached: 31, ttft_ms: 420, completion_tokens: 64, tok_s: 21.5, finish: 'stop', dropped: 2 } },
    ],
  });
  await reload();
  await openChat(id);
  const reply = page.locator('#messages .msg.assistant').last();
  assert.equal(await raw(reply), MD, 'the raw text stays available');
  const md = reply.locator('.text');
  assert.deepEqual(await md.locator('ol > li').allTextContents(), ['Pack light', 'Leave early']);
  assert.equal(await md.locator('ol strong').textContent(), 'Pack');
  assert.deepEqual(await md.locator('ul > li').allTextContents(), ['apples', 'pears']);
  assert.deepEqual(await md.locator('table th').allTextContents(), ['Planet', 'Moons']);
  assert.deepEqual(await md.locator('table td').allTextContents(), ['Earth', '1', 'Mars', '2']);
  const code = md.locator('.code-block');
  assert.equal(await code.locator('.code-head span').textContent(), 'python');
  assert.equal((await code.locator('pre').textContent()).trimEnd(), 'def reverse(s):\n    return s[::-1]');
  assert.equal(await reply.locator('.notice').textContent(), '2 older messages left out to fit the context');
  assert.match(await reply.locator('.meta').textContent(), /31 of 40 prompt tokens cached.*first token 0\.42 s/);

  await code.locator('.copy-btn').click();
  await code.locator('.copy-btn[data-copied="1"]').waitFor();
  assert.equal((await page.evaluate(() => navigator.clipboard.readText())).trimEnd(), 'def reverse(s):\n    return s[::-1]');

  await shot('page-desktop-markdown.png', DESKTOP);
  await shot('page-phone-markdown.png', PHONE);
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot('page-phone-markdown-dark.png');
  await shot('page-desktop-markdown-dark.png', DESKTOP);
  await page.emulateMedia({ colorScheme: 'light' });
});

// HTML a model might write: none of it may run, load anything, or even become markup.
const EVIL = [
  'Hi <img src=x onerror="window.__xss=(window.__xss||0)+1">',
  '<script>window.__xss=(window.__xss||0)+1</script>',
  '<iframe srcdoc="<script>parent.__xss=1</script>"></iframe>',
  '<svg onload="window.__xss=1"><circle r=9 /></svg>',
  '[click](javascript:window.__xss=1) ![pic](x" onerror="window.__xss=1) ![p2](javascript:window.__xss=1)',
  '<a href="javascript:window.__xss=1">a</a> <details open ontoggle="window.__xss=1">d</details>',
  '| a | <img src=x onerror="window.__xss=1"> |\n|---|---|\n| <b onmouseover="window.__xss=1">b</b> | c |',
  '```html\n<img src=x onerror="window.__xss=1">\n```',
].join('\n\n');

test('no script runs from HTML in a reply, a user message or the Markdown renderer', T, async () => {
  const id = 'c-test-xss';
  await storeChat({
    id,
    title: 'XSS sample',
    created: Date.now(),
    updated: Date.now(),
    model: null,
    session: null,
    messages: [
      { role: 'user', content: '<img src=x onerror="window.__xss=1"> <script>window.__xss=1</script>' },
      { role: 'assistant', content: EVIL, meta: {} },
    ],
  });
  await reload();
  await openChat(id);
  // The page's own renderer, on the same payload and a few more, attached to the document.
  await page.evaluate((evil) => {
    const box = document.createElement('div');
    box.id = 'xss-box';
    for (const t of [evil, '<img src=x onerror=alert(1)>', '<style>body{display:none}</style>', '<form action=x><input name=a></form>', '[x](data:text/html,<script>alert(1)</script>)', '<math><mi xlink:href="javascript:alert(1)">m</mi></math>']) {
      box.append(window.chord.renderMarkdown(t));
    }
    document.getElementById('messages').append(box);
  }, EVIL);
  await page.waitForTimeout(1000); // time for an image error or a toggle event to fire
  const found = await page.evaluate(() => {
    const root = document.getElementById('messages');
    const all = [...root.querySelectorAll('*')];
    return {
      xss: window.__xss ?? null,
      tags: all.filter((e) => ['IMG', 'SCRIPT', 'IFRAME', 'DETAILS', 'STYLE', 'FORM', 'MATH', 'OBJECT', 'EMBED'].includes(e.tagName.toUpperCase()) || (e.tagName.toLowerCase() === 'svg' && !e.classList.contains('icon'))).map((e) => e.outerHTML),
      handlers: all.filter((e) => [...e.attributes].some((a) => a.name.startsWith('on'))).map((e) => e.outerHTML),
      hrefs: [...root.querySelectorAll('[href]')].map((a) => a.getAttribute('href')),
      display: getComputedStyle(document.body).display,
      replyText: root.querySelector('.msg.assistant .text').textContent,
      userText: root.querySelector('.msg.user .text').textContent,
    };
  });
  log('links left:', JSON.stringify(found.hrefs));
  assert.equal(found.xss, null, 'no script ran');
  assert.deepEqual(found.tags, [], 'no active or loading elements');
  assert.deepEqual(found.handlers, [], 'no event handler attributes');
  for (const h of found.hrefs) assert.doesNotMatch(h, /^\s*(javascript|data):/i);
  assert.notEqual(found.display, 'none', 'no style from model text');
  assert.match(found.replyText, /Hi <img src=x onerror=/, 'raw HTML is shown as text');
  assert.match(found.userText, /<script>window.__xss=1<\/script>/);
  assert.deepEqual(problems, []);
});

test('saved sessions: saved after a reply, restored when the chat is opened after a reload, deleted with it', T, async () => {
  const spy = () =>
    page.evaluate(() => {
      const e = window.chord.engine;
      window.__calls = [];
      for (const k of ['saveSession', 'restoreSession', 'deleteSession']) {
        const real = typeof e[k] === 'function' ? e[k].bind(e) : null;
        e[k] = async (...args) => {
          const call = { k, args, result: null, error: null };
          window.__calls.push(call);
          try {
            if (!real) throw Object.assign(new Error(`${k} is missing`), { code: 'internal' });
            call.result = await real(...args);
            return call.result;
          } catch (x) {
            call.error = x.code || String(x);
            throw x;
          }
        };
      }
    });
  const calls = () => page.evaluate(() => window.__calls);
  await spy();
  await loadFromPicker(url);
  await page.click('#new-chat-btn');
  const first = await send('Hello!', { maxTokens: 8 });
  const id = await page.evaluate(() => window.chord.chat.id);
  const modelId = await page.evaluate(() => window.chord.model.id);
  const saves = (await calls()).filter((c) => c.k === 'saveSession');
  log('save:', JSON.stringify(saves));
  assert.equal(saves.length, 1);
  assert.deepEqual(saves[0].args, [id, { model: modelId }]);
  assert.equal(saves[0].error, null);
  assert.ok(saves[0].result.tokens > 0, JSON.stringify(saves[0].result));
  const reply = await raw(first);

  await reload();
  await spy();
  await loadFromPicker(url);
  await openChat(id);
  assert.equal(await raw(page.locator('#messages .msg.assistant').last()), reply);
  // Opening the chat restores its session: wait for that request.
  await page.waitForFunction(() => window.__calls.some((c) => c.k === 'restoreSession' && (c.result || c.error)), null, { timeout: 60_000 });
  const restores = (await calls()).filter((c) => c.k === 'restoreSession');
  log('restore:', JSON.stringify(restores));
  assert.equal(restores.length, 1);
  assert.deepEqual(restores[0].args, [id, { model: modelId }]);
  assert.equal(restores[0].error, null);
  assert.equal(restores[0].result.tokens, saves[0].result.tokens);
  assert.match(await page.textContent('#stats'), /Session restored: \d+ tokens/);
  // The first reply after the reload starts from the restored cache, not from nothing.
  const next = await send('Thanks!', { maxTokens: 8 });
  const n = await numbers(next);
  log('after restore:', n.text);
  assert.ok(n.cached > 0 && n.cached <= restores[0].result.tokens, n.text);
  // A second reply saves again; opening the chat again (its cache is live) restores nothing.
  assert.equal((await calls()).filter((c) => c.k === 'saveSession').length, 1);
  await page.click('#new-chat-btn');
  await openChat(id);
  assert.equal((await calls()).filter((c) => c.k === 'restoreSession').length, 1);
  await page.click(`#chat-list .chat-item[data-id="${id}"] .chat-delete`);
  await page.click(`#chat-list .chat-item[data-id="${id}"] .chat-delete-confirm`);
  await page.locator(`#chat-list .chat-item[data-id="${id}"]`).waitFor({ state: 'detached' });
  const deletes = (await calls()).filter((c) => c.k === 'deleteSession');
  assert.deepEqual(deletes.map((c) => c.args), [[id]]);
});

test('several models: the switcher routes requests; unloading one hides it', T, async () => {
  const tinyUrl = `${server.base}/models/${TINY}`;
  await page.check('#keep-models');
  try {
    await loadFromPicker(tinyUrl);
    await page.waitForSelector('#switch-row:not([hidden])');
    const options = await page.$$eval('#model-switch option', (os) => os.map((o) => ({ value: o.value, selected: o.selected, text: o.textContent })));
    log('switcher:', JSON.stringify(options));
    assert.equal(options.length, 2);
    const tiny = options.find((o) => o.selected);
    const smol = options.find((o) => !o.selected);
    assert.equal(tiny.value, 'tiny-random-llama-q4_k_m');
    assert.equal(await page.locator('#loaded-list li').count(), 2);

    // The tiny model has no chat template: its error shows where the request went.
    await page.click('#new-chat-btn');
    const failed = await send('Hello!', { maxTokens: N });
    assert.equal(await failed.evaluate((el) => el.classList.contains('failed')), true);
    assert.match(await failed.locator('.notice').textContent(), /^No reply: .*\[chat_template\]$/);
    assert.equal(await page.evaluate(() => window.chord.chat.model.file), TINY);
    const retry = failed.locator('.regen-btn');
    assert.equal(await retry.textContent(), 'Retry');
    await shot('page-desktop-switcher.png', DESKTOP);

    // Switch to SmolLM2 and retry in the same chat.
    await page.selectOption('#model-switch', smol.value);
    await page.waitForFunction((id) => window.chord.model?.id === id, smol.value);
    await retry.click();
    const reply = page.locator('#messages .msg.assistant:not(.failed)').last();
    await reply.and(page.locator('[data-saved]')).waitFor({ timeout: 120_000 });
    assert.equal(await page.locator('#messages .msg.assistant').count(), 1, 'the failed reply is replaced');
    assert.equal(await raw(reply), nativeReply('Hello!', N), 'the request went to SmolLM2');
    assert.equal(await page.isVisible('#error'), false);
    assert.equal(await page.evaluate(() => window.chord.chat.model.file), MODEL);

    await page.click(`#loaded-list li[data-id="${tiny.value}"] button`);
    await page.waitForSelector('#switch-row', { state: 'hidden' });
    assert.equal(await page.isVisible('#model-badge'), true);
    assert.equal(await page.evaluate(async () => (await window.chord.engine.info()).models.length), 1);
  } finally {
    await page.uncheck('#keep-models');
  }
});

test('a chat longer than the context keeps going, with the dropped-turns notice', T, async () => {
  await page.fill('#n-ctx', '256');
  try {
    await loadFromPicker(url);
    assert.match(await page.textContent('#model-status'), /ctx 256/);
    await page.click('#new-chat-btn');
    const long = (topic) => `Here are my notes about ${topic}. ` + 'They are long and detailed, with many words that fill the context window quickly. '.repeat(7) + 'Summarize them in one line.';
    await send(long('the sea'), { maxTokens: 16 });
    const second = await send(long('the mountains'), { maxTokens: 16 });
    const notice = second.locator('.notice');
    assert.equal(await notice.isVisible(), true, 'the oldest turn was left out');
    const dropped = Number(await notice.getAttribute('data-dropped'));
    assert.ok(dropped >= 2, `dropped ${dropped}`);
    assert.equal(await notice.textContent(), `${dropped} older messages left out to fit the context`);
    const third = await send('Thanks!', { maxTokens: 8 });
    assert.ok((await raw(third)).length > 0, 'it keeps answering');
    assert.equal(await page.isVisible('#error'), false);
    assert.deepEqual(problems, []);
  } finally {
    await page.fill('#n-ctx', '');
  }
});
