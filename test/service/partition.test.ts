/**
 * The reference service on the third layer: its invoicing tables are hash-partitioned with dedicated placement.
 *
 * - A database created by a version before partitioning (migrations 1-3, unpartitioned tables, data of several
 *   tenants) is converted by migration 4: every row kept (per-tenant checksums equal), every relation under
 *   forced row-level security, the API and a move work afterwards; a conversion that fails changes nothing.
 * - test/core/partition-alone.test.ts's guarantee on the service's own tables: with no guard and no row-level
 *   security (superuser), a dedicated partition holds only its tenant's rows, nobody can write another tenant's
 *   row into it, composite foreign keys refuse cross-tenant references, and dropping one tenant's placement
 *   leaves every other tenant's rows as they were.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type TenantId, Tenantwall, defineSchema, deleteTenant, dedicatedPartitionName, moveTenant, renderMigrations, tenantChecksums, tenantInfo } from '../../src/index.ts';
import { buildApp } from '../../examples/invoicing-service/src/app.ts';
import { serviceGuard } from '../../examples/invoicing-service/src/guard.ts';
import { HASH_PARTITIONS, PARTITIONED_TABLES, migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { createTestDatabase, poolerOptions, superQuery, type TestDatabase } from '../helpers/db.ts';

/**
 * The service's schema and migrations as of migration 4, the one this file is about: migration 5 (invoice documents,
 * background jobs) adds tables that a database at migration 3 does not have yet, which checksums over the whole
 * declaration would look for.
 */
const V5_TABLES = new Set(['invoice_documents', 'tw_jobs']);
const schemaV4 = defineSchema({ tables: schema.tables.filter((t) => !V5_TABLES.has(t.name)) });
const migrationsV4 = migrations.filter((m) => m.version <= 4);

let database: TestDatabase;
let db: Tenantwall;
const T: Record<'x' | 'y' | 'z', TenantId> = {} as never;
const sql = (text: string, params: unknown[] = []) => superQuery(database.name, text, params);
const BIG = 3000;

/** Rows for `tenant` through plain SQL as the superuser: customers, invoices (2 per customer) and line items. */
async function seed(tenant: string, customers: number): Promise<void> {
  await sql(`INSERT INTO customers (tenant_id, name, email) SELECT $1, 'Customer ' || g, 'c' || g || '@example.com' FROM generate_series(1, $2) g`, [tenant, customers]);
  await sql(
    `INSERT INTO invoices (tenant_id, customer, customer_id, amount_cents, status, issued_at)
       SELECT c.tenant_id, c.name, c.id, 1000 + k, CASE WHEN k = 1 THEN 'issued' ELSE 'draft' END, CASE WHEN k = 1 THEN now() END
         FROM customers c CROSS JOIN generate_series(1, 2) k WHERE c.tenant_id = $1`,
    [tenant],
  );
  await sql(
    `INSERT INTO invoice_line_items (tenant_id, invoice_id, position, description, quantity, unit_amount_cents, amount_cents)
       SELECT i.tenant_id, i.id, 1, 'Work', 1, i.amount_cents, i.amount_cents FROM invoices i WHERE i.tenant_id = $1`,
    [tenant],
  );
}

before(async () => {
  database = await createTestDatabase();
  db = await Tenantwall.connect({ schema: schemaV4, databaseUrl: database.url, manageRoles: false, guard: serviceGuard(), ...poolerOptions(database.name) });
  // The database as the version before partitioning left it: migrations 1-3 only.
  await db.migrate(migrations.slice(0, 3));
  for (const k of ['x', 'y', 'z'] as const) T[k] = (await db.tenants.create({ slug: `tenant-${k}`, name: k.toUpperCase() })).id;
  await seed(T.x, BIG);
  await seed(T.y, 20);
  await seed(T.z, 20);
});
after(async () => {
  await db?.close();
  await database?.drop();
});

test('migrations 1-3 keep the checksums the version before partitioning recorded', () => {
  // Recorded from the service schema before partitioning (appRole tenantwall_app, setting tenantwall.tenant_id).
  const before = {
    1: '01dd128835df50e37a4afefee85a0df0abe3a75e0845c014622527d1a3452f3d',
    2: '891e5e95c34b48493edd47a4d6f953c32f2ceb5a82fe9c180e86f007fcad303f',
    3: '35c4d7d18dafa80824fb4d5932db36d805b0f0b0118aa6cc569051f782821199',
  };
  const now = renderMigrations(migrations, { schema, appRole: 'tenantwall_app', settingName: 'tenantwall.tenant_id' });
  assert.deepEqual(Object.fromEntries(now.slice(0, 3).map((m) => [m.version, m.checksum])), before);
});

test('a conversion that fails changes nothing; run again, it converts every row of every tenant', async () => {
  const relkind = async () => Object.fromEntries((await sql(`SELECT relname, relkind::text FROM pg_class WHERE relname = ANY($1) ORDER BY 1`, [[...PARTITIONED_TABLES]])).rows.map((r) => [r.relname, r.relkind]));
  assert.deepEqual(await relkind(), { customers: 'r', invoice_line_items: 'r', invoices: 'r' });
  const before = { x: await tenantChecksums(db, T.x), y: await tenantChecksums(db, T.y), z: await tenantChecksums(db, T.z) };
  assert.equal(before.x.invoices?.rows, 2 * BIG);

  // Something in the way (a relation with the name of a partition): migration 4 fails and is rolled back.
  await sql('CREATE TABLE customers_p3 (x int)');
  await assert.rejects(db.migrate(migrationsV4), (e: { code?: string }) => e.code === 'migration_failed');
  assert.deepEqual(await relkind(), { customers: 'r', invoice_line_items: 'r', invoices: 'r' });
  assert.deepEqual(await tenantChecksums(db, T.x), before.x);
  await sql('DROP TABLE customers_p3');

  const started = performance.now();
  const r = await db.migrate(migrationsV4);
  const ms = performance.now() - started;
  assert.deepEqual(r.applied.map((m) => m.version), [4]);
  const rows = Object.values(before).reduce((n, c) => n + PARTITIONED_TABLES.reduce((m, t) => m + (c[t]?.rows ?? 0), 0), 0);
  console.log(`# migration 4 converted ${rows} rows in ${ms.toFixed(0)} ms (${Math.round(rows / (ms / 1000))} rows/s, loaded machine)`);

  assert.deepEqual(await relkind(), { customers: 'p', invoice_line_items: 'p', invoices: 'p' });
  for (const k of ['x', 'y', 'z'] as const) assert.deepEqual(await tenantChecksums(db, T[k]), before[k], `tenant ${k}`);
  // Nothing of the old tables is left, and every relation of the new ones has forced row-level security.
  assert.equal((await sql(`SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE '%unpartitioned%'`)).rows[0]?.n, 0);
  const rels = await sql(
    `SELECT c.relname, c.relrowsecurity AND c.relforcerowsecurity AS forced FROM pg_class c
      WHERE c.relkind IN ('r', 'p') AND (c.relname = ANY($1) OR c.relname ~ ('^(' || array_to_string($1, '|') || ')_p[0-9]+(_shared)?$'))`,
    [[...PARTITIONED_TABLES]],
  );
  assert.equal(rels.rows.length, PARTITIONED_TABLES.length * (1 + 2 * HASH_PARTITIONS));
  assert.deepEqual(rels.rows.filter((x) => !x.forced), []);
});

test('after the conversion the API serves the same rows, and a tenant moves to dedicated and back', async () => {
  const app = await buildApp({ db, adminToken: 'partition-test-admin-token-0123' });
  try {
    const key = await app.tenantwall.apiKeys.create(T.y, { name: 't' });
    const list = async () => (await app.inject({ method: 'GET', url: '/invoices?limit=100', headers: { authorization: `Bearer ${key.key}` } })).json().data.map((i: { id: string }) => i.id).sort();
    const ids = (await sql(`SELECT id::text FROM invoices WHERE tenant_id = $1 ORDER BY 1`, [T.y])).rows.map((r) => r.id);
    assert.deepEqual(await list(), ids);
    const sums = await tenantChecksums(db, T.y);
    assert.equal((await moveTenant(db, T.y, 'dedicated')).to, 'dedicated');
    assert.equal((await tenantInfo(db, T.y)).placement, 'dedicated');
    assert.deepEqual(await list(), ids);
    assert.deepEqual(await tenantChecksums(db, T.y), sums);
    await moveTenant(db, T.y, 'shared');
    assert.deepEqual(await tenantChecksums(db, T.y), sums);
    await moveTenant(db, T.x, 'dedicated');
  } finally {
    await app.close();
  }
});

test("partition alone (superuser: no guard, no RLS): a dedicated partition holds only its tenant's rows", async () => {
  for (const table of PARTITIONED_TABLES) {
    const { rows } = await sql(`SELECT tenant_id::text, count(*)::int AS n FROM ${dedicatedPartitionName(table, T.x)} GROUP BY 1`);
    assert.deepEqual(rows.map((r) => r.tenant_id), [T.x], table);
  }
  // Whatever the query, a read of the partition never returns another tenant's row: the partition constraint.
  const other = await sql(`SELECT count(*)::int AS n FROM ${dedicatedPartitionName('invoices', T.x)} WHERE tenant_id <> $1`, [T.x]);
  assert.equal(other.rows[0]?.n, 0);
});

test("partition alone: no writer, not even a superuser, can put another tenant's row into a tenant's partition", async () => {
  const part = dedicatedPartitionName('customers', T.x);
  await assert.rejects(sql(`INSERT INTO ${part} (tenant_id, name) VALUES ($1, 'intruder')`, [T.y]), (e: { code?: string }) => e.code === '23514');
  await assert.rejects(sql(`UPDATE ${part} SET tenant_id = $1 WHERE id = (SELECT id FROM ${part} LIMIT 1)`, [T.y]), (e: { code?: string }) => e.code === '23514');
});

test('partition alone: composite foreign keys refuse a reference to another tenant\'s customer or invoice', async () => {
  const yCustomer = (await sql(`SELECT id FROM customers WHERE tenant_id = $1 LIMIT 1`, [T.y])).rows[0]?.id as string;
  await assert.rejects(
    sql(`INSERT INTO invoices (tenant_id, customer, customer_id, amount_cents) VALUES ($1, 'x', $2, 1)`, [T.x, yCustomer]),
    (e: { code?: string; constraint?: string }) => e.code === '23503' && e.constraint === 'invoices_customer_id_fkey',
  );
  const yInvoice = (await sql(`SELECT id FROM invoices WHERE tenant_id = $1 LIMIT 1`, [T.y])).rows[0]?.id as string;
  await assert.rejects(
    sql(`INSERT INTO invoice_line_items (tenant_id, invoice_id, position, description, quantity, unit_amount_cents, amount_cents) VALUES ($1, $2, 999, 'x', 1, 1, 1)`, [T.z, yInvoice]),
    (e: { code?: string }) => e.code === '23503',
  );
});

test("partition alone: dropping one tenant's dedicated placement leaves every other tenant's rows as they were", async () => {
  const before = { y: await tenantChecksums(db, T.y), z: await tenantChecksums(db, T.z) };
  const r = await deleteTenant(db, T.x, { confirm: 'tenant-x' });
  assert.deepEqual([...r.droppedPartitions].sort(), PARTITIONED_TABLES.map((t) => dedicatedPartitionName(t, T.x)).sort());
  assert.equal((await sql(`SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1`, [T.x])).rows[0]?.n, 0);
  assert.deepEqual({ y: await tenantChecksums(db, T.y), z: await tenantChecksums(db, T.z) }, before);
});

test('migrations 5 to 7 on the converted database: invoice documents and jobs join every remaining tenant; the admin relay and console session tables are created', async () => {
  const full = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, guard: serviceGuard(), ...poolerOptions(database.name) });
  try {
    const r = await full.migrate(migrations);
    assert.deepEqual(r.applied.map((m) => m.version), [5, 6, 7]);
    const created = await sql(`SELECT array_agg(relname::text ORDER BY relname) AS t FROM pg_class WHERE relname IN ('admin_requests', 'admin_request_chunks', 'admin_operators', 'console_sessions') AND relkind = 'r'`);
    assert.deepEqual(created.rows[0]?.t, ['admin_operators', 'admin_request_chunks', 'admin_requests', 'console_sessions']);
    const sums = await tenantChecksums(full, T.y);
    assert.equal(sums.invoice_documents?.rows, 0);
    assert.equal(sums.tw_jobs?.rows, 0);
    assert.equal(sums.invoices?.rows, 40);
  } finally {
    await full.close();
  }
});
