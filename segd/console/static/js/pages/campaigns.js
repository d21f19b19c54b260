// Campaigns: per campaign and variant, assigned / sent / suppressed by reason /
// conversions and conversion rate beside the holdout's, and each variant's difference from
// the holdout with a 95% Newcombe hybrid score interval (see stats.js), computed here from
// the counts /api/campaigns gives.

import { api } from '../api.js';
import { h, fill, fmtInt, fmtPct, fmtPp, fmtTime, fmtDuration, card, kpi, segmentLink } from '../ui.js';
import { forestChart, stackedChart, COLORS } from '../charts.js';
import { newcombe, wilson, verdict } from '../stats.js';

const REFRESH_MS = 5000;
const REASON_COLORS = ['#b45309', '#be185d', '#6d28d9', '#0369a1', '#475569', '#9f1239'];

const isHoldout = (v) => v.variant === 'holdout';
const label = (v) => (v.variant === '' ? 'all users' : v.variant);

/** The rows of a campaign's table and plot: each variant with its rate and, against the holdout, its difference. */
export function compare(campaign) {
  const holdout = campaign.variants.find(isHoldout);
  return campaign.variants.map((v) => {
    const rate = v.assigned ? v.conversions / v.assigned : null;
    const ci = !isHoldout(v) && holdout ? newcombe(v.conversions, v.assigned, holdout.conversions, holdout.assigned) : null;
    return { v, rate, wilson: wilson(v.conversions, v.assigned), ci, verdict: ci ? verdict(ci) : null };
  });
}

function sentence(c, rows) {
  if (!c.goal) return 'No goal is configured, so there are no conversions to compare.';
  const holdout = rows.find((r) => isHoldout(r.v));
  if (!holdout) return 'No holdout is configured, so there is nothing to compare the variants with.';
  const parts = rows.filter((r) => r.ci).map((r) => {
    const what = r.verdict === 'better' ? 'converts better than the holdout' : r.verdict === 'worse' ? 'converts worse than the holdout' : 'shows no clear difference from the holdout yet';
    return `“${label(r.v)}” ${what} (${fmtPp(r.ci.diff)}, 95% CI ${fmtPp(r.ci.lo)} to ${fmtPp(r.ci.hi)})`;
  });
  return parts.length ? parts.join('; ') + '.' : 'No variant has been assigned yet.';
}

function campaignCard(c) {
  const rows = compare(c);
  const goal = Boolean(c.goal);
  const reasons = [...new Set(c.variants.flatMap((v) => Object.keys(v.suppressed || {})))].sort();
  const sum = (f) => c.variants.reduce((a, v) => a + f(v), 0);
  const suppressedOf = (v) => Object.values(v.suppressed || {}).reduce((a, n) => a + n, 0);
  const head = h('div', { class: 'card-head' },
    h('div', {}, h('h2', {}, c.campaign),
      h('p', { class: 'muted small' }, 'on ', h('strong', {}, c.on), ' of ', segmentLink(c.segment), ' → ', h('strong', {}, c.channel),
        goal ? ` · goal: ${c.goal.event} within ${fmtDuration(c.goal.within)}` : ' · no goal',
        ` · active since ${fmtTime(c.activated)}`)));
  const totals = h('div', { class: 'kpis mini' },
    kpi('assigned', fmtInt(sum((v) => v.assigned))),
    kpi('sent', fmtInt(sum((v) => v.sent)), { class: 'good' }),
    kpi('pending', fmtInt(sum((v) => v.pending))),
    kpi('suppressed', fmtInt(sum(suppressedOf)), { class: sum(suppressedOf) ? 'warn' : '' }),
    goal ? kpi('conversions', fmtInt(sum((v) => v.conversions))) : null);
  const cols = ['variant', 'assigned', 'sent', 'pending', 'suppressed', 'dead', ...(goal ? ['conversions', 'rate', 'vs holdout (95% CI)'] : [])];
  const table = h('table', { class: 'variants' },
    h('caption', { class: 'sr-only' }, `${c.campaign}: results per variant`),
    h('thead', {}, h('tr', {}, cols.map((t, i) => h('th', { scope: 'col', class: i && i < 8 ? 'num' : '' }, t)))),
    h('tbody', {}, rows.map((r) => {
      const v = r.v;
      const supp = Object.entries(v.suppressed || {});
      return h('tr', { dataset: { variant: v.variant }, class: isHoldout(v) ? 'holdout' : '' },
        h('th', { scope: 'row' }, label(v), isHoldout(v) ? h('span', { class: 'badge muted' }, 'control') : null),
        h('td', { class: 'num', dataset: { field: 'assigned' } }, fmtInt(v.assigned)),
        h('td', { class: 'num', dataset: { field: 'sent' } }, fmtInt(v.sent)),
        h('td', { class: 'num', dataset: { field: 'pending' } }, fmtInt(v.pending)),
        h('td', { class: 'num', dataset: { field: 'suppressed' }, title: supp.map(([k, n]) => `${k}: ${n}`).join(', ') || 'none' },
          fmtInt(suppressedOf(v)), supp.length ? h('span', { class: 'reasons' }, supp.map(([k, n]) => h('span', { class: 'reason', dataset: { reason: k } }, `${k.replace(/_/g, ' ')} ${fmtInt(n)}`))) : null),
        h('td', { class: 'num', dataset: { field: 'dead' } }, fmtInt(v.dead)),
        goal ? [
          h('td', { class: 'num', dataset: { field: 'conversions' } }, fmtInt(v.conversions)),
          h('td', { class: 'num', dataset: { field: 'rate' } }, fmtPct(r.rate, 2)),
          h('td', { class: 'ci ' + (r.verdict || ''), dataset: { field: 'diff' } },
            r.ci ? [h('strong', {}, fmtPp(r.ci.diff, 2)), h('span', { class: 'muted' }, ` ${fmtPp(r.ci.lo, 2)} to ${fmtPp(r.ci.hi, 2)}`)] : isHoldout(v) ? 'baseline' : '—'),
        ] : null);
    })));
  const labels = c.variants.map(label);
  const parts = [
    { label: 'sent', values: c.variants.map((v) => v.sent), color: COLORS.enter },
    { label: 'pending', values: c.variants.map((v) => v.pending), color: '#0e7490' },
    { label: 'holdout', values: c.variants.map((v) => v.holdout || 0), color: '#94a3b8' },
    ...reasons.map((k, i) => ({ label: k.replace(/_/g, ' '), values: c.variants.map((v) => v.suppressed?.[k] || 0), color: REASON_COLORS[i % REASON_COLORS.length] })),
    { label: 'dead', values: c.variants.map((v) => v.dead), color: COLORS.exit },
  ].filter((p) => p.values.some((x) => x));
  const charts = h('div', { class: 'grid-2' });
  const outcomes = h('div', { class: 'chart' }, h('canvas', { role: 'img', 'aria-label': `${c.campaign}: what happened to the messages of each variant` }));
  outcomes.style.height = `${70 + 34 * labels.length}px`;
  charts.append(h('figure', {}, h('figcaption', {}, 'Messages by outcome'), parts.length ? outcomes : h('p', { class: 'muted' }, 'No message yet.')));
  const forestRows = rows.filter((r) => r.ci);
  let forest = null;
  if (forestRows.length) {
    forest = h('div', { class: 'chart' }, h('canvas', { role: 'img', 'aria-label': `${c.campaign}: conversion difference from the holdout with 95% intervals` }));
    forest.style.height = `${70 + 34 * forestRows.length}px`;
    charts.append(h('figure', {}, h('figcaption', {}, 'Conversion rate minus the holdout’s, 95% CI'), forest));
  }
  const el = card(null, head, totals, goal ? h('p', { class: 'verdict' }, sentence(c, rows)) : null, h('div', { class: 'table-wrap' }, table), charts);
  el.dataset.campaign = c.campaign;
  el.classList.add('campaign');
  const made = [];
  el.draw = () => {
    if (parts.length) made.push(stackedChart(outcomes.querySelector('canvas'), labels, parts));
    if (forest) made.push(forestChart(forest.querySelector('canvas'), forestRows.map((r) => ({ label: label(r.v), ...r.ci })), (x) => fmtPp(x, 0)));
  };
  el.destroy = () => made.forEach((ch) => ch.destroy());
  return el;
}

export async function render(main, route, ctx) {
  const list = h('div', { class: 'stack' });
  const method = h('details', { class: 'method' }, h('summary', {}, 'How these numbers are computed'),
    h('p', {}, 'Every user a campaign triggers for is assigned to a variant or to the holdout by a hash of the campaign and the user, so a user always lands in the same group. ',
      'The conversion rate is conversions ÷ assigned, for the variants and for the holdout alike (an intention-to-treat comparison: the holdout is never messaged but its users are watched for the goal the same way).'),
    h('p', {}, 'The interval beside each variant is a 95% confidence interval for its rate minus the holdout’s, by Newcombe’s hybrid score method (1998, method 10), which combines the Wilson score intervals of the two rates. ',
      'Unlike the textbook z interval it stays honest with few conversions. An interval that contains 0 means the data do not yet tell the variant from the holdout. ',
      'Each variant is compared on its own, with no correction for comparing several, and checking repeatedly as results arrive makes a false “better” more likely than 5%.'));
  fill(main, h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Campaigns'), h('p', { class: 'lede' }, 'What each campaign sent, what it held back and why, and whether it moves conversions against its holdout.'))),
    list, method);
  let cards = [];
  let last = '';
  async function load() {
    const { campaigns } = await api('/api/campaigns');
    const text = JSON.stringify(campaigns);
    if (text === last) return;
    last = text;
    cards.forEach((c) => c.destroy());
    cards = campaigns.map(campaignCard);
    fill(list, cards.length ? cards : h('p', { class: 'card muted' }, 'No campaign is configured.'));
    cards.forEach((c) => c.draw());
    main.dataset.loaded = String(Date.now());
  }
  await load();
  const timer = setInterval(() => load().catch(() => {}), REFRESH_MS);
  return () => {
    clearInterval(timer);
    cards.forEach((c) => c.destroy());
  };
}
