import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isTenantwallError, type LimitExceeded, type TenantId } from '../../src/index.ts';
import { Metering, defineMetering, planLimits } from '../../src/metering/index.ts';
import { limitOf, resolveLimits } from '../../src/db/limits.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { migrations, schema } from '../metering/fixture.ts';

const spec = {
  meters: [],
  plans: {
    free: { database: { statementTimeoutMs: 150, lockTimeoutMs: 10, workMem: '1MB' } },
    pro: { database: { statementTimeoutMs: 60_000, workMem: '64MB' } },
  },
  defaultPlan: 'free',
};
// Long enough that the free plan's 150 ms always cancels it, short enough for the pro tenant to wait for.
const HEAVY = 'SELECT count(*)::int AS n FROM pg_sleep(0.5), generate_series(1, 1000)';
const SETTINGS = `SELECT current_setting('statement_timeout') AS st, current_setting('lock_timeout') AS lt, current_setting('work_mem') AS wm`;

function planLimitError(limit: string) {
  return (e: unknown) => isTenantwallError(e, 'plan_limit_exceeded') && e.status === 422 && e.details.limit === limit;
}

for (const scopeMode of ['implicit', 'explicit'] as const) {
  describe(`per-plan database limits (${scopeMode} mode)`, () => {
    let t: TestTenantwall;
    let metering: Metering | undefined;
    let free: TenantId;
    let pro: TenantId;
    const events: LimitExceeded[] = [];
    let baseline: Record<string, string>;

    before(async () => {
      // One application connection: both tenants' statements run on the same server session, one after the other.
      t = await createTestTenantwall(schema, migrations, {
        scopeMode,
        poolSize: 1,
        limits: planLimits(() => metering),
        onLimitExceeded: (e) => events.push(e),
      });
      metering = new Metering(t.db, { spec: defineMetering(spec) });
      free = (await t.db.tenants.create({ slug: 'free', name: 'Free' })).id;
      pro = (await t.db.tenants.create({ slug: 'pro', name: 'Pro' })).id;
      await metering.setPlan(pro, 'pro');
      baseline = (await t.db.dangerouslyRawAppPool().query(SETTINGS)).rows[0];
    });
    after(async () => {
      await metering?.close();
      await t.close();
    });

    test("a free tenant's heavy query is cancelled by its plan, a pro tenant's same query completes, and the connection keeps neither setting", async () => {
      const raw = t.db.dangerouslyRawAppPool();
      const before = t.db.limitsExceeded(free).statement_timeout;
      await assert.rejects(t.db.forTenant(free).query(HEAVY), planLimitError('statement_timeout'));
      assert.deepEqual((await raw.query(SETTINGS)).rows[0], baseline);
      assert.deepEqual((await t.db.forTenant(pro).query(HEAVY)).rows, [{ n: 1000 }]);
      assert.deepEqual((await raw.query(SETTINGS)).rows[0], baseline);
      assert.equal(t.db.limitsExceeded(free).statement_timeout, before + 1);
      assert.equal(t.db.limitsExceeded(pro).statement_timeout, 0);
      assert.deepEqual(events.at(-1), { tenantId: free, limit: 'statement_timeout' });
    });

    test('each statement and transaction runs with its own plan settings, and the next one does not inherit them', async () => {
      assert.deepEqual((await t.db.forTenant(free).query(SETTINGS)).rows[0], { st: '150ms', lt: '10ms', wm: '1MB' });
      assert.deepEqual((await t.db.forTenant(pro).query(SETTINGS)).rows[0], { st: '1min', lt: baseline.lt, wm: '64MB' });
      const inTx = await t.db.forTenant(free).transaction(async (tx) => (await tx.query(SETTINGS)).rows[0]);
      assert.deepEqual(inTx, { st: '150ms', lt: '10ms', wm: '1MB' });
      assert.deepEqual((await t.db.dangerouslyRawAppPool().query(SETTINGS)).rows[0], baseline);
      // Explicit limits of a scope win over the plan's.
      const own = await t.db.forTenant(free, { limits: { statementTimeoutMs: 2000 } }).query(SETTINGS);
      assert.deepEqual(own.rows[0], { st: '2s', lt: baseline.lt, wm: baseline.wm });
    });

    test("a plan's timeout cancels a statement inside an interactive transaction, which rolls back", async () => {
      await assert.rejects(
        t.db.forTenant(free).transaction(async (tx) => {
          await tx.query(`INSERT INTO invoices (tenant_id, customer) VALUES ($1, 'lost')`, [free]);
          await tx.query(HEAVY);
        }),
        planLimitError('statement_timeout'),
      );
      const n = await t.db.forTenant(free).query(`SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1`, [free]);
      assert.equal(n.rows[0]?.n, 0);
    });

    test("the plan's lock_timeout answers plan_limit_exceeded too", async () => {
      await t.db.dangerouslyCrossTenant().transaction(async (owner) => {
        await owner.query('SELECT pg_advisory_xact_lock(4217)');
        await assert.rejects(t.db.forTenant(free).query('SELECT pg_advisory_xact_lock(4217)'), planLimitError('lock_timeout'));
      });
      assert.ok(t.db.limitsExceeded(free).lock_timeout >= 1);
    });

    test('idle_in_transaction_session_timeout ends an idle transaction: plan_limit_exceeded, no crash, the pool recovers', async () => {
      const admin = t.db.dangerouslyCrossTenant();
      const r = t.db.forTenant(free, { limits: { idleInTransactionSessionTimeoutMs: 50 } }).transaction(async (tx) => {
        const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid;
        // Idle in the transaction until the server has ended the session (it sends the error while nobody queries).
        while ((await admin.query('SELECT 1 FROM pg_stat_activity WHERE pid = $1', [pid])).rowCount !== 0) await new Promise((r) => setTimeout(r, 20));
        await tx.query('SELECT 1');
      });
      await assert.rejects(r, planLimitError('idle_in_transaction_session_timeout'));
      assert.deepEqual((await t.db.forTenant(pro).query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    });

    test('a timeout the tenant has no plan limit for stays statement_timeout', async () => {
      const r = t.db.forTenant(pro, { limits: { workMem: '2MB' } }).transaction(async (tx) => {
        await tx.query(`SET LOCAL statement_timeout = '10ms'`);
        await tx.query('SELECT pg_sleep(0.3)');
      });
      await assert.rejects(r, (e: unknown) => isTenantwallError(e, 'statement_timeout'));
    });
  });
}

describe('database limits are validated', () => {
  test('unknown keys, bad units and out-of-range values are refused naming the field', () => {
    assert.throws(() => defineMetering({ ...spec, plans: { free: { database: { statementTimeout: 5 } as never } } }), (e: unknown) => isTenantwallError(e, 'config_invalid') && /plan free database.statementTimeout/.test(e.message));
    assert.throws(() => defineMetering({ ...spec, plans: { free: { database: { workMem: '4 MB' } } } }), /workMem/);
    assert.throws(() => defineMetering({ ...spec, plans: { free: { database: { lockTimeoutMs: 0 } } } }), /lockTimeoutMs/);
    assert.throws(() => defineMetering({ ...spec, plans: { free: { database: { workMem: 10 } } } }), /64 kB/);
  });
});

describe('which limit ended a transaction behind a pooler', () => {
  // PgBouncer's own FATAL when the server connection of a client's transaction ended (here: the idle limit).
  const crashed = Object.assign(new Error('server conn crashed?'), { code: '08P01', severity: 'FATAL' });
  const limits = resolveLimits({ idleInTransactionSessionTimeoutMs: 50 }, 'limits');
  test('idle at least the limit before the statement: the idle limit; shorter, or without a pooler: a lost connection', () => {
    assert.equal(limitOf(crashed, limits, { pooled: true, idleMs: 80 }), 'idle_in_transaction_session_timeout');
    assert.equal(limitOf(crashed, limits, { pooled: true, idleMs: 50 }), 'idle_in_transaction_session_timeout');
    assert.equal(limitOf(crashed, limits, { pooled: true, idleMs: 10 }), undefined);
    assert.equal(limitOf(crashed, limits, { pooled: false, idleMs: 80 }), undefined);
    assert.equal(limitOf(crashed, resolveLimits({ statementTimeoutMs: 50 }, 'limits'), { pooled: true, idleMs: 80 }), undefined);
    // The server's own error needs no guess.
    assert.equal(limitOf(Object.assign(new Error('terminating connection due to idle-in-transaction timeout'), { code: '25P03' }), limits), 'idle_in_transaction_session_timeout');
  });
});
