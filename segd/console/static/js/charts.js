// Chart.js (vendored, window.Chart) set up for the console: a date adapter built on Intl
// (Chart.js's time scale needs one; this saves shipping a date library), the console's
// theme, and the few chart shapes the pages use. Charts keep their data as {x: ms, y}.

const Chart = window.Chart;

export const COLORS = {
  ink: '#1f2937',
  muted: '#4b5563',
  grid: '#e5e7eb',
  primary: '#4338ca',
  primarySoft: 'rgba(67, 56, 202, 0.12)',
  enter: '#15803d',
  exit: '#b91c1c',
  amber: '#b45309',
  series: ['#4338ca', '#0e7490', '#15803d', '#b45309', '#be185d', '#6d28d9', '#0369a1', '#4d7c0f', '#9f1239', '#475569'],
};

const SECOND = 1000;
const FIXED = { millisecond: 1, second: SECOND, minute: 60 * SECOND, hour: 3600 * SECOND, day: 86400 * SECOND, week: 7 * 86400 * SECOND };
const FORMATS = {
  datetime: { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit' },
  millisecond: { hour: '2-digit', minute: '2-digit', second: '2-digit', fractionalSecondDigits: 3 },
  second: { hour: '2-digit', minute: '2-digit', second: '2-digit' },
  minute: { hour: '2-digit', minute: '2-digit' },
  hour: { hour: '2-digit', minute: '2-digit' },
  day: { month: 'short', day: 'numeric' },
  week: { month: 'short', day: 'numeric' },
  month: { month: 'short', year: 'numeric' },
  quarter: { month: 'short', year: 'numeric' },
  year: { year: 'numeric' },
};
const formatters = {};
const monthsOf = { month: 1, quarter: 3, year: 12 };

function addMonths(t, n) {
  const d = new Date(t);
  d.setMonth(d.getMonth() + n);
  return d.getTime();
}

function startOf(t, unit, weekday) {
  const d = new Date(t);
  switch (unit) {
    case 'millisecond': return t;
    case 'second': d.setMilliseconds(0); break;
    case 'minute': d.setSeconds(0, 0); break;
    case 'hour': d.setMinutes(0, 0, 0); break;
    case 'day': d.setHours(0, 0, 0, 0); break;
    case 'isoWeek':
    case 'week': {
      d.setHours(0, 0, 0, 0);
      const first = unit === 'isoWeek' ? (typeof weekday === 'number' ? weekday : 1) : 0;
      d.setDate(d.getDate() - ((d.getDay() - first + 7) % 7));
      break;
    }
    case 'month': d.setHours(0, 0, 0, 0); d.setDate(1); break;
    case 'quarter': d.setHours(0, 0, 0, 0); d.setDate(1); d.setMonth(d.getMonth() - (d.getMonth() % 3)); break;
    case 'year': d.setHours(0, 0, 0, 0); d.setMonth(0, 1); break;
    default: return t;
  }
  return d.getTime();
}

function add(t, amount, unit) {
  if (unit in monthsOf) return addMonths(t, amount * monthsOf[unit]);
  return t + amount * (FIXED[unit] || 0);
}

Chart._adapters._date.override({
  formats: () => Object.fromEntries(Object.keys(FORMATS).map((k) => [k, k])),
  parse(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === 'number') return v;
    if (v instanceof Date) return v.getTime();
    const t = Date.parse(v);
    return Number.isNaN(t) ? null : t;
  },
  format(t, fmt) {
    formatters[fmt] ||= new Intl.DateTimeFormat(undefined, FORMATS[fmt] || FORMATS.datetime);
    return formatters[fmt].format(t);
  },
  add,
  diff(a, b, unit) {
    if (unit in monthsOf) {
      const da = new Date(a);
      const db = new Date(b);
      return ((da.getFullYear() - db.getFullYear()) * 12 + da.getMonth() - db.getMonth()) / monthsOf[unit];
    }
    return (a - b) / (FIXED[unit] || 1);
  },
  startOf,
  endOf: (t, unit) => add(startOf(t, unit), 1, unit) - 1,
});

const reduced = window.matchMedia('(prefers-reduced-motion: reduce)').matches;
Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
Chart.defaults.font.size = 12;
Chart.defaults.color = COLORS.muted;
Chart.defaults.borderColor = COLORS.grid;
Chart.defaults.animation = reduced ? false : { duration: 250 };
Chart.defaults.maintainAspectRatio = false;
Chart.defaults.plugins.legend.display = false;
Chart.defaults.plugins.tooltip.backgroundColor = '#111827';
Chart.defaults.plugins.tooltip.padding = 10;

const toXY = (points) => points.map(([t, y]) => ({ x: t * 1000, y }));

/** A tiny line of a segment's size, no axes. */
export function sparkline(canvas, points, color = COLORS.primary) {
  return new Chart(canvas, {
    type: 'line',
    data: { datasets: [{ data: toXY(points), borderColor: color, borderWidth: 1.6, pointRadius: 0, fill: true, backgroundColor: COLORS.primarySoft, tension: 0 }] },
    options: {
      animation: false,
      events: [],
      responsive: true,
      layout: { padding: 2 },
      plugins: { tooltip: { enabled: false } },
      scales: { x: { type: 'time', display: false }, y: { display: false, beginAtZero: true } },
    },
  });
}

/** A segment's size over time: points are [t seconds, size]. */
export function sizeChart(canvas, points) {
  return new Chart(canvas, {
    type: 'line',
    data: {
      datasets: [{
        label: 'size',
        data: toXY(points),
        borderColor: COLORS.primary,
        backgroundColor: COLORS.primarySoft,
        borderWidth: 2,
        fill: true,
        tension: 0,
        pointRadius: points.length > 80 ? 0 : 2.5,
        pointHoverRadius: 4,
      }],
    },
    options: {
      responsive: true,
      interaction: { mode: 'index', intersect: false },
      scales: {
        x: { type: 'time', grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 24 } },
        y: { beginAtZero: true, ticks: { precision: 0 } },
      },
      plugins: { tooltip: { callbacks: { label: (c) => ` ${c.parsed.y.toLocaleString('en-US')} members` } } },
    },
  });
}

/** A live line of samples (events/s, lag): call push(t, value) to add a point. */
export function liveChart(canvas, label, color = COLORS.primary, keep = 120) {
  const chart = new Chart(canvas, {
    type: 'line',
    data: { datasets: [{ label, data: [], borderColor: color, backgroundColor: color + '22', borderWidth: 2, fill: true, pointRadius: 0, tension: 0.25 }] },
    options: {
      responsive: true,
      animation: false,
      scales: {
        x: { type: 'time', grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 24 } },
        y: { beginAtZero: true, ticks: { precision: 0 } },
      },
    },
  });
  chart.push = (t, y) => {
    const data = chart.data.datasets[0].data;
    data.push({ x: t * 1000, y });
    if (data.length > keep) data.shift();
    // a fixed window ending now, so the first samples do not fill the whole width
    chart.options.scales.x.min = (t - keep) * 1000;
    chart.options.scales.x.max = t * 1000;
    chart.update('none');
  };
  return chart;
}

/** Horizontal bars: labels and values (one colour, or one per bar). */
export function barChart(canvas, labels, values, { color = COLORS.primary, format = (v) => v.toLocaleString('en-US'), max } = {}) {
  return new Chart(canvas, {
    type: 'bar',
    data: { labels, datasets: [{ data: values, backgroundColor: color, borderRadius: 4, maxBarThickness: 22 }] },
    options: {
      indexAxis: 'y',
      responsive: true,
      scales: { x: { beginAtZero: true, max, ticks: { precision: 0, callback: (v) => format(v) } }, y: { grid: { display: false } } },
      plugins: { tooltip: { callbacks: { label: (c) => ' ' + format(c.parsed.x) } } },
    },
  });
}

/**
 * A forest plot: one row per variant, the interval [lo, hi] as a floating bar and the
 * estimate as a dot, with the zero line marked. Values are differences of rates.
 */
export function forestChart(canvas, rows, format) {
  const colorOf = (r) => (r.lo > 0 ? COLORS.enter : r.hi < 0 ? COLORS.exit : COLORS.muted);
  return new Chart(canvas, {
    data: {
      labels: rows.map((r) => r.label),
      datasets: [
        { type: 'bar', label: '95% CI', data: rows.map((r) => [r.lo, r.hi]), backgroundColor: rows.map((r) => colorOf(r) + '44'), borderColor: rows.map(colorOf), borderWidth: 1.5, borderSkipped: false, borderRadius: 3, barThickness: 14 },
        { type: 'scatter', label: 'difference', data: rows.map((r, i) => ({ x: r.diff, y: rows[i].label })), backgroundColor: rows.map(colorOf), pointRadius: 5, pointStyle: 'rectRot' },
      ],
    },
    options: {
      indexAxis: 'y',
      responsive: true,
      scales: {
        x: {
          ticks: { callback: (v) => format(v), maxRotation: 0, autoSkipPadding: 16 },
          grid: { color: (c) => (c.tick && c.tick.value === 0 ? COLORS.ink : COLORS.grid), lineWidth: (c) => (c.tick && c.tick.value === 0 ? 1.5 : 1) },
        },
        y: { type: 'category', grid: { display: false } },
      },
      plugins: {
        tooltip: {
          callbacks: {
            label: (c) => (c.datasetIndex === 0 ? ` 95% CI ${format(c.raw[0])} to ${format(c.raw[1])}` : ` difference ${format(c.raw.x)}`),
          },
        },
      },
    },
  });
}

/** Stacked horizontal bars: one bar per label, one dataset per part. */
export function stackedChart(canvas, labels, parts) {
  return new Chart(canvas, {
    type: 'bar',
    data: { labels, datasets: parts.map((p) => ({ label: p.label, data: p.values, backgroundColor: p.color, maxBarThickness: 22 })) },
    options: {
      indexAxis: 'y',
      responsive: true,
      scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } }, y: { stacked: true, grid: { display: false } } },
      plugins: { legend: { display: true, position: 'bottom', labels: { boxWidth: 12, boxHeight: 12 } } },
    },
  });
}
