// The conversations, kept in IndexedDB: database 'chord-chats' (apart from the model store of
// worker/store.js), one record per chat:
//   {id, title, created, updated, model: {id, name} | null,
//    session: {model, tokens, bytes, saved} | null,   (a KV cache saved by engine.saveSession)
//    messages: [{role, content, tool_calls?, meta?}]}  (meta: the reply's numbers, for the page)

const DB = 'chord-chats';
const STORE = 'chats';
const VERSION = 1;

let dbPromise = null;

function open() {
  dbPromise ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, VERSION);
    req.onupgradeneeded = () => {
      const store = req.result.createObjectStore(STORE, { keyPath: 'id' });
      store.createIndex('updated', 'updated');
    };
    req.onsuccess = () => {
      const db = req.result;
      // Another tab upgrading the database: let it, and open again on the next call.
      db.onversionchange = () => {
        db.close();
        dbPromise = null;
      };
      resolve(db);
    };
    req.onerror = () => {
      dbPromise = null;
      reject(req.error);
    };
    req.onblocked = () => {
      dbPromise = null;
      reject(new Error('the chat database is blocked by another tab'));
    };
  });
  return dbPromise;
}

/** Run `f(store)` in one transaction; resolves with the result of the request it returns. */
async function tx(mode, f) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const t = db.transaction(STORE, mode);
    let result;
    const req = f(t.objectStore(STORE));
    if (req) req.onsuccess = () => (result = req.result);
    t.oncomplete = () => resolve(result);
    t.onerror = () => reject(t.error);
    t.onabort = () => reject(t.error || new Error('the chat database transaction was aborted'));
  });
}

/** Every chat, the most recently updated first. */
export async function listChats() {
  const all = (await tx('readonly', (s) => s.getAll())) ?? [];
  return all.sort((a, b) => b.updated - a.updated);
}

export const getChat = (id) => tx('readonly', (s) => s.get(id));

/** Store `chat` (a plain object: it is structured-cloned). */
export const putChat = (chat) => tx('readwrite', (s) => s.put(chat));

export const deleteChat = (id) => tx('readwrite', (s) => s.delete(id));

/** A new, unsaved chat. */
export function newChat() {
  const now = Date.now();
  return { id: `c-${now.toString(36)}-${Math.random().toString(36).slice(2, 8)}`, title: '', created: now, updated: now, model: null, session: null, messages: [] };
}

/** A chat's title from its first message: the first line, at most 48 characters. */
export function titleFrom(text) {
  const line = String(text).trim().split('\n')[0].trim().replace(/\s+/g, ' ');
  return line.length > 48 ? `${line.slice(0, 47)}…` : line || 'Untitled chat';
}
