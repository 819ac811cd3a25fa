/**
 * HTTP: `GET /invoices/:id` against the best hand-written route (issue 20), on two traffic shapes:
 *
 * - **mix**: BENCH_HTTP_TENANTS (1,000) tenants with Zipf-distributed sizes (s = 1) over BENCH_HTTP_INVOICES
 *   (1,000,000) invoices, an API key each; requests pick a row uniformly, so a tenant's share of the traffic
 *   follows its size. Every server starts with cold caches (API keys, tenants, statements); the first run of
 *   each is printed as "cold" and not counted.
 * - **one tenant**: the largest tenant of that data set, its one key, ids over all its rows.
 *
 * Targets, each in its own process (bench/http-server.ts: no target pays for another's process-wide costs such
 * as AsyncLocalStorage's promise hooks), driven alternately by autocannon from a separate process (bench/load.ts):
 * - `tenantwall`: Fastify + the tenantwall plugin (API-key resolution), guard on, the route calls `db.query`
 *   with the tenant predicate (default plan mode), as README's "Use tenantwall in your app" does;
 * - `tw kysely`: the same with the Kysely integration writing the predicate;
 * - `service`: the reference service (metering, quotas, rate limits, its headers), informational;
 * - `bare` (the baseline): Fastify, an in-memory map from API key to tenant id, one named prepared statement
 *   `WHERE tenant_id = $1 AND id = $2` over a plain pg pool of the same size, as the table owner (no RLS).
 *
 * Every answer of a sample of requests is checked to be the same row on every target. Ratios are per round
 * against `bare` in the same run; the median and the per-round range are printed, never asserted. Then each
 * target's server is profiled in its process (bench/profile.ts) and its CPU per request is shown by part,
 * beside the PostgreSQL CPU per request measured from /proc.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { migrations, schema } from '../examples/invoicing-service/src/schema.ts';
import { serviceGuard } from '../examples/invoicing-service/src/guard.ts';
import { ApiKeyStore } from '../src/fastify/index.ts';
import type { BenchHarness } from './harness.ts';
import type { ServerKind, StartMessage } from './http-server.ts';
import { type LoadTarget, LoadGenerator, type TargetFigures, compareAlternating, describe } from './load.ts';
import { type Part, formatParts } from './profile.ts';

const TENANTS = Number(process.env.BENCH_HTTP_TENANTS ?? 1_000);
const INVOICES = Number(process.env.BENCH_HTTP_INVOICES ?? 1_000_000);
const SAMPLE = Number(process.env.BENCH_HTTP_SAMPLE ?? 20_000);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 5);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 5);
const WARMUP_S = Number(process.env.BENCH_HTTP_WARMUP_S ?? 4);
const PROFILE_S = Number(process.env.BENCH_HTTP_PROFILE_S ?? 3);
const TARGETS = (process.env.BENCH_HTTP_TARGETS ?? 'tenantwall,tw kysely,service').split(',').filter(Boolean);

/** A bench server in its own process. */
class ServerProcess {
  readonly #child: ChildProcess;
  url = '';
  private constructor(child: ChildProcess) {
    this.#child = child;
  }

  get pid(): number {
    return this.#child.pid as number;
  }

  static async start(start: StartMessage): Promise<ServerProcess> {
    const child = fork(new URL('./http-server.ts', import.meta.url), [], { execArgv: ['--import', 'tsx', '--conditions=tenantwall-source'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const s = new ServerProcess(child);
    await s.#request(undefined, 'up');
    s.url = (await s.#request(start, 'ready')) as string;
    return s;
  }

  #request(msg: unknown, answer: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`a bench server exited (${code})`));
      const onMessage = (m: Record<string, unknown>) => {
        if ('error' in m) reject(new Error(`bench server: ${String(m.error)}`));
        else if (answer in m) resolve(m[answer]);
        else return;
        this.#child.off('message', onMessage);
        this.#child.off('exit', onExit);
      };
      this.#child.on('message', onMessage);
      this.#child.once('exit', onExit);
      if (msg !== undefined) this.#child.send(msg as object);
    });
  }

  async profile(run: () => Promise<number>): Promise<Map<Part, number>> {
    await this.#request({ type: 'profile-start' }, 'profiling');
    const requests = await run();
    return new Map((await this.#request({ type: 'profile-stop', requests }, 'parts')) as Array<[Part, number]>);
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.send({ type: 'close' });
    await exited;
  }
}

/** Zipf sizes (s = 1) summing to about `total`, largest first, each at least 1. */
function zipfSizes(n: number, total: number): number[] {
  let h = 0;
  for (let i = 1; i <= n; i++) h += 1 / i;
  return Array.from({ length: n }, (_, i) => Math.max(1, Math.round(total / (i + 1) / h)));
}

export default async function httpBench(harness: BenchHarness): Promise<void> {
  const db = await harness.createTenantwall(schema, migrations, { guard: serviceGuard() });
  const dbName = new URL(db.options.databaseUrl as string).pathname.slice(1);
  const t0 = performance.now();

  // Tenants, a key each, Zipf-sized invoices (inserted by the owner in one statement).
  const sizes = zipfSizes(TENANTS, INVOICES);
  const tenantIds: string[] = [];
  for (let i = 0; i < TENANTS; i++) tenantIds.push((await db.tenants.create({ slug: `bench-${i}`, name: `Bench ${i}` })).id);
  const store = new ApiKeyStore(db);
  const keyOf = new Map<string, string>();
  const tenantOfKey = new Map<string, string>();
  for (const id of tenantIds) {
    const { key } = await store.create(id, { name: 'bench' });
    keyOf.set(id, key);
    tenantOfKey.set(key, id);
  }
  const owner = db.dangerouslyCrossTenant();
  await owner.query(
    `INSERT INTO invoices (tenant_id, customer, amount_cents, status, issued_at)
     SELECT t.id, 'customer ' || g, (g * 137) % 100000, 'issued', now()
     FROM unnest($1::uuid[], $2::int[]) AS t(id, n), generate_series(1, t.n) AS g`,
    [tenantIds, sizes],
  );
  await owner.query('VACUUM ANALYZE invoices').catch(async () => owner.query('ANALYZE invoices'));
  const total = sizes.reduce((a, b) => a + b, 0);
  const { rows: mixRows } = await owner.query<{ tenant_id: string; id: string }>(`SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT $1`, [SAMPLE]);
  const big = tenantIds[0] as string;
  const { rows: bigRows } = await owner.query<{ id: string }>(`SELECT id FROM invoices WHERE tenant_id = $1 ORDER BY random() LIMIT $2`, [big, SAMPLE]);
  console.log(
    `data: ${TENANTS} tenants, ${total} invoices (Zipf s=1: largest ${sizes[0]}, median ${sizes[Math.floor(TENANTS / 2)]}, smallest ${sizes[TENANTS - 1]}), seeded in ${((performance.now() - t0) / 1000).toFixed(0)} s; ` +
      `mix sample ${mixRows.length} requests over ${new Set(mixRows.map((r) => r.tenant_id)).size} tenants`,
  );

  const ownerUrl = harness.urlOf(dbName);
  const start = (kind: ServerKind, keys?: StartMessage['keys']) =>
    ServerProcess.start({ type: 'start', kind, databaseUrl: ownerUrl, appPassword: harness.appPassword, poolSize: db.options.poolSize, ...(keys ? { keys } : {}) });
  const servers: Array<{ name: string; server: ServerProcess; prefix: string }> = [];
  const processes: ServerProcess[] = [];
  try {
    if (TARGETS.includes('tenantwall') || TARGETS.includes('tw kysely')) {
      const tw = await start('tenantwall');
      processes.push(tw);
      if (TARGETS.includes('tenantwall')) servers.push({ name: 'tenantwall', server: tw, prefix: '' });
      // The Kysely route lives in the same app: a process of its own would only add a cold start.
      if (TARGETS.includes('tw kysely')) servers.push({ name: 'tw kysely', server: TARGETS.includes('tenantwall') ? await start('tenantwall').then((p) => (processes.push(p), p)) : tw, prefix: '/k' });
    }
    if (TARGETS.includes('service')) {
      const svc = await start('service');
      processes.push(svc);
      servers.push({ name: 'service', server: svc, prefix: '' });
    }
    const bare = await start('bare', [...tenantOfKey]);
    processes.push(bare);
    servers.push({ name: 'bare', server: bare, prefix: '' });
    await measureShapes();
  } finally {
    const closed = await Promise.allSettled(processes.map((p) => p.close()));
    const failed = closed.find((c) => c.status === 'rejected');
    if (failed) console.log(`! closing a server failed: ${String(failed.reason)}`);
  }

  async function measureShapes(): Promise<void> {
  const shapes = [
    { name: `mix: ${TENANTS} Zipf tenants, a key each, ${total} invoices`, rows: mixRows },
    { name: `one tenant: the largest (${sizes[0]} invoices), one key`, rows: bigRows.map((r) => ({ tenant_id: big, id: r.id })) },
  ];
  const load = await LoadGenerator.start();
  try {
    // Same answers everywhere, on a sample of the mix.
    for (const r of mixRows.slice(0, 50)) {
      const headers = { authorization: `Bearer ${keyOf.get(r.tenant_id)}` };
      const bodies = await Promise.all(servers.map((s) => fetch(`${s.server.url}${s.prefix}/invoices/${r.id}`, { headers }).then((x) => x.text())));
      if (new Set(bodies).size !== 1) {
        console.log(`! the targets disagree on /invoices/${r.id}:\n${servers.map((s, i) => `  ${s.name}: ${bodies[i]}`).join('\n')}`);
        break;
      }
    }
    for (const shape of shapes) {
      const targets: LoadTarget[] = servers.map((s) => ({
        name: s.name,
        url: s.server.url,
        pid: s.server.pid,
        paths: shape.rows.map((r) => `${s.prefix}/invoices/${r.id}`),
        pathHeaders: shape.rows.map((r) => ({ authorization: `Bearer ${keyOf.get(r.tenant_id)}` })),
      }));
      const c = await compareAlternating(targets, { connections: CONNECTIONS, durationS: DURATION_S, rounds: ROUNDS, warmupS: WARMUP_S, load });
      console.log(`\n${shape.name}: GET /invoices/:id, ${CONNECTIONS} connections, ${ROUNDS} rounds x ${DURATION_S}s after a ${WARMUP_S}s warm-up, alternating`);
      for (const [i, f] of c.figures.entries()) {
        console.log(`  ${f.name.padEnd(11)}: ${describe(f)}`);
        if (c.warmup?.[i]) console.log(`  ${''.padEnd(11)}  cold start (warm-up run): ${c.warmup[i].rps.toFixed(0)} req/s, p99 ${c.warmup[i].p99.toFixed(1)} ms`);
      }
      const base = c.figures[c.figures.length - 1] as TargetFigures;
      for (const [i, f] of c.figures.slice(0, -1).entries()) {
        const r = c.byTarget[i] as { ratios: readonly number[]; median: number };
        const target = f.name === 'service' ? '(informational)' : shape.name.startsWith('mix') ? '(target >= 0.90)' : '(target >= 0.95 tenantwall, >= 0.90 kysely)';
        console.log(`  ${f.name} / bare: median ${r.median.toFixed(2)} ${target}, per round ${Math.min(...r.ratios).toFixed(2)}-${Math.max(...r.ratios).toFixed(2)} [${r.ratios.map((x) => x.toFixed(2)).join(' ')}]   p99 ratio ${(f.p99 / base.p99).toFixed(2)}`);
      }
      // Where the server CPU goes, by part (a profiled run per target; profiling slows it, so not counted above).
      const columns: Array<{ name: string; perRequest: Map<Part, number> }> = [];
      for (const [i, t] of targets.entries()) {
        const perRequest = await (servers[i] as { server: ServerProcess }).server.profile(async () => (await load.run(t, CONNECTIONS, PROFILE_S)).requests);
        columns.push({ name: t.name, perRequest });
      }
      console.log(formatParts(columns));
      console.log(`  ${'postgres (all backends, /proc)'.padEnd(48)}${c.figures.map((f) => f.cpu.postgres.toFixed(1).padStart(14)).join('')}`);
    }
  } finally {
    load.close();
  }
  }
}
