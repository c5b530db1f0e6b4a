// Replies as Markdown, safely: marked (GFM) turns the text into HTML, DOMPurify cleans it, and the
// page gets a DocumentFragment, never an HTML string. Raw HTML in the text is shown as text and
// never interpreted; images become links (the page requests no URL a model made up); links open
// in a new tab without a referrer. Code blocks get a header with the language and a copy button.
// The libraries are vendored (www/vendor/README.md): no build step.

import { Marked } from './vendor/marked.esm.js';
import DOMPurify from './vendor/purify.es.js';

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => ESC[c]);

const marked = new Marked({
  gfm: true,
  breaks: true,
  renderer: {
    // HTML written by the model is text: `<b>` shows as `<b>`.
    html({ text, block }) {
      return block ? `<p class="raw-html">${escapeHtml(text.replace(/\n+$/, ''))}</p>\n` : escapeHtml(text);
    },
    image({ href, text }) {
      return `<a href="${escapeHtml(href)}">${escapeHtml(text || href)}</a>`;
    },
  },
});

const PURIFY = {
  RETURN_DOM_FRAGMENT: true,
  FORBID_TAGS: ['style', 'img', 'svg', 'math', 'form', 'button', 'textarea', 'select', 'iframe', 'object', 'embed', 'video', 'audio', 'source', 'picture'],
  FORBID_ATTR: ['style', 'id', 'name'],
};

DOMPurify.addHook('afterSanitizeAttributes', (node) => {
  if (node.tagName === 'A') {
    node.setAttribute('target', '_blank');
    node.setAttribute('rel', 'noopener noreferrer nofollow');
  }
});

/** Markdown `text` → a sanitized DocumentFragment with decorated code blocks and tables. */
export function renderMarkdown(text) {
  const frag = DOMPurify.sanitize(marked.parse(String(text ?? '')), PURIFY);
  for (const pre of frag.querySelectorAll('pre')) {
    const code = pre.querySelector('code');
    const lang = /(?:^|\s)language-([\w+#.-]+)/.exec(code?.className || '')?.[1] || '';
    const mark = document.createComment('');
    pre.replaceWith(mark);
    mark.replaceWith(codeBlock(pre, lang));
  }
  for (const table of frag.querySelectorAll('table')) {
    const wrap = document.createElement('div');
    wrap.className = 'table-wrap';
    table.replaceWith(wrap);
    wrap.append(table);
  }
  return frag;
}

/** Show `text` in `el` as Markdown; the raw text stays in `data-raw` (the tests compare it). */
export function renderInto(el, text) {
  el.dataset.raw = text;
  try {
    el.replaceChildren(renderMarkdown(text));
  } catch (e) {
    // Never lose a reply to a rendering bug: show it as plain text.
    console.error('Markdown rendering failed:', e);
    el.textContent = text;
  }
}

/** A code block built from plain text (a JSON-mode reply), like the ones Markdown gets. */
export function plainCodeBlock(text, lang) {
  const pre = document.createElement('pre');
  const code = document.createElement('code');
  code.textContent = text;
  if (lang) code.className = `language-${lang}`;
  pre.append(code);
  return codeBlock(pre, lang);
}

function codeBlock(pre, lang) {
  const box = document.createElement('div');
  box.className = 'code-block';
  const head = document.createElement('div');
  head.className = 'code-head';
  const label = document.createElement('span');
  label.textContent = lang || 'code';
  const btn = document.createElement('button');
  btn.type = 'button';
  btn.className = 'copy-btn';
  btn.textContent = 'Copy';
  btn.setAttribute('aria-label', `Copy the ${lang ? `${lang} ` : ''}code`);
  head.append(label, btn);
  box.append(head, pre);
  return box;
}

/** Put `text` on the clipboard (the Clipboard API, else a selection and execCommand). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.append(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      /* no clipboard at all */
    }
    ta.remove();
    return ok;
  }
}

/** Click handler for a container of rendered replies: the code blocks' copy buttons. */
export async function onCopyClick(ev) {
  const btn = ev.target.closest?.('.code-block .copy-btn');
  if (!btn) return false;
  const code = btn.closest('.code-block').querySelector('pre');
  const ok = await copyText(code.textContent);
  flash(btn, ok ? 'Copied' : 'Copy failed');
  return true;
}

/** Show `label` on a button for a moment, then its old text again. */
export function flash(btn, label) {
  const old = btn.dataset.label ?? btn.textContent;
  btn.dataset.label = old;
  btn.textContent = label;
  btn.dataset.copied = label === 'Copied' ? '1' : '0';
  clearTimeout(btn._flash);
  btn._flash = setTimeout(() => {
    btn.textContent = old;
    delete btn.dataset.copied;
  }, 1500);
}
