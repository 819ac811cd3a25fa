/**
 * Layer 1 alone: the library (tenant scope + guard) with row-level security switched OFF on every tenant table.
 * Whatever reaches the database through a tenant handle must still touch only that tenant's rows.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type TenantId, TenantwallError, runWithTenant } from '../../src/index.ts';
import { createGuard } from '../../src/guard/guard.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';

let t: TestTenantwall;
let A: TenantId;
let B: TenantId;
const isCode = (code: string) => (e: unknown) => e instanceof TenantwallError && e.code === code;

before(async () => {
  t = await createTestTenantwall(seedSchema, seedMigrations, { guard: createGuard(seedSchema) });
  A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
  B = (await t.db.tenants.create({ slug: 'b', name: 'B' })).id;
  await superQuery(t.database.name, `INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'a1', 1), ($1, 'a2', 2), ($2, 'b1', 3)`, [A, B]);
  for (const table of ['invoices', 'customers']) {
    await superQuery(t.database.name, `ALTER TABLE ${table} NO FORCE ROW LEVEL SECURITY; ALTER TABLE ${table} DISABLE ROW LEVEL SECURITY`);
  }
});
after(() => t.close());

test('RLS really is off: the bare application pool sees every tenant', async () => {
  const { rows } = await t.db.dangerouslyRawAppPool().query('SELECT DISTINCT tenant_id FROM invoices');
  assert.equal(rows.length, 2);
});

test('scoped reads, updates and deletes through forTenant(A) touch only A', async () => {
  const scope = t.db.forTenant(A);
  const read = await scope.query('SELECT tenant_id, customer FROM invoices WHERE tenant_id = $1 ORDER BY customer', [A]);
  assert.deepEqual(read.rows, [{ tenant_id: A, customer: 'a1' }, { tenant_id: A, customer: 'a2' }]);
  assert.equal((await scope.query('UPDATE invoices SET amount_cents = amount_cents + 10 WHERE tenant_id = $1', [A])).rowCount, 2);
  const joined = await scope.query(
    `SELECT i.customer FROM invoices i LEFT JOIN customers c ON c.tenant_id = i.tenant_id AND c.id = i.customer_id WHERE i.tenant_id = $1`,
    [A],
  );
  assert.equal(joined.rowCount, 2);
  const b = await superQuery(t.database.name, 'SELECT amount_cents FROM invoices WHERE tenant_id = $1', [B]);
  assert.deepEqual(b.rows, [{ amount_cents: '3' }]);
});

test('statements the guard cannot prove scoped to A are refused before they reach the database', async () => {
  const scope = t.db.forTenant(A);
  const refused: Array<[string, unknown[]]> = [
    ['SELECT * FROM invoices', []],
    ['SELECT * FROM invoices WHERE tenant_id = $1 OR true', [A]],
    ['SELECT * FROM invoices WHERE tenant_id = $1', [B]],
    ['UPDATE invoices SET amount_cents = 0', []],
    ['DELETE FROM invoices WHERE customer = $1', ['b1']],
    [`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'evil', 1)`, [B]],
    ['SELECT i.* FROM invoices i JOIN customers c ON true WHERE c.tenant_id = $1', [A]],
    [`SELECT set_config('tenantwall.tenant_id', $1, true)`, [B]],
    ['TRUNCATE invoices', []],
  ];
  for (const [sql, params] of refused) {
    await assert.rejects(scope.query(sql, params), isCode('unscoped_query'), sql);
  }
  await assert.rejects(scope.transaction((tx) => tx.query('SELECT * FROM invoices')), isCode('unscoped_query'));
  const count = await superQuery(t.database.name, 'SELECT count(*)::int AS n FROM invoices');
  assert.equal(count.rows[0]?.n, 3);
});

test('no tenant context: refused by the library, never all rows', async () => {
  await assert.rejects(t.db.query('SELECT * FROM invoices WHERE tenant_id = $1', [A]), isCode('tenant_context_missing'));
  const inA = await runWithTenant(A, () => t.db.query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [A]));
  assert.equal(inA.rows[0]?.n, 2);
});
