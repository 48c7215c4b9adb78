// The dashboard's only door to the server: the public /v1 API, with the key the user gave
// (kept in this tab's sessionStorage) as `Authorization: Bearer`, and a Server-Sent Events
// reader on fetch() so the key never has to go into a URL.

const KEY = 'backprop.key';

export function getKey() {
  return sessionStorage.getItem(KEY) || '';
}

export function setKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

/** A problem+json answer (or a network failure, status 0). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }

  /** [{pointer, detail}] from a validation problem. */
  get errors() {
    if (Array.isArray(this.problem.errors)) return this.problem.errors;
    if (this.problem.pointer) return [{ pointer: this.problem.pointer, detail: this.problem.detail }];
    return [];
  }
}

let unauthorized = () => {};

/** Called on every 401, to ask for a key. */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

let open = () => {};

/** Called when a request without a key succeeds: the server runs without keys. */
export function onOpenServer(fn) {
  open = fn;
}

function headers(extra) {
  const h = new Headers(extra || {});
  const key = getKey();
  if (key) h.set('Authorization', `Bearer ${key}`);
  return h;
}

async function problem(r) {
  try {
    return await r.json();
  } catch {
    return { title: r.statusText || `HTTP ${r.status}` };
  }
}

/**
 * `api('GET', '/v1/jobs')`; `{json}` sends a JSON body, `{body, type}` a raw one,
 * `{raw: true}` returns the Response.
 */
export async function api(method, path, opts = {}) {
  const h = headers(opts.headers);
  let body = opts.body;
  if (opts.json !== undefined) {
    h.set('Content-Type', 'application/json');
    body = JSON.stringify(opts.json);
  } else if (opts.type) {
    h.set('Content-Type', opts.type);
  }
  let r;
  try {
    r = await fetch(path, { method, headers: h, body, signal: opts.signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    throw new ApiError(0, { title: 'Network error', detail: `the server did not answer (${e.message})` });
  }
  if (r.status === 401) unauthorized();
  if (!r.ok) throw new ApiError(r.status, await problem(r));
  if (!h.has('Authorization') && path.startsWith('/v1/')) open();
  if (opts.raw) return r;
  if (r.status === 204) return null;
  return r.json();
}

const sleep = (ms, signal) =>
  new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });

/**
 * Follows `/v1/jobs/{id}/events`: calls `onEvent(name, data, id)` per event, reconnects with
 * `Last-Event-ID` when the connection drops, and returns after the final `status` event or
 * when `signal` aborts. `since` is the last epoch already shown.
 */
export async function followEvents(path, { since = 0, signal, onEvent, onState = () => {} }) {
  let last = since;
  let retry = 1000;
  while (!signal.aborted) {
    let finished = false;
    try {
      const h = headers({ Accept: 'text/event-stream' });
      // A job's ids are epochs (0: from the start); a sweep's are strings that sort in order.
      if (last && last !== '0') h.set('Last-Event-ID', String(last));
      const r = await fetch(path, { headers: h, signal, cache: 'no-store' });
      if (r.status === 401) unauthorized();
      if (!r.ok) throw new ApiError(r.status, await problem(r));
      onState('live');
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      let ev = { name: 'message', data: [], id: null };
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).replace(/\r$/, '');
          buf = buf.slice(nl + 1);
          if (line === '') {
            if (ev.data.length) {
              if (ev.id !== null && ev.id !== '') last = ev.id;
              let data = ev.data.join('\n');
              try { data = JSON.parse(data); } catch { /* keep the text */ }
              onEvent(ev.name, data, ev.id);
              if (ev.name === 'status') finished = true;
            }
            ev = { name: 'message', data: [], id: null };
            continue;
          }
          if (line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
          if (field === 'data') ev.data.push(val);
          else if (field === 'event') ev.name = val;
          else if (field === 'id') ev.id = val;
          else if (field === 'retry' && /^\d+$/.test(val)) retry = Number(val);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      // A client error will not fix itself by retrying.
      if (e instanceof ApiError && e.status >= 400 && e.status < 500 && e.status !== 429) throw e;
    }
    if (finished || signal.aborted) return;
    onState('reconnecting');
    await sleep(retry, signal);
  }
}
