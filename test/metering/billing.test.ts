import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type TenantId, periodBounds } from '../../src/index.ts';
import { startMetering, type MeteringFixture } from './fixture.ts';

type Closed = { plan: string; plans: Array<{ plan: string; from: string; to: string }>; period_start: string; period_end: string };

describe('period.closed reports the plan in force during the period', () => {
  let f: MeteringFixture;
  before(async () => {
    f = await startMetering();
  });
  after(() => f.close());

  const closed = async (tid: TenantId, start: Date): Promise<Closed> => {
    const { rows } = await f.t.db
      .dangerouslyCrossTenant()
      .query<{ payload: Closed }>(`SELECT payload FROM tw_outbox WHERE tenant_id = $1 AND id = $2`, [tid, `period.closed:${tid}:hour:${start.toISOString()}`]);
    assert.ok(rows[0], 'the period.closed event was written');
    return rows[0].payload;
  };

  test('a plan change after the period ended (before the close) does not rewrite the closed period', async () => {
    const T = (await f.t.db.tenants.create({ slug: 'late-switch', name: 'Late' })).id;
    // The tenant was on the default plan (free) during the previous hour; it switches now, before that hour is closed.
    const previous = periodBounds('hour', new Date(Date.now() - 3_600_000));
    await f.metering.setPlan(T, 'pro');
    assert.deepEqual(await f.metering.closePeriod({ period: 'hour', at: previous.start, tenantIds: [T] }), { written: 1, existing: 0 });
    const e = await closed(T, previous.start);
    assert.equal(e.plan, 'free');
    assert.deepEqual(e.plans, [{ plan: 'free', from: previous.start.toISOString(), to: previous.end.toISOString() }]);
  });

  test('a change inside the period: the plan at its end, and every plan of the period with its span', async () => {
    const T = (await f.t.db.tenants.create({ slug: 'mid-switch', name: 'Mid' })).id;
    const current = periodBounds('hour', new Date());
    await f.metering.setPlan(T, 'pro');
    await f.metering.setPlan(T, 'soft');
    await f.metering.setPlan(T, 'pro');
    await f.metering.closePeriod({ period: 'hour', at: current.start, tenantIds: [T] });
    const e = await closed(T, current.start);
    assert.equal(e.plan, 'pro');
    assert.deepEqual(
      e.plans.map((p) => p.plan),
      ['free', 'pro', 'soft', 'pro'],
    );
    // The spans tile the period: each starts where the previous ended.
    assert.equal(e.plans[0]?.from, current.start.toISOString());
    assert.equal(e.plans.at(-1)?.to, current.end.toISOString());
    for (let i = 1; i < e.plans.length; i++) assert.equal(e.plans[i]?.from, e.plans[i - 1]?.to);
  });
});
