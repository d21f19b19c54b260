// Confidence intervals for conversion rates, from the counts /api/campaigns gives.
//
// Rates are conversions / assigned (intention to treat: the holdout is exposed the same
// way, see README). A variant is compared with the holdout by the difference of the two
// rates, with Newcombe's hybrid score interval (Newcombe 1998, "Interval estimation for the
// difference between independent proportions", method 10): it combines the two Wilson score
// intervals, stays inside [-1, 1] and keeps close to its nominal coverage with small counts
// and rates near 0, where the textbook Wald interval (p1 - p2 ± z·se) is too narrow.

/** z for a two-sided interval of the given confidence (0.95 -> 1.959964). */
export function zFor(confidence) {
  // Acklam's inverse normal approximation (relative error < 1.2e-9), enough for display.
  const p = 1 - (1 - confidence) / 2;
  const a = [-3.969683028665376e1, 2.209460984245205e2, -2.759285104469687e2, 1.38357751867269e2, -3.066479806614716e1, 2.506628277459239];
  const b = [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
  const c = [-7.784894002430293e-3, -3.223964580411365e-1, -2.400758277161838, -2.549732539343734, 4.374664141464968, 2.938163982698783];
  const d = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
  const lo = 0.02425;
  if (p > 1 - lo) {
    const q = Math.sqrt(-2 * Math.log(1 - p));
    return -(((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
  }
  const q = p - 0.5;
  const r = q * q;
  return ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/** Wilson score interval for x successes out of n: {p, lo, hi}; null when n is 0. */
export function wilson(x, n, confidence = 0.95) {
  if (!n) return null;
  const z = zFor(confidence);
  const p = x / n;
  const z2 = z * z;
  const denom = 1 + z2 / n;
  const centre = (p + z2 / (2 * n)) / denom;
  const half = (z / denom) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { p, lo: Math.max(0, centre - half), hi: Math.min(1, centre + half) };
}

/**
 * Newcombe's hybrid score interval for p1 - p2 (x1/n1 against x2/n2): {diff, lo, hi}, or
 * null when either group is empty.
 */
export function newcombe(x1, n1, x2, n2, confidence = 0.95) {
  const a = wilson(x1, n1, confidence);
  const b = wilson(x2, n2, confidence);
  if (!a || !b) return null;
  const diff = a.p - b.p;
  return {
    diff,
    lo: diff - Math.sqrt((a.p - a.lo) ** 2 + (b.hi - b.p) ** 2),
    hi: diff + Math.sqrt((a.hi - a.p) ** 2 + (b.p - b.lo) ** 2),
  };
}

/** How to read an interval: 'better', 'worse' or 'unclear' (it contains 0). */
export function verdict(ci) {
  if (!ci) return 'unclear';
  if (ci.lo > 0) return 'better';
  if (ci.hi < 0) return 'worse';
  return 'unclear';
}
