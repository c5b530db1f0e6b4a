// Shared helpers for the browser tests: the dev server, headless Chromium, the native oracle.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync, openSync, readSync, closeSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
// The `chord` that `make e2e` builds (cargo profile `ci`: release without LTO) or, run by hand,
// the release one; CARGO_TARGET_DIR is honoured, as cargo does, and CHORD_PROFILE overrides.
const TARGET = process.env.CARGO_TARGET_DIR ? resolve(ROOT, process.env.CARGO_TARGET_DIR) : join(ROOT, 'target');
export const CHORD = join(TARGET, process.env.CHORD_PROFILE ?? 'release', 'chord');
export const MODEL = 'smollm2-135m-instruct-q4_k_m.gguf';
export const MODEL_PATH = join(ROOT, 'models', MODEL);
// The tiny random llama with a ChatML template (scripts/tiny-chat-model): the chat page's WebGPU
// path on SwiftShader, where SmolLM2 takes minutes of CPU per prompt.
export const TINY_CHAT = 'tiny-chat-llama-q4_k_m.gguf';
export const TINY_CHAT_PATH = join(ROOT, 'tests/fixtures', TINY_CHAT);
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

/**
 * Start `chord serve` (on a free port unless `port` is given, with the /__control test hooks
 * when `testControls` is true); resolves once it prints its address.
 */
export function startServer(args = [], { port = 0, testControls = false } = {}) {
  return new Promise((resolveP, reject) => {
    const extra = testControls ? ['--test-controls'] : [];
    // CHORD_AMX=0 (as `nativeGenerate`): a served model's replies are compared with the
    // browser's, whose integer kernels give the AVX-512 i16 kernels' bits.
    const p = spawn(CHORD, ['serve', '--port', String(port), '--root', ROOT, ...extra, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, CHORD_AMX: '0' },
    });
    let out = '';
    let exited = false;
    const timer = setTimeout(() => reject(new Error(`chord serve did not start: ${out}`)), 60000);
    p.stdout.on('data', (d) => {
      out += d;
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out);
      if (m) {
        clearTimeout(timer);
        const base = `http://127.0.0.1:${m[1]}`;
        resolveP({
          base,
          port: Number(m[1]),
          control: async (q) => (await fetch(`${base}/__control?${q}`)).json(),
          /** Kill the server; resolves once the process has exited (its port is free again). */
          stop: () =>
            new Promise((r) => {
              if (exited) return r();
              p.once('exit', () => r());
              p.kill('SIGKILL');
            }),
        });
      }
    });
    p.stderr.on('data', (d) => (out += d));
    p.on('exit', (code) => {
      exited = true;
      reject(new Error(`chord serve exited with ${code}: ${out}`));
    });
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

/** Environment for the native GPU backend: Mesa's software Vulkan (lavapipe) unless set. */
const GPU_ENV = {
  XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || '/tmp',
  WGPU_BACKEND: process.env.WGPU_BACKEND || 'vulkan',
  VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES || '/usr/share/vulkan/icd.d/lvp_icd.x86_64.json',
};

/**
 * The native engine's greedy generation for `messages` (a chat) from a fresh engine: the oracle
 * for the browser at temperature 0, on the same path (`cpu` for the wasm CPU backend, `gpu` for
 * WebGPU). Returns `chord generate --json`'s object (`text`, `prompt_ids`, ...).
 */
export function nativeGenerate(messages, n, { backend = 'cpu', model = MODEL_PATH } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'chord-e2e-msgs-'));
  const file = join(dir, 'messages.json');
  writeFileSync(file, JSON.stringify(messages));
  // CHORD_AMX=0: the browser's integer kernels give the AVX-512 i16 kernels' bits, not the
  // AMX kernels' (on by default natively where the CPU has them), and greedy text follows bits.
  const env = { ...process.env, CHORD_AMX: '0', ...(backend === 'gpu' ? GPU_ENV : {}) };
  try {
    const out = execFileSync(CHORD, ['generate', model, '--messages', file, '-n', String(n), '--json', '--backend', backend], {
      encoding: 'utf8',
      maxBuffer: 1 << 24,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    return JSON.parse(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The text of `nativeGenerate` for one user message (after an optional system message). */
export function nativeReply(message, n, { backend = 'cpu', system = null, model = MODEL_PATH } = {}) {
  const messages = [...(system === null ? [] : [{ role: 'system', content: system }]), { role: 'user', content: message }];
  return nativeGenerate(messages, n, { backend, model }).text;
}

export function ensureArtifacts() {
  mkdirSync(ARTIFACTS, { recursive: true });
  return ARTIFACTS;
}
