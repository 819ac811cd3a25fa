/**
 * Layer 3 alone: physical placement and keys, with no guard and no row-level security (the superuser bypasses
 * RLS; the guard is not in the path). What the layout itself guarantees must still hold.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type TenantId, createTenant, dedicatedPartitionName, deleteTenant } from '../../src/index.ts';
import { lifecycleMigrations, lifecycleSchema, seedTenant } from '../lifecycle/fixture.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';

let t: TestTenantwall;
let A: TenantId;
let B: TenantId;
let C: TenantId;
const sql = (text: string, params: unknown[] = []) => superQuery(t.database.name, text, params);

before(async () => {
  t = await createTestTenantwall(lifecycleSchema, lifecycleMigrations);
  A = (await createTenant(t.db, { slug: 'a', name: 'A', placement: 'dedicated' })).tenant.id;
  B = (await createTenant(t.db, { slug: 'b', name: 'B', placement: 'dedicated' })).tenant.id;
  C = (await createTenant(t.db, { slug: 'c', name: 'C' })).tenant.id;
  for (const id of [A, B, C]) await seedTenant(t.db, id, 5);
});
after(() => t.close());

test("a dedicated partition holds only its tenant's rows, whatever the query", async () => {
  for (const table of ['customers', 'invoices']) {
    const { rows } = await sql(`SELECT DISTINCT tenant_id FROM ${dedicatedPartitionName(table, A)}`);
    assert.deepEqual(rows, [{ tenant_id: A }], table);
  }
});

test("no writer, not even a superuser, can put another tenant's row into a tenant's partition", async () => {
  const part = dedicatedPartitionName('customers', A);
  await assert.rejects(sql(`INSERT INTO ${part} (tenant_id, id, email) VALUES ($1, 999, 'x@example.com')`, [B]), (e: { code?: string }) => e.code === '23514');
  await assert.rejects(sql(`UPDATE ${part} SET tenant_id = $1`, [B]), (e: { code?: string }) => e.code === '23514');
});

test('composite foreign keys refuse cross-tenant references without RLS', async () => {
  // Customer 777 exists only for B: C's invoice cannot reference it.
  await sql(`INSERT INTO customers (tenant_id, id, email) VALUES ($1, 777, 'only-b@example.com')`, [B]);
  await assert.rejects(
    sql(`INSERT INTO invoices (tenant_id, id, customer_id, amount_cents) VALUES ($1, 999, 777, 1)`, [C]),
    (e: { code?: string; constraint?: string }) => e.code === '23503' && e.constraint === 'invoices_customer_id_fkey',
  );
  // Customer 1 exists for A and B; an invoice of C can only ever point at C's customer 1.
  await sql(`INSERT INTO invoices (tenant_id, id, customer_id, amount_cents) VALUES ($1, 1000, 1, 1)`, [C]);
  const { rows } = await sql(`SELECT c.tenant_id FROM invoices i JOIN customers c ON (c.tenant_id, c.id) = (i.tenant_id, i.customer_id) WHERE i.tenant_id = $1 AND i.id = 1000`, [C]);
  assert.deepEqual(rows, [{ tenant_id: C }]);
});

test("dropping one tenant's placement cannot touch another tenant's rows (blast radius)", async () => {
  const count = async (id: string) => (await sql(`SELECT (SELECT count(*) FROM customers WHERE tenant_id = $1)::int + (SELECT count(*) FROM invoices WHERE tenant_id = $1)::int AS n`, [id])).rows[0]?.n as number;
  const before = { B: await count(B), C: await count(C) };
  const result = await deleteTenant(t.db, A, { confirm: 'a' });
  assert.ok(result.droppedPartitions.length >= 2);
  assert.equal(await count(A), 0);
  assert.deepEqual({ B: await count(B), C: await count(C) }, before);
});
