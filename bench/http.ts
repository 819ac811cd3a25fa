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
 * - `tenantwall@before`, `tw kysely@before` (when BENCH_HTTP_BEFORE names a checkout of an earlier commit with
 *   this bench's http-server.ts and profile.ts copied into its bench/): the same routes served by that commit's
 *   library in the same run, for a before/after on one harness (docs/benchmarks.md says how).
 * - `service unpartitioned` (in BENCH_HTTP_TARGETS): the reference service on a second database seeded the same
 *   way but created by the migrations before partitioning (1-3), for the partitioned / unpartitioned ratio.
 *
 * Every answer of a sample of requests is checked to be the same row on every target. Ratios are per round
 * against `bare` in the same run; the median and the per-round range are printed, never asserted. Then each
 * target's server is profiled in its process (bench/profile.ts) and its CPU per request is shown by part,
 * beside the PostgreSQL CPU per request measured from /proc.
 */
import { resolve } from 'node:path';
import type { BenchHarness } from './harness.ts';
import type { ServerKind } from './http-server.ts';
import { type LoadTarget, LoadGenerator, type TargetFigures, compareAlternating, describe, median } from './load.ts';
import { type Part, formatParts } from './profile.ts';
import { type Dataset, ServerProcess, seed, zipfSizes } from './servers.ts';

const TENANTS = Number(process.env.BENCH_HTTP_TENANTS ?? 1_000);
const INVOICES = Number(process.env.BENCH_HTTP_INVOICES ?? 1_000_000);
const SAMPLE = Number(process.env.BENCH_HTTP_SAMPLE ?? 20_000);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 5);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 5);
const WARMUP_S = Number(process.env.BENCH_HTTP_WARMUP_S ?? 4);
const PROFILE_S = Number(process.env.BENCH_HTTP_PROFILE_S ?? 3);
const BEFORE = process.env.BENCH_HTTP_BEFORE ? resolve(process.env.BENCH_HTTP_BEFORE) : undefined;
const TARGETS = (process.env.BENCH_HTTP_TARGETS ?? `tenantwall,tw kysely,service${BEFORE ? ',tenantwall@before,tw kysely@before' : ''}`).split(',').filter(Boolean);
if (!BEFORE && TARGETS.some((t) => t.endsWith('@before'))) throw new Error('BENCH_HTTP_TARGETS names an @before target: set BENCH_HTTP_BEFORE to the checkout to run it from');

export default async function httpBench(harness: BenchHarness): Promise<void> {
  const t0 = performance.now();
  const sizes = zipfSizes(TENANTS, INVOICES);
  const total = sizes.reduce((a, b) => a + b, 0);
  const main = await seed(harness, sizes, 'partitioned', SAMPLE);
  const { mixRows } = main;
  console.log(
    `data: ${TENANTS} tenants, ${total} invoices (Zipf s=1: largest ${sizes[0]}, median ${sizes[Math.floor(TENANTS / 2)]}, smallest ${sizes[TENANTS - 1]}), seeded in ${((performance.now() - t0) / 1000).toFixed(0)} s; ` +
      `mix sample ${mixRows.length} requests over ${new Set(mixRows.map((r) => r.tenant_id)).size} tenants`,
  );
  const flat = TARGETS.includes('service unpartitioned') ? await seed(harness, sizes, 'unpartitioned', SAMPLE) : undefined;
  if (flat) console.log('data: the same seeded again into a database created by the migrations before partitioning (for `service unpartitioned`)');

  const start = (kind: ServerKind, data: Dataset, tree?: string) =>
    ServerProcess.start(
      {
        type: 'start',
        kind,
        databaseUrl: data.ownerUrl,
        appPassword: harness.appPassword,
        poolSize: main.db.options.poolSize,
        ...(kind === 'bare' ? { keys: [...data.tenantOfKey] } : {}),
        ...(data === flat ? { layout: 'unpartitioned' as const } : {}),
      },
      tree,
    );
  const servers: Array<{ name: string; server: ServerProcess; prefix: string; data: Dataset }> = [];
  const processes: ServerProcess[] = [];
  const launch = async (kind: ServerKind, data: Dataset, tree?: string) => {
    const p = await start(kind, data, tree);
    processes.push(p);
    return p;
  };
  try {
    // tenantwall and its Kysely route live in one app; a process each, so neither runs while the other's
    // promise hooks and caches are warm (a single-target run reuses the one process).
    for (const suffix of ['', '@before']) {
      const tree = suffix ? BEFORE : undefined;
      const tw = TARGETS.includes(`tenantwall${suffix}`), k = TARGETS.includes(`tw kysely${suffix}`);
      if (!tw && !k) continue;
      const first = await launch('tenantwall', main, tree);
      if (tw) servers.push({ name: `tenantwall${suffix}`, server: first, prefix: '', data: main });
      if (k) servers.push({ name: `tw kysely${suffix}`, server: tw ? await launch('tenantwall', main, tree) : first, prefix: '/k', data: main });
    }
    if (TARGETS.includes('service')) servers.push({ name: 'service', server: await launch('service', main), prefix: '', data: main });
    if (flat) servers.push({ name: 'service unpartitioned', server: await launch('service', flat), prefix: '', data: flat });
    servers.push({ name: 'bare', server: await launch('bare', main), prefix: '', data: main });
    await measureShapes();
  } finally {
    const closed = await Promise.allSettled(processes.map((p) => p.close()));
    const failed = closed.find((c) => c.status === 'rejected');
    if (failed) console.log(`! closing a server failed: ${String(failed.reason)}`);
  }

  async function measureShapes(): Promise<void> {
  const shapes = [
    { name: `mix: ${TENANTS} Zipf tenants, a key each, ${total} invoices`, rows: (d: Dataset) => d.mixRows },
    { name: `one tenant: the largest (${sizes[0]} invoices), one key`, rows: (d: Dataset) => d.bigRows },
  ];
  const load = await LoadGenerator.start();
  try {
    // Same answers everywhere, on a sample of the mix (of the main database; `service unpartitioned` has its own).
    const onMain = servers.filter((s) => s.data === main);
    for (const r of mixRows.slice(0, 50)) {
      const headers = { authorization: `Bearer ${main.keyOf.get(r.tenant_id)}` };
      const bodies = await Promise.all(onMain.map((s) => fetch(`${s.server.url}${s.prefix}/invoices/${r.id}`, { headers }).then((x) => x.text())));
      if (new Set(bodies).size !== 1) {
        console.log(`! the targets disagree on /invoices/${r.id}:\n${onMain.map((s, i) => `  ${s.name}: ${bodies[i]}`).join('\n')}`);
        break;
      }
    }
    for (const shape of shapes) {
      const targets: LoadTarget[] = servers.map((s) => ({
        name: s.name,
        url: s.server.url,
        pid: s.server.pid,
        paths: shape.rows(s.data).map((r) => `${s.prefix}/invoices/${r.id}`),
        pathHeaders: shape.rows(s.data).map((r) => ({ authorization: `Bearer ${s.data.keyOf.get(r.tenant_id)}` })),
      }));
      const c = await compareAlternating(targets, { connections: CONNECTIONS, durationS: DURATION_S, rounds: ROUNDS, warmupS: WARMUP_S, load });
      console.log(`\n${shape.name}: GET /invoices/:id, ${CONNECTIONS} connections, ${ROUNDS} rounds x ${DURATION_S}s after a ${WARMUP_S}s warm-up, alternating`);
      for (const [i, f] of c.figures.entries()) {
        console.log(`  ${f.name.padEnd(21)}: ${describe(f)}`);
        if (c.warmup?.[i]) console.log(`  ${''.padEnd(21)}  cold start (warm-up run): ${c.warmup[i].rps.toFixed(0)} req/s, p99 ${c.warmup[i].p99.toFixed(1)} ms`);
      }
      const base = c.figures[c.figures.length - 1] as TargetFigures;
      for (const [i, f] of c.figures.slice(0, -1).entries()) {
        const r = c.byTarget[i] as { ratios: readonly number[]; median: number };
        const target = f.name.startsWith('service') || f.name.endsWith('@before') ? '(informational)' : shape.name.startsWith('mix') ? '(target >= 0.90)' : '(target >= 0.95 tenantwall, >= 0.90 kysely)';
        console.log(`  ${f.name} / bare: median ${r.median.toFixed(2)} ${target}, per round ${Math.min(...r.ratios).toFixed(2)}-${Math.max(...r.ratios).toFixed(2)} [${r.ratios.map((x) => x.toFixed(2)).join(' ')}]   p99 ratio ${(f.p99 / base.p99).toFixed(2)}`);
      }
      // Pairs measured in the same rounds: their per-round ratio cancels the round's noise, as against bare.
      const pairs = [
        ['tenantwall', 'tenantwall@before', 'now / before'],
        ['tw kysely', 'tw kysely@before', 'now / before'],
        ['service', 'service unpartitioned', 'partitioned / unpartitioned (target >= 1.00 within the spread)'],
      ] as const;
      for (const [a, b, label] of pairs) {
        const ia = c.figures.findIndex((f) => f.name === a), ib = c.figures.findIndex((f) => f.name === b);
        if (ia < 0 || ib < 0) continue;
        const ra = (c.byTarget[ia] as { ratios: readonly number[] }).ratios, rb = (c.byTarget[ib] as { ratios: readonly number[] }).ratios;
        const per = ra.map((x, k) => x / (rb[k] as number));
        console.log(`  ${a} / ${b} (${label}): median ${median(per).toFixed(2)}, per round ${Math.min(...per).toFixed(2)}-${Math.max(...per).toFixed(2)} [${per.map((x) => x.toFixed(2)).join(' ')}]`);
      }
      // Where the server CPU goes, by part (a profiled run per target; profiling slows it, so not counted above).
      const columns: Array<{ name: string; perRequest: Map<Part, number> }> = [];
      for (const [i, t] of targets.entries()) {
        const perRequest = await (servers[i] as { server: ServerProcess }).server.profile(async () => (await load.run(t, CONNECTIONS, PROFILE_S)).requests);
        columns.push({ name: t.name, perRequest });
      }
      console.log(formatParts(columns));
      console.log(`  ${'postgres (all backends, /proc)'.padEnd(48)}${c.figures.map((f) => f.cpu.postgres.toFixed(1).padStart(Math.max(14, ...c.figures.map((x) => x.name.length + 2)))).join('')}`);
    }
  } finally {
    load.close();
  }
  }
}
