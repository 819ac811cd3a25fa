/**
 * Metrics: every tenant-scoped statement and every request is counted (the sums over all series match what the
 * test did), tenant labels stay bounded (10,000 tenants through the real data path), /metrics is admin-only.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createGuard, createMetrics, type TenantwallMetrics } from '../../src/index.ts';
import { observabilityPlugin } from '../../src/fastify/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginApp, pluginMigrations, pluginSchema } from '../fastify/app.ts';

const ADMIN = 'observability-admin-token-0123';

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses the Prometheus text format (no escapes in our label values). */
export function parseMetrics(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparsable metrics line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)) labels[l[1] as string] = l[2] as string;
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

const sum = (samples: Sample[], name: string, where: (l: Record<string, string>) => boolean = () => true) =>
  samples.filter((s) => s.name === name && where(s.labels)).reduce((a, s) => a + s.value, 0);

let t: TestTenantwall;
let metrics: TenantwallMetrics;
let app: FastifyInstance;

before(async () => {
  t = await createTestTenantwall(pluginSchema, pluginMigrations, { guard: createGuard(pluginSchema) });
  metrics = createMetrics({ db: t.db, tenantLabels: 2, processMetrics: false });
  ({ app } = await pluginApp(t.db, {}, async (a) => {
    await a.register(observabilityPlugin, { metrics, adminToken: ADMIN });
    // Two tenant-scoped statements per request, both passing the guard.
    a.get('/obs/notes', async () => {
      await t.db.query(`INSERT INTO notes (tenant_id, body) VALUES ($1, 'n')`, [t.db.currentTenantId()]);
      const { rows } = await t.db.query<{ body: string }>('SELECT body FROM notes WHERE tenant_id = $1', [t.db.currentTenantId()]);
      return { notes: rows.length };
    });
  }));
});
after(async () => {
  metrics.close();
  await app.close();
  await t.close();
});

test('the sums of the series match the requests and statements made; tenants past the bound share "other"', async () => {
  const tenants = [];
  for (let i = 0; i < 5; i++) {
    const tenant = await t.db.tenants.create({ slug: `m${i}-${randomUUID().slice(0, 8)}`, name: `M${i}` });
    const { key } = await app.tenantwall.apiKeys.create(tenant.id, { name: 'k' });
    tenants.push({ tenant, key });
  }
  // The first request of each key verifies it in the database (a tenant-scoped statement of its own): before the baseline.
  for (const { key } of tenants) assert.equal((await app.inject({ url: '/obs/notes', headers: { authorization: `Bearer ${key}` } })).statusCode, 200);
  const before = parseMetrics(await metrics.metrics());
  const requestsBefore = sum(before, 'tenantwall_http_requests_total');
  const statementsBefore = sum(before, 'tenantwall_db_statements_total');
  let requests = 0;
  let statements = 0;
  for (const [i, { key }] of tenants.entries()) {
    for (let n = 0; n <= i; n++) {
      const res = await app.inject({ url: '/obs/notes', headers: { authorization: `Bearer ${key}` } });
      assert.equal(res.statusCode, 200, res.body);
      requests++;
      statements += 2; // /obs/notes runs two tenant-scoped statements
    }
  }
  const unauth = await app.inject({ url: '/obs/notes' });
  assert.equal(unauth.statusCode, 401);
  const pub = await app.inject({ url: '/public' });
  assert.equal(pub.statusCode, 200);
  requests += 2;
  // A statement the guard refuses is counted as a refusal, never sent.
  const victim = tenants[0]?.tenant.id as string;
  await assert.rejects(t.db.forTenant(victim).query('SELECT body FROM notes'), { code: 'unscoped_query' });
  statements++;

  const res = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(res.statusCode, 200);
  assert.match(res.headers['content-type'] as string, /text\/plain/);
  const s = parseMetrics(res.body);
  assert.equal(sum(s, 'tenantwall_http_requests_total') - requestsBefore, requests);
  assert.equal(sum(s, 'tenantwall_db_statements_total') - statementsBefore, statements);
  assert.equal(sum(s, 'tenantwall_guard_refusals_total'), 1);
  assert.equal(sum(s, 'tenantwall_db_statements_total', (l) => l.outcome === 'refused'), 1);
  assert.equal(sum(s, 'tenantwall_http_requests_total', (l) => l.tenant === 'none' && l.status_class === '4xx'), 1);
  // Per-route histogram count matches the counter too.
  assert.equal(sum(s, 'tenantwall_http_request_duration_seconds_count', (l) => l.route === '/obs/notes'), sum(s, 'tenantwall_http_requests_total', (l) => l.route === '/obs/notes'));
  assert.ok(sum(s, 'tenantwall_db_rows_total') > 0);
  assert.ok(sum(s, 'tenantwall_db_time_seconds_total') > 0);
  // Label bound 2: at most two tenant ids, the rest in "other" (plus "none" for requests without a tenant).
  const ids = new Set(s.filter((x) => x.labels.tenant !== undefined && x.labels.tenant !== 'other' && x.labels.tenant !== 'none').map((x) => x.labels.tenant));
  assert.ok(ids.size <= 2, `tenant labels: ${[...ids].join(', ')}`);
  assert.ok(sum(s, 'tenantwall_http_requests_total', (l) => l.tenant === 'other') > 0);
  // After the rebalance of this scrape the two most active tenants (the last two) hold the labels.
  const top2 = new Set<string>(tenants.slice(3).map((x) => x.tenant.id));
  const again = parseMetrics(await metrics.metrics());
  for (const id of new Set(again.map((x) => x.labels.tenant).filter((x) => x !== undefined && x !== 'other' && x !== 'none'))) assert.ok(top2.has(String(id)), `${id} is not among the two most active`);
  assert.equal(sum(again, 'tenantwall_http_requests_total') - requestsBefore, requests + 1); // the scrape itself
  const pool = again.filter((x) => x.name === 'tenantwall_pool_connections' && x.labels.pool === 'app' && x.labels.state === 'max');
  assert.equal(pool[0]?.value, t.db.options.poolSize);
});

test('/metrics and the activity report need the admin token; a tenant API key never opens them', async () => {
  const tenant = await t.db.tenants.create({ slug: `sec-${randomUUID().slice(0, 8)}`, name: 'Sec' });
  const { key } = await app.tenantwall.apiKeys.create(tenant.id, { name: 'k' });
  for (const url of ['/metrics', '/admin/observability/top']) {
    assert.equal((await app.inject({ url })).statusCode, 401);
    const withKey = await app.inject({ url, headers: { authorization: `Bearer ${key}` } });
    assert.equal(withKey.statusCode, 401);
    assert.equal(withKey.json().error.code, 'admin_unauthorized');
    assert.equal((await app.inject({ url, headers: { authorization: `Bearer ${ADMIN}x` } })).statusCode, 401);
    assert.equal((await app.inject({ url, headers: { authorization: `Bearer ${ADMIN}` } })).statusCode, 200);
  }
  const bad = await app.inject({ url: '/admin/observability/top?by=cpu', headers: { authorization: `Bearer ${ADMIN}` } });
  assert.equal(bad.statusCode, 400);
});

test('10,000 tenants through the data path: never more tenant series than the bound, sums exact', async () => {
  const N = 50;
  const m = createMetrics({ db: t.db, tenantLabels: N, processMetrics: false });
  try {
    const ids = Array.from({ length: 10_000 }, () => randomUUID());
    let next = 0;
    const worker = async () => {
      for (let i = next++; i < ids.length; i = next++) await t.db.forTenant(ids[i] as string).query('SELECT 1 AS one');
    };
    // Two scrapes while the statements run, so the labels are rebalanced under load.
    const scrapes = (async () => {
      for (let i = 0; i < 2; i++) {
        await new Promise((r) => setImmediate(r));
        await m.metrics();
      }
    })();
    await Promise.all([...Array.from({ length: 8 }, worker), scrapes]);
    const s = parseMetrics(await m.metrics());
    const series = s.filter((x) => x.name === 'tenantwall_db_statements_total');
    const labels = new Set(series.map((x) => x.labels.tenant));
    assert.ok(labels.size <= N + 1, `${labels.size} tenant labels`);
    assert.ok(labels.has('other'));
    for (const name of ['tenantwall_db_statements_total', 'tenantwall_db_rows_total', 'tenantwall_db_time_seconds_total']) {
      assert.ok(s.filter((x) => x.name === name).length <= N + 1, name);
    }
    assert.equal(sum(s, 'tenantwall_db_statements_total'), 10_000);
    assert.equal(sum(s, 'tenantwall_db_rows_total'), 10_000);
    const gauge = s.find((x) => x.name === 'tenantwall_metrics_tenant_labels');
    assert.ok(gauge && gauge.value <= N);
  } finally {
    m.close();
  }
});
