// A user, searched by id: traits, aggregates, current segments and the history of their
// transitions.

import { api, qs, usr } from '../api.js';
import { h, fill, fmtInt, fmtTime, card, errorBox, segmentLink, kindBadge } from '../ui.js';

const TIME_NAME = /(_at|_time|_ts)$/;

/** A value as text: times (epoch seconds under a time-like name) as dates, lists joined. */
export function show(name, v) {
  if (v === null || v === undefined) return h('span', { class: 'muted' }, 'none');
  if (typeof v === 'number' && TIME_NAME.test(name) && v > 1e8 && v < 1e11) return h('span', { title: String(v) }, fmtTime(v));
  if (typeof v === 'number') return Number.isInteger(v) ? fmtInt(v) : v.toLocaleString('en-US', { maximumFractionDigits: 4 });
  if (typeof v === 'boolean') return String(v);
  if (typeof v === 'object') return h('code', {}, JSON.stringify(v));
  return String(v);
}

function pairs(obj, id) {
  const keys = Object.keys(obj || {}).sort();
  if (!keys.length) return h('p', { class: 'muted' }, 'None.');
  return h('dl', { class: 'pairs', id }, keys.map((k) => [h('dt', {}, k), h('dd', { dataset: { key: k } }, show(k, obj[k]))]));
}

export async function render(main, route) {
  const id = route.arg;
  const input = h('input', { type: 'search', id: 'user-id', name: 'user', value: id, placeholder: 'A user id, e.g. u42', 'aria-label': 'User id', autocomplete: 'off', required: true });
  const form = h('form', { class: 'toolbar', role: 'search', id: 'user-form' }, input, h('button', { type: 'submit', class: 'primary' }, 'Look up'));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const v = input.value.trim();
    if (v) location.hash = '#/user/' + encodeURIComponent(v);
  });
  const body = h('div');
  fill(main, h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, id ? id : 'Users'), h('p', { class: 'lede' }, id ? 'Profile, aggregates, segments and history.' : 'Look a user up by id: their profile, what segd has counted for them, where they are and how they got there.'))),
    form, body);
  if (!id) {
    input.focus();
    return null;
  }
  let u;
  try {
    u = await api(usr(id));
  } catch (err) {
    fill(body, err.code === 'not_found' ? h('div', { class: 'alert', role: 'alert' }, `segd has never seen a user with the id “${id}”.`) : errorBox(err));
    return null;
  }
  const hist = await api(usr(id) + '/history' + qs({ limit: 1000 })).catch((e) => ({ error: e, transitions: [] }));
  const transitions = [...hist.transitions].reverse();
  fill(body,
    h('div', { class: 'grid-2' },
      card('Segments now', u.segments.length
        ? h('ul', { class: 'chips', id: 'user-segments' }, u.segments.map((s) => h('li', {}, segmentLink(s))))
        : h('p', { class: 'muted', id: 'user-segments' }, 'In no segment.'),
      h('p', { class: 'muted small' }, `last event at log position ${fmtInt(u.last_seq)}`)),
      card('Traits', pairs(u.traits, 'user-traits'))),
    card('Aggregates', pairs(u.aggregates, 'user-aggregates')),
    card('History', hist.error ? errorBox(hist.error) : transitions.length
      ? h('ol', { class: 'feed timeline', id: 'user-history' }, transitions.map((t) => h('li', { class: t.kind },
        kindBadge(t.kind), segmentLink(t.segment), h('time', { datetime: new Date(t.at * 1000).toISOString() }, fmtTime(t.at)),
        h('span', { class: 'muted small' }, `seq ${fmtInt(t.seq)}`))))
      : h('p', { class: 'muted', id: 'user-history' }, 'No transition yet.')));
  return null;
}
