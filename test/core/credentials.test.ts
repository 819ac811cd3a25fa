// Credentials (docs/credentials.md): tenantwall never changes a role's password at start, so replicas and CLI
// runs with password (scram-sha-256) authentication do not lock each other out; a process given only the
// application role's URL serves, and owner-only operations fail with owner_connection_required.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { Tenantwall, isTenantwallError } from '../../src/index.ts';
import Fastify from 'fastify';
import { ApiKeyStore, apiKeysTable, tenantwallPlugin } from '../../src/fastify/index.ts';
import { defineSchema } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { adminUrl, createTestDatabase, superQuery, withDatabase, type TestDatabase } from '../helpers/db.ts';
import { CLI } from '../helpers/cli.ts';

const role = `tw_cred_${randomBytes(4).toString('hex')}`;
const password = randomBytes(12).toString('base64url');
const schema = defineSchema({ tables: [...seedSchema.tables, apiKeysTable()] });
let database: TestDatabase;
let owner: Tenantwall;
let appUrl: string;
let tenant: { id: string; slug: string };

async function storedPassword(): Promise<string | null> {
  const { rows } = await superQuery('postgres', 'SELECT rolpassword FROM pg_authid WHERE rolname = $1', [role]);
  return (rows[0] as { rolpassword: string | null } | undefined)?.rolpassword ?? null;
}

/** Runs `node args` to its end; resolves with exit code and output (no timing involved: we wait for the exit). */
function run(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, out, err }));
  });
}

before(async () => {
  database = await createTestDatabase();
  // The first start creates the role with the configured password (scram-sha-256 on the test server).
  owner = await Tenantwall.connect({ schema, databaseUrl: database.url, appRole: role, appPassword: password, manageRoles: true });
  await owner.migrate([{ version: 1, name: 'init', sql: (ctx) => ctx.createSchema() }, ...seedMigrations.slice(1)]);
  tenant = await owner.tenants.create({ slug: 'cred-acme', name: 'Acme' });
  await owner.forTenant(tenant.id).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'x', 1)`, [tenant.id]);
  const u = new URL(withDatabase(adminUrl(), database.name));
  u.username = role;
  u.password = password;
  appUrl = u.toString();
});

after(async () => {
  await owner?.close();
  await database?.drop();
  await superQuery('postgres', `DROP ROLE IF EXISTS ${role}`);
});

test('two serving processes and a CLI run start at once with password authentication; none is locked out', async () => {
  const stored = await storedPassword();
  assert.match(stored ?? '', /^SCRAM-SHA-256\$/, 'the role was created with the configured password, scram-encrypted');
  const env: NodeJS.ProcessEnv = { ...process.env, TENANTWALL_APP_ROLE: role, TENANTWALL_APP_PASSWORD: password, TENANTWALL_MANAGE_ROLES: 'true' };
  delete env.DATABASE_URL;
  delete env.TENANTWALL_APP_DATABASE_URL;
  const serve = () => run(['--import', 'tsx', 'test/fixtures/app-process.ts', tenant.id, database.url, appUrl], env);
  const [a, b, c] = await Promise.all([
    serve(),
    serve(),
    run([...CLI, 'tenants', 'list', '--json', '--config', 'test/fixtures/seed-config.ts', '--database-url', database.url], env),
  ]);
  for (const [name, r] of [['process A', a], ['process B', b], ['CLI', c]] as const) assert.equal(r.code, 0, `${name}: ${r.err}`);
  assert.deepEqual(JSON.parse(a.out), { first: 1, second: 1 });
  assert.deepEqual(JSON.parse(b.out), { first: 1, second: 1 });
  assert.ok((JSON.parse(c.out) as Array<{ tenant: { slug: string } }>).some((t) => t.tenant.slug === 'cred-acme'), c.out);
  assert.equal(await storedPassword(), stored, 'no start changed the role password');
  // The first process still logs in afresh.
  const fresh = new pg.Client({ connectionString: appUrl });
  await fresh.connect();
  await fresh.end();
});

test('a start with a wrong application password fails with app_login_failed and changes nothing', async (t) => {
  const probe = new pg.Client({ connectionString: appUrl.replace(encodeURIComponent(password), 'wrong') });
  const trusted = await probe.connect().then(() => true, () => false);
  await probe.end().catch(() => undefined);
  if (trusted) return t.skip('the server does not ask for passwords (trust): nothing to lock out');
  const stored = await storedPassword();
  await assert.rejects(
    Tenantwall.connect({ schema, databaseUrl: database.url, appRole: role, appPassword: 'wrong', manageRoles: true }),
    (err) => isTenantwallError(err, 'app_login_failed') && err.details.role === role && !err.message.includes('wrong'),
  );
  assert.equal(await storedPassword(), stored);
  const app = await connectAppOnly();
  try {
    assert.equal((await app.forTenant(tenant.id).query('SELECT 1 FROM invoices WHERE tenant_id = $1', [tenant.id])).rowCount, 1);
  } finally {
    await app.close();
  }
});

/**
 * A process given only the application role's URL: no DATABASE_URL in its environment either (the test runner
 * sets one when the suite runs against an external server, and the environment is an owner URL source).
 */
async function connectAppOnly(): Promise<Tenantwall> {
  const saved = process.env.DATABASE_URL;
  delete process.env.DATABASE_URL;
  try {
    return await Tenantwall.connect({ schema, appDatabaseUrl: appUrl });
  } finally {
    if (saved !== undefined) process.env.DATABASE_URL = saved;
  }
}

test('a process given only the application role URL serves request-time lookups; owner-only operations are owner_connection_required', async () => {
  const app = await connectAppOnly();
  try {
    assert.equal(app.hasOwner, false);
    assert.equal(owner.hasOwner, true);
    // Registry lookups (API key, subdomain, tenant cache misses) through the application role.
    assert.equal((await app.tenants.get(tenant.id))?.slug, 'cred-acme');
    assert.equal((await app.tenants.getBySlug('cred-acme'))?.id, tenant.id);
    assert.equal((await app.tenants.resolve('cred-acme'))?.id, tenant.id);
    assert.equal((await app.tenants.requireActive(tenant.id)).status, 'active');
    // API keys: issued by the owner process, verified by the app-only one (tenant-scoped reads).
    const { key } = await new ApiKeyStore(owner).create(tenant.id, { name: 'ci' });
    assert.deepEqual(await new ApiKeyStore(app).verify(key), { tenantId: tenant.id, keyId: (await new ApiKeyStore(app).list(tenant.id))[0]?.id });
    // Tenant-scoped reads and writes.
    await app.forTenant(tenant.id).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'app-only', 2)`, [tenant.id]);
    assert.equal((await app.forTenant(tenant.id).query('SELECT 1 FROM invoices WHERE tenant_id = $1', [tenant.id])).rowCount, 2);
    // The Fastify plugin on the app-only instance: API key -> registry -> tenant scope, all as the application role.
    const web = Fastify();
    try {
      await web.register(tenantwallPlugin, { db: app });
      web.get('/count', async () => (await app.query<{ n: number }>('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [app.currentTenantId()])).rows[0]);
      const res = await web.inject({ url: '/count', headers: { authorization: `Bearer ${key}` } });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(res.json(), { n: 2 });
      assert.equal((await web.inject({ url: '/count' })).statusCode, 401);
    } finally {
      await web.close();
    }
    const ownerOnly = (op: string) => (err: unknown) => isTenantwallError(err, 'owner_connection_required') && err.details.operation === op;
    assert.throws(() => app.dangerouslyCrossTenant(), ownerOnly('dangerouslyCrossTenant()'));
    await assert.rejects(app.migrate(seedMigrations), ownerOnly('migrate()'));
    await assert.rejects(app.tenants.create({ slug: 'nope', name: 'Nope' }), ownerOnly('dangerouslyCrossTenant()'));
  } finally {
    await app.close();
  }
});
