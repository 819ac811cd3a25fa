import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import type { TenantId } from '../../src/index.ts';
import { ADMIN, buildMeteredApp } from './app.ts';
import { startMetering, untilMinuteHasLeft, type MeteringFixture } from './fixture.ts';

describe('HTTP: ingestion, usage queries, quotas and rate limits on requests', () => {
  let f: MeteringFixture;
  let app: FastifyInstance;
  let A: { id: TenantId; key: string };
  let B: { id: TenantId; key: string };
  let invoiceA: string;
  const as = (who: { key: string }, o: InjectOptions) => app.inject({ ...o, headers: { authorization: `Bearer ${who.key}`, ...o.headers } });
  before(async () => {
    // Buffered events are written only by the test's own flush() calls, never by the timer: how many rows the
    // request counts become must not depend on how fast this machine serves the requests in between.
    f = await startMetering({ planCacheTtlMs: 60_000, requestFlushMs: 600_000 });
    app = await buildMeteredApp(f.t.db, f.metering);
    const mk = async (slug: string) => {
      const id = (await f.t.db.tenants.create({ slug, name: slug })).id;
      return { id, key: (await app.tenantwall.apiKeys.create(id, { name: 'k' })).key };
    };
    A = await mk('a');
    B = await mk('b');
    invoiceA = (await f.t.db.forTenant(A.id).query(`INSERT INTO invoices (tenant_id, customer) VALUES ($1, 'x') RETURNING id`, [A.id])).rows[0]?.id;
  });
  after(async () => {
    await app.close();
    await f.close();
  });

  test('ingestion: single and batch, duplicates flagged, per-event results', async () => {
    const one = await as(A, { method: 'POST', url: '/usage/events', payload: { event_id: 'h-1', meter: 'tokens', quantity: 3 } });
    assert.equal(one.statusCode, 200, one.body);
    assert.deepEqual(one.json(), { event_id: 'h-1', duplicate: false });
    const dup = await as(A, { method: 'POST', url: '/usage/events', payload: { event_id: 'h-1', meter: 'tokens', quantity: 3 } });
    assert.deepEqual(dup.json(), { event_id: 'h-1', duplicate: true });
    const batch = await as(A, { method: 'POST', url: '/usage/events', payload: { events: [{ event_id: 'h-1', meter: 'tokens', quantity: 3 }, { event_id: 'h-2', meter: 'tokens', quantity: 4 }] } });
    assert.equal(batch.statusCode, 200);
    assert.deepEqual(batch.json(), { accepted: 1, duplicates: 1, results: [{ event_id: 'h-1', duplicate: true }, { event_id: 'h-2', duplicate: false }] });
  });

  test('bad input answers 4xx with stable codes', async () => {
    const cases: Array<[unknown, number, string, string?]> = [
      [{ event_id: 'x', meter: 'tokens', quantity: -5 }, 400, 'invalid_usage_event', 'quantity'],
      [{ event_id: 'x', meter: 'tokens', quantity: '5' }, 400, 'invalid_usage_event', 'quantity'],
      ['{"event_id":"x","meter":"tokens","quantity":1e400}', 400, 'invalid_usage_event', 'quantity'],
      [{ event_id: 'x', meter: 'no_such_meter' }, 400, 'unknown_meter', 'meter'],
      [{ event_id: 'x', meter: 'tokens', timestamp: '2099-01-01T00:00:00Z' }, 400, 'invalid_usage_event', 'timestamp'],
      [{ meter: 'tokens' }, 400, 'invalid_usage_event', 'event_id'],
      [[{ event_id: 'x', meter: 'tokens' }], 400, 'invalid_usage_event', 'event'],
      [{ events: 'nope' }, 400, 'invalid_usage_event', 'events'],
      [{ events: [], extra: 1 }, 400, 'invalid_usage_event', 'extra'],
      [{ events: [{ event_id: 'ok', meter: 'tokens' }, { event_id: 'bad', meter: 'tokens', quantity: -1 }] }, 400, 'invalid_usage_event', 'quantity'],
      [{ events: Array.from({ length: 1001 }, (_, i) => ({ event_id: `e${i}`, meter: 'calls' })) }, 413, 'batch_too_large'],
    ];
    for (const [payload, status, code, field] of cases) {
      const raw = typeof payload === 'string' ? payload : JSON.stringify(payload);
      const r = await as(A, { method: 'POST', url: '/usage/events', payload: raw, headers: { 'content-type': 'application/json' } });
      assert.equal(r.statusCode, status, `${raw.slice(0, 80)} -> ${r.body}`);
      assert.equal(r.json().error.code, code);
      if (field) assert.equal(r.json().error.details.field, field);
    }
    const notJson = await as(A, { method: 'POST', url: '/usage/events', payload: '{"event_id": ', headers: { 'content-type': 'application/json' } });
    assert.equal(notJson.statusCode, 400);
    assert.equal(notJson.json().error.code, 'invalid_json');
    const stored = await f.t.db.forTenant(A.id).query(`SELECT count(*)::int AS n FROM tw_usage_events WHERE tenant_id = $1 AND event_id IN ('ok', 'x', 'bad')`, [A.id]);
    assert.equal(stored.rows[0]?.n, 0);
  });

  test("tenants cannot write the server's meters: quota meters and api_requests answer 403 meter_not_writable, nothing is written", async () => {
    const count = async () =>
      (await f.t.db.forTenant(A.id).query(`SELECT count(*)::int AS n FROM tw_usage_events WHERE tenant_id = $1 AND event_id LIKE 'forged-%'`, [A.id])).rows[0]?.n;
    const forged: unknown[] = [
      { event_id: 'forged-1', meter: 'invoices.created', quantity: 1000 },
      { event_id: 'forged-2', meter: 'api_requests', quantity: 1_000_000 },
      // One forged event refuses the whole batch, client meters included.
      { events: [{ event_id: 'forged-3', meter: 'tokens' }, { event_id: 'forged-4', meter: 'invoices.created' }] },
    ];
    for (const payload of forged) {
      const r = await as(A, { method: 'POST', url: '/usage/events', payload: payload as object });
      assert.equal(r.statusCode, 403, r.body);
      assert.equal(r.json().error.code, 'meter_not_writable');
      assert.equal(r.json().error.details.field, 'meter');
      assert.ok(['invoices.created', 'api_requests'].includes(r.json().error.details.meter));
    }
    assert.equal(await count(), 0);
    // The server itself still records them (what the request hooks and quota admissions do).
    assert.equal((await f.metering.record(A.id, { event_id: 'forged-server', meter: 'invoices.created' })).duplicate, false);
    assert.equal(await count(), 1);
  });

  test('usage queries: own usage as JSON and CSV, never another tenant; admins see all', async () => {
    await as(B, { method: 'POST', url: '/usage/events', payload: { event_id: 'hb-1', meter: 'tokens', quantity: 100 } });
    const json = await as(A, { method: 'GET', url: '/usage?meter=tokens&granularity=month' });
    assert.equal(json.statusCode, 200, json.body);
    assert.deepEqual(json.json().data.map((r: { tenant_id: string; value: number }) => [r.tenant_id, r.value]), [[A.id, 7]]);
    const csv = await as(A, { method: 'GET', url: '/usage?meter=tokens&granularity=month&format=csv' });
    assert.match(String(csv.headers['content-type']), /^text\/csv/);
    assert.equal(csv.body.split('\r\n')[0], 'tenant_id,meter,aggregation,bucket,value,events');
    assert.ok(csv.body.includes(`${A.id},tokens,sum,`));
    assert.ok(!csv.body.includes(B.id));
    const probe = await as(A, { method: 'GET', url: `/usage?meter=tokens&tenant_id=${B.id}` });
    assert.deepEqual(probe.json(), { data: [] });
    const bad = await as(A, { method: 'GET', url: '/usage?granularity=week' });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'invalid_usage_query');
    const noAdmin = await as(A, { method: 'GET', url: '/admin/usage' });
    assert.equal(noAdmin.statusCode, 401);
    const admin = await app.inject({ method: 'GET', url: '/admin/usage?meter=tokens&granularity=month', headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(admin.statusCode, 200, admin.body);
    assert.deepEqual(new Set(admin.json().data.map((r: { tenant_id: string }) => r.tenant_id)), new Set([A.id, B.id]));
    const adminCsv = await app.inject({ method: 'GET', url: `/admin/usage?meter=tokens&granularity=month&format=csv&tenant_id=${B.id}`, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(adminCsv.body.trim().split('\r\n').length, 2);
  });

  test('hard quota on a route: remaining-quota headers, 429 quota_exceeded with Retry-After, failed requests give units back', async () => {
    // The failed request consumed a unit in preHandler; it is given back before its response is sent, so a
    // client acting on the 400 finds the unit available.
    const release = f.metering.release.bind(f.metering);
    let released = 0;
    f.metering.release = async (...args: Parameters<typeof release>) => {
      const r = await release(...args);
      released++;
      return r;
    };
    const failed = await as(A, { method: 'POST', url: '/invoices', payload: {} }).finally(() => {
      f.metering.release = release;
    });
    assert.equal(failed.statusCode, 400);
    assert.equal(released, 1, 'the unit is given back before the response');
    assert.equal((await f.metering.status(A.id, 'invoices'))?.used, 0);
    for (let i = 0; i < 5; i++) {
      const r = await as(A, { method: 'POST', url: '/invoices', payload: { customer: `c${i}` } });
      assert.equal(r.statusCode, 201, r.body);
      assert.equal(r.headers['x-quota-remaining'], `invoices=${4 - i}`);
      assert.equal(r.headers['x-quota-limit'], 'invoices=5');
    }
    const refused = await as(A, { method: 'POST', url: '/invoices', payload: { customer: 'too many' } });
    assert.equal(refused.statusCode, 429);
    const body = refused.json().error;
    assert.equal(body.code, 'quota_exceeded');
    assert.deepEqual([body.details.used, body.details.limit], [5, 5]);
    assert.match(body.details.resets_at, /-01T00:00:00\.000Z$/);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    assert.equal(refused.headers['x-quota-remaining'], 'invoices=0');
    assert.equal((await f.t.db.forTenant(A.id).query(`SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1`, [A.id])).rows[0]?.n, 6);
    // Routes that consume nothing still carry the quota state.
    const read = await as(A, { method: 'GET', url: `/invoices/${invoiceA}` });
    assert.equal(read.statusCode, 200);
    assert.equal(read.headers['x-quota-remaining'], 'invoices=0');
    assert.ok(read.headers['ratelimit-remaining'] !== undefined);
    // B is untouched by A's quota.
    assert.equal((await as(B, { method: 'POST', url: '/invoices', payload: { customer: 'b' } })).statusCode, 201);
    // An admin upgrade applies to the next request.
    const up = await app.inject({ method: 'PUT', url: `/admin/usage/tenants/${A.id}/plan`, payload: { plan: 'pro' }, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(up.statusCode, 200, up.body);
    assert.equal((await as(A, { method: 'POST', url: '/invoices', payload: { customer: 'after upgrade' } })).statusCode, 201);
  });

  test('rate limits on requests: 429 rate_limited with Retry-After and RateLimit headers; per API key', async () => {
    const m = await startMetering({
      spec: { meters: [], plans: { p: { rateLimits: [{ scope: 'apiKey', per: 'minute', limit: 3 }] } }, defaultPlan: 'p' },
    });
    const app2 = await buildMeteredApp(m.t.db, m.metering);
    try {
      const T = (await m.t.db.tenants.create({ slug: 't', name: 'T' })).id;
      const k1 = (await app2.tenantwall.apiKeys.create(T, { name: 'k1' })).key;
      const k2 = (await app2.tenantwall.apiKeys.create(T, { name: 'k2' })).key;
      const get = (key: string) => app2.inject({ method: 'GET', url: '/usage/quotas', headers: { authorization: `Bearer ${key}` } });
      await untilMinuteHasLeft();
      for (let i = 0; i < 3; i++) {
        const r = await get(k1);
        assert.equal(r.statusCode, 200, r.body);
        assert.equal(r.headers['ratelimit-limit'], '3');
        assert.equal(r.headers['ratelimit-remaining'], String(2 - i));
      }
      const refused = await get(k1);
      assert.equal(refused.statusCode, 429);
      assert.equal(refused.json().error.code, 'rate_limited');
      assert.deepEqual([refused.json().error.details.used, refused.json().error.details.limit], [3, 3]);
      assert.ok(Number(refused.headers['retry-after']) >= 1 && Number(refused.headers['retry-after']) <= 60);
      assert.equal(refused.headers['ratelimit-remaining'], '0');
      assert.equal((await get(k2)).statusCode, 200, 'another API key has its own budget');
    } finally {
      await app2.close();
      await m.close();
    }
  });

  test('every tenant request is counted on the api_requests meter, per API key, pre-aggregated per minute', async () => {
    await f.metering.flush();
    const before = await f.metering.usage(B.id, { meters: ['api_requests'], granularity: 'month' });
    for (let i = 0; i < 4; i++) await as(B, { method: 'GET', url: `/invoices/${invoiceA}` }); // 404 for B: still a request
    await f.metering.flush();
    const afterRows = await f.metering.usage(B.id, { meters: ['api_requests'], granularity: 'month' });
    const n = (rows: typeof afterRows) => rows.reduce((s, r) => s + r.value, 0);
    assert.equal(n(afterRows) - n(before), 4);
    const perKey = await f.t.db.forTenant(B.id).query(
      `SELECT count(DISTINCT properties->>'api_key_id')::int AS keys, (sum(quantity) FILTER (WHERE properties->>'status' = '404'))::int AS not_found FROM tw_usage_events WHERE tenant_id = $1 AND meter = 'api_requests'`,
      [B.id],
    );
    assert.deepEqual(perKey.rows[0], { keys: 1, not_found: 4 });
    // Pre-aggregated: one row per (minute, route, status, key), not one per request (two if a minute boundary
    // fell between the four requests).
    const rowsFor404 = await f.t.db.forTenant(B.id).query(`SELECT count(*)::int AS n FROM tw_usage_events WHERE tenant_id = $1 AND meter = 'api_requests' AND properties->>'status' = '404'`, [B.id]);
    assert.ok(rowsFor404.rows[0]?.n <= 2, `${rowsFor404.rows[0]?.n} rows for 4 requests`);
  });
});
