// node --test tests/console/: the console's interval arithmetic against published values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { newcombe, wilson, zFor, verdict } from '../../segd/console/static/js/stats.js';

const close = (got, want, tol, what) =>
  assert.ok(Math.abs(got - want) <= tol, `${what}: got ${got}, want ${want} ± ${tol}`);

test('z for 95% is 1.959964', () => close(zFor(0.95), 1.959964, 1e-6, 'z'));

test('z for 99% is 2.575829', () => close(zFor(0.99), 2.575829, 1e-6, 'z'));

// Newcombe (1998), Statistics in Medicine 17:873-890, Table II, method 10.
const TABLE_II = [
  [56, 70, 48, 80, 0.0524, 0.3339],
  [9, 10, 3, 10, 0.1705, 0.809],
  [6, 7, 2, 7, 0.0582, 0.8062],
  [5, 56, 0, 29, -0.0381, 0.1926],
  [0, 10, 0, 20, -0.1611, 0.2775],
  [10, 10, 0, 20, 0.6791, 1.0],
];
for (const [x1, n1, x2, n2, lo, hi] of TABLE_II) {
  test(`Newcombe's method 10 for ${x1}/${n1} - ${x2}/${n2} is (${lo}, ${hi})`, () => {
    const ci = newcombe(x1, n1, x2, n2);
    close(ci.lo, lo, 5e-5, 'lower');
    close(ci.hi, hi, 5e-5, 'upper');
  });
}

// Newcombe (1998b), Statistics in Medicine 17:857-872, Table I, method 3 (Wilson, no correction).
test('Wilson interval for 81/263 is (0.2553, 0.3662)', () => {
  const ci = wilson(81, 263);
  close(ci.lo, 0.2553, 5e-5, 'lower');
  close(ci.hi, 0.3662, 5e-5, 'upper');
});

test('an empty group has no interval', () => assert.equal(newcombe(1, 10, 0, 0), null));

test('an interval containing zero is unclear', () => assert.equal(verdict({ lo: -0.1, hi: 0.2 }), 'unclear'));

test('an interval above zero is better', () => assert.equal(verdict({ lo: 0.01, hi: 0.2 }), 'better'));
