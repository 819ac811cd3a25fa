import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TenantwallError, defineSchema, globalTable, schemaSql, tenantTable } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

let t: TestTenantwall;
let A: string;
let B: string;
before(async () => {
  t = await createTestTenantwall(seedSchema, seedMigrations);
  A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
  B = (await t.db.tenants.create({ slug: 'b', name: 'B' })).id;
});
after(() => t.close());

test("composite foreign keys make a row of A that references a row of B impossible, even for the owner", async () => {
  const admin = t.db.dangerouslyCrossTenant();
  const { rows } = await admin.query('INSERT INTO customers (tenant_id, email) VALUES ($1, $2) RETURNING id', [B, 'b@example.com']);
  const bCustomer = rows[0]?.id as string;
  // Even the superuser (no RLS) cannot make the cross-tenant reference: the key includes tenant_id.
  await assert.rejects(
    admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents, customer_id) VALUES ($1, 'x', 1, $2)`, [A, bCustomer]),
    (err: { code?: string; constraint?: string }) => err.code === '23503' && err.constraint === 'invoices_customer_id_fkey',
  );
  await assert.rejects(
    t.db.forTenant(A).query(`INSERT INTO invoices (tenant_id, customer, amount_cents, customer_id) VALUES ($1, 'x', 1, $2)`, [A, bCustomer]),
    (err: { code?: string }) => err.code === '23503',
  );
  // The same reference inside B is fine.
  await t.db.forTenant(B).query(`INSERT INTO invoices (tenant_id, customer, amount_cents, customer_id) VALUES ($1, 'x', 1, $2)`, [B, bCustomer]);
});

test('unique constraints are led by tenant_id: two tenants may use the same value, one tenant may not', async () => {
  await t.db.forTenant(A).query('INSERT INTO customers (tenant_id, email) VALUES ($1, $2)', [A, 'same@example.com']);
  await t.db.forTenant(B).query('INSERT INTO customers (tenant_id, email) VALUES ($1, $2)', [B, 'same@example.com']);
  await assert.rejects(
    t.db.forTenant(A).query('INSERT INTO customers (tenant_id, email) VALUES ($1, $2)', [A, 'same@example.com']),
    (err: { code?: string }) => err.code === '23505',
  );
});

test('every primary key, unique index and foreign key of a tenant table starts with tenant_id', async () => {
  const { rows } = await t.db.dangerouslyCrossTenant().query(`
    SELECT c.conrelid::regclass::text AS rel, c.conname, c.contype, a.attname AS first
    FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
    WHERE c.conrelid IN ('invoices'::regclass, 'customers'::regclass) AND c.contype IN ('p', 'u', 'f')
    UNION ALL
    SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, 'i', a.attname
    FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
    WHERE i.indrelid IN ('invoices'::regclass, 'customers'::regclass)`);
  assert.ok(rows.length >= 7);
  for (const r of rows) assert.equal(r.first, 'tenant_id', `${r.rel}.${r.conname}`);
  const notNull = await t.db.dangerouslyCrossTenant().query(
    `SELECT attrelid::regclass::text AS rel FROM pg_attribute WHERE attname = 'tenant_id' AND NOT attnotnull AND attrelid IN ('invoices'::regclass, 'customers'::regclass)`,
  );
  assert.equal(notNull.rowCount, 0);
});

test('the application role owns nothing and holds only DML grants on tenant tables', async () => {
  const { rows } = await t.db.dangerouslyCrossTenant().query(`
    SELECT table_name, string_agg(privilege_type, ',' ORDER BY privilege_type) AS privs
    FROM information_schema.role_table_grants WHERE grantee = 'tenantwall_app' GROUP BY 1 ORDER BY 1`);
  assert.deepEqual(rows, [
    { table_name: 'currencies', privs: 'SELECT' },
    { table_name: 'customers', privs: 'DELETE,INSERT,SELECT,UPDATE' },
    { table_name: 'invoices', privs: 'DELETE,INSERT,SELECT,UPDATE' },
    { table_name: 'tenants', privs: 'SELECT' },
  ]);
});

test('declarations are validated with schema_invalid naming the table', () => {
  const bad: Array<[string, () => unknown]> = [
    ['declares tenant_id', () => tenantTable({ name: 'x', columns: { id: { type: 'uuid' }, tenant_id: { type: 'uuid' } } })],
    ['bad name', () => tenantTable({ name: 'X-Y', columns: { id: { type: 'uuid' } } })],
    ['pk column missing', () => tenantTable({ name: 'x', columns: { a: { type: 'int' } } })],
    ['fk to undeclared', () => defineSchema({ tables: [tenantTable({ name: 'x', columns: { id: { type: 'uuid' }, y: { type: 'uuid' } }, foreignKeys: [{ columns: ['y'], references: 'nope' }] })] })],
    ['global -> tenant fk', () =>
      defineSchema({
        tables: [
          tenantTable({ name: 't', columns: { id: { type: 'uuid' } } }),
          globalTable({ name: 'g', columns: { id: { type: 'uuid' }, t: { type: 'uuid' } }, foreignKeys: [{ columns: ['t'], references: 't' }] }),
        ],
      })],
  ];
  for (const [why, fn] of bad) {
    assert.throws(fn, (err: unknown) => err instanceof TenantwallError && err.code === 'schema_invalid', why);
  }
});

test('the plain policy form (for Citus) has no sub-select', () => {
  const schema = defineSchema({ policyForm: 'plain', tables: [tenantTable({ name: 'x', columns: { id: { type: 'uuid' } } })] });
  const sql = schemaSql({ schema, appRole: 'app', settingName: 'tenantwall.tenant_id' });
  assert.match(sql, /USING \("tenant_id" = nullif\(current_setting\('tenantwall\.tenant_id', true\), ''\)::uuid\)/);
  assert.doesNotMatch(sql, /SELECT nullif/);
});
