import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { type CreateTenantwallOptions, type EmbeddedServer, type Migration, type Schema, Tenantwall, startEmbeddedPostgres } from '../src/index.ts';

/** What every bench module receives: one server for the whole run, fresh databases on demand. */
export interface BenchHarness {
  /** Superuser URL of the server's `postgres` database. */
  readonly adminUrl: string;
  /** The application role's password (for servers started in child processes). */
  readonly appPassword: string;
  readonly serverVersion: string;
  /** A fresh database migrated with `migrations`, and a Tenantwall on it. Closed at the end of the run. */
  createTenantwall(schema: Schema, migrations: readonly Migration[], options?: Partial<CreateTenantwallOptions>): Promise<Tenantwall>;
  /** Superuser URL of a database created by createTenantwall/createDatabase. */
  urlOf(database: string): string;
  createDatabase(): Promise<string>;
}

export function urlFor(base: string, database: string): string {
  const u = new URL(base);
  u.pathname = `/${database}`;
  return u.toString();
}

export async function openHarness(): Promise<{ harness: BenchHarness; close(): Promise<void> }> {
  let embedded: EmbeddedServer | undefined;
  let adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantwall-bench-'));
    // Durable defaults (fsync on): figures should resemble a real server.
    embedded = await startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port: 20000 + Math.floor(Math.random() * 20000), persistent: false, settings: { max_connections: '200' } });
    adminUrl = embedded.url;
  }
  const appPassword = randomBytes(12).toString('hex');
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  const version = (await admin.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]?.v ?? '?';
  if ((await admin.query(`SELECT 1 FROM pg_roles WHERE rolname = 'tenantwall_app'`)).rowCount === 0) {
    await admin.query('CREATE ROLE tenantwall_app LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT');
  }
  await admin.query(`ALTER ROLE tenantwall_app PASSWORD '${appPassword}'`);
  const databases: string[] = [];
  const instances: Tenantwall[] = [];
  const base = adminUrl;
  const createDatabase = async () => {
    const name = `tw_bench_${randomBytes(5).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${name}`);
    databases.push(name);
    return name;
  };
  const harness: BenchHarness = {
    adminUrl: base,
    appPassword,
    serverVersion: version,
    urlOf: (db) => urlFor(base, db),
    createDatabase,
    async createTenantwall(schema, migrations, options = {}) {
      const name = await createDatabase();
      const db = await Tenantwall.connect({ schema, databaseUrl: urlFor(base, name), manageRoles: false, appPassword, ...options });
      instances.push(db);
      await db.migrate(migrations);
      return db;
    },
  };
  return {
    harness,
    async close() {
      for (const db of instances) await db.close();
      for (const name of databases) await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await admin.end();
      await embedded?.stop();
    },
  };
}

/**
 * CPU time (µs) used so far by each PostgreSQL server process on this machine; empty where /proc is not readable.
 * With `database`: only the backends connected to that database (their command line names it), so that other
 * servers and databases on a shared machine are not counted.
 */
export function postgresCpu(database?: string): Map<string, number> {
  const out = new Map<string, number>();
  let pids: string[];
  try {
    pids = fs.readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return out;
  }
  for (const pid of pids) {
    try {
      const cmdline = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1');
      if (!cmdline.startsWith('postgres') || (database !== undefined && !cmdline.includes(` ${database} `))) continue;
      const fields = (fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1] as string).split(' ');
      out.set(pid, (Number(fields[11]) + Number(fields[12])) * 10_000); // utime + stime, USER_HZ = 100
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

/** CPU time (µs) used so far by process `pid` (utime + stime from /proc); NaN where /proc is not readable. */
export function processCpuUs(pid: number): number {
  try {
    const fields = (fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1] as string).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10_000; // USER_HZ = 100
  } catch {
    return NaN;
  }
}

/**
 * CPU time (µs) the PostgreSQL processes used since `before` (a `postgresCpu()` snapshot): processes alive at
 * both ends, plus new ones. A process that exited in between is not counted (its time is gone from /proc).
 */
export function postgresCpuSince(before: Map<string, number>, database?: string): number {
  let us = 0;
  for (const [pid, now] of postgresCpu(database)) us += now - (before.get(pid) ?? 0);
  return us;
}

/** Percentile of sorted latencies (ms). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/**
 * Runs `op` from `concurrency` workers for `durationMs`; returns ops/s and latency percentiles. Each worker
 * awaits its own op, so this measures a closed loop like a pool of request handlers.
 */
export async function measure(op: (i: number) => Promise<unknown>, options: { durationMs: number; concurrency: number }): Promise<{ opsPerSec: number; p50: number; p99: number; ops: number }> {
  const latencies: number[] = [];
  const end = performance.now() + options.durationMs;
  let i = 0;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (performance.now() < end) {
        const t0 = performance.now();
        await op(i++);
        latencies.push(performance.now() - t0);
      }
    }),
  );
  const elapsed = (performance.now() - start) / 1000;
  latencies.sort((a, b) => a - b);
  return { opsPerSec: latencies.length / elapsed, p50: percentile(latencies, 50), p99: percentile(latencies, 99), ops: latencies.length };
}

/**
 * `measure`, plus the CPU time (µs, in all) this process (Node.js) and the PostgreSQL backends of `database` used
 * meanwhile: on a shared machine throughput follows whatever else runs, the CPU per operation less so.
 */
export async function measureWithCpu(
  op: (i: number) => Promise<unknown>,
  options: { durationMs: number; concurrency: number },
  database: string,
): Promise<Awaited<ReturnType<typeof measure>> & { nodeUs: number; pgUs: number }> {
  const pg0 = postgresCpu(database);
  const cpu0 = process.cpuUsage();
  const m = await measure(op, options);
  const cpu = process.cpuUsage(cpu0);
  return { ...m, nodeUs: cpu.user + cpu.system, pgUs: postgresCpuSince(pg0, database) };
}

/** Listens on a free loopback port; returns the base URL. */
export async function listenLocal(app: FastifyInstance): Promise<string> {
  await app.listen({ port: 0, host: '127.0.0.1' });
  return `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
}
