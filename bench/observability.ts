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
import { type BenchHarness, percentile } from './harness.ts';
import { type LoadTarget, LoadGenerator, compareAlternating, describe, median } from './load.ts';
import { formatParts, type Part } from './profile.ts';
import type { InjectResult } from './http-server.ts';
import { ServerProcess, seed, zipfSizes } from './servers.ts';

const TENANTS = Number(process.env.BENCH_OBS_TENANTS ?? 1_000);
const INVOICES = Number(process.env.BENCH_OBS_INVOICES ?? 200_000);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 5);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 12);
const WARMUP_S = Number(process.env.BENCH_HTTP_WARMUP_S ?? 4);
const PROFILE_S = Number(process.env.BENCH_HTTP_PROFILE_S ?? 3);
const INJECT_ROUNDS = Number(process.env.BENCH_OBS_INJECT_ROUNDS ?? 24);
const INJECT_BLOCK = Number(process.env.BENCH_OBS_INJECT_BLOCK ?? 1000);
/** The reference service's admin token in bench/http-server.ts (not imported: that module starts a server process). */
const ADMIN = 'bench-admin-token-0123456789';
const quartile = (v: readonly number[], p: number) => percentile([...v].sort((a, b) => a - b), p * 100);

export default async function observabilityBench(harness: BenchHarness): Promise<void> {
  const t0 = performance.now();
  const sizes = zipfSizes(TENANTS, INVOICES);
  const data = await seed(harness, sizes, 'partitioned', 20_000);
  console.log(`data: ${TENANTS} tenants, ${sizes.reduce((a, b) => a + b, 0)} invoices (Zipf s=1, largest ${sizes[0]}), seeded in ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  // BENCH_OBS_TARGETS: name:mode pairs (modes: traced, context, untraced, off; bench/http-server.ts), the baseline last.
  const kinds = (process.env.BENCH_OBS_TARGETS ?? 'on:traced,off (control):off,off:off').split(',').map((pair) => {
    const [name, mode] = pair.split(':') as [string, string | undefined];
    if (mode !== 'traced' && mode !== 'context' && mode !== 'untraced' && mode !== 'off') throw new Error(`BENCH_OBS_TARGETS: ${pair}: the mode must be traced, context, untraced or off`);
    return [name, mode] as const;
  });
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
    const range = (v: readonly number[]) => `${Math.min(...v).toFixed(2)}-${Math.max(...v).toFixed(2)} [${v.map((x) => x.toFixed(2)).join(' ')}]`;
    const off = c.byTarget[c.byTarget.length - 1] as (typeof c.byTarget)[number];
    // On 2 cores shared by the server and PostgreSQL, throughput follows the CPU both spend per request.
    const cpuOf = (f: (typeof c.figures)[number]) => f.cpu.server + f.cpu.postgres;
    const base = c.figures[c.figures.length - 1] as (typeof c.figures)[number];
    for (const [i, f] of c.figures.slice(0, -1).entries()) {
      const r = c.byTarget[i] as typeof off;
      const d = r.serverCpu.map((x, k) => x - (off.serverCpu[k] as number));
      console.log(`  ${f.name} / off: throughput median ${r.median.toFixed(2)}${i === 0 ? ' (target >= 0.97)' : ''}, per round ${range(r.ratios)}; CPU-bound ratio (off's server + PostgreSQL CPU per request / this one's) ${(cpuOf(base) / cpuOf(f)).toFixed(3)}`);
      console.log(`    server CPU per request - off: median ${median(d).toFixed(1)} µs (rounds ${d.map((x) => x.toFixed(0)).join(' ')})`);
    }
    // Server CPU per request without sockets: each process runs blocks of requests through app.inject, one
    // process at a time, the order turning each round; no load generator or socket writes share the cores.
    if (INJECT_ROUNDS > 0) {
      const perServer: InjectResult[][] = servers.map(() => []);
      const msg = { paths: targets[0]?.paths as string[], headers: targets[0]?.pathHeaders as Array<Record<string, string>>, count: INJECT_BLOCK, concurrency: 16 };
      for (const s of servers) await s.inject(msg);
      for (let round = 0; round < INJECT_ROUNDS; round++) {
        for (let k = 0; k < servers.length; k++) {
          const i = (k + round) % servers.length;
          (perServer[i] as InjectResult[]).push(await (servers[i] as ServerProcess).inject(msg));
        }
      }
      const column = (i: number, k: keyof InjectResult) => (perServer[i] as InjectResult[]).map((r) => r[k]);
      const off = perServer.length - 1;
      console.log(`in-process (app.inject, ${INJECT_ROUNDS} rounds x ${INJECT_BLOCK} requests, 16 at a time, each server in turn): server CPU and GC pause per request, median (quartiles of the per-round differences to off)`);
      // One figure of server i: its median, and for a target other than off the quartiles of its per-round difference to off.
      const figure = (i: number, k: keyof InjectResult) => {
        const mine = column(i, k);
        if (i === off) return `${median(mine).toFixed(1)} µs`;
        const offs = column(off, k);
        const d = mine.map((x, r) => x - (offs[r] as number));
        return `${median(mine).toFixed(1)} µs, - off: median ${median(d).toFixed(1)} µs (${quartile(d, 0.25).toFixed(1)} .. ${quartile(d, 0.75).toFixed(1)})`;
      };
      for (const [i, [name]] of kinds.entries()) console.log(`  ${name.padEnd(14)}: CPU ${figure(i, 'cpu')}; GC ${figure(i, 'gc')}`);
      // The same A/B inside the traced process: span recording turned off and on by its sampler, blocks
      // alternating, on one heap and one JIT state. It separates the code cost of recording a span from what
      // differs between two processes.
      const traced = kinds.findIndex(([, mode]) => mode === 'traced');
      if (traced >= 0) {
        const server = servers[traced] as ServerProcess;
        const diffs: number[] = [];
        for (let round = 0; round < INJECT_ROUNDS; round++) {
          const block: Record<'on' | 'off', number> = { on: 0, off: 0 };
          for (const on of round % 2 === 0 ? [true, false] : [false, true]) {
            await server.recording(on);
            block[on ? 'on' : 'off'] = (await server.inject(msg)).cpu;
          }
          diffs.push(block.on - block.off);
        }
        await server.recording(true);
        console.log(`  ${kinds[traced]?.[0]}, span recording on - off in its own process (sampler switched, ${INJECT_ROUNDS} rounds): CPU median ${median(diffs).toFixed(1)} µs (${quartile(diffs, 0.25).toFixed(1)} .. ${quartile(diffs, 0.75).toFixed(1)})`);
      }
    }
    const scrape = await fetch(`${servers[0]?.url}/metrics`, { headers: { authorization: `Bearer ${ADMIN}` } });
    const text = await scrape.text();
    console.log(`  /metrics of on after the run: ${scrape.status}, ${text.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} samples`);
    const columns: Array<{ name: string; perRequest: Map<Part, number> }> = [];
    for (const [i, t] of targets.entries()) {
      if (kinds.slice(i + 1).some(([, mode]) => mode === kinds[i]?.[1])) continue; // a control: the same code as a later target, profiled there
      columns.push({ name: t.name, perRequest: await (servers[i] as ServerProcess).profile(async () => (await load.run(t, CONNECTIONS, PROFILE_S)).requests) });
    }
    console.log(formatParts(columns));
  } finally {
    load.close();
    await Promise.allSettled(servers.map((s) => s.close()));
  }
}
