/**
 * The histograms the metrics feed without prom-client's per-observation work render exactly what prom-client's
 * own Histogram renders for the same observations (exposition text and `get()`), labelled and unlabelled.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as prom from 'prom-client';
import { createFastHistogram } from '../../src/observability/histogram.ts';

const buckets = [0.001, 0.0025, 0.005, 0.01, 0.1, 1, 10];
const values = [0, 0.0004, 0.001, 0.0011, 0.0025, 0.007, 0.05, 0.1, 0.9, 1, 3, 10, 11, 250];

test('a labelled fast histogram renders what prom-client renders', async () => {
  const ref = new prom.Registry();
  const fast = new prom.Registry();
  const labelNames = ['method', 'route', 'status_class'];
  const h = new prom.Histogram({ name: 'x_seconds', help: 'X.', labelNames, buckets, registers: [ref] });
  const f = createFastHistogram(prom, { name: 'x_seconds', help: 'X.', labelNames, buckets: [...buckets].reverse(), registers: [fast] });
  // Nothing observed: no series at all.
  assert.equal(await fast.metrics(), await ref.metrics());
  const series = [
    { method: 'GET', route: '/invoices/:id', status_class: '2xx' },
    { method: 'POST', route: '/invoices', status_class: '4xx' },
  ];
  for (const [i, v] of values.entries()) {
    const labels = series[i % 2] as (typeof series)[number];
    h.observe(labels, v);
    f.observe(f.series(JSON.stringify(Object.values(labels)), labels), v);
  }
  assert.equal(await fast.metrics(), await ref.metrics());
  assert.deepEqual(await fast.getMetricsAsJSON(), await ref.getMetricsAsJSON());
  ref.resetMetrics();
  fast.resetMetrics();
  assert.equal(await fast.metrics(), await ref.metrics());
  // The series a caller kept counts again after a reset (from zero), like prom-client's.
  const again = series[1] as (typeof series)[number];
  h.observe(again, 0.003);
  f.observe(f.series(JSON.stringify(Object.values(again)), again), 0.003);
  assert.equal(await fast.metrics(), await ref.metrics());
});

test('a series kept across a reset counts again from zero', async () => {
  const ref = new prom.Registry();
  const fast = new prom.Registry();
  const h = new prom.Histogram({ name: 'z_seconds', help: 'Z.', labelNames: ['route'], buckets, registers: [ref] });
  const f = createFastHistogram(prom, { name: 'z_seconds', help: 'Z.', labelNames: ['route'], buckets, registers: [fast] });
  const kept = f.series('a', { route: 'a' });
  h.observe({ route: 'a' }, 0.5);
  f.observe(kept, 0.5);
  ref.resetMetrics();
  fast.resetMetrics();
  assert.equal(await fast.metrics(), await ref.metrics());
  h.observe({ route: 'a' }, 2);
  f.observe(kept, 2);
  assert.equal(await fast.metrics(), await ref.metrics());
});

test('an unlabelled fast histogram shows its zero series before any observation, like prom-client', async () => {
  const ref = new prom.Registry();
  const fast = new prom.Registry();
  const h = new prom.Histogram({ name: 'y_seconds', help: 'Y.', buckets, registers: [ref] });
  const f = createFastHistogram(prom, { name: 'y_seconds', help: 'Y.', labelNames: [], buckets, registers: [fast] });
  assert.equal(await fast.metrics(), await ref.metrics());
  const s = f.series('', {});
  for (const v of values) {
    h.observe(v);
    f.observe(s, v);
  }
  assert.equal(await fast.metrics(), await ref.metrics());
  assert.deepEqual(await fast.getMetricsAsJSON(), await ref.getMetricsAsJSON());
});
