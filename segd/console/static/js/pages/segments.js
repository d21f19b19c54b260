// Segments: every segment with its description, size, change over the last hour and day
// (from `sizes`) and a sparkline of its size; sorted and filtered in the page, refreshed
// every few seconds.

import { api, qs, seg } from '../api.js';
import { h, fill, fmtInt, fmtDelta, kpi, errorBox } from '../ui.js';
import { sparkline } from '../charts.js';

export const RANGES = { '5m': 300, '15m': 900, '1h': 3600, '6h': 21600, '1d': 86400, '7d': 604800, '30d': 2592000 };
const SORTS = { name: 'Name', size: 'Size', d1h: 'Change, 1 h', d1d: 'Change, 1 d' };
const REFRESH_MS = 5000;

/** The smallest range that holds `uptime` seconds (what has happened since segd started). */
export function autoRange(uptime) {
  for (const [k, s] of Object.entries(RANGES)) if (s >= uptime) return k;
  return '30d';
}

/** Points for a range ending now: about 60 of them, step at least 1 s. */
export function lastWindow(now, seconds, points = 60) {
  const step = Math.max(1, Math.ceil(seconds / points));
  return { since: now - step * points, until: now, step };
}

async function changes(name, now) {
  // `until` is now itself, not a rounded second: transitions of the last fraction of a
  // second count in the segment's size, so they must count in its change too.
  const until = now;
  const { points } = await api(seg(name) + '/sizes' + qs({ since: until - 86400, until, step: 3600 }));
  const last = points[points.length - 1][1];
  return { hour: last - points[points.length - 2][1], day: last - points[0][1] };
}

export async function render(main, route, ctx) {
  const p = route.params;
  const state = { filter: p.filter || '', sort: SORTS[p.sort] ? p.sort : 'size', desc: p.dir !== 'asc', range: RANGES[p.range] ? p.range : null };
  const rows = new Map(); // name -> {segment, changes, points, tr, chart}
  let stats = await api('/api/stats');
  ctx.sawStats(stats);
  const range = () => state.range || autoRange(stats.uptime || 3600);

  const kpis = h('div', { class: 'kpis' });
  const filter = h('input', { type: 'search', id: 'seg-filter', placeholder: 'Filter by name or description', value: state.filter, 'aria-label': 'Filter segments' });
  const sortSel = h('select', { id: 'seg-sort', 'aria-label': 'Sort by' }, Object.entries(SORTS).map(([k, v]) => h('option', { value: k, selected: k === state.sort }, v)));
  const dirBtn = h('button', { type: 'button', class: 'ghost', 'aria-label': 'Reverse the order' }, state.desc ? '↓ descending' : '↑ ascending');
  const rangeSel = h('select', { id: 'seg-range', 'aria-label': 'Trend over' }, Object.keys(RANGES).map((k) => h('option', { value: k, selected: k === range() }, 'trend over ' + k)));
  const shown = h('p', { class: 'muted small', 'aria-live': 'polite' });
  const tbody = h('tbody');
  const table = h('table', { class: 'segments' },
    h('caption', { class: 'sr-only' }, 'Segments with their size, change and trend'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Segment'), h('th', { scope: 'col', class: 'num' }, 'Size'),
      h('th', { scope: 'col', class: 'num' }, '1 h'), h('th', { scope: 'col', class: 'num' }, '1 d'), h('th', { scope: 'col', class: 'trend' }, 'Trend'))),
    tbody);
  const err = h('div');

  fill(main,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Segments'), h('p', { class: 'lede' }, 'Who is in each segment right now, and how that is moving. Exact counts, from the full history.'))),
    kpis, err,
    h('div', { class: 'toolbar', role: 'search' }, filter, sortSel, dirBtn, rangeSel),
    shown,
    h('div', { class: 'table-wrap' }, table));

  function drawKpis() {
    const members = Object.values(stats.segments || {}).reduce((a, b) => a + b, 0);
    fill(kpis,
      kpi('users', fmtInt(stats.users)),
      kpi('segments', fmtInt(rows.size)),
      kpi('memberships', fmtInt(members)),
      kpi('transitions', fmtInt(stats.transitions ?? null)),
      kpi('events logged', fmtInt(stats.events)));
  }

  function key(r) {
    switch (state.sort) {
      case 'name': return r.segment.name;
      case 'size': return r.segment.size;
      case 'd1h': return r.changes ? r.changes.hour : -Infinity;
      default: return r.changes ? r.changes.day : -Infinity;
    }
  }

  function arrange() {
    const needle = state.filter.trim().toLowerCase();
    const all = [...rows.values()];
    const visible = all.filter((r) => !needle || r.segment.name.toLowerCase().includes(needle) || (r.segment.description || '').toLowerCase().includes(needle));
    visible.sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      const c = ka < kb ? -1 : ka > kb ? 1 : a.segment.name.localeCompare(b.segment.name);
      return state.desc ? -c : c;
    });
    for (const r of all) r.tr.hidden = !visible.includes(r);
    tbody.append(...visible.map((r) => r.tr), ...all.filter((r) => !visible.includes(r)).map((r) => r.tr));
    shown.textContent = visible.length === all.length ? `${all.length} segments` : `${visible.length} of ${all.length} segments match “${state.filter}”`;
    ctx.setParams({ filter: state.filter, sort: state.sort, dir: state.desc ? '' : 'asc', range: state.range });
  }

  function row(s) {
    const canvas = h('canvas', { role: 'img', 'aria-label': `${s.name}: size over the last ${range()}` });
    const tr = h('tr', { dataset: { segment: s.name } },
      h('th', { scope: 'row', class: 'seg-name' }, h('a', { href: '#/segment/' + encodeURIComponent(s.name) }, s.name),
        h('span', { class: 'desc' }, s.description || '')),
      h('td', { class: 'num size', 'data-label': 'Size' }),
      h('td', { class: 'num d1h', 'data-label': '1 h' }),
      h('td', { class: 'num d1d', 'data-label': '1 d' }),
      h('td', { class: 'trend' }, h('div', { class: 'spark' }, canvas)));
    return { segment: s, tr, canvas, chart: null, changes: null, points: null, trendError: null };
  }

  function paint(r) {
    const sizeTd = r.tr.querySelector('.size');
    const share = stats.users ? r.segment.size / stats.users : 0;
    fill(sizeTd, h('span', { class: 'n' }, fmtInt(r.segment.size)),
      h('span', { class: 'share', title: `${(share * 100).toFixed(1)}% of users` }, h('span', {})),
      h('span', { class: 'share-text' }, `${(share * 100).toFixed(share && share < 0.01 ? 1 : 0)}% of users`));
    sizeTd.querySelector('.share span').style.width = `${Math.min(100, share * 100)}%`;
    for (const [cls, v] of [['.d1h', r.changes?.hour], ['.d1d', r.changes?.day]]) {
      const td = r.tr.querySelector(cls);
      td.textContent = r.trendError ? '—' : v === undefined ? '…' : fmtDelta(v);
      td.title = r.trendError ? `sizes: ${r.trendError.message}` : '';
      td.classList.toggle('up', v > 0);
      td.classList.toggle('down', v < 0);
    }
    if (r.points) {
      if (!r.chart) r.chart = sparkline(r.canvas, r.points);
      else {
        r.chart.data.datasets[0].data = r.points.map(([t, y]) => ({ x: t * 1000, y }));
        r.chart.update('none');
      }
      r.canvas.setAttribute('aria-label', `${r.segment.name}: size over the last ${range()}, from ${fmtInt(r.points[0][1])} to ${fmtInt(r.points[r.points.length - 1][1])}`);
    }
  }

  async function load() {
    const [{ segments }, fresh] = await Promise.all([api('/api/segments'), api('/api/stats')]);
    stats = fresh;
    ctx.sawStats(stats);
    const now = ctx.now();
    const win = lastWindow(now, RANGES[range()]);
    for (const s of segments) {
      const r = rows.get(s.name) || rows.set(s.name, row(s)).get(s.name);
      r.segment = s;
    }
    for (const name of [...rows.keys()]) if (!segments.some((s) => s.name === name)) {
      rows.get(name).chart?.destroy();
      rows.get(name).tr.remove();
      rows.delete(name);
    }
    await Promise.all(segments.map(async (s) => {
      const r = rows.get(s.name);
      try {
        const [c, sz] = await Promise.all([changes(s.name, now), api(seg(s.name) + '/sizes' + qs(win))]);
        r.changes = c;
        r.points = sz.points;
        r.trendError = null;
      } catch (e) {
        r.trendError = e; // the size still shows; the trend says why it is missing
      }
    }));
    drawKpis();
    for (const r of rows.values()) paint(r);
    arrange();
    main.dataset.loaded = String(Date.now());
  }

  filter.addEventListener('input', () => { state.filter = filter.value; arrange(); });
  sortSel.addEventListener('change', () => { state.sort = sortSel.value; state.desc = state.sort !== 'name'; dirBtn.textContent = state.desc ? '↓ descending' : '↑ ascending'; arrange(); });
  dirBtn.addEventListener('click', () => { state.desc = !state.desc; dirBtn.textContent = state.desc ? '↓ descending' : '↑ ascending'; arrange(); });
  rangeSel.addEventListener('change', () => { state.range = rangeSel.value; load().catch(showErr); });

  function showErr(e) { fill(err, errorBox(e)); }
  await load();
  const timer = setInterval(() => load().then(() => fill(err)).catch(showErr), REFRESH_MS);
  return () => {
    clearInterval(timer);
    for (const r of rows.values()) r.chart?.destroy();
  };
}
