/**
 * Observability: `GET /invoices/:id` through the reference service with metrics and tracing on against the
 * same service with `observability: false` (target >= 0.97), on the traffic the http bench models: BENCH_OBS_TENANTS
 * (1,000) Zipf-sized tenants over BENCH_OBS_INVOICES (200,000) invoices, an API key each, cold caches at start.
 *
 * Each service runs in its own process (bench/http-server.ts), as it would in production, so neither pays for
 * the other's process-wide costs:
 * - `on`: the service's default observability (the statement observer, prom-client metrics with per-tenant
 *   labels, process metrics) and an OpenTelemetry SDK registered in its process (AsyncLocalStorage context
 *   manager, a batch span processor recording every statement span and dropping it: no sampling);
 * - `off (control)`: a second process identical to `off`: its ratio to `off` is the noise band of the run;
 * - `off` (the baseline): `observability: false`, no SDK.
 * autocannon drives them alternately from a separate process (bench/load.ts). Printed per round: the
 * throughput ratios to `off` and each server's CPU per request (read from /proc), then a CPU profile of each by
 * part (bench/profile.ts). Figures are printed, never asserted.
 */
import type { BenchHarness } from './harness.ts';
import { type LoadTarget, LoadGenerator, compareAlternating, describe, median } from './load.ts';
import { formatParts, type Part } from './profile.ts';
import { ServerProcess, seed, zipfSizes } from './servers.ts';

const TENANTS = Number(process.env.BENCH_OBS_TENANTS ?? 1_000);
const INVOICES = Number(process.env.BENCH_OBS_INVOICES ?? 200_000);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 5);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 8);
const WARMUP_S = Number(process.env.BENCH_HTTP_WARMUP_S ?? 4);
const PROFILE_S = Number(process.env.BENCH_HTTP_PROFILE_S ?? 3);
const ADMIN = 'bench-admin-token-0123456789';

export default async function observabilityBench(harness: BenchHarness): Promise<void> {
  const t0 = performance.now();
  const sizes = zipfSizes(TENANTS, INVOICES);
  const data = await seed(harness, sizes, 'partitioned', 20_000);
  console.log(`data: ${TENANTS} tenants, ${sizes.reduce((a, b) => a + b, 0)} invoices (Zipf s=1, largest ${sizes[0]}), seeded in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  const kinds = [
    ['on', 'traced'],
    ['off (control)', 'off'],
    ['off', 'off'],
  ] as const;
  const servers: ServerProcess[] = [];
  const load = await LoadGenerator.start();
  try {
    for (const [, observability] of kinds) {
      servers.push(await ServerProcess.start({ type: 'start', kind: 'service', databaseUrl: data.ownerUrl, appPassword: harness.appPassword, poolSize: data.db.options.poolSize, observability }));
    }
    const targets: LoadTarget[] = kinds.map(([name], i) => {
      const server = servers[i] as ServerProcess;
      return {
        name,
        url: server.url,
        pid: server.pid,
        paths: data.mixRows.map((r) => `/invoices/${r.id}`),
        pathHeaders: data.mixRows.map((r) => ({ authorization: `Bearer ${data.keyOf.get(r.tenant_id)}` })),
      };
    });
    const c = await compareAlternating(targets, { connections: CONNECTIONS, durationS: DURATION_S, rounds: ROUNDS, warmupS: WARMUP_S, load });
    console.log(`GET /invoices/:id full stack, ${TENANTS} Zipf tenants, ${CONNECTIONS} connections, ${ROUNDS} rounds x ${DURATION_S}s after a ${WARMUP_S}s warm-up from cold caches, alternating (each service in its own process)`);
    for (const f of c.figures) console.log(`  ${f.name.padEnd(14)}: ${describe(f)}`);
    const [on, control, off] = c.byTarget as [(typeof c.byTarget)[number], (typeof c.byTarget)[number], (typeof c.byTarget)[number]];
    const range = (v: readonly number[]) => `${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)} [${v.map((x) => x.toFixed(2)).join(' ')}]`;
    console.log(`  throughput on / off: median ${on.median.toFixed(2)} (target >= 0.97), per round ${range(on.ratios)}`);
    console.log(`  throughput control / off (noise): median ${control.median.toFixed(2)}, per round ${range(control.ratios)}`);
    const cpuDiff = (a: readonly number[]) => a.map((x, k) => x - (off.serverCpu[k] as number));
    console.log(`  server CPU per request, on - off: median ${median(cpuDiff(on.serverCpu)).toFixed(1)} µs (rounds ${cpuDiff(on.serverCpu).map((x) => x.toFixed(0)).join(' ')}); control - off: median ${median(cpuDiff(control.serverCpu)).toFixed(1)} µs (rounds ${cpuDiff(control.serverCpu).map((x) => x.toFixed(0)).join(' ')})`);
    const scrape = await fetch(`${servers[0]?.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const text = await scrape.text();
    console.log(`  /metrics of on after the run: ${scrape.status}, ${text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} samples`);
    const columns: Array<{ name: string; perRequest: Map<Part, number> }> = [];
    for (const [i, t] of targets.entries()) {
      if (i === 1) continue; // the control is the same code as off
      columns.push({ name: t.name, perRequest: await (servers[i] as ServerProcess).profile(async () => (await load.run(t, CONNECTIONS, PROFILE_S)).requests) });
    }
    console.log(formatParts(columns));
  } finally {
    load.close();
    await Promise.allSettled(servers.map((s) => s.close()));
  }
}
