/**
 * Layer 2 alone: row-level security. No tenantwall data path and no guard: raw SQL as the application role
 * on the bare driver, with the tenant set by hand. PostgreSQL itself must confine every statement.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type pg from 'pg';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { policySetting } from '../helpers/tenant-key.ts';

let t: TestTenantwall;
let pool: pg.Pool;
let A: string;
let B: string;

/** Runs `fn` on one app-role connection inside a transaction with `tenant` set (or none), then rolls back. */
async function asApp<T>(tenant: string | null, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    if (tenant !== null) await c.query(`SELECT set_config('tenantwall.tenant_id', $1, true)`, [tenant]);
    return await fn(c);
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
    c.release();
  }
}

before(async () => {
  t = await createTestTenantwall(seedSchema, seedMigrations);
  pool = t.db.dangerouslyRawAppPool();
  A = (await t.db.tenants.create({ slug: 'acme', name: 'Acme' })).id;
  B = (await t.db.tenants.create({ slug: 'bravo', name: 'Bravo' })).id;
  const admin = t.db.dangerouslyCrossTenant();
  for (const [tenant, n] of [[A, 3], [B, 4]] as const) {
    for (let i = 0; i < n; i++) {
      await admin.query('INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, $2, $3)', [tenant, `c${i}`, 100 * (i + 1)]);
    }
  }
});
after(() => t.close());

test('unscoped SELECT returns only the current tenant rows', async () => {
  const rows = await asApp(A, async (c) => (await c.query('SELECT tenant_id FROM invoices')).rows);
  assert.equal(rows.length, 3);
  assert.ok(rows.every((r) => r.tenant_id === A));
  const bRows = await asApp(B, async (c) => (await c.query('SELECT tenant_id FROM invoices')).rows);
  assert.equal(bRows.length, 4);
  assert.ok(bRows.every((r) => r.tenant_id === B));
});

test('unscoped UPDATE and DELETE touch only the current tenant rows', async () => {
  await asApp(A, async (c) => {
    assert.equal((await c.query('UPDATE invoices SET amount_cents = amount_cents + 1')).rowCount, 3);
    assert.equal((await c.query(`UPDATE invoices SET customer = 'x' WHERE tenant_id = $1`, [B])).rowCount, 0);
    assert.equal((await c.query('DELETE FROM invoices')).rowCount, 3);
    assert.equal((await c.query('DELETE FROM invoices WHERE tenant_id = $1', [B])).rowCount, 0);
  });
  const counts = await t.db.dangerouslyCrossTenant().query('SELECT tenant_id, count(*)::int AS n FROM invoices GROUP BY 1');
  assert.deepEqual(Object.fromEntries(counts.rows.map((r) => [r.tenant_id, r.n])), { [A]: 3, [B]: 4 });
});

test("INSERT or UPDATE that would write another tenant's tenant_id is rejected", async () => {
  await assert.rejects(
    asApp(A, (c) => c.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'evil', 1)`, [B])),
    /row-level security/,
  );
  await assert.rejects(asApp(A, (c) => c.query('UPDATE invoices SET tenant_id = $1', [B])), /row-level security/);
});

test('no tenant set, an empty setting or a reset setting: zero rows, no error', async () => {
  for (const setup of [null, '', 'RESET']) {
    const rows = await asApp(null, async (c) => {
      if (setup === 'RESET') await c.query('RESET tenantwall.tenant_id');
      else if (setup === '') await c.query(`SELECT set_config('tenantwall.tenant_id', '', true)`);
      return (await c.query('SELECT * FROM invoices')).rows;
    });
    assert.equal(rows.length, 0, `setting ${String(setup)}`);
  }
  await assert.rejects(asApp(null, (c) => c.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'x', 1)`, [A])), /row-level security/);
});

test('the application role cannot switch off RLS, read the table as owner or truncate', async () => {
  await assert.rejects(asApp(A, (c) => c.query('ALTER TABLE invoices DISABLE ROW LEVEL SECURITY')), /must be owner/);
  await assert.rejects(asApp(A, (c) => c.query('SET row_security = off; SELECT * FROM invoices')), /row-level security|row_security/);
  await assert.rejects(asApp(A, (c) => c.query('TRUNCATE invoices')), /permission denied/);
  await assert.rejects(asApp(A, (c) => c.query('SET ROLE postgres')), /permission denied/);
});

test('every tenant table has RLS enabled and forced with one policy in the docs/architecture.md shape', async () => {
  const { rows } = await t.db.dangerouslyCrossTenant().query(`
    SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity, p.polcmd, pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS chk
    FROM pg_class c JOIN pg_policy p ON p.polrelid = c.oid WHERE c.relname IN ('invoices', 'customers') ORDER BY 1`);
  assert.equal(rows.length, 2);
  for (const r of rows) {
    assert.equal(r.relrowsecurity, true);
    assert.equal(r.relforcerowsecurity, true);
    assert.equal(r.polcmd, '*');
    assert.ok(r.qual.startsWith(`(tenant_id = ( SELECT ${policySetting()} AS`), r.qual);
    assert.equal(r.chk, r.qual);
  }
});
