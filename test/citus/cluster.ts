/**
 * The Citus suite's access to a real cluster: CITUS_URL is the coordinator (superuser). Without it the suite
 * is skipped with a visible reason (npm test); .ci/run starts ../shared/citus and sets it.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Tenantwall, type CreateTenantwallOptions, type Migration, type Schema } from '../../src/index.ts';
import type { TestDatabase } from '../helpers/db.ts';

export const CITUS_URL = process.env.CITUS_URL;

/** `skip` option of every Citus test: false when a cluster is given, else the reason shown by the reporter. */
export const skipWithoutCitus: string | false = CITUS_URL
  ? false
  : 'CITUS_URL is not set: the Citus suite needs a real cluster (.ci/run starts ../shared/citus; see docs/scale-out.md)';

export interface Node {
  readonly host: string;
  readonly port: number;
}

export interface CitusDatabase extends TestDatabase {
  readonly coordinator: Node;
  /** The workers registered in this database's metadata. */
  readonly workers: readonly Node[];
  /** Every worker of the cluster (the database exists on each; `registerWorkers` may leave some unregistered). */
  readonly allWorkers: readonly Node[];
  /** URL of `node` for `user` (trust or the app password), on this database. */
  nodeUrl(node: Node, user?: string): string;
}

function urlFor(base: string, node: Node, database: string, user?: string, password?: string): string {
  const u = new URL(base);
  u.hostname = node.host;
  u.port = String(node.port);
  u.pathname = `/${database}`;
  if (user !== undefined) {
    u.username = encodeURIComponent(user);
    u.password = password === undefined ? '' : encodeURIComponent(password);
  }
  return u.toString();
}

async function run(url: string, sqls: readonly string[]): Promise<pg.QueryResult[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    const out: pg.QueryResult[] = [];
    for (const sql of sqls) out.push(await c.query(sql));
    return out;
  } finally {
    await c.end();
  }
}

/**
 * A fresh Citus database: created on the coordinator and every worker (plain CREATE DATABASE is not
 * propagated), the extension on each, the workers registered in its metadata. The application role
 * (created through the coordinator, so on every worker) gets the test password.
 */
export async function createCitusDatabase(coordinatorUrl = CITUS_URL, options: { registerWorkers?: number; shardCount?: number } = {}): Promise<CitusDatabase> {
  if (!coordinatorUrl) throw new Error('CITUS_URL is not set');
  const url = (node: Node, database: string, user?: string, password?: string) => urlFor(coordinatorUrl, node, database, user, password);
  const base = new URL(coordinatorUrl);
  const coordinator: Node = { host: base.hostname, port: Number(base.port || 5432) };
  const [nodes] = await run(coordinatorUrl, [
    `SELECT nodename AS host, nodeport AS port FROM pg_dist_node WHERE noderole = 'primary' AND groupid <> 0 AND isactive ORDER BY nodeport`,
  ]);
  // registerWorkers: only the first n workers join this database's cluster (a test adds the others later).
  const allWorkers: Node[] = (nodes as pg.QueryResult).rows.map((r) => ({ host: r.host, port: Number(r.port) }));
  const workers = allWorkers.slice(0, options.registerWorkers);
  if (workers.length === 0) throw new Error('The Citus cluster at CITUS_URL has no active worker.');
  await ensureAppRole(coordinatorUrl);
  const name = `tw_citus_${randomBytes(6).toString('hex')}`;
  for (const node of [coordinator, ...allWorkers]) {
    await run(url(node, 'postgres'), [`CREATE DATABASE ${name}`]);
    await run(url(node, name), ['SET client_min_messages = warning', 'CREATE EXTENSION citus']);
  }
  if (options.shardCount) await run(url(coordinator, 'postgres'), [`ALTER DATABASE ${name} SET citus.shard_count = ${Math.floor(options.shardCount)}`]);
  await run(url(coordinator, name), [
    `SELECT citus_set_coordinator_host('${coordinator.host}', ${coordinator.port})`,
    ...workers.map((w) => `SELECT citus_add_node('${w.host}', ${w.port})`),
  ]);
  return {
    name,
    url: url(coordinator, name),
    coordinator,
    workers,
    allWorkers,
    nodeUrl: (node, user) => url(node, name, user, user === undefined ? undefined : process.env.TENANTWALL_APP_PASSWORD),
    async drop() {
      const nodes = [coordinator, ...allWorkers];
      // A shard move that failed half-way (or one still being cleaned up) can leave logical replication
      // subscriptions and slots in the database, which DROP DATABASE refuses: detach and drop the subscriptions on
      // every node, then the slots (their walsenders stopped first), then the database (a throwaway test cluster).
      for (const node of nodes) {
        const subs = await run(url(node, name), [`SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`]).catch(() => []);
        for (const { subname } of (subs[0]?.rows ?? []) as Array<{ subname: string }>) {
          const q = `"${subname.replaceAll('"', '""')}"`;
          await run(url(node, name), [`ALTER SUBSCRIPTION ${q} DISABLE`, `ALTER SUBSCRIPTION ${q} SET (slot_name = NONE)`, `DROP SUBSCRIPTION ${q}`]).catch(() => undefined);
        }
      }
      for (const node of nodes) {
        const admin = url(node, 'postgres');
        for (;;) {
          const [slots] = await run(admin, [
            `SELECT slot_name, active_pid, pg_terminate_backend(active_pid) AS stopped FROM pg_replication_slots WHERE database = '${name}'`,
          ]);
          const left = (slots as pg.QueryResult<{ slot_name: string; active_pid: number | null }>).rows;
          if (left.length === 0) break;
          // A slot can only be dropped once no walsender holds it: the terminated ones let go within moments.
          for (const s of left.filter((r) => r.active_pid === null)) await run(admin, [`SELECT pg_drop_replication_slot('${s.slot_name}')`]).catch(() => undefined);
          if (left.some((r) => r.active_pid !== null)) await new Promise((resolve) => setTimeout(resolve, 50));
        }
        await run(admin, [`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`]);
      }
    },
  };
}

async function ensureAppRole(coordinatorUrl: string): Promise<void> {
  const password = (process.env.TENANTWALL_APP_PASSWORD ?? '').replace(/'/g, "''");
  // Test files run in parallel: one at a time (concurrent ALTER ROLE fails with "tuple concurrently updated").
  await run(coordinatorUrl, [
    `SELECT pg_advisory_lock(hashtext('tenantwall-test-app-role'))`,
    `DO $$ BEGIN
       IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tenantwall_app') THEN
         CREATE ROLE tenantwall_app LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;
       END IF;
     END $$`,
    `ALTER ROLE tenantwall_app PASSWORD '${password}'`,
  ]);
}

export interface CitusTenantwall {
  readonly db: Tenantwall;
  readonly database: CitusDatabase;
  close(): Promise<void>;
}

/** A fresh Citus database migrated with `migrations` and a Tenantwall connected to it. */
export async function createCitusTenantwall(
  schema: Schema,
  migrations: readonly Migration[],
  options: Partial<CreateTenantwallOptions> = {},
  cluster: { registerWorkers?: number; shardCount?: number } = {},
): Promise<CitusTenantwall> {
  const database = await createCitusDatabase(CITUS_URL, cluster);
  const db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, ...options });
  await db.migrate(migrations);
  return {
    db,
    database,
    async close() {
      await db.close();
      await database.drop();
    },
  };
}

/** Runs `sqls` on one connection to `url` and returns the last result. */
export async function queryAt(url: string, ...sqls: string[]): Promise<pg.QueryResult> {
  const results = await run(url, sqls);
  return results[results.length - 1] as pg.QueryResult;
}
