// Shared helpers for the browser tests: the dev server, headless Chromium, the native oracle.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
// The release `chord` that `make e2e` builds (CARGO_TARGET_DIR is honoured, as cargo does).
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
export const CHORD = join(TARGET, 'release', 'chord');
export const MODEL = 'smollm2-135m-instruct-q4_k_m.gguf';
export const MODEL_PATH = join(ROOT, 'models', MODEL);
export const ARTIFACTS = join(ROOT, 'tests/e2e/artifacts');

/** A models folder: the real model (symlinked), a non-GGUF file and a truncated GGUF. */
export function makeModelsDir() {
  const dir = mkdtempSync(join(tmpdir(), 'chord-e2e-models-'));
  symlinkSync(MODEL_PATH, join(dir, MODEL));
  writeFileSync(join(dir, 'not-a-model.gguf'), Buffer.from('<!doctype html><title>Not found</title>\n'.repeat(2000)));
  const fd = openSync(MODEL_PATH, 'r');
  const head = Buffer.alloc(20 * 1024 * 1024);
  readSync(fd, head, 0, head.length, 0);
  closeSync(fd);
  writeFileSync(join(dir, 'truncated.gguf'), head);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Start `chord serve` on a free port; resolves once it prints its address. */
export function startServer(args = []) {
  return new Promise((resolveP, reject) => {
    const p = spawn(CHORD, ['serve', '--port', '0', '--root', ROOT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`chord serve did not start: ${out}`)), 15000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        const base = `http://127.0.0.1:${m[1]}`;
        resolveP({
          base,
          control: async (q) => (await fetch(`${base}/__control?${q}`)).json(),
          stop: () => p.kill(),
        });
      }
    });
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => reject(new Error(`chord serve exited with ${code}: ${out}`)));
  });
}

export async function launchBrowser({ webgpu = false } = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'chord-e2e-profile-'));
  const args = [
    '--no-sandbox',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-dev-shm-usage',
  ];
  if (webgpu) args.push('--enable-unsafe-webgpu');
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args,
    viewport: { width: 1200, height: 800 },
  });
  return {
    context,
    close: async () => {
      await context.close();
      rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/** The native engine's greedy reply: the oracle for the browser's text at temperature 0. */
export function nativeReply(message, n) {
  const out = execFileSync(CHORD, ['generate', MODEL_PATH, '--chat', message, '-n', String(n), '--json'], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  return JSON.parse(out).text;
}

export function ensureArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
