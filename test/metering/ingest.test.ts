import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { TenantwallError, type TenantId } from '../../src/index.ts';
import { defineMetering, usageToCsv } from '../../src/metering/index.ts';
import { startMetering, type MeteringFixture } from './fixture.ts';

const isCode = (code: string, extra?: (e: TenantwallError) => void) => (e: unknown) => {
  assert.ok(e instanceof TenantwallError, `expected TenantwallError, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  extra?.(e);
  return true;
};

describe('usage events: dedup, validation, aggregation, isolation', () => {
  let f: MeteringFixture;
  let A: TenantId;
  let B: TenantId;
  before(async () => {
    f = await startMetering();
    A = (await f.t.db.tenants.create({ slug: 'a', name: 'A' })).id;
    B = (await f.t.db.tenants.create({ slug: 'b', name: 'B' })).id;
  });
  after(() => f.close());

  const countOf = async (tid: TenantId, meter: string) =>
    Number((await f.t.db.forTenant(tid).query(`SELECT count(*) AS n FROM tw_usage_events WHERE tenant_id = $1 AND meter = $2`, [tid, meter])).rows[0]?.n);

  test('meter sources: server by default; api_requests and quota meters cannot be client-writable', async () => {
    const model = defineMetering({ meters: [{ name: 'tokens', aggregation: 'sum' }, { name: 'seats', aggregation: 'latest', source: 'client' }], plans: { p: {} }, defaultPlan: 'p' });
    assert.equal(model.meters.get('tokens')?.source, 'server');
    assert.equal(model.meters.get('seats')?.source, 'client');
    assert.equal(model.meters.get('api_requests')?.source, 'server');
    const refused = (spec: Parameters<typeof defineMetering>[0], why: RegExp) =>
      assert.throws(() => defineMetering(spec), (e: unknown) => e instanceof TenantwallError && e.code === 'config_invalid' && why.test(e.message));
    refused({ meters: [{ name: 'api_requests', aggregation: 'sum', source: 'client' }], plans: { p: {} }, defaultPlan: 'p' }, /api_requests .*source client/);
    refused({ meters: [{ name: 'x', aggregation: 'count', source: 'client' }], plans: { p: { quotas: { q: { meter: 'x', limit: 1 } } } }, defaultPlan: 'p' }, /bounded by a quota/);
    refused({ meters: [{ name: 'x', aggregation: 'count', source: 'tenant' as never }], plans: { p: {} }, defaultPlan: 'p' }, /source must be server or client/);
    // The library call on behalf of a client is refused the same way as the HTTP route.
    await assert.rejects(
      f.metering.recordBatch(A, [{ event_id: 'src-1', meter: 'tokens' }, { event_id: 'src-2', meter: 'invoices.created' }], { source: 'client' }),
      isCode('meter_not_writable', (e) => assert.deepEqual(e.details, { index: 1, field: 'meter', meter: 'invoices.created' })),
    );
    assert.equal(await countOf(A, 'tokens'), 0);
  });

  test('a retried event is a success flagged duplicate and counted once', async () => {
    const first = await f.metering.record(A, { event_id: 'e-1', meter: 'calls' });
    assert.deepEqual(first, { event_id: 'e-1', duplicate: false });
    const again = await f.metering.record(A, { event_id: 'e-1', meter: 'calls', quantity: 5 });
    assert.deepEqual(again, { event_id: 'e-1', duplicate: true });
    assert.equal(await countOf(A, 'calls'), 1);
    // The same id in another tenant is another event.
    assert.equal((await f.metering.record(B, { event_id: 'e-1', meter: 'calls' })).duplicate, false);
    const rows = await f.metering.usage(A, { meters: ['calls'], granularity: 'month' });
    assert.equal(rows.reduce((s, r) => s + r.value, 0), 1);
    // The default range ends at the latest timestamp ingestion accepts: an event stamped a minute ahead (a
    // client clock within maxFutureSkewMs) is counted.
    await f.metering.record(A, { event_id: 'e-ahead', meter: 'calls', timestamp: new Date(Date.now() + 60_000).toISOString() });
    const withAhead = await f.metering.usage(A, { meters: ['calls'], granularity: 'month' });
    assert.equal(withAhead.reduce((s, r) => s + r.value, 0), 2);
  });

  test('a batch reports per event; duplicates inside the batch and against stored events count once', async () => {
    const r = await f.metering.recordBatch(A, [
      { event_id: 'b-1', meter: 'tokens', quantity: 10 },
      { event_id: 'b-2', meter: 'tokens', quantity: 20 },
      { event_id: 'b-1', meter: 'tokens', quantity: 10 },
      { event_id: 'e-1', meter: 'calls' },
    ]);
    assert.equal(r.accepted, 2);
    assert.equal(r.duplicates, 2);
    assert.deepEqual(r.results.map((x) => x.duplicate), [false, false, true, true]);
    const retry = await f.metering.recordBatch(A, [
      { event_id: 'b-1', meter: 'tokens', quantity: 10 },
      { event_id: 'b-3', meter: 'tokens', quantity: 5 },
    ]);
    assert.deepEqual(retry.results, [{ event_id: 'b-1', duplicate: true }, { event_id: 'b-3', duplicate: false }]);
    // b-3 may be stamped in the same millisecond as the query starts: the default range includes it.
    const total = await f.metering.usage(A, { meters: ['tokens'], granularity: 'month' });
    assert.equal(total.reduce((s, x) => s + x.value, 0), 35);
  });

  test('bad input is refused with stable codes and a batch with one bad event writes nothing', async () => {
    const now = Date.now();
    const cases: Array<[unknown, string, string]> = [
      [{ event_id: 'x', meter: 'tokens', quantity: -1 }, 'invalid_usage_event', 'quantity'],
      [{ event_id: 'x', meter: 'tokens', quantity: '5' }, 'invalid_usage_event', 'quantity'],
      [{ event_id: 'x', meter: 'tokens', quantity: Number.NaN }, 'invalid_usage_event', 'quantity'],
      [{ event_id: 'x', meter: 'tokens', quantity: Number.POSITIVE_INFINITY }, 'invalid_usage_event', 'quantity'],
      [{ event_id: 'x', meter: 'nope' }, 'unknown_meter', 'meter'],
      [{ event_id: 'x', meter: 'tokens', timestamp: new Date(now + 3_600_000).toISOString() }, 'invalid_usage_event', 'timestamp'],
      [{ event_id: 'x', meter: 'tokens', timestamp: '2001-01-01T00:00:00Z' }, 'invalid_usage_event', 'timestamp'],
      [{ event_id: 'x', meter: 'tokens', timestamp: 'yesterday' }, 'invalid_usage_event', 'timestamp'],
      [{ event_id: '', meter: 'tokens' }, 'invalid_usage_event', 'event_id'],
      [{ event_id: 'has space', meter: 'tokens' }, 'invalid_usage_event', 'event_id'],
      [{ event_id: 'x', meter: 'tokens', quanity: 3 }, 'invalid_usage_event', 'quanity'],
      [{ event_id: 'x', meter: 'tokens', properties: [1] }, 'invalid_usage_event', 'properties'],
      [{ event_id: 'x', meter: 'tokens', properties: { big: 'x'.repeat(5000) } }, 'invalid_usage_event', 'properties'],
      ['not an object', 'invalid_usage_event', 'event'],
    ];
    for (const [event, code, field] of cases) {
      await assert.rejects(
        f.metering.recordBatch(A, [{ event_id: 'ok-before-bad', meter: 'tokens', quantity: 1 }, event]),
        isCode(code, (e) => {
          assert.equal(e.details.field, field, JSON.stringify(event));
          assert.equal(e.details.index, 1);
        }),
      );
    }
    assert.equal(await countOf(A, 'tokens'), 3, 'nothing of a refused batch was written');
    await assert.rejects(
      f.metering.recordBatch(A, Array.from({ length: 1001 }, (_, i) => ({ event_id: `big-${i}`, meter: 'calls' }))),
      isCode('batch_too_large', (e) => assert.equal(e.status, 413)),
    );
    await assert.rejects(f.metering.recordBatch(A, []), isCode('invalid_usage_event'));
    // No per-row foreign key on the events table: the statement itself refuses unknown tenants.
    await assert.rejects(f.metering.record('0b6f9a3e-3c1d-4a8e-9a51-2f0c6d1e7b42', { event_id: 'ghost', meter: 'calls' }), isCode('tenant_not_found'));
    const ghost = await f.t.db.dangerouslyCrossTenant().query(`SELECT count(*)::int AS n FROM tw_usage_events WHERE event_id = 'ghost'`);
    assert.equal(ghost.rows[0]?.n, 0);
  });

  test('meters aggregate count, sum, max, unique-count and latest per bucket, late events included', async () => {
    const h = (n: number, min = 0) => new Date(Date.UTC(2026, 10, 20, n, min)).toISOString();
    const m = await startMetering({ maxEventAgeMs: 3650 * 86_400_000 });
    try {
      const T = (await m.t.db.tenants.create({ slug: 'agg', name: 'Agg' })).id;
      await m.metering.recordBatch(T, [
        { event_id: 's1', meter: 'storage_gb', quantity: 3, timestamp: h(1, 5) },
        { event_id: 's2', meter: 'storage_gb', quantity: 7, timestamp: h(1, 10) },
        { event_id: 's3', meter: 'storage_gb', quantity: 4, timestamp: h(2, 0) },
        { event_id: 'u1', meter: 'active_users', timestamp: h(1), properties: { user_id: 'ann' } },
        { event_id: 'u2', meter: 'active_users', timestamp: h(1, 1), properties: { user_id: 'ann' } },
        { event_id: 'u3', meter: 'active_users', timestamp: h(1, 2), properties: { user_id: 'bob' } },
        { event_id: 'l1', meter: 'seats', quantity: 10, timestamp: h(1, 1) },
        { event_id: 'l2', meter: 'seats', quantity: 12, timestamp: h(1, 30) },
        { event_id: 't1', meter: 'tokens', quantity: 1.5, timestamp: h(1) },
        { event_id: 't2', meter: 'tokens', quantity: 2.5, timestamp: h(1, 59) },
      ]);
      const q = (meter: string, granularity: 'hour' | 'day' = 'hour') =>
        m.metering.usage(T, { meters: [meter], granularity, from: h(0), to: h(5) }).then((rows) => rows.map((r) => [r.bucket, r.value]));
      assert.deepEqual(await q('storage_gb'), [[h(1), 7], [h(2), 4]]);
      assert.deepEqual(await q('active_users'), [[h(1), 2]]);
      assert.deepEqual(await q('seats'), [[h(1), 12]]);
      assert.deepEqual(await q('tokens'), [[h(1), 4]]);
      // Late events (arriving after others, timestamped earlier) land in their own buckets.
      await m.metering.recordBatch(T, [
        { event_id: 'late-s', meter: 'storage_gb', quantity: 9, timestamp: h(1, 0) },
        { event_id: 'late-l', meter: 'seats', quantity: 99, timestamp: h(1, 0) },
        { event_id: 'late-u', meter: 'active_users', timestamp: h(1, 0), properties: { user_id: 'cid' } },
        { event_id: 'late-t', meter: 'tokens', quantity: 6, timestamp: h(0, 30) },
      ]);
      assert.deepEqual(await q('storage_gb'), [[h(1), 9], [h(2), 4]]);
      assert.deepEqual(await q('seats'), [[h(1), 12]], 'latest is by event time, not arrival');
      assert.deepEqual(await q('active_users'), [[h(1), 3]]);
      assert.deepEqual(await q('tokens'), [[h(0), 6], [h(1), 4]]);
      assert.deepEqual(await q('tokens', 'day'), [[new Date(Date.UTC(2026, 10, 20)).toISOString(), 10]]);
      await assert.rejects(m.metering.usage(T, { granularity: 'week' as never }), isCode('invalid_usage_query'));
      await assert.rejects(m.metering.usage(T, { from: h(3), to: h(2) }), isCode('invalid_usage_query'));
      await assert.rejects(m.metering.usage(T, { from: '2000-01-01', granularity: 'minute' }), isCode('invalid_usage_query'));
      await assert.rejects(m.metering.usage(T, { meters: ['nope'] }), isCode('unknown_meter'));
    } finally {
      await m.close();
    }
  });

  test('tenant A never reads B usage: the query API, and RLS underneath it', async () => {
    await f.metering.record(B, { event_id: 'b-secret', meter: 'tokens', quantity: 1000 });
    const aRows = await f.metering.usage(A, {});
    assert.ok(aRows.length > 0);
    assert.ok(aRows.every((r) => r.tenant_id === A));
    assert.equal(aRows.filter((r) => r.meter === 'tokens').reduce((s, r) => s + r.value, 0), 35);
    const raw = await f.t.db.forTenant(A).query(`SELECT count(*)::int AS n FROM tw_usage_events WHERE tenant_id = $1`, [B]);
    assert.equal(raw.rows[0]?.n, 0);
    const unscoped = await f.t.db.forTenant(A).query(`SELECT DISTINCT tenant_id FROM tw_usage_events`);
    assert.deepEqual(unscoped.rows.map((r) => r.tenant_id), [A]);
    await assert.rejects(
      f.t.db.forTenant(A).query(`INSERT INTO tw_usage_events (tenant_id, event_id, meter, quantity, occurred_at) VALUES ($1, 'forged', 'tokens', 1, now())`, [B]),
      isCode('row_security_violation'),
    );
    // Outbox and counters are tenant tables too.
    const outbox = await f.t.db.forTenant(A).query(`SELECT count(*)::int AS n FROM tw_outbox WHERE tenant_id = $1`, [B]);
    assert.equal(outbox.rows[0]?.n, 0);
    // Admins see both tenants.
    const all = await f.metering.adminUsage({ meters: ['tokens'], granularity: 'month' });
    assert.deepEqual(new Set(all.map((r) => r.tenant_id)), new Set([A, B]));
    const onlyB = await f.metering.adminUsage({ meters: ['tokens'], granularity: 'month', tenantId: B });
    assert.deepEqual(onlyB.map((r) => [r.tenant_id, r.value]), [[B, 1000]]);
  });

  test('concurrent batches with the same ids: each id is accepted exactly once, in its own tenant only', async () => {
    // The write first tries an anti-join + plain INSERT; a batch that races another one over the same ids hits
    // the unique key and is redone with ON CONFLICT. Either way every id is stored once and answered once.
    // Tenants of their own (the other tests sum A's and B's tokens); last, as adminUsage lists every tenant.
    const A = (await f.t.db.tenants.create({ slug: 'race-a', name: 'Race A' })).id;
    const B = (await f.t.db.tenants.create({ slug: 'race-b', name: 'Race B' })).id;
    const ids = Array.from({ length: 300 }, (_, i) => `race-${i}`);
    const batches = Array.from({ length: 10 }, (_, k) => ids.map((_, i) => ({ event_id: ids[(i * 7 + k * 31) % ids.length] as string, meter: 'tokens', quantity: 1 })));
    const results = await Promise.all([...batches.map((b) => f.metering.recordBatch(A, b)), f.metering.recordBatch(B, batches[0] as typeof batches[0])]);
    const a = results.slice(0, -1);
    assert.equal(a.reduce((n, r) => n + r.accepted, 0), ids.length);
    const acceptedIds = a.flatMap((r) => r.results.filter((x) => !x.duplicate).map((x) => x.event_id)).sort();
    assert.deepEqual(acceptedIds, [...ids].sort());
    for (const r of a) assert.equal(r.results.length, ids.length);
    assert.equal(results.at(-1)?.accepted, ids.length);
    const stored = async (tid: TenantId) => Number((await f.t.db.forTenant(tid).query(`SELECT count(*) AS n FROM tw_usage_events WHERE tenant_id = $1 AND event_id LIKE 'race-%'`, [tid])).rows[0]?.n);
    assert.equal(await stored(A), ids.length);
    assert.equal(await stored(B), ids.length);
  });

  test('CSV export: header, one line per bucket, quoting', () => {
    const csv = usageToCsv([
      { tenant_id: 't', meter: 'tokens', aggregation: 'sum', bucket: '2026-11-01T00:00:00.000Z', value: 1.5, events: 2 },
      { tenant_id: 't', meter: 'a,b', aggregation: 'sum', bucket: '=cmd', value: 0, events: 0 },
    ]);
    assert.equal(csv, "tenant_id,meter,aggregation,bucket,value,events\r\nt,tokens,sum,2026-11-01T00:00:00.000Z,1.5,2\r\nt,\"a,b\",sum,'=cmd,0,0\r\n");
  });
});

describe('buffered events and a flush the database cannot take', () => {
  let f: MeteringFixture;
  let A: TenantId;
  before(async () => {
    // A short statement timeout: the flush below waits on a lock and is cancelled, as when the server is down.
    f = await startMetering({}, { statementTimeoutMs: 500 });
    A = (await f.t.db.tenants.create({ slug: 'kept', name: 'Kept' })).id;
  });
  after(() => f.close());

  test('a failed flush keeps its events (and request counts) for the next flush, which writes them once', async () => {
    const su = new pg.Client({ connectionString: f.t.database.url });
    await su.connect();
    const sql = `SELECT meter, sum(quantity)::text AS n FROM tw_usage_events WHERE tenant_id = $1 GROUP BY meter ORDER BY meter`;
    const stored = async (run: (q: string, p: unknown[]) => Promise<{ rows: Array<{ meter: string; n: string }> }>) => (await run(sql, [A])).rows.map((r) => `${r.meter}=${r.n}`);
    const mine = (q: string, p: unknown[]) => f.t.db.forTenant(A).query<{ meter: string; n: string }>(q, p as never);
    try {
      await su.query('BEGIN');
      await su.query('LOCK TABLE tw_usage_events IN ACCESS EXCLUSIVE MODE');
      for (let i = 0; i < 3; i++) f.metering.enqueue(A, { event_id: `kept-${i}`, meter: 'invoices.created' });
      f.metering.countRequest(A, { route: '/x', status: 200 });
      f.metering.countRequest(A, { route: '/x', status: 200 });
      // The batch waits for the lock until statement_timeout cancels it: nothing of it is written.
      await f.metering.flush();
      assert.deepEqual(await stored((q, p) => su.query(q, p)), []);
      await su.query('COMMIT');
    } finally {
      await su.end();
    }
    await f.metering.flush();
    assert.deepEqual(await stored(mine), ['api_requests=2', 'invoices.created=3']);
    // Written once: a further flush has nothing left to write.
    await f.metering.flush();
    assert.deepEqual(await stored(mine), ['api_requests=2', 'invoices.created=3']);
  });
});
