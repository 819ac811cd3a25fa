/**
 * Test entry: runs the suite against DATABASE_URL when given, otherwise against a throwaway embedded
 * PostgreSQL started here once for all test files. Each test file makes its own fresh database.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedServer } from '../src/index.ts';
import { freePort } from './helpers/port.ts';
import { startPgBouncer, type PgBouncer } from './poolers/pgbouncer.ts';

const files = process.argv.slice(2);
let embedded: EmbeddedServer | undefined;
let adminUrl = process.env.DATABASE_URL;
if (!adminUrl) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantwall-test-'));
  embedded = await startEmbeddedPostgres({
    dataDir: path.join(dir, 'data'),
    port: await freePort(),
    persistent: false,
    settings: { fsync: 'off', synchronous_commit: 'off', full_page_writes: 'off', max_connections: '300' },
  });
  adminUrl = embedded.url;
}
const appPassword = randomBytes(12).toString('hex');
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
const { rows } = await admin.query<{ v: string }>('SELECT version() AS v');
console.log(`# tests against PostgreSQL ${rows[0]?.v} (${embedded ? 'embedded' : 'DATABASE_URL'})`);
const exists = await admin.query(`SELECT 1 FROM pg_roles WHERE rolname = 'tenantwall_app'`);
if (exists.rowCount === 0) await admin.query(`CREATE ROLE tenantwall_app LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT`);
await admin.query(`ALTER ROLE tenantwall_app PASSWORD '${appPassword}'`);
await admin.end();

// TW_TEST_PGBOUNCER=1: the application role's connections of every test go through PgBouncer in transaction
// mode (4 server connections per database), tenantwall told so (pooler: 'transaction'); docs/poolers.md.
let pooler: PgBouncer | undefined;
const poolerEnv: Record<string, string> = {};
if (process.env.TW_TEST_PGBOUNCER === '1') {
  const server = new URL(adminUrl);
  pooler = await startPgBouncer({ serverHost: server.hostname, serverPort: Number(server.port || 5432), users: { tenantwall_app: appPassword }, poolSize: 4 });
  poolerEnv.TW_TEST_POOLER_URL = pooler.url('tenantwall_app', appPassword, 'postgres');
  console.log(`# application connections through PgBouncer on 127.0.0.1:${pooler.port} (transaction mode, 4 server connections per database)`);
}

function findTests(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return findTests(p);
    return e.name.endsWith('.test.ts') ? [p] : [];
  });
}
const pattern = (files.length > 0 ? files : ['test']).flatMap((f) => (fs.statSync(f).isDirectory() ? findTests(f).sort() : [f]));
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${process.env.TW_TEST_CONCURRENCY ?? 2}`, '--test-reporter=spec', ...pattern],
  {
    stdio: 'inherit',
    env: {
      ...process.env,
      ...poolerEnv,
      // `tenantwall` imported by name (the reference service) resolves to src/, the same modules the tests import.
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --conditions=tenantwall-source`.trim(),
      TW_TEST_ADMIN_URL: adminUrl, TENANTWALL_APP_PASSWORD: appPassword, TENANTWALL_MANAGE_ROLES: 'false',
      // TW_TEST_TENANT_KEY=bigint|text: every Tenantwall of the run uses that tenant key type (docs/tenant-scope.md).
      ...(process.env.TW_TEST_TENANT_KEY ? { TENANTWALL_TENANT_KEY: process.env.TW_TEST_TENANT_KEY } : {}) },
  },
);
const code: number = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
await pooler?.stop();
await embedded?.stop();
process.exit(code);
