// The JSON API (SPEC section 8), with the Bearer token when segd asks for one.
//
// On a 401 the console asks for the token once (one dialog however many requests were
// refused), keeps it in sessionStorage (this tab only, gone when it closes) and retries.
// The event stream is read with fetch rather than EventSource, which cannot send an
// Authorization header.

const TOKEN_KEY = 'segd.token';

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let asking = null; // the pending token prompt, shared by every refused request

function askToken(refused) {
  if (asking) return asking;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('token-input');
  document.getElementById('token-error').hidden = !refused;
  asking = new Promise((resolve) => {
    const done = (ev) => {
      ev.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      form.removeEventListener('submit', done);
      dialog.close();
      asking = null;
      resolve();
    };
    form.addEventListener('submit', done);
    dialog.addEventListener('cancel', (ev) => ev.preventDefault()); // no way round it: no token, no data
    input.value = '';
    dialog.showModal();
    input.focus();
  });
  return asking;
}

function headers(extra = {}) {
  const out = { Accept: 'application/json', ...extra };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) out.Authorization = 'Bearer ' + token;
  return out;
}

async function refused(res, sentToken) {
  if (res.status !== 401) return false;
  // A token that was just replaced by another request's prompt is not "refused".
  await askToken(Boolean(sentToken) && sentToken === sessionStorage.getItem(TOKEN_KEY));
  return true;
}

/** GET (or POST with `body`) an /api/ path; resolves to the JSON answer, rejects with ApiError. */
export async function api(path, { body, signal } = {}) {
  for (;;) {
    const sent = sessionStorage.getItem(TOKEN_KEY);
    const init = { headers: headers(), signal, cache: 'no-store' };
    if (body !== undefined) {
      init.method = 'POST';
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (await refused(res, sent)) continue;
    let data = null;
    try {
      data = await res.json();
    } catch {
      data = null;
    }
    if (!res.ok) {
      throw new ApiError(res.status, data?.code ?? `http_${res.status}`, data?.message ?? res.statusText);
    }
    return data;
  }
}

/** Query string from an object, skipping null/undefined. */
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== null && v !== undefined) u.set(k, String(v));
  const s = u.toString();
  return s ? '?' + s : '';
}

export const seg = (name) => '/api/segments/' + encodeURIComponent(name);
export const usr = (id) => '/api/users/' + encodeURIComponent(id);

/**
 * Follow /api/subscribe as Server-Sent Events. onTransition(t) gets each transition map;
 * onState('live' | 'connecting' | 'error') the stream's state. Reconnects with backoff
 * until close() is called.
 */
export function subscribe(segments, onTransition, onState = () => {}) {
  const ctl = new AbortController();
  let closed = false;
  let backoff = 500;
  (async () => {
    while (!closed) {
      onState('connecting');
      try {
        const sent = sessionStorage.getItem(TOKEN_KEY);
        const res = await fetch('/api/subscribe' + qs({ segments: segments.join(',') }), {
          headers: headers({ Accept: 'text/event-stream' }),
          signal: ctl.signal,
          cache: 'no-store',
        });
        if (await refused(res, sent)) continue;
        if (!res.ok || !res.body) throw new ApiError(res.status, `http_${res.status}`, res.statusText);
        onState('live');
        backoff = 500;
        await readEvents(res.body, onTransition);
      } catch (err) {
        if (closed) return;
        onState('error', err);
      }
      if (closed) return;
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  })();
  return {
    close() {
      closed = true;
      ctl.abort();
    },
  };
}

// The SSE wire format: events are separated by a blank line; "data:" lines are joined with
// newlines; lines starting with ":" are comments (keep-alives). The data is a transition map,
// or {"transition": T} as on the socket.
async function readEvents(body, onTransition) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let cut;
    while ((cut = buf.search(/\r?\n\r?\n/)) >= 0) {
      const block = buf.slice(0, cut);
      buf = buf.slice(cut).replace(/^\r?\n\r?\n/, '');
      const data = block
        .split(/\r?\n/)
        .filter((l) => l.startsWith('data:'))
        .map((l) => l.slice(5).replace(/^ /, ''))
        .join('\n');
      if (!data) continue;
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        continue;
      }
      const t = msg && msg.transition ? msg.transition : msg;
      if (t && t.segment && t.user && t.kind) onTransition(t);
    }
  }
}
