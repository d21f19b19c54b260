// DOM building and formatting. Every text from the API goes in through textContent (h()
// never parses HTML), so a user id or a trait value can never inject markup.

/** h('a', {href: '#/x', class: 'c'}, 'text', child): an element; null/false children are skipped. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replace every child of el. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

const intFmt = new Intl.NumberFormat('en-US');
const compactFmt = new Intl.NumberFormat('en-US', { notation: 'compact', maximumFractionDigits: 1 });

export const fmtInt = (n) => (n === null || n === undefined ? '—' : intFmt.format(n));
export const fmtCompact = (n) => (Math.abs(n) < 10000 ? intFmt.format(n) : compactFmt.format(n));

/** +12 / −3 / 0, with a real minus sign. */
export function fmtDelta(n) {
  if (n === null || n === undefined) return '—';
  if (n > 0) return '+' + intFmt.format(n);
  if (n < 0) return '−' + intFmt.format(-n);
  return '0';
}

/** A rate (0..1) as a percentage with `digits` decimals. */
export function fmtPct(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  return (x * 100).toFixed(digits) + '%';
}

/** A difference of rates as signed percentage points. */
export function fmtPp(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  const s = Math.abs(x * 100).toFixed(digits);
  return (x > 0 ? '+' : x < 0 ? '−' : '±') + s + ' pp';
}

const timeFmt = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
});
const clockFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit' });

/** Epoch seconds as a local date and time. */
export const fmtTime = (t) => (t === null || t === undefined ? '—' : timeFmt.format(new Date(t * 1000)));
/** Epoch seconds as a local time of day. */
export const fmtClock = (t) => clockFmt.format(new Date(t * 1000));

/** A duration in seconds, short: 45 s, 12 min, 3 h, 2 d. */
export function fmtDuration(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 129600) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** "3 min ago", relative to `now` (epoch seconds). */
export const fmtAgo = (t, now) => (now - t < 1 ? 'just now' : fmtDuration(now - t) + ' ago');

/** Epoch seconds <-> the value of an <input type="datetime-local"> (local time). */
export function toLocalInput(t) {
  const d = new Date(t * 1000);
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}
export function fromLocalInput(v) {
  const ms = new Date(v).getTime();
  return Number.isNaN(ms) ? null : ms / 1000;
}

/** f, called at most once per `ms` of quiet. */
export function debounce(f, ms) {
  let timer = null;
  const d = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => f(...args), ms);
  };
  d.cancel = () => clearTimeout(timer);
  return d;
}

/** A card: a titled panel. */
export function card(title, ...children) {
  return h('section', { class: 'card' }, title ? h('h2', {}, title) : null, ...children);
}

/** A big number with a label. */
export function kpi(label, value, extra = {}) {
  return h('div', { class: 'kpi ' + (extra.class || '') },
    h('div', { class: 'kpi-value', ...(extra.attrs || {}) }, value),
    h('div', { class: 'kpi-label' }, label),
    extra.note ? h('div', { class: 'kpi-note' }, extra.note) : null);
}

/** An error box for a failed API call. */
export function errorBox(err) {
  return h('div', { class: 'alert', role: 'alert' },
    h('strong', {}, err.code ? `${err.code}: ` : 'Error: '), err.message || String(err));
}

/** Link to a user's page. */
export const userLink = (id) => h('a', { href: '#/user/' + encodeURIComponent(id), class: 'mono' }, id);
/** Link to a segment's page. */
export const segmentLink = (name) => h('a', { href: '#/segment/' + encodeURIComponent(name) }, name);

/** An enter/exit badge. */
export const kindBadge = (kind) => h('span', { class: 'badge ' + (kind === 'enter' ? 'enter' : 'exit') },
  kind === 'enter' ? '→ enter' : '← exit');
