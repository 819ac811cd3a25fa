/**
 * Migrating an existing tenantwall database to Citus: the single-server schema (as restored from a dump: plain
 * tables on the coordinator, sub-select policies, rows) is converted by citusConversionStatements; afterwards
 * the recorded migration checksums still match, the rows are in the shards, and isolation and the audit hold.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { Tenantwall, applyMigrations, citusConversionStatements, renderMigrations, runAudit } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { type CitusDatabase, createCitusDatabase, skipWithoutCitus } from './cluster.ts';

describe('Citus: converting an existing single-server tenantwall database', { skip: skipWithoutCitus }, () => {
  let database: CitusDatabase;
  let db: Tenantwall;
  const A = '0b6f9a3e-3c1d-4a8e-9a51-2f0c6d1e7b42';
  const B = '5d0e7f10-8a7b-4c2d-9e3f-1a2b3c4d5e6f';

  before(async () => {
    database = await createCitusDatabase();
    // What a restored single-server database looks like: the migrations as rendered for one server, and data.
    const c = new pg.Client({ connectionString: database.url });
    await c.connect();
    try {
      await applyMigrations(c, renderMigrations(seedMigrations, { schema: seedSchema, appRole: 'tenantwall_app', settingName: 'tenantwall.tenant_id' }));
      await c.query(`INSERT INTO tenants (id, slug, name) VALUES ($1, 'acme', 'Acme'), ($2, 'bravo', 'Bravo')`, [A, B]);
      await c.query(`INSERT INTO customers (tenant_id, id, email) VALUES ($1, gen_random_uuid(), 'a@a.test'), ($2, gen_random_uuid(), 'b@b.test')`, [A, B]);
      await c.query(`INSERT INTO invoices (tenant_id, customer, amount_cents, customer_id) SELECT tenant_id, email, 100, id FROM customers`);
      const before = await c.query(`SELECT count(*)::int AS n FROM citus_tables`);
      assert.equal(before.rows[0]?.n, 0, 'nothing is distributed yet');
    } finally {
      await c.end();
    }
    db = await Tenantwall.connect({ schema: seedSchema, databaseUrl: database.url, manageRoles: false });
  });
  after(async () => {
    await db?.close();
    await database?.drop();
  });

  test('conversion, then migrate finds every checksum matching; rows, isolation, keys and the audit hold', async () => {
    await db.dangerouslyCrossTenant().transaction(async (client) => {
      for (const sql of citusConversionStatements(db.ddlContext)) await client.query(sql);
    });
    const result = await db.migrate(seedMigrations);
    assert.deepEqual([result.applied.length, result.alreadyApplied], [0, 2]);

    const tables = await db.dangerouslyCrossTenant().query(`SELECT table_name::text AS t, citus_table_type AS k FROM citus_tables ORDER BY 1`);
    assert.deepEqual(tables.rows.map((r) => `${r.t}:${r.k}`), ['currencies:reference', 'customers:distributed', 'invoices:distributed', 'tenants:reference']);
    const fks = await db.dangerouslyCrossTenant().query(`SELECT conname FROM pg_constraint WHERE contype = 'f' AND connamespace = 'public'::regnamespace ORDER BY 1`);
    assert.deepEqual(fks.rows.map((r) => r.conname), ['customers_tenant_id_fkey', 'invoices_customer_id_fkey', 'invoices_tenant_id_fkey']);

    for (const [tenant, other] of [[A, B], [B, A]] as const) {
      const rows = await db.forTenant(tenant).query('SELECT tenant_id FROM invoices');
      assert.deepEqual(rows.rows.map((r) => r.tenant_id), [tenant]);
      const theirs = await db.forTenant(tenant).query('SELECT count(*)::int AS n FROM customers WHERE tenant_id = $1', [other]);
      assert.equal(theirs.rows[0]?.n, 0);
    }
    // The composite foreign key is back: an invoice cannot point at another tenant's customer.
    const bCustomer = (await db.dangerouslyCrossTenant().query('SELECT id FROM customers WHERE tenant_id = $1', [B])).rows[0]?.id;
    await assert.rejects(db.forTenant(A).query(`INSERT INTO invoices (tenant_id, customer, amount_cents, customer_id) VALUES ($1, 'x', 1, $2)`, [A, bCustomer]), /foreign key/);

    const report = await runAudit({ databaseUrl: database.url });
    assert.deepEqual(report.findings.filter((f) => f.severity === 'error' || f.ruleId.startsWith('citus-')).map((f) => `${f.ruleId} ${f.object}`), []);
  });
});
