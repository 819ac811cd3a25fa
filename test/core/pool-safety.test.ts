/**
 * A failed unit of work must never leave its tenant on a pooled connection. Pool of ONE connection so every
 * unit of work reuses the connection the previous one failed on.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import type { TenantId } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

type Failure = 'sql_error' | 'timeout' | 'throw_in_tx' | 'sql_error_in_tx' | 'bad_param' | 'none';
const FAILURES: Failure[] = ['sql_error', 'timeout', 'throw_in_tx', 'sql_error_in_tx', 'bad_param', 'none'];

for (const scopeMode of ['implicit', 'explicit'] as const) {
  describe(`pool safety (${scopeMode} mode)`, () => {
    let t: TestTenantwall;
    const tenants: TenantId[] = [];
    before(async () => {
      t = await createTestTenantwall(seedSchema, seedMigrations, { scopeMode, poolSize: 1, statementTimeoutMs: 200 });
      for (const slug of ['a', 'b', 'c']) tenants.push((await t.db.tenants.create({ slug, name: slug })).id);
      for (const [i, id] of tenants.entries()) {
        for (let k = 0; k <= i; k++) await t.db.forTenant(id).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, $2, 1)`, [id, `${i}`]);
      }
    });
    after(() => t.close());

    async function fail(tenant: TenantId, how: Failure): Promise<void> {
      const scope = t.db.forTenant(tenant);
      switch (how) {
        case 'sql_error':
          await assert.rejects(scope.query('SELECT 1/0 FROM invoices'));
          return;
        case 'timeout':
          await assert.rejects(scope.query('SELECT pg_sleep(1) FROM invoices LIMIT 1'), (e: { code?: string }) => e.code === 'statement_timeout');
          return;
        case 'throw_in_tx':
          await assert.rejects(scope.transaction(async (tx) => {
            await tx.query('SELECT * FROM invoices');
            throw new Error('boom');
          }));
          return;
        case 'sql_error_in_tx':
          await assert.rejects(scope.transaction(async (tx) => {
            await tx.query('SELECT nope FROM invoices');
          }));
          return;
        case 'bad_param':
          await assert.rejects(scope.query('SELECT * FROM invoices WHERE amount_cents = $1', ['not a number']));
          return;
        case 'none':
          await scope.query('SELECT * FROM invoices');
      }
    }

    /**
     * What the next borrower of the (single) connection observes. Without a tenant the observation is a lone
     * simple-protocol statement, so `now() <> statement_timestamp()` reveals a transaction left open before it.
     */
    async function observe(tenant: TenantId | null): Promise<{ setting: string; tenants: string[]; inTx?: boolean }> {
      const sql = `SELECT coalesce(current_setting('tenantwall.tenant_id', true), '') AS setting,
        coalesce((SELECT array_agg(DISTINCT tenant_id::text) FROM invoices), '{}') AS tenants,
        now() <> statement_timestamp() AS in_tx`;
      if (tenant === null) {
        const row = (await t.db.dangerouslyRawAppPool().query(sql)).rows[0] as { setting: string; tenants: string[]; in_tx: boolean };
        return { setting: row.setting, tenants: row.tenants, inTx: row.in_tx };
      }
      const row = (await t.db.forTenant(tenant).query(sql)).rows[0] as { setting: string; tenants: string[] };
      return { setting: row.setting, tenants: row.tenants };
    }

    test('after each kind of failure for A, B sees only B and no tenant sees nothing', async () => {
      const [A, B] = tenants as [TenantId, TenantId];
      for (const how of FAILURES) {
        await fail(A, how);
        assert.deepEqual(await observe(B), { setting: B, tenants: [B] }, `after ${how}`);
        await fail(A, how);
        assert.deepEqual(await observe(null), { setting: '', tenants: [], inTx: false }, `no tenant after ${how}`);
      }
    });

    test('random interleavings of failures and observations never show another or a stale tenant', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.array(fc.record({ tenant: fc.integer({ min: 0, max: 2 }), how: fc.constantFrom(...FAILURES), observer: fc.integer({ min: -1, max: 2 }) }), { minLength: 1, maxLength: 8 }),
          async (steps) => {
            for (const s of steps) {
              await fail(tenants[s.tenant] as TenantId, s.how);
              const who = s.observer === -1 ? null : (tenants[s.observer] as TenantId);
              const seen = await observe(who);
              assert.deepEqual(seen, who === null ? { setting: '', tenants: [], inTx: false } : { setting: who, tenants: [who] });
            }
          },
        ),
        { numRuns: 25 },
      );
    });

    test('concurrent units of work for different tenants on a small pool stay separated', async () => {
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) => {
          const tenant = tenants[i % 3] as TenantId;
          if (i % 7 === 0) return fail(tenant, 'sql_error').then(() => true);
          return t.db.forTenant(tenant).query('SELECT DISTINCT tenant_id FROM invoices').then((r) => r.rows.length === 1 && r.rows[0]?.tenant_id === tenant);
        }),
      );
      assert.ok(results.every(Boolean));
    });
  });
}
