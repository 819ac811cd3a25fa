import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp, type AppOptions } from '../../examples/invoicing-service/src/app.ts';
import { HASH_PARTITIONS, migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { serviceGuard } from '../../examples/invoicing-service/src/guard.ts';
import { connectAppOnly, createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { ContractChecker } from './contract.ts';
import { Metering, type Tenantwall } from '../../src/index.ts';
import { startOperator } from '../../examples/invoicing-service/src/operator.ts';
import { meteringSpec } from '../../examples/invoicing-service/src/metering.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TenantFixture {
  id: string;
  slug: string;
  key: string;
  keyId: string;
  placement: 'shared' | 'dedicated';
}

export interface ServiceFixture {
  app: FastifyInstance;
  /** The app whose process runs the admin API's jobs (their metrics): `app`, or the operator's under TW_TEST_APP_ONLY. */
  adminApp: FastifyInstance;
  db: Tenantwall;
  t: TestTenantwall;
  a: TenantFixture;
  b: TenantFixture;
  /** inject with tenant `who`'s API key. */
  as(who: TenantFixture, opts: InjectOptions): Promise<LightMyRequestResponse>;
  admin(opts: InjectOptions): Promise<LightMyRequestResponse>;
  /** Every response is checked against /openapi.json; close() fails on any violation. */
  contract: ContractChecker;
  close(): Promise<void>;
}

/**
 * `TW_TEST_RLS=off`: the service's tests run with row-level security disabled on every table (partitions
 * included), so only the application guard stands between tenants (layer independence, docs/guard.md).
 * test/service/rls-off.test.ts re-runs the service suite this way inside `npm test`.
 */
export const RLS_OFF = process.env.TW_TEST_RLS === 'off';

/**
 * `TW_TEST_APP_ONLY=1`: the app under test is a web process connected with the application role's URL only (no
 * owner credential); its admin and console requests are relayed to an operator (operator.ts) running the same app
 * with the owner connection. test/service/app-only.test.ts re-runs the service suite this way inside `npm test`.
 */
export const APP_ONLY = process.env.TW_TEST_APP_ONLY === '1';

/** Turns row-level security off on every table of `database` that has it (superuser), and checks that it is off. */
export async function disableRls(database: string): Promise<string[]> {
  const { rows } = await superQuery(
    database,
    `SELECT c.oid::regclass::text AS name FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE c.relkind IN ('r', 'p') AND (c.relrowsecurity OR c.relforcerowsecurity) AND n.nspname NOT IN ('pg_catalog', 'information_schema')`,
  );
  const names = rows.map((r) => r.name as string);
  if (names.length === 0) throw new Error('no table with row-level security found: nothing to disable?');
  await superQuery(database, names.map((n) => `ALTER TABLE ${n} NO FORCE ROW LEVEL SECURITY; ALTER TABLE ${n} DISABLE ROW LEVEL SECURITY;`).join('\n'));
  const left = await superQuery(database, `SELECT count(*)::int AS n FROM pg_class WHERE relrowsecurity OR relforcerowsecurity`);
  if (left.rows[0]?.n !== 0) throw new Error('row-level security is still on somewhere');
  return names;
}

/** The hash bucket (0..HASH_PARTITIONS-1) of a tenant id in the service's partitioned tables. */
export async function bucketOf(database: string, tenantId: string): Promise<number> {
  const { rows } = await superQuery(
    database,
    `SELECT r FROM generate_series(0, $2::int - 1) r WHERE satisfies_hash_partition('customers'::regclass, $2::int, r, $1::uuid)`,
    [tenantId, HASH_PARTITIONS],
  );
  return rows[0]?.r as number;
}

/** A random tenant id that falls into hash bucket `bucket`. */
export async function idInBucket(database: string, bucket: number): Promise<string> {
  for (;;) {
    const id = randomUUID();
    if ((await bucketOf(database, id)) === bucket) return id;
  }
}

/**
 * A fresh database with the service schema (the invoicing tables partitioned), the app, and two tenants with one
 * API key each: A with DEDICATED placement (its own partition of every partitioned table) and B shared, in the
 * same hash bucket as A, so B's rows sit in the DEFAULT partition right next to A's. The service's statement
 * guard is on, as in `npm start`; with TW_TEST_RLS=off row-level security is off on every table.
 */
export async function startService(
  appOptions: Partial<AppOptions> = {},
  options: { metering?: boolean; /** Called before the contract check is installed (its onSend hooks run first). */ beforeCheck?: (app: FastifyInstance) => void } = {},
): Promise<ServiceFixture> {
  const t = await createTestTenantwall(schema, migrations, { guard: serviceGuard() });
  if (RLS_OFF) {
    const names = await disableRls(t.database.name);
    for (const table of schema.tenantTables) {
      if (!names.includes(table.name)) throw new Error(`row-level security was not on for ${table.name}`);
    }
  }
  // As `npm start` runs it when asked: metering with the service's spec (rate limits off, they would depend on speed).
  const meteringOptions = options.metering ? { spec: { ...meteringSpec, plans: { ...meteringSpec.plans, free: { ...meteringSpec.plans.free, rateLimits: [] } } } } : undefined;
  const metering = meteringOptions ? new Metering(t.db, meteringOptions) : undefined;
  const owner = APP_ONLY ? await buildApp({ db: t.db, adminToken: ADMIN_TOKEN, ...(metering ? { metering } : {}), ...appOptions }) : undefined;
  const operator = owner ? await startOperator(owner, t.db, { heartbeatMs: 200 }) : undefined;
  const webDb = APP_ONLY ? await connectAppOnly({ schema, guard: serviceGuard(), appDatabaseUrl: t.db.options.appDatabaseUrl as string }) : t.db;
  if (webDb.hasOwner !== !APP_ONLY) throw new Error('TW_TEST_APP_ONLY: the web process must hold no owner connection');
  const webMetering = APP_ONLY && meteringOptions ? new Metering(webDb, meteringOptions) : metering;
  const app = await buildApp({ db: webDb, adminToken: ADMIN_TOKEN, ...(webMetering ? { metering: webMetering } : {}), ...appOptions });
  options.beforeCheck?.(app);
  const contract = new ContractChecker(() => app.swagger() as Record<string, unknown>);
  contract.install(app);
  await app.ready();
  const admin = (opts: InjectOptions) => app.inject({ ...opts, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...opts.headers } });
  async function tenant(slug: string, placement: 'shared' | 'dedicated', id?: string): Promise<TenantFixture> {
    const created = await admin({ method: 'POST', url: '/admin/tenants', payload: { slug, name: slug.toUpperCase(), placement, ...(id ? { id } : {}) } });
    if (created.statusCode !== 201 || created.json().placement !== placement) throw new Error(`tenant create: ${created.statusCode} ${created.body}`);
    const tid = created.json().id as string;
    const key = await admin({ method: 'POST', url: `/admin/tenants/${tid}/api-keys`, payload: { name: 'test' } });
    if (key.statusCode !== 201) throw new Error(`key create: ${key.statusCode} ${key.body}`);
    return { id: tid, slug, key: key.json().key, keyId: key.json().id, placement };
  }
  const a = await tenant('tenant-a', 'dedicated');
  // On Citus the tables are distributed, not partitioned (the shards are the partitions): no bucket to share.
  const partitioned = (await superQuery(t.database.name, `SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'customers'::regclass`)).rowCount === 1;
  const b = await tenant('tenant-b', 'shared', partitioned ? await idInBucket(t.database.name, await bucketOf(t.database.name, a.id)) : undefined);
  if (RLS_OFF) {
    // A's dedicated partitions were created with row-level security on (as every partition is): off too. (On
    // Citus there are no partitions: every table's RLS is already off.)
    if (partitioned) await disableRls(t.database.name);
    // Without RLS, the guard is the only layer: it must be there and refuse an unscoped statement.
    const refused = await t.db.forTenant(a.id).query('SELECT count(*) FROM invoices').then(
      () => false,
      (err: unknown) => (err as { code?: string }).code === 'unscoped_query',
    );
    if (!refused) throw new Error('TW_TEST_RLS=off needs the statement guard, but an unscoped statement was not refused');
  }
  return {
    app,
    adminApp: owner ?? app,
    db: t.db,
    t,
    a,
    b,
    as: (who, opts) => app.inject({ ...opts, headers: { authorization: `Bearer ${who.key}`, ...opts.headers } }),
    admin,
    contract,
    async close() {
      await app.close();
      if (APP_ONLY) {
        await webMetering?.close();
        await webDb.close();
        await operator?.stop();
        await owner?.close();
      }
      await metering?.close();
      await t.close();
      if (contract.violations.length > 0) throw new Error(`responses outside the OpenAPI document:\n${contract.violations.join('\n')}`);
    },
  };
}

/**
 * Runs service test files again in a child test run with `env` added (TW_TEST_RLS=off, TW_TEST_APP_ONLY=1): their
 * setup (startService) reads it. Returns the exit code, the output and the TAP pass/fail counts.
 */
export async function runServiceFiles(files: readonly string[], env: Record<string, string>): Promise<{ code: number; out: string; pass: number; fail: number }> {
  // NODE_TEST_CONTEXT marks a process that the test runner started; a nested run would then refuse to run files.
  const { NODE_TEST_CONTEXT: _, ...inherited } = process.env;
  const here = path.dirname(fileURLToPath(import.meta.url));
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=tap', ...files.map((f) => path.join(here, f))], {
    env: { ...inherited, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(out)?.[1] ?? NaN);
  return { code, out, pass: count('pass'), fail: count('fail') };
}
