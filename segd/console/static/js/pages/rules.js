// The rule editor: type a `when` expression; `preview` answers, debounced, as you type
// (size, sample, overlap with each segment); an invalid expression shows preview's message
// with the position it names marked in the text.

import { api } from '../api.js';
import { h, fill, fmtInt, fmtPct, debounce, card, errorBox, userLink, segmentLink } from '../ui.js';
import { barChart } from '../charts.js';

const DEBOUNCE_MS = 250;
const RETRY_MS = 200;

/**
 * The 0-based offset an error names: a `column` field (1-based, as segd's rule errors
 * count), or "column N" / "position N" in the message; null when it names none.
 */
export function errorOffset(err) {
  if (Number.isInteger(err.column)) return err.column - 1;
  const m = /\b(?:column|position|col)\s+(\d+)/i.exec(err.message || '');
  return m ? Number(m[1]) - 1 : null;
}

/** The expression with the character at `offset` marked (a marked space past the end). */
export function marked(text, offset) {
  const pre = h('pre', { class: 'expr', id: 'rule-error-at', dataset: { offset } });
  if (offset === null || offset < 0) {
    pre.textContent = text;
    return pre;
  }
  const at = Math.min(offset, text.length);
  pre.append(text.slice(0, at), h('mark', {}, text.slice(at, at + 1) || ' '), text.slice(at + 1));
  return pre;
}

export async function render(main, route, ctx) {
  const [{ segments }, stats] = await Promise.all([api('/api/segments'), api('/api/stats')]);
  ctx.sawStats(stats);
  const initial = route.params.when ?? (segments.find((s) => s.when)?.when || '');
  const editor = h('textarea', { id: 'rule', rows: 4, spellcheck: 'false', autocapitalize: 'off', autocomplete: 'off', 'aria-describedby': 'rule-help rule-result', placeholder: "e.g. views_7d >= 3 and not segment('customer')" });
  editor.value = initial;
  const state = h('span', { class: 'live-state', id: 'rule-state', role: 'status' });
  const result = h('div', { id: 'rule-result', 'aria-live': 'polite' });
  const inserts = h('div', { class: 'chips', 'aria-label': 'Insert a segment' },
    segments.map((s) => h('button', { type: 'button', class: 'chip', onclick: () => insert(`segment('${s.name}')`) }, s.name)));
  const startFrom = segments.some((s) => s.when)
    ? h('select', { 'aria-label': 'Start from a segment’s rule', onchange: (ev) => { if (ev.target.value) { editor.value = ev.target.value; changed(); } } },
      h('option', { value: '' }, 'Start from a segment’s rule…'), segments.filter((s) => s.when).map((s) => h('option', { value: s.when }, s.name)))
    : null;

  fill(main,
    h('div', { class: 'page-head' }, h('div', {}, h('h1', {}, 'Rule editor'), h('p', { class: 'lede' }, 'Write a segment rule and see who it matches before you save it. Nothing changes in segd.'))),
    card(null,
      h('div', { class: 'card-head' }, h('label', { for: 'rule', class: 'h2' }, 'when'), state),
      editor,
      h('p', { id: 'rule-help', class: 'muted small' },
        'Aggregates by name, traits.NAME, segment(\'name\'), and, or, not, == != < <= > >=, in, + - * /, now(), days_since(t), hours_since(t), exists(x).'),
      h('div', { class: 'toolbar' }, startFrom, h('span', { class: 'muted small' }, 'Insert:'), inserts)),
    result);

  function insert(text) {
    const { selectionStart: a, selectionEnd: b, value } = editor;
    editor.value = value.slice(0, a) + text + value.slice(b);
    editor.focus();
    editor.setSelectionRange(a + text.length, a + text.length);
    changed();
  }

  let seq = 0;
  let chart = null;
  let inflight = null;
  async function preview() {
    const text = editor.value;
    const mine = ++seq;
    inflight?.abort();
    inflight = new AbortController();
    ctx.setParams({ when: text });
    if (!text.trim()) {
      chart?.destroy();
      chart = null;
      fill(result);
      fill(state);
      return;
    }
    state.textContent = 'evaluating…';
    state.className = 'live-state connecting';
    try {
      const res = await api('/api/preview', { body: { when: text }, signal: inflight.signal });
      if (mine !== seq) return;
      editor.removeAttribute('aria-invalid');
      state.textContent = '✓ valid';
      state.className = 'live-state live';
      show(res, text);
    } catch (err) {
      if (err.name === 'AbortError' || mine !== seq) return;
      if (err.code === 'overloaded') {
        // segd runs one preview at a time (each reads every user): the one before is still
        // running, so ask again shortly; the newest text wins.
        setTimeout(() => { if (mine === seq) preview(); }, RETRY_MS);
        return;
      }
      chart?.destroy();
      chart = null;
      if (err.code === 'bad_request') {
        editor.setAttribute('aria-invalid', 'true');
        state.textContent = '✗ invalid';
        state.className = 'live-state error';
        const offset = errorOffset(err);
        fill(result, card(null, h('div', { class: 'rule-error', role: 'alert', id: 'rule-error' },
          h('p', { id: 'rule-error-message' }, err.message), marked(text, offset),
          offset !== null ? h('p', { class: 'muted small' }, `at column ${offset + 1}`) : null)));
      } else {
        state.textContent = '';
        fill(result, errorBox(err));
      }
    }
  }

  function show(res, text) {
    const users = stats.users || 0;
    const overlap = Object.entries(res.overlap || {}).filter(([, n]) => n > 0).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    const canvas = h('canvas', { role: 'img', 'aria-label': 'How many of the matching users are in each segment' });
    chart?.destroy();
    chart = null;
    fill(result,
      h('div', { class: 'grid-1-2' },
        card(null, h('div', { class: 'kpi accent' }, h('div', { class: 'kpi-value', id: 'preview-size' }, fmtInt(res.size)), h('div', { class: 'kpi-label' }, 'users match now')),
          h('p', { class: 'muted' }, users ? `${fmtPct(res.size / users, 1)} of ${fmtInt(users)} users` : ''),
          h('h3', {}, 'Sample'),
          res.sample.length ? h('ul', { class: 'members', id: 'preview-sample' }, res.sample.map((u) => h('li', {}, userLink(u)))) : h('p', { class: 'muted', id: 'preview-sample' }, 'Nobody matches.')),
        card('Overlap with existing segments',
          overlap.length && res.size
            ? [h('div', { class: 'chart', style: null }, canvas),
              h('table', { class: 'compact', id: 'preview-overlap' }, h('tbody', {}, overlap.map(([name, n]) => h('tr', { dataset: { segment: name } },
                h('th', { scope: 'row' }, segmentLink(name)), h('td', { class: 'num' }, fmtInt(n)), h('td', { class: 'num muted' }, fmtPct(n / res.size, 0))))))]
            : h('p', { class: 'muted', id: 'preview-overlap' }, 'No overlap to show.'))));
    if (overlap.length && res.size) {
      canvas.parentElement.style.height = `${Math.max(120, overlap.length * 28 + 40)}px`;
      chart = barChart(canvas, overlap.map(([n]) => n), overlap.map(([, n]) => n));
    }
    main.dataset.previewed = text;
  }

  const changed = debounce(preview, DEBOUNCE_MS);
  editor.addEventListener('input', changed);
  if (initial) preview();
  return () => {
    changed.cancel();
    inflight?.abort();
    chart?.destroy();
  };
}
