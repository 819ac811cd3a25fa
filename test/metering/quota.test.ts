import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TenantwallError, type TenantId } from '../../src/index.ts';
import { Metering } from '../../src/metering/index.ts';
import { spec, startMetering, type MeteringFixture } from './fixture.ts';

describe('quotas: hard limits under concurrency, soft warnings, thresholds, plan changes', () => {
  let f: MeteringFixture;
  const tenant = async (slug: string) => (await f.t.db.tenants.create({ slug, name: slug })).id;
  const outbox = async (tid: TenantId, type: string) =>
    (await f.t.db.forTenant(tid).query(`SELECT id, payload FROM tw_outbox WHERE tenant_id = $1 AND type = $2 ORDER BY id`, [tid, type])).rows;
  before(async () => {
    // 300 requests queue for 12 connections: on a loaded machine the default 5 s wait for a connection is too short.
    f = await startMetering({ quotaShards: 8 }, { poolSize: 12, connectTimeoutMs: 60_000 });
  });
  after(() => f.close());

  test('N concurrent requests against a hard limit L admit exactly L, never more', async () => {
    for (const [n, amount] of [[300, 1], [120, 3]] as const) {
      const T = await tenant(`hard-${n}`);
      await f.metering.setPlan(T, 'pro'); // L = 50
      const decisions = await Promise.all(Array.from({ length: n }, () => f.metering.consume(T, 'invoices', amount)));
      const admitted = decisions.filter((d) => d?.admitted).length * amount;
      assert.ok(admitted <= 50, `admitted ${admitted} units for a limit of 50`);
      // 50 is reachable with unit requests; with 3-unit requests at most 48.
      assert.equal(admitted, amount === 1 ? 50 : 48);
      const stored = await f.t.db.forTenant(T).query(`SELECT sum(used)::int AS used, sum(cap)::int AS cap, count(*)::int AS shards FROM tw_quota_counters WHERE tenant_id = $1`, [T]);
      assert.deepEqual(stored.rows[0], { used: admitted, cap: 50, shards: 8 });
      const refused = decisions.find((d) => d && !d.admitted);
      assert.ok(refused);
      assert.equal(refused.limit, 50);
      assert.equal(refused.remaining, 50 - admitted);
      assert.ok(refused.resetsAt > new Date());
    }
  });

  test('requireQuota refuses with quota_exceeded, used/limit/resets_at and a retry hint', async () => {
    const T = await tenant('require');
    for (let i = 0; i < 5; i++) await f.metering.requireQuota(T, 'invoices');
    await assert.rejects(f.metering.requireQuota(T, 'invoices'), (e: unknown) => {
      assert.ok(e instanceof TenantwallError);
      assert.equal(e.code, 'quota_exceeded');
      assert.equal(e.status, 429);
      assert.equal(e.details.used, 5);
      assert.equal(e.details.limit, 5);
      assert.match(String(e.details.resets_at), /^\d{4}-\d{2}-01T00:00:00\.000Z$/);
      assert.ok(Number(e.details.retry_after) >= 1);
      return true;
    });
    // An unknown quota name is unlimited (the plan does not meter it).
    assert.equal(await f.metering.consume(T, 'not_in_plan'), undefined);
  });

  test('soft quotas admit past the limit, warn, and emit each threshold event exactly once', async () => {
    const T = await tenant('soft');
    await f.metering.setPlan(T, 'soft'); // limit 10, thresholds 80/100
    const decisions = await Promise.all(Array.from({ length: 25 }, () => f.metering.consume(T, 'invoices')));
    assert.ok(decisions.every((d) => d?.admitted));
    const last = await f.metering.status(T, 'invoices');
    assert.equal(last?.used, 25);
    assert.equal(last?.warning, true);
    const events = await outbox(T, 'quota.threshold_crossed');
    assert.deepEqual(events.map((e) => e.payload.threshold_percent).sort(), [100, 80]);
    for (const e of events) {
      assert.equal(e.payload.quota, 'invoices');
      assert.equal(e.payload.limit, 10);
      assert.equal(e.payload.enforcement, 'soft');
    }
  });

  test('hard quotas emit 80% and 100% thresholds once', async () => {
    const T = await tenant('hard-thresholds');
    await Promise.all(Array.from({ length: 9 }, () => f.metering.consume(T, 'invoices'))); // free: L = 5
    const events = await outbox(T, 'quota.threshold_crossed');
    assert.deepEqual(events.map((e) => e.payload.threshold_percent).sort(), [100, 80]);
  });

  test('a plan change applies at once (also in a process with a stale plan cache) and writes plan.changed', async () => {
    const T = await tenant('upgrade');
    const other = new Metering(f.t.db, { spec }); // another process: caches the plan for 5 s
    try {
      for (let i = 0; i < 5; i++) assert.equal((await other.consume(T, 'invoices'))?.admitted, true);
      assert.equal((await other.consume(T, 'invoices'))?.admitted, false);
      assert.deepEqual(await f.metering.setPlan(T, 'pro'), { changed: true, version: 1 });
      // `other` still believes the tenant is on free, but the hard caps live in the database.
      const d = await other.consume(T, 'invoices');
      assert.equal(d?.admitted, true);
      assert.equal(d?.limit, 50);
      assert.equal((await f.metering.planOf(T)).name, 'pro');
      assert.deepEqual(await f.metering.setPlan(T, 'pro'), { changed: false, version: 1 });
      assert.deepEqual(await f.metering.setPlan(T, 'free'), { changed: true, version: 2 });
      assert.equal((await f.metering.consume(T, 'invoices'))?.admitted, false, 'downgrade below usage refuses');
      const changes = await outbox(T, 'plan.changed');
      assert.deepEqual(changes.map((c) => [c.payload.previous_plan, c.payload.plan, c.payload.version]), [['free', 'pro', 1], ['pro', 'free', 2]]);
      await assert.rejects(f.metering.setPlan(T, 'platinum'), (e: unknown) => e instanceof TenantwallError && e.code === 'unknown_plan');
    } finally {
      await other.close();
    }
  });

  test('release gives units back', async () => {
    const T = await tenant('release');
    const d = await f.metering.consume(T, 'invoices', 5);
    assert.equal(d?.admitted, true);
    assert.equal((await f.metering.consume(T, 'invoices'))?.admitted, false);
    assert.equal(await f.metering.release(T, 'invoices', d!.periodStart, 2), 2);
    assert.equal((await f.metering.consume(T, 'invoices', 2))?.admitted, true);
    assert.equal((await f.metering.consume(T, 'invoices'))?.admitted, false);
  });
});
