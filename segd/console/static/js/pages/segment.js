// A segment: its definition, its size over a chosen range (`sizes`), the transitions
// arriving live (SSE), its members paged, and its members at a chosen past time (`at`).

import { api, qs, seg, subscribe } from '../api.js';
import { h, fill, fmtInt, fmtTime, fmtClock, fmtDuration, kpi, card, errorBox, userLink, kindBadge, toLocalInput, fromLocalInput } from '../ui.js';
import { sizeChart } from '../charts.js';
import { RANGES, autoRange } from './segments.js';

const PAGE = 60; // members per page
const LIVE_KEEP = 50; // transitions kept in the live list
const CHART_POINTS = 240;
const CHART_REFRESH_MS = 10000;

/** The chart's query for the route: a relative range ending now, or since/until given. */
export function chartWindow(params, now, uptime) {
  let since = Number(params.since);
  let until = Number(params.until);
  let label;
  if (!(params.since && params.until && until > since)) {
    const range = RANGES[params.range] ? params.range : autoRange(uptime);
    until = now; // not rounded: the last point is the size now, as the members list says
    since = until - RANGES[range];
    label = 'last ' + range;
  } else {
    label = `${fmtTime(since)} – ${fmtTime(until)}`;
  }
  const step = Math.max(1, Math.ceil((until - since) / CHART_POINTS));
  return { since, until: since + step * Math.ceil((until - since) / step), step, label };
}

export async function render(main, route, ctx) {
  const name = route.arg;
  const params = { ...route.params };
  const [{ segments }, stats] = await Promise.all([api('/api/segments'), api('/api/stats')]);
  ctx.sawStats(stats);
  const def = segments.find((s) => s.name === name);
  if (!def) {
    fill(main, h('h1', {}, name || 'Segment'), errorBox({ code: 'not_found', message: `There is no segment named “${name}”.` }),
      h('p', {}, h('a', { href: '#/segments' }, '← All segments')));
    return null;
  }
  let size = def.size;
  let chart = null;
  const cleanups = [];

  // ---- head and definition
  const sizeKpi = h('span', { id: 'seg-size' }, fmtInt(size));
  const enteredKpi = h('span', {}, '0');
  const leftKpi = h('span', {}, '0');
  const changeKpis = h('div', { class: 'kpis' }, kpi('members now', sizeKpi, { class: 'accent' }), kpi('entered while you watch', enteredKpi), kpi('left while you watch', leftKpi));
  const definition = def.when
    ? h('div', { class: 'definition' }, h('span', { class: 'muted small' }, 'when'), h('code', { id: 'seg-when' }, def.when),
      h('a', { class: 'small', href: '#/rules?' + new URLSearchParams({ when: def.when }) }, 'Open in the rule editor'))
    : h('p', { class: 'muted small' }, 'This segd does not report segment definitions (see config.toml).');

  // ---- chart
  const chartBox = h('div', { class: 'chart tall' });
  const chartNote = h('p', { class: 'muted small', id: 'chart-note' });
  const rangeBar = h('div', { class: 'chips', role: 'group', 'aria-label': 'Range' });
  const from = h('input', { type: 'datetime-local', step: 1, id: 'range-from', 'aria-label': 'From' });
  const to = h('input', { type: 'datetime-local', step: 1, id: 'range-to', 'aria-label': 'To' });
  const custom = h('form', { class: 'inline-form', id: 'range-form' }, h('label', { for: 'range-from' }, 'From'), from, h('label', { for: 'range-to' }, 'to'), to,
    h('button', { type: 'submit' }, 'Show'));
  const dataTable = h('table', { class: 'compact' });
  const chartCard = card('Size over time', rangeBar, custom, chartBox, chartNote,
    h('details', {}, h('summary', {}, 'The numbers'), h('div', { class: 'table-wrap scroll-y' }, dataTable)));
  chartCard.id = 'size-chart';

  // ---- live transitions
  const liveState = h('span', { class: 'live-state', role: 'status' }, 'connecting…');
  const liveList = h('ol', { class: 'feed', id: 'live', 'aria-live': 'polite', 'aria-relevant': 'additions' });
  const liveCard = card(null, h('div', { class: 'card-head' }, h('h2', {}, 'Latest transitions'), liveState), liveList);

  // ---- members
  const atInput = h('input', { type: 'datetime-local', step: 1, id: 'members-at', 'aria-label': 'Members at' });
  const atForm = h('form', { class: 'inline-form', id: 'at-form' }, h('label', { for: 'members-at' }, 'Members at'), atInput,
    h('button', { type: 'submit' }, 'Show'), h('button', { type: 'button', class: 'ghost', id: 'at-now' }, 'Now'));
  const membersHead = h('p', { class: 'members-head', id: 'members-head', 'aria-live': 'polite' });
  const membersList = h('ul', { class: 'members', id: 'members' });
  const prev = h('button', { type: 'button', id: 'members-prev' }, '← Previous');
  const next = h('button', { type: 'button', id: 'members-next' }, 'Next →');
  const membersCard = card('Members', atForm, membersHead, membersList, h('div', { class: 'pager' }, prev, next));

  fill(main,
    h('p', { class: 'crumbs' }, h('a', { href: '#/segments' }, 'Segments'), ' / '),
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, name), h('p', { class: 'lede' }, def.description || ''), definition)),
    changeKpis,
    h('div', { class: 'grid-2-1' }, chartCard, liveCard),
    membersCard);

  // ---- chart loading
  async function loadChart() {
    const win = chartWindow(params, ctx.now(), stats.uptime || 3600);
    const { points } = await api(seg(name) + '/sizes' + qs({ since: win.since, until: win.until, step: win.step }));
    Object.assign(chartCard.dataset, { since: win.since, until: win.until, step: win.step, points: points.length });
    if (!chart) {
      const canvas = h('canvas', { role: 'img' });
      chartBox.append(canvas);
      chart = sizeChart(canvas, points);
      chart.options.onClick = (ev) => {
        const hit = chart.getElementsAtEventForMode(ev, 'index', { intersect: false }, false)[0];
        if (hit) pickAt(chart.data.datasets[0].data[hit.index].x / 1000);
      };
    } else {
      chart.data.datasets[0].data = points.map(([t, y]) => ({ x: t * 1000, y }));
      chart.data.datasets[0].pointRadius = points.length > 80 ? 0 : 2.5;
      chart.update();
    }
    const lo = Math.min(...points.map((p) => p[1]));
    const hi = Math.max(...points.map((p) => p[1]));
    chart.canvas.setAttribute('aria-label', `${name}: size over ${win.label}, between ${fmtInt(lo)} and ${fmtInt(hi)} members`);
    chartNote.textContent = `${win.label}: ${points.length} exact points, one every ${fmtDuration(win.step)}. Click a point to list the members at that time.`;
    fill(dataTable, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'time'), h('th', { scope: 'col', class: 'num' }, 'members'))),
      h('tbody', {}, points.slice(-500).map(([t, y]) => h('tr', {}, h('td', {}, fmtTime(t)), h('td', { class: 'num' }, fmtInt(y))))));
    from.value = toLocalInput(win.since);
    to.value = toLocalInput(win.until);
    for (const b of rangeBar.children) b.setAttribute('aria-pressed', String(!params.since && b.dataset.range === (params.range || autoRange(stats.uptime || 3600))));
  }
  for (const r of Object.keys(RANGES)) {
    rangeBar.append(h('button', { type: 'button', class: 'chip', dataset: { range: r }, onclick: () => {
      params.range = r;
      delete params.since;
      delete params.until;
      ctx.setParams({ range: r, since: null, until: null });
      loadChart().catch(showErr(chartBox));
    } }, r));
  }
  custom.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const s = fromLocalInput(from.value);
    const u = fromLocalInput(to.value);
    if (s === null || u === null || u <= s) return;
    Object.assign(params, { since: s, until: u });
    ctx.setParams({ since: s, until: u });
    loadChart().catch(showErr(chartBox));
  });

  // ---- members loading
  let cursors = [null]; // cursors[i] is the `after` of page i
  let pageNo = 0;
  async function loadMembers() {
    const at = params.at ? Number(params.at) : null;
    const res = await api(seg(name) + qs({ limit: PAGE, after: cursors[pageNo], at }));
    membersList.dataset.at = at === null ? '' : String(at);
    fill(membersHead,
      h('strong', {}, fmtInt(res.size)), at === null ? ' members now' : ` members at ${fmtTime(at)}`,
      res.size ? h('span', { class: 'muted' }, ` · ${fmtInt(pageNo * PAGE + 1)}–${fmtInt(pageNo * PAGE + res.members.length)}`) : null);
    fill(membersList, res.members.length ? res.members.map((m) => h('li', {}, userLink(m))) : h('li', { class: 'muted' }, 'Nobody.'));
    cursors[pageNo + 1] = res.next;
    prev.disabled = pageNo === 0;
    next.disabled = !res.next;
    if (at === null) size = res.size;
    if (at === null) sizeKpi.textContent = fmtInt(size);
  }
  function pickAt(t) {
    params.at = String(Math.round(t));
    atInput.value = toLocalInput(Math.round(t));
    ctx.setParams({ at: params.at });
    cursors = [null];
    pageNo = 0;
    loadMembers().catch(showErr(membersList));
    membersCard.scrollIntoView({ behavior: 'smooth', block: 'start' });
  }
  atForm.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = fromLocalInput(atInput.value);
    if (t !== null) pickAt(t);
  });
  atForm.querySelector('#at-now').addEventListener('click', () => {
    delete params.at;
    atInput.value = '';
    ctx.setParams({ at: null });
    cursors = [null];
    pageNo = 0;
    loadMembers().catch(showErr(membersList));
  });
  prev.addEventListener('click', () => { if (pageNo > 0) { pageNo -= 1; loadMembers().catch(showErr(membersList)); } });
  next.addEventListener('click', () => { if (cursors[pageNo + 1]) { pageNo += 1; loadMembers().catch(showErr(membersList)); } });
  if (params.at) atInput.value = toLocalInput(Number(params.at));

  // ---- live transitions
  const counts = { enter: 0, exit: 0 };
  function addTransition(t, live) {
    const li = h('li', { class: live ? 'fresh ' + t.kind : t.kind, dataset: { user: t.user, kind: t.kind, id: t.id || '' } },
      kindBadge(t.kind), userLink(t.user), h('time', { datetime: new Date(t.at * 1000).toISOString(), title: fmtTime(t.at) }, fmtClock(t.at)));
    liveList.prepend(li);
    while (liveList.children.length > LIVE_KEEP) liveList.lastChild.remove();
  }
  const since = Math.floor(ctx.now()) - 600;
  const hist = await api(seg(name) + '/history' + qs({ since, limit: 1000 })).catch(() => ({ transitions: [] }));
  for (const t of hist.transitions.slice(-20)) addTransition(t, false);
  if (!liveList.children.length) liveList.append(h('li', { class: 'muted empty' }, 'No transition in the last 10 minutes. New ones appear here as they happen.'));
  const sub = subscribe([name], (t) => {
    if (t.segment !== name) return;
    liveList.querySelector('.empty')?.remove();
    addTransition(t, true);
    counts[t.kind] += 1;
    size += t.kind === 'enter' ? 1 : -1;
    sizeKpi.textContent = fmtInt(size);
    enteredKpi.textContent = fmtInt(counts.enter);
    leftKpi.textContent = fmtInt(counts.exit);
  }, (s) => {
    liveState.textContent = s === 'live' ? '● live' : s === 'connecting' ? 'connecting…' : 'reconnecting…';
    liveState.className = 'live-state ' + s;
  });
  cleanups.push(() => sub.close());

  function showErr(el) { return (e) => el.prepend(errorBox(e)); }
  await Promise.all([loadChart(), loadMembers()]);
  const timer = setInterval(() => { if (!params.since) loadChart().catch(() => {}); }, CHART_REFRESH_MS);
  cleanups.push(() => clearInterval(timer), () => chart?.destroy());
  return () => cleanups.forEach((f) => f());
}

