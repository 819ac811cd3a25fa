import assert from 'node:assert/strict';
import { test } from 'node:test';
import { METERING_FUNCTION_NAMES, type Params, type TenantId, createGuard, defineSchema, meteringTables } from '../../src/index.ts';
import { schema, startMetering } from './fixture.ts';

/**
 * Every statement metering sends in tenant scope passes the statement guard when the guard knows the metering
 * tables (the reference service's setup, service/guard.ts): a refusal would turn into a 500.
 */
test('metering statements pass the statement guard', async () => {
  const inner = createGuard(defineSchema({ tables: [...schema.tables, ...meteringTables] }), {
    allowRelations: ['tenants'],
    allowFunctions: [...METERING_FUNCTION_NAMES],
  });
  const refused: string[] = [];
  let checked = 0;
  const guard = {
    ready: () => inner.ready(),
    check(sql: string, params: Params, tenantId: TenantId) {
      try {
        inner.check(sql, params, tenantId);
        checked++;
      } catch (err) {
        refused.push(`${sql.replace(/\s+/g, ' ').slice(0, 160)} -> ${(err as Error).message.slice(0, 200)}`);
        throw err;
      }
    },
  };
  const f = await startMetering({ rateLimitFailure: 'closed' }, { guard });
  try {
    const T = (await f.t.db.tenants.create({ slug: 'g', name: 'G' })).id;
    const ops: Array<[string, () => Promise<unknown>]> = [
      ['record', () => f.metering.recordBatch(T, [{ event_id: 'g1', meter: 'tokens', quantity: 2 }, { event_id: 'g2', meter: 'active_users', properties: { user_id: 'u' } }])],
      ['usage', () => f.metering.usage(T, { granularity: 'hour' })],
      ['setPlan', () => f.metering.setPlan(T, 'pro')],
      ['consume', () => f.metering.consume(T, 'invoices', 3)],
      ['release', () => f.metering.release(T, 'invoices', new Date(Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), 1)), 1)],
      ['rateLimit', () => f.metering.rateLimit(T, 'key')],
      ['closePeriod', () => f.metering.closePeriod({ at: new Date(), tenantIds: [T] })],
    ];
    const failed: string[] = [];
    for (const [name, op] of ops) await op().catch((err: unknown) => failed.push(`${name}: ${(err as Error).message.slice(0, 200)}`));
    assert.deepEqual(refused, []);
    assert.deepEqual(failed, []);
    assert.ok(checked >= ops.length);
  } finally {
    await f.close();
  }
});
