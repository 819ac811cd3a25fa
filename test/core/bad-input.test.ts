import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { TenantId, Tenantwall, TenantwallError, resolveOptions } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { NOT_A_TENANT_ID, TEST_TENANT_KEY } from '../helpers/tenant-key.ts';

const isCode = (code: string) => (e: unknown) => e instanceof TenantwallError && e.code === code;
let t: TestTenantwall;
before(async () => {
  t = await createTestTenantwall(seedSchema, seedMigrations);
});
after(() => t.close());

test('an invalid tenant id is refused before any query: invalid_tenant_id', () => {
  for (const bad of [...NOT_A_TENANT_ID, { uuid: '1', bigint: 'A'.repeat(36), text: 'a b' }[TEST_TENANT_KEY]]) {
    assert.throws(() => t.db.forTenant(bad as string), isCode('invalid_tenant_id'), String(bad));
  }
});

test('an unknown tenant: reads find nothing, writes fail with tenant_not_found, registry says tenant_not_found', async () => {
  const ghost = TenantId.generate();
  assert.equal((await t.db.forTenant(ghost).query('SELECT * FROM invoices')).rowCount, 0);
  await assert.rejects(
    t.db.forTenant(ghost).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'x', 1)`, [ghost]),
    isCode('tenant_not_found'),
  );
  await assert.rejects(t.db.tenants.requireActive(ghost), isCode('tenant_not_found'));
  await assert.rejects(t.db.tenants.suspend(ghost), isCode('tenant_not_found'));
});

test('suspended tenants are reported as such; slugs are validated; duplicates refused', async () => {
  const s = await t.db.tenants.create({ slug: 'sleepy', name: 'Sleepy' });
  await t.db.tenants.suspend(s.id);
  await assert.rejects(t.db.tenants.requireActive(s.id), isCode('tenant_suspended'));
  assert.equal((await t.db.tenants.resume(s.id)).status, 'active');
  await assert.rejects(t.db.tenants.create({ slug: 'Bad Slug', name: 'x' }), isCode('invalid_slug'));
  await assert.rejects(t.db.tenants.create({ slug: 'sleepy', name: 'again' }), isCode('tenant_exists'));
});

test('a malformed DATABASE_URL gives database_url_invalid naming the option', async () => {
  for (const url of ['not a url', 'mysql://localhost/db', 'postgres://localhost', 'postgres:///db']) {
    await assert.rejects(Tenantwall.connect({ schema: seedSchema, databaseUrl: url }), isCode('database_url_invalid'), url);
  }
  assert.throws(() => resolveOptions({}, { DATABASE_URL: 'nope' }), (e: unknown) => isCode('database_url_invalid')(e) && /DATABASE_URL/.test((e as Error).message));
});

test('other options are validated with config_invalid naming the field', () => {
  const cases: Array<[Record<string, unknown>, Record<string, string>]> = [
    [{ appRole: 'Robert"); drop' }, {}],
    [{ settingName: 'no_dot' }, {}],
    [{ scopeMode: 'sometimes' }, {}],
    [{ poolSize: 0 }, {}],
    [{}, { TENANTWALL_POOL_SIZE: 'ten' }],
    [{}, { TENANTWALL_MANAGE_ROLES: 'maybe' }],
  ];
  for (const [input, env] of cases) assert.throws(() => resolveOptions(input as never, env), isCode('config_invalid'), JSON.stringify([input, env]));
});

test('an unreachable server gives database_unreachable quickly', async () => {
  // A port that nothing listens on: bind, read the port, close.
  const port = await new Promise<number>((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
  });
  await assert.rejects(Tenantwall.connect({ schema: seedSchema, databaseUrl: `postgres://x:y@127.0.0.1:${port}/db`, connectTimeoutMs: 2000 }), isCode('database_unreachable'));
});

test('startup refuses an application role that could bypass RLS: app_role_unsafe', async () => {
  await superQuery('postgres', `DO $$ BEGIN CREATE ROLE tw_unsafe_bypass LOGIN BYPASSRLS PASSWORD 'pw'; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  const url = new URL(t.database.url);
  url.username = 'tw_unsafe_bypass';
  url.password = 'pw';
  await assert.rejects(
    Tenantwall.connect({ schema: seedSchema, databaseUrl: t.database.url, appDatabaseUrl: url.toString(), manageRoles: false }),
    (e: unknown) => isCode('app_role_unsafe')(e) && /has BYPASSRLS/.test((e as Error).message),
  );
  // Using the owner (superuser) connection as the application connection is refused too.
  await assert.rejects(
    Tenantwall.connect({ schema: seedSchema, databaseUrl: t.database.url, appDatabaseUrl: t.database.url, manageRoles: false }),
    (e: unknown) => isCode('app_role_unsafe')(e) && /is SUPERUSER/.test((e as Error).message),
  );
});

test('a wrong parameter count is a query error, not "database unreachable", and the connection stays usable', async () => {
  const tenant = await t.db.tenants.create({ slug: 'params', name: 'Params' });
  const scope = t.db.forTenant(tenant.id);
  await assert.rejects(scope.query('SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2', [tenant.id]), (e: { code?: string }) => e.code === '08P01');
  assert.equal((await scope.query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [tenant.id])).rows[0]?.n, 0);
});
