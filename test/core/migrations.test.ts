import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { type Migration, Tenantwall, TenantwallError } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestDatabase, superQuery, type TestDatabase } from '../helpers/db.ts';
import { CLI } from '../helpers/cli.ts';

const run = promisify(execFile);
let database: TestDatabase;
let db: Tenantwall;
before(async () => {
  database = await createTestDatabase();
  db = await Tenantwall.connect({ schema: seedSchema, databaseUrl: database.url, manageRoles: false });
});
after(async () => {
  await db.close();
  await database.drop();
});

const isCode = (code: string) => (e: unknown) => e instanceof TenantwallError && e.code === code;

test('concurrent migrate runs serialize on the advisory lock: one applies, the others find nothing to do', async () => {
  const others = await Promise.all([1, 2].map(() => Tenantwall.connect({ schema: seedSchema, databaseUrl: database.url, manageRoles: false })));
  try {
    const results = await Promise.all([db, ...others].map((d) => d.migrate(seedMigrations)));
    assert.deepEqual(results.map((r) => r.applied.length).sort(), [0, 0, 2]);
  } finally {
    await Promise.all(others.map((d) => d.close()));
  }
  const { rows } = await superQuery(database.name, 'SELECT version, name FROM tenantwall_migrations ORDER BY version');
  assert.deepEqual(rows, [{ version: 1, name: 'init' }, { version: 2, name: 'currencies' }]);
});

test('re-running is a no-op', async () => {
  const r = await db.migrate(seedMigrations);
  assert.equal(r.applied.length, 0);
  assert.equal(r.alreadyApplied, 2);
});

test('an edited applied migration is refused with migration_checksum_mismatch, nothing else applied', async () => {
  const edited: Migration[] = [
    seedMigrations[0] as Migration,
    { version: 2, name: 'currencies', sql: `INSERT INTO currencies (code) VALUES ('EUR'), ('GBP');` },
    { version: 3, name: 'later', sql: 'CREATE TABLE should_not_exist (id int PRIMARY KEY);' },
  ];
  await assert.rejects(db.migrate(edited), (e: unknown) => isCode('migration_checksum_mismatch')(e) && /Migration 2 \(currencies\) was edited/.test((e as Error).message));
  const { rowCount } = await superQuery(database.name, `SELECT 1 FROM pg_class WHERE relname = 'should_not_exist'`);
  assert.equal(rowCount, 0);
});

test('a failing migration rolls back everything pending: nothing is half-applied', async () => {
  const next: Migration[] = [
    ...seedMigrations,
    { version: 3, name: 'ok', sql: 'CREATE TABLE half_a (id int PRIMARY KEY);' },
    { version: 4, name: 'broken', sql: 'CREATE TABLE half_b (id int PRIMARY KEY); SELECT 1/0;' },
  ];
  await assert.rejects(db.migrate(next), (e: unknown) => isCode('migration_failed')(e) && /Migration 4 \(broken\) failed: division by zero/.test((e as Error).message));
  const { rows } = await superQuery(database.name, `SELECT (SELECT count(*)::int FROM pg_class WHERE relname IN ('half_a', 'half_b')) AS tables, (SELECT max(version) FROM tenantwall_migrations) AS v`);
  assert.deepEqual(rows, [{ tables: 0, v: 2 }]);
});

test('invalid migration lists are refused before touching the database', async () => {
  await assert.rejects(db.migrate([{ version: 2, name: 'b', sql: 'SELECT 1' }, { version: 1, name: 'a', sql: 'SELECT 1' }]), isCode('migration_invalid'));
  await assert.rejects(db.migrate([{ version: 1, name: 'empty', sql: '  ' }]), isCode('migration_invalid'));
  await assert.rejects(db.migrate([seedMigrations[0] as Migration]), (e: unknown) => isCode('migration_invalid')(e) && /does not know/.test((e as Error).message));
});

test('CLI: tenantwall migrate --dry-run prints the SQL and applies nothing; migrate then reports no-op', async () => {
  const fresh = await createTestDatabase();
  try {
    const env = { ...process.env, DATABASE_URL: fresh.url };
    const dry = await run('node', [...CLI, 'migrate', '--dry-run', '--config', 'test/fixtures/seed-config.ts'], { env });
    assert.match(dry.stdout, /-- migration 1: init \(sha256 [0-9a-f]{64}\)/);
    assert.match(dry.stdout, /ALTER TABLE "invoices" FORCE ROW LEVEL SECURITY;/);
    const { rowCount } = await superQuery(fresh.name, `SELECT 1 FROM pg_class WHERE relname = 'invoices'`);
    assert.equal(rowCount, 0);
    const first = await run('node', [...CLI, 'migrate', '--json', '--config', 'test/fixtures/seed-config.ts'], { env });
    assert.deepEqual(JSON.parse(first.stdout), { applied: [{ version: 1, name: 'init' }, { version: 2, name: 'currencies' }], alreadyApplied: 0 });
    const again = await run('node', [...CLI, 'migrate', '--config', 'test/fixtures/seed-config.ts'], { env });
    assert.match(again.stdout, /Nothing to apply: 2 migration\(s\) already applied/);
    const bad = await run('node', [...CLI, 'migrate', '--config', 'test/fixtures/seed-config.ts'], { env: { ...env, DATABASE_URL: 'mysql://x' } }).catch((e: { code: number; stderr: string }) => e);
    assert.equal((bad as { code: number }).code, 1);
    assert.match((bad as { stderr: string }).stderr, /^tenantwall migrate: \[database_url_invalid\] .*\n$/);
  } finally {
    await fresh.drop();
  }
});

test('ownerRole: migrations run under SET ROLE, objects belong to a NOLOGIN owner that FORCEd RLS still confines', async () => {
  const fresh = await createTestDatabase();
  const owned = await Tenantwall.connect({ schema: seedSchema, databaseUrl: fresh.url, manageRoles: true, ownerRole: 'tw_owner_test' });
  try {
    await owned.migrate(seedMigrations);
    const { rows } = await superQuery(fresh.name, `SELECT DISTINCT pg_get_userbyid(relowner) AS owner FROM pg_class WHERE relname IN ('tenants', 'invoices', 'customers', 'currencies')`);
    assert.deepEqual(rows, [{ owner: 'tw_owner_test' }]);
    const role = await superQuery(fresh.name, `SELECT rolcanlogin, rolbypassrls, rolsuper FROM pg_roles WHERE rolname = 'tw_owner_test'`);
    assert.deepEqual(role.rows, [{ rolcanlogin: false, rolbypassrls: false, rolsuper: false }]);
    const tenant = await owned.tenants.create({ slug: 'o', name: 'O' });
    await owned.forTenant(tenant.id).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'x', 1)`, [tenant.id]);
    // The owner itself sees nothing without a tenant: FORCE ROW LEVEL SECURITY.
    const asOwner = await superQuery(fresh.name, `SET ROLE tw_owner_test; SELECT count(*)::int AS n FROM invoices`);
    assert.equal((asOwner as unknown as Array<{ rows: Array<{ n: number }> }>)[1]?.rows[0]?.n, 0);
  } finally {
    await owned.close();
    await fresh.drop();
  }
});
