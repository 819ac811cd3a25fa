import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type TenantId, createGuard, defineSchema, tenantTable } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

// plan: 'auto' (the default with a guard): which statements the guard lets reuse one generic plan for every
// tenant, and proof from the server (pg_prepared_statements, per session: a pool of one) that they do.

describe('the plan mode the guard proves for a statement', () => {
  const schema = defineSchema({
    tables: [
      tenantTable({ name: 'customers', columns: { id: { type: 'uuid' }, email: { type: 'text', unique: true }, name: { type: 'text' } } }),
      tenantTable({
        name: 'lines',
        columns: { invoice_id: { type: 'uuid' }, position: { type: 'integer' }, note: { type: 'text' } },
        primaryKey: ['invoice_id', 'position'],
        indexes: [{ columns: ['note'] }],
      }),
    ],
  });
  const guard = createGuard(schema);
  before(() => guard.ready());
  const planOf = (sql: string) => {
    const a = guard.analyze(sql);
    assert.ok(a.ok, `accepted: ${sql}`);
    return a.plan;
  };

  const generic = [
    'SELECT id, name FROM customers WHERE tenant_id = $1 AND id = $2',
    'SELECT name FROM customers c WHERE c.id = $2::uuid AND c.tenant_id = $1',
    'SELECT "customers"."name" FROM "customers" WHERE "customers"."tenant_id" = $1 AND ("customers"."id" = $2)',
    'SELECT name FROM customers WHERE tenant_id = $1 AND email = $2 LIMIT 1',
    "SELECT note FROM lines WHERE tenant_id = $1 AND invoice_id = $2 AND position = 3",
    'SELECT name FROM customers WHERE tenant_id = $1 AND id = $2 FOR UPDATE',
    'INSERT INTO customers (tenant_id, id, email, name) VALUES ($1, $2, $3, $4) RETURNING id',
    'INSERT INTO customers (tenant_id, id, email, name) VALUES ($1, $2, $3, $4), ($1, $5, $6, $7) ON CONFLICT DO NOTHING',
    'UPDATE customers SET name = $3 WHERE tenant_id = $1 AND id = $2',
    'DELETE FROM customers WHERE tenant_id = $1 AND id = $2',
  ];
  const custom = [
    'SELECT name FROM customers WHERE tenant_id = $1', // many rows: the plan depends on the tenant's size
    'SELECT note FROM lines WHERE tenant_id = $1 AND invoice_id = $2', // a key prefix only
    'SELECT note FROM lines WHERE tenant_id = $1 AND note = $2', // an index that is not unique
    'SELECT name FROM customers WHERE tenant_id = $1 AND (id = $2 OR email = $3)',
    'SELECT name FROM customers WHERE tenant_id = $1 AND id > $2',
    'SELECT c.name FROM customers c JOIN lines l ON l.tenant_id = c.tenant_id WHERE c.tenant_id = $1 AND c.id = $2',
    'SELECT name FROM customers WHERE tenant_id = $1 AND id = (SELECT invoice_id FROM lines WHERE tenant_id = $1 AND note = $2)',
    'SELECT count(*) FROM customers WHERE tenant_id = $1 AND id = $2 GROUP BY name',
    'SELECT name FROM customers WHERE tenant_id = $1 AND id = $2 UNION SELECT note FROM lines WHERE tenant_id = $1',
    'INSERT INTO customers (tenant_id, id, email, name) SELECT tenant_id, $2, $3, note FROM lines WHERE tenant_id = $1',
    'UPDATE customers SET name = $3 WHERE tenant_id = $1 AND name = $2',
    'DELETE FROM lines WHERE tenant_id = $1 AND invoice_id = $2',
  ];
  for (const sql of generic) test(`generic: ${sql}`, () => assert.equal(planOf(sql), 'generic'));
  for (const sql of custom) test(`custom: ${sql}`, () => assert.equal(planOf(sql), 'custom'));
});

describe("plan: 'auto' on the server (pool of one, statement cache on)", () => {
  let t: TestTenantwall;
  let A: TenantId;
  let B: TenantId;
  before(async () => {
    t = await createTestTenantwall(seedSchema, seedMigrations, { guard: createGuard(seedSchema, { allowRelations: ['pg_prepared_statements', 'pg_settings'] }), poolSize: 1 });
    A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
    B = (await t.db.tenants.create({ slug: 'b', name: 'B' })).id;
    for (const [tid, c] of [[A, 'a1'], [A, 'a2'], [B, 'b1']] as const) {
      await t.db.forTenant(tid).query(`INSERT INTO invoices (tenant_id, id, customer, amount_cents) VALUES ($1, md5($2)::uuid, $2, 1)`, [tid, c]);
    }
  });
  after(() => t?.close());

  const plans = async (sql: string) =>
    (await t.db.forTenant(A).query<{ g: string; c: string }>('SELECT generic_plans::text AS g, custom_plans::text AS c FROM pg_prepared_statements WHERE statement = $1', [sql])).rows[0];
  const uuidOf = async (s: string) => (await t.db.forTenant(A).query<{ u: string }>('SELECT md5($1)::uuid::text AS u FROM invoices WHERE tenant_id = $2 LIMIT 1', [s, A])).rows[0]?.u as string;

  test('a key lookup runs one generic plan for every tenant, and still answers each only its own row', async () => {
    const sql = 'SELECT customer FROM invoices WHERE tenant_id = $1 AND id = $2';
    const [a1, b1] = [await uuidOf('a1'), await uuidOf('b1')];
    for (let i = 0; i < 3; i++) {
      assert.deepEqual((await t.db.forTenant(A).query(sql, [A, a1])).rows, [{ customer: 'a1' }]);
      assert.deepEqual((await t.db.forTenant(B).query(sql, [B, a1])).rows, [], "A's id under B");
      assert.deepEqual((await t.db.forTenant(B).query(sql, [B, b1])).rows, [{ customer: 'b1' }]);
    }
    assert.deepEqual(await plans(sql), { g: '9', c: '0' });
  });

  test('a statement whose plan depends on the tenant is planned for each execution', async () => {
    const sql = 'SELECT customer FROM invoices WHERE tenant_id = $1 ORDER BY customer';
    for (let i = 0; i < 7; i++) assert.equal((await t.db.forTenant(A).query(sql, [A])).rowCount, 2);
    assert.deepEqual(await plans(sql), { g: '0', c: '7' });
  });

  test("plan: 'custom' overrides the proof; the connection stays on custom plans after a generic one", async () => {
    const sql = 'SELECT amount_cents FROM invoices WHERE tenant_id = $1 AND id = $2';
    const a1 = await uuidOf('a1');
    for (let i = 0; i < 6; i++) await t.db.forTenant(A).query(sql, [A, a1], { plan: 'custom' });
    assert.deepEqual(await plans(sql), { g: '0', c: '6' });
    await t.db.forTenant(A).query(sql, [A, a1]); // auto: generic, for this statement only
    const mode = await t.db.forTenant(A).query('SELECT setting AS m FROM pg_settings WHERE name = $1', ['plan_cache_mode']);
    assert.equal(mode.rows[0]?.m, 'force_custom_plan');
  });

  test('an INSERT of VALUES runs a generic plan', async () => {
    const sql = 'INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, $2, $3)';
    for (let i = 0; i < 4; i++) await t.db.forTenant(B).query(sql, [B, `x${i}`, i]);
    assert.deepEqual(await plans(sql), { g: '4', c: '0' });
  });
});
