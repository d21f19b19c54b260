// Health: events/s (measured between two /api/stats answers), lag, applied seq, messages
// by outcome, the shards; polled every second while the page is open.

import { api } from '../api.js';
import { h, fill, fmtInt, fmtDuration, kpi, card } from '../ui.js';
import { liveChart, barChart, COLORS } from '../charts.js';

const POLL_MS = 1000;

/** Messages by outcome as [label, count] rows, from stats' `messages`. */
export function outcomes(m) {
  const rows = [['sent', m.sent || 0], ['pending', (m.pending || 0) - (m.deferred || 0)], ['deferred (quiet hours)', m.deferred || 0], ['holdout', m.holdout || 0]];
  for (const [k, n] of Object.entries(m.suppressed || {}).sort()) rows.push([`suppressed: ${k.replace(/_/g, ' ')}`, n]);
  for (const [k, n] of Object.entries(m.failed || {}).sort()) rows.push([`failed: ${k.replace(/_/g, ' ')}`, n]);
  return rows;
}

export async function render(main, route, ctx) {
  const kpis = h('div', { class: 'kpis', id: 'health-kpis' });
  const rateBox = h('div', { class: 'chart' }, h('canvas', { role: 'img', 'aria-label': 'Events per second, last two minutes' }));
  const lagBox = h('div', { class: 'chart' }, h('canvas', { role: 'img', 'aria-label': 'Lag in events, last two minutes' }));
  const msgBox = h('div', { class: 'chart' }, h('canvas', { role: 'img', 'aria-label': 'Messages by outcome' }));
  const msgTable = h('table', { class: 'compact', id: 'health-messages' });
  const shards = h('table', { class: 'compact', id: 'health-shards' });
  const more = h('dl', { class: 'pairs' });
  fill(main,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Health'), h('p', { class: 'lede' }, 'Is segd keeping up? Ingest, apply lag and delivery, live.'))),
    kpis,
    h('div', { class: 'grid-2' }, card('Events per second', rateBox), card('Lag (events logged, not yet applied)', lagBox)),
    h('div', { class: 'grid-2' }, card('Messages by outcome', msgBox, msgTable), card('Shards', shards, h('h3', {}, 'Pipeline'), more)));
  const rate = liveChart(rateBox.querySelector('canvas'), 'events/s', COLORS.primary);
  const lag = liveChart(lagBox.querySelector('canvas'), 'lag', COLORS.amber);
  let msgChart = null;
  let prev = null;
  let lastMessages = '';

  async function poll() {
    const s = await api('/api/stats');
    ctx.sawStats(s);
    const t = performance.now() / 1000;
    const eps = prev ? Math.max(0, (s.events - prev.events) / Math.max(t - prev.t, 1e-3)) : null;
    prev = { events: s.events, t };
    const wall = Date.now() / 1000;
    if (eps !== null) rate.push(wall, Math.round(eps));
    lag.push(wall, s.lag);
    fill(kpis,
      kpi('events/s', eps === null ? '…' : fmtInt(Math.round(eps)), { attrs: { id: 'health-eps' } }),
      kpi('lag', fmtInt(s.lag), { class: s.lag > 10000 ? 'warn' : '', attrs: { id: 'health-lag' } }),
      kpi('applied seq', fmtInt(s.applied_seq), { attrs: { id: 'health-applied' }, note: s.last_seq !== undefined ? `of ${fmtInt(s.last_seq)} logged` : null }),
      kpi('users', fmtInt(s.users)),
      kpi('messages sent', fmtInt(s.messages?.sent ?? 0), { attrs: { id: 'health-sent' } }),
      kpi('uptime', s.uptime !== undefined ? fmtDuration(s.uptime) : '—'));
    const rows = outcomes(s.messages || {});
    const text = JSON.stringify(rows);
    if (text !== lastMessages) {
      lastMessages = text;
      fill(msgTable, h('tbody', {}, rows.map(([k, n]) => h('tr', { dataset: { outcome: k } }, h('th', { scope: 'row' }, k), h('td', { class: 'num' }, fmtInt(n))))));
      msgChart?.destroy();
      msgChart = barChart(msgBox.querySelector('canvas'), rows.map(([k]) => k), rows.map(([, n]) => n), {
        color: rows.map(([k]) => (k === 'sent' ? COLORS.enter : k.startsWith('failed') ? COLORS.exit : k.startsWith('suppressed') ? COLORS.amber : '#64748b')),
      });
    }
    fill(shards,
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'shard'), h('th', { scope: 'col', class: 'num' }, 'users'), h('th', { scope: 'col', class: 'num' }, 'applied seq'))),
      h('tbody', {}, (s.shards || []).map((sh, i) => h('tr', {}, h('th', { scope: 'row' }, String(i)), h('td', { class: 'num' }, fmtInt(sh.users)), h('td', { class: 'num' }, fmtInt(sh.applied_seq))))));
    fill(more, [['events logged', s.events], ['transitions', s.transitions], ['subscribers', s.subscribers], ['commits', s.commits], ['commit, avg ms', s.commit_ms_avg], ['recoveries', s.recoveries], ['connections', s.connections]]
      .filter(([, v]) => v !== undefined).map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'number' ? v.toLocaleString('en-US') : String(v))]));
    main.dataset.loaded = String(Date.now());
  }
  await poll();
  let busy = false;
  const timer = setInterval(async () => {
    if (busy) return;
    busy = true;
    try { await poll(); } catch { /* the header shows segd unreachable */ } finally { busy = false; }
  }, POLL_MS);
  return () => {
    clearInterval(timer);
    rate.destroy();
    lag.destroy();
    msgChart?.destroy();
  };
}
