import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { TENANT_KEY_TYPES, TenantId, TenantwallError, runWithTenant, type TenantKeyType } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { NOT_A_TENANT_ID } from '../helpers/tenant-key.ts';

for (const scopeMode of ['implicit', 'explicit'] as const) {
  describe(`tenant scope (${scopeMode} mode)`, () => {
    let t: TestTenantwall;
    let A: TenantId;
    let B: TenantId;
    before(async () => {
      t = await createTestTenantwall(seedSchema, seedMigrations, { scopeMode, poolSize: 1 });
      A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
      B = (await t.db.tenants.create({ slug: 'b', name: 'B' })).id;
      await t.db.forTenant(A).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'a1', 1), ($1, 'a2', 2)`, [A]);
      await t.db.forTenant(B).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'b1', 3)`, [B]);
    });
    after(() => t.close());

    test('a statement sees its tenant setting, and the setting is gone after it (pool of one connection)', async () => {
      const r = await t.db.forTenant(A).query(`SELECT current_setting('tenantwall.tenant_id', true) AS s, count(*)::int AS n FROM invoices`);
      assert.deepEqual(r.rows, [{ s: A, n: 2 }]);
      const raw = await t.db.dangerouslyRawAppPool().query(`SELECT coalesce(current_setting('tenantwall.tenant_id', true), '') AS s, (SELECT count(*)::int FROM invoices) AS n, pg_current_xact_id_if_assigned() AS x`);
      assert.deepEqual(raw.rows, [{ s: '', n: 0, x: null }]);
      // No transaction left open on the connection.
      const state = await t.db.dangerouslyRawAppPool().query(`SELECT now() = statement_timestamp() AS fresh`);
      assert.equal(state.rows[0]?.fresh, true);
    });

    test('results are exactly those of the caller statement (fields, rows, rowCount, command)', async () => {
      const r = await t.db.forTenant(A).query<{ customer: string }>('SELECT customer FROM invoices ORDER BY customer');
      assert.deepEqual(r.rows, [{ customer: 'a1' }, { customer: 'a2' }]);
      assert.equal(r.rowCount, 2);
      assert.equal(r.command, 'SELECT');
      assert.deepEqual(r.fields.map((f) => f.name), ['customer']);
      const u = await t.db.forTenant(A).query(`UPDATE invoices SET amount_cents = amount_cents WHERE tenant_id = $1`, [A]);
      assert.equal(u.command, 'UPDATE');
      assert.equal(u.rowCount, 2);
      const none = await t.db.forTenant(A).query('SELECT 1 WHERE false');
      assert.equal(none.rowCount, 0);
    });

    test('an interactive transaction sets the tenant first, commits on success and rolls back on throw', async () => {
      const n = await t.db.forTenant(B).transaction(async (tx) => {
        await tx.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'b2', 4)`, [B]);
        return (await tx.query('SELECT count(*)::int AS n FROM invoices')).rows[0]?.n;
      });
      assert.equal(n, 2);
      await assert.rejects(
        t.db.forTenant(B).transaction(async (tx) => {
          await tx.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'lost', 5)`, [B]);
          throw new Error('client-side failure');
        }),
        /client-side failure/,
      );
      const rows = await t.db.forTenant(B).query(`SELECT customer FROM invoices ORDER BY customer`);
      assert.deepEqual(rows.rows.map((r) => r.customer), ['b1', 'b2']);
    });

    test('a transaction handle is dead once its transaction ended', async () => {
      let leaked: { query: (sql: string) => Promise<unknown> } | undefined;
      await t.db.forTenant(A).transaction(async (tx) => {
        leaked = tx;
      });
      await assert.rejects(leaked!.query('SELECT 1'), (e: unknown) => e instanceof TenantwallError && e.code === 'tenant_context_missing');
    });

    test('implicit context: db.query refuses without a tenant and is scoped inside runWithTenant', async () => {
      await assert.rejects(t.db.query('SELECT * FROM invoices'), (e: unknown) => e instanceof TenantwallError && e.code === 'tenant_context_missing');
      await assert.rejects(t.db.transaction(async () => 1), (e: unknown) => e instanceof TenantwallError && e.code === 'tenant_context_missing');
      const n = await runWithTenant(A, async () => (await t.db.query('SELECT count(*)::int AS n FROM invoices')).rows[0]?.n);
      assert.equal(n, 2);
      // Inside a transaction the implicit tenant is the transaction's.
      const inner = await t.db.forTenant(B).transaction(async () => t.db.currentTenantId());
      assert.equal(inner, B);
    });

    test('handles are immutable', () => {
      const scope = t.db.forTenant(A);
      assert.ok(Object.isFrozen(scope));
      assert.throws(() => {
        (scope as { tenantId: string }).tenantId = B;
      }, TypeError);
    });
  });
}

test('TenantId validates and normalises', () => {
  const id = TenantId.generate('uuid');
  assert.equal(TenantId.parse(id.toUpperCase(), 'uuid'), id);
  const refused = (bad: unknown, type: TenantKeyType) =>
    assert.throws(() => TenantId.parse(bad, type), (e: unknown) => e instanceof TenantwallError && e.code === 'invalid_tenant_id', `${type} ${String(bad)}`);
  for (const bad of ['', 'x', '1', `${id}x`, ` ${id}`, 42, null, undefined, {}, `${id.slice(0, 35)}g`]) refused(bad, 'uuid');
  assert.equal(TenantId.parse('42', 'bigint'), '42');
  assert.equal(TenantId.parse(42, 'bigint'), '42');
  assert.equal(TenantId.parse(9223372036854775807n, 'bigint'), '9223372036854775807');
  assert.match(TenantId.generate('bigint'), /^[1-9][0-9]*$/);
  for (const bad of ['', 'x', '01', '-1', '+1', '1.0', ' 1', '9223372036854775808', 1.5, -1, 2 ** 53, null, id]) refused(bad, 'bigint');
  assert.equal(TenantId.parse('Acme.EU_1-x', 'text'), 'Acme.EU_1-x');
  assert.equal(TenantId.is(TenantId.generate('text'), 'text'), true);
  for (const bad of ['', ' a', 'a ', '-a', '.a', 'a b', "a'b", 'é', 'x'.repeat(64), 42, null]) refused(bad, 'text');
  for (const bad of NOT_A_TENANT_ID) for (const type of TENANT_KEY_TYPES) refused(bad, type);
});
