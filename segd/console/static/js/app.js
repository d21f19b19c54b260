// The console's shell: hash routes, the navigation, the daemon's clock in the header.
//
// Routes: #/segments, #/segment/NAME, #/campaigns, #/user/ID, #/rules, #/health; each may
// carry ?key=value state (a chart's range, a time, the rule being edited) so a link shows
// the same thing again. A page is a module whose render(main, route, ctx) returns a
// cleanup function, called when the route changes (it closes streams and timers).

import { api } from './api.js';
import { h, fill, errorBox, fmtClock } from './ui.js';
import * as segments from './pages/segments.js';
import * as segment from './pages/segment.js';
import * as campaigns from './pages/campaigns.js';
import * as user from './pages/user.js';
import * as rules from './pages/rules.js';
import * as health from './pages/health.js';

const PAGES = { segments, segment, campaigns, user, rules, health };
const TITLES = { segments: 'Segments', segment: 'Segment', campaigns: 'Campaigns', user: 'Users', rules: 'Rule editor', health: 'Health' };
const NAV = { segment: 'segments' };

/** The current route: {page, arg, params}. */
export function parseRoute(hash = location.hash) {
  const [path, query = ''] = hash.replace(/^#\/?/, '').split('?');
  const [page, ...rest] = path.split('/');
  return {
    page: PAGES[page] ? page : 'segments',
    arg: rest.length ? decodeURIComponent(rest.join('/')) : '',
    params: Object.fromEntries(new URLSearchParams(query)),
  };
}

/** Rewrite the current route's query without reloading the page (for shareable state). */
export function setParams(params) {
  const r = parseRoute();
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries({ ...r.params, ...params })) if (v !== null && v !== undefined && v !== '') q.set(k, v);
  const path = '#/' + r.page + (r.arg ? '/' + encodeURIComponent(r.arg) : '');
  history.replaceState(null, '', path + (q.toString() ? '?' + q : ''));
}

// The daemon's engine clock, from /api/stats, moved on by the browser's clock in between.
const clock = { value: null, at: 0 };
const ctx = {
  /** Engine-clock "now" in epoch seconds (the browser's clock until segd has answered). */
  now() {
    return clock.value === null ? Date.now() / 1000 : clock.value + (performance.now() - clock.at) / 1000;
  },
  /** Take a /api/stats answer's clock. */
  sawStats(stats) {
    if (typeof stats.clock === 'number' && stats.clock > 0) {
      clock.value = stats.clock;
      clock.at = performance.now();
    }
    showStatus(stats);
  },
  setParams,
};

const statusEl = () => document.getElementById('status');
function showStatus(stats) {
  fill(statusEl(), h('span', { class: 'dot live', 'aria-hidden': 'true' }), ` ${stats.users?.toLocaleString('en-US') ?? '?'} users · clock ${fmtClock(ctx.now())}`);
}

async function pollStatus() {
  try {
    ctx.sawStats(await api('/api/stats'));
  } catch (err) {
    fill(statusEl(), h('span', { class: 'dot down', 'aria-hidden': 'true' }), ' segd unreachable');
  }
}

let cleanup = null;
let rendering = 0;

async function route() {
  const r = parseRoute();
  const main = document.getElementById('main');
  if (cleanup) {
    try {
      cleanup();
    } catch (err) {
      console.warn('cleanup failed', err);
    }
    cleanup = null;
  }
  const mine = ++rendering;
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === (NAV[r.page] || r.page)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.title = `${r.arg ? r.arg + ' · ' : ''}${TITLES[r.page]} · segd`;
  main.replaceChildren();
  main.dataset.page = r.page;
  main.setAttribute('aria-busy', 'true');
  try {
    const done = await PAGES[r.page].render(main, r, ctx);
    if (mine !== rendering) {
      if (done) done();
      return;
    }
    cleanup = done || null;
  } catch (err) {
    if (mine === rendering) fill(main, errorBox(err));
  } finally {
    if (mine === rendering) main.removeAttribute('aria-busy');
  }
}

window.addEventListener('hashchange', () => {
  route();
  document.getElementById('main').focus({ preventScroll: true });
});
pollStatus().then(route);
setInterval(pollStatus, 5000);
