/**
 * `npm run bench -- citus` (CITUS_URL = coordinator of a Citus cluster, e.g. `../shared/citus/cluster.sh url`):
 * a tenant-scoped primary-key lookup through the library (on Citus: BEGIN; SET LOCAL; SELECT; COMMIT pipelined,
 * one round trip to the coordinator) against the same lookup with the bare driver on an identical distributed
 * table without RLS (colocated, same keys, same app role and pool). Both are routed to one worker.
 * Then (informational) the service's `GET /invoices/:id` full stack on Citus against the same on a single
 * PostgreSQL 15 (BENCH_PG15_URL, default the Debian server on 127.0.0.1:5432), and the write-block window of an
 * online move of a 300,000-row tenant to a dedicated node, measured from outside by a writer probe.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import pino from 'pino';
import { buildApp } from '../examples/invoicing-service/src/app.ts';
import { migrations as serviceMigrations, schema as serviceSchema } from '../examples/invoicing-service/src/schema.ts';
import { Tenantwall, defineSchema, moveTenant, tenantTable, type Migration, type TenantId } from '../src/index.ts';
import { runPipelined } from '../src/db/pipelined-query.ts';
import { createCitusDatabase } from '../test/citus/cluster.ts';
import { compare } from './core.ts';
import { type BenchHarness, listenLocal } from './harness.ts';
import { type TargetFigures, compareAlternating, describe } from './load.ts';

const schema = defineSchema({
  tables: [
    tenantTable({
      name: 'invoices',
      columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, customer: { type: 'text' }, amount_cents: { type: 'bigint' } },
    }),
  ],
});
const migrations: Migration[] = [
  { version: 1, name: 'init', sql: (ctx) => ctx.createSchema() },
  {
    version: 2,
    name: 'baseline copy without RLS',
    sql: (ctx) => `CREATE TABLE invoices_plain (LIKE invoices INCLUDING ALL);
SELECT create_distributed_table('invoices_plain', 'tenant_id', colocate_with => 'invoices');
ALTER TABLE invoices_plain ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id);
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices_plain TO ${ctx.appRole};`,
  },
];

const TENANTS = 100;
const PER_TENANT = 1000;

function fmt(n: number): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: 2, minimumFractionDigits: 2 });
}

/** BENCH_CITUS_PARTS: a comma-separated subset of lookup, http, move (default: all three). */
const PARTS = new Set((process.env.BENCH_CITUS_PARTS ?? 'lookup,http,move').split(',').map((p) => p.trim()));

export default async function run(h: BenchHarness): Promise<void> {
  const url = process.env.CITUS_URL ?? h.adminUrl;
  if (!(await isCitus(url))) throw new Error('bench citus needs CITUS_URL (or DATABASE_URL) = the coordinator of a Citus cluster, e.g. $(../shared/citus/cluster.sh url)');
  if (PARTS.has('lookup')) await lookups(url);
  if (PARTS.has('http')) await httpCitusVsSingle(url);
  if (PARTS.has('move')) await moveWindow(url);
}

async function lookups(url: string): Promise<void> {
  process.env.TENANTWALL_APP_PASSWORD ??= randomBytes(12).toString('hex');
  const database = await createCitusDatabase(url);
  const db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, appPassword: process.env.TENANTWALL_APP_PASSWORD, poolSize: 8 });
  try {
    await db.migrate(migrations);
    const admin = db.dangerouslyCrossTenant();
    const tenants: TenantId[] = [];
    for (let i = 0; i < TENANTS; i++) tenants.push((await db.tenants.create({ slug: `t${i}`, name: `T${i}` })).id);
    await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, ${PER_TENANT}) g`);
    await admin.query('INSERT INTO invoices_plain SELECT * FROM invoices');
    await admin.query('ANALYZE invoices');
    await admin.query('ANALYZE invoices_plain');
    const keys = (await admin.query<{ tenant_id: TenantId; id: string }>('SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT 5000')).rows;
    const workers = (await admin.query(`SELECT count(*)::int AS n FROM pg_dist_node WHERE groupid <> 0`)).rows[0]?.n;
    console.log(`Citus ${db.citusVersion}, ${workers} workers; data: ${TENANTS} tenants x ${PER_TENANT} invoices (32 shards); lookups over 5,000 random keys; scope mode ${db.options.scopeMode}`);
    const bare = db.dangerouslyRawAppPool();
    const key = (i: number) => keys[i % keys.length] as { tenant_id: TenantId; id: string };
    const lookup = 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2';
    const lookups = await compare('primary-key lookup on Citus', [
      { name: 'bare driver, no tenancy (invoices_plain)', op: (i) => bare.query('SELECT * FROM invoices_plain WHERE tenant_id = $1 AND id = $2', [key(i).tenant_id, key(i).id]) },
      { name: 'forTenant(id).query (BEGIN/SET LOCAL, 1 round trip)', op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      {
        name: 'bare driver inside BEGIN ... COMMIT (same SQL, no tenancy)',
        op: (i) => bare.query(`BEGIN; SELECT * FROM invoices_plain WHERE tenant_id = '${key(i).tenant_id}' AND id = '${key(i).id}'; COMMIT`),
      },
      { name: "forTenant(id).query, plan: 'generic'", op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id], { plan: 'generic' }) },
      {
        // What the library sends, by hand and without RLS, the guard or any check: BEGIN, SET LOCAL, the SELECT and
        // COMMIT as four extended-protocol statements in one pipeline (as one simple-query string Citus would
        // forward the whole string to the worker with the SET and fail). Its ratio is the ceiling of any scoping
        // by SET LOCAL on Citus; the library's own share is its ratio against this one (docs/scale-out.md).
        name: 'bare pipeline: BEGIN; SET LOCAL; SELECT; COMMIT (no RLS)',
        op: async (i) => {
          const client = await bare.connect();
          try {
            await runPipelined(client, 'SELECT * FROM invoices_plain WHERE tenant_id = $1 AND id = $2', [key(i).tenant_id, key(i).id], [
              { name: 'bench_begin', text: 'BEGIN', values: [], returnsRow: false },
              { name: '', text: `SET LOCAL ${db.options.settingName} = '${key(i).tenant_id}'`, values: [], returnsRow: false },
            ], [{ name: 'bench_commit', text: 'COMMIT', values: [], returnsRow: false }]);
          } finally {
            client.release();
          }
        },
      },
    ]);
    const scoped = lookups.get('forTenant(id).query (BEGIN/SET LOCAL, 1 round trip)')?.ratio ?? 0;
    const byHand = lookups.get('bare pipeline: BEGIN; SET LOCAL; SELECT; COMMIT (no RLS)')?.ratio ?? 0;
    console.log(`  => scoped lookup / bare lookup on Citus = ${fmt(scoped)} (target >= 0.90)`);
    console.log(`  => the same transaction by hand without RLS / bare lookup = ${fmt(byHand)}; scoped lookup / that = ${fmt(byHand > 0 ? scoped / byHand : 0)} (tenantwall's own share)`);
  } finally {
    await db.close();
    await database.drop();
  }
}

const PG15_URL = process.env.BENCH_PG15_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

/** The service on a fresh database of `adminUrl` (Citus: on every node); returns the listening URL and a key. */
async function startService(adminUrl: string, citus: boolean) {
  let url: string;
  let drop: () => Promise<void>;
  if (citus) {
    const d = await createCitusDatabase(adminUrl);
    url = d.url;
    drop = () => d.drop();
  } else {
    const name = `tw_bench_${randomBytes(5).toString('hex')}`;
    const c = new pg.Client({ connectionString: adminUrl });
    await c.connect();
    await c.query(`CREATE DATABASE ${name}`);
    if ((await c.query(`SELECT 1 FROM pg_roles WHERE rolname = 'tenantwall_app'`)).rowCount === 0) await c.query('CREATE ROLE tenantwall_app LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT');
    await c.query(`ALTER ROLE tenantwall_app PASSWORD '${process.env.TENANTWALL_APP_PASSWORD}'`);
    await c.end();
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    url = u.toString();
    drop = async () => {
      const a = new pg.Client({ connectionString: adminUrl });
      await a.connect();
      await a.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await a.end();
    };
  }
  const db = await Tenantwall.connect({ schema: serviceSchema, databaseUrl: url, manageRoles: false, appPassword: process.env.TENANTWALL_APP_PASSWORD, poolSize: 8 });
  await db.migrate(serviceMigrations);
  const app = await buildApp({ db, adminToken: 'bench-admin-token-0123456789', logger: { level: 'info', stream: pino.destination({ dest: '/dev/null', sync: false }) } });
  const tenant = await db.tenants.create({ slug: 'bench', name: 'Bench' });
  const { key } = await app.tenantwall.apiKeys.create(tenant.id, { name: 'bench' });
  const { rows } = await db.forTenant(tenant.id).query<{ id: string }>(
    `INSERT INTO invoices (tenant_id, customer, amount_cents, status, issued_at) SELECT $1, 'customer ' || g, g, 'issued', now() FROM generate_series(1, 2000) g RETURNING id`,
    [tenant.id],
  );
  const listening = await listenLocal(app);
  return {
    url: listening,
    key,
    paths: rows.map((r) => `/invoices/${r.id}`),
    async close() {
      await app.close();
      await db.close();
      await drop();
    },
  };
}

async function httpCitusVsSingle(citusUrl: string): Promise<void> {
  let single: Awaited<ReturnType<typeof startService>> | undefined;
  try {
    single = await startService(PG15_URL, false);
  } catch (err) {
    console.log(`GET /invoices/:id Citus vs single PostgreSQL 15: skipped, no PostgreSQL 15 at ${PG15_URL} (${(err as Error).message})`);
    return;
  }
  const onCitus = await startService(citusUrl, true);
  try {
    const c = await compareAlternating(
      [
        { name: 'full stack on Citus', url: onCitus.url, paths: onCitus.paths, headers: { authorization: `Bearer ${onCitus.key}` } },
        { name: 'full stack on one PostgreSQL 15', url: single.url, paths: single.paths, headers: { authorization: `Bearer ${single.key}` } },
      ],
      { connections: 16, durationS: 3, rounds: 4, warmupS: 2 },
    );
    console.log('GET /invoices/:id full stack, 16 connections, 4 rounds x 3 s, alternating; coordinator, 2 workers and the single server share the machine\'s cores');
    for (const f of c.figures as TargetFigures[]) console.log(`  ${f.name} : ${describe(f)}`);
    console.log(`  => Citus / single PostgreSQL 15 throughput: median ${fmt(c.median)} (informational, not a target), per round ${c.ratios.map((r) => r.toFixed(2)).join(' ')}`);
  } finally {
    await Promise.allSettled([onCitus.close(), single.close()]);
  }
}

const MOVE_ROWS = Number(process.env.BENCH_CITUS_MOVE_ROWS ?? 300_000);

/**
 * Online move of a MOVE_ROWS-row tenant to a dedicated node (isolate, then move its shard group to the other
 * worker) while a probe writes one row at a time for that tenant: the longest probe write is the window in
 * which the tenant's writes were blocked (it includes one ordinary write's latency).
 */
async function moveWindow(citusUrl: string): Promise<void> {
  const database = await createCitusDatabase(citusUrl, { shardCount: 4 });
  const db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, appPassword: process.env.TENANTWALL_APP_PASSWORD, poolSize: 4 });
  try {
    await db.migrate(migrations.slice(0, 1));
    const big = (await db.tenants.create({ slug: 'big', name: 'Big' })).id;
    for (let i = 0; i < 3; i++) await db.tenants.create({ slug: `s${i}`, name: `S${i}` });
    const admin = db.dangerouslyCrossTenant();
    const seeded = performance.now();
    for (let done = 0; done < MOVE_ROWS; done += 50_000) {
      await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT $1, 'c' || g, g FROM generate_series(1, $2::int) g`, [big, Math.min(50_000, MOVE_ROWS - done)]);
    }
    await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, 1000) g WHERE t.id <> $1`, [big]);
    const from = (await admin.query<{ p: number }>(`SELECT nodeport AS p FROM citus_shards WHERE shardid = get_shard_id_for_distribution_column('invoices', $1::uuid)`, [big])).rows[0]?.p;
    const target = database.workers.find((w) => w.port !== Number(from)) ?? (database.workers[0] as { host: string; port: number });
    const scope = db.forTenant(big);
    let stop = false;
    const latencies: number[] = [];
    let failed = 0;
    const probe = (async () => {
      while (!stop) {
        const t0 = performance.now();
        try {
          await scope.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'probe', 1)`, [big]);
          latencies.push(performance.now() - t0);
        } catch {
          failed++;
        }
      }
    })();
    let r;
    try {
      r = await moveTenant(db, big, 'dedicated-node', { node: target });
    } finally {
      stop = true;
      await probe;
    }
    const sorted = [...latencies].sort((a, b) => a - b);
    const median = sorted[Math.floor(sorted.length / 2)] ?? 0;
    const max = sorted[sorted.length - 1] ?? 0;
    const res = r as unknown as { isolateMs: number; shardMoveMs: number; totalMs: number };
    console.log(`online move of a ${MOVE_ROWS.toLocaleString('en-US')}-row tenant to a dedicated node (seeded in ${fmt((performance.now() - seeded) / 1000)} s incl. the move): isolate ${fmt(res.isolateMs / 1000)} s, shard move ${fmt(res.shardMoveMs / 1000)} s, total ${fmt(res.totalMs / 1000)} s`);
    console.log(`  probe writes during the move: ${latencies.length} ok, ${failed} failed; median ${fmt(median)} ms`);
    console.log(`  => write-block window (longest probe write): ${fmt(max / 1000)} s (target < 1 s)`);
  } finally {
    await db.close();
    await database.drop();
  }
}

async function isCitus(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`)).rowCount === 1;
  } finally {
    await c.end();
  }
}
