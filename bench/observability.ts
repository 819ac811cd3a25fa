/**
 * Observability: `GET /invoices/:id` through the whole service with metrics and tracing on (the default: the
 * statement observer, prom-client counters, an OpenTelemetry span per statement recorded by a registered SDK
 * and exported to nowhere) against the same service built with `observability: false` and no tracer, each on
 * its own database and pool, alternately in the same run (autocannon in a separate process). Figures are
 * printed, never asserted. A second phase measures the server CPU per request of both through `app.inject` (no
 * sockets), block by block.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import pino from 'pino';
import type { Tenantwall } from '../src/index.ts';
import { buildApp } from '../examples/invoicing-service/src/app.ts';
import { migrations, schema } from '../examples/invoicing-service/src/schema.ts';
import { type BenchHarness, listenLocal } from './harness.ts';
import { type TargetFigures, compareAlternating, describe } from './load.ts';

const INVOICES = 2_000;
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 4);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 6);
/** The in-process phase: blocks of requests through `app.inject`, on and off alternately (0 skips it). */
const INJECT_ROUNDS = Number(process.env.BENCH_OBS_INJECT_ROUNDS ?? 24);
const INJECT_BLOCK = Number(process.env.BENCH_OBS_INJECT_BLOCK ?? 600);

/** Accepts and drops every span: the SDK's recording and batching cost without a collector. */
const discard: SpanExporter = { export: (_spans, done) => done({ code: 0 }), shutdown: async () => undefined };

export default async function observabilityBench(harness: BenchHarness): Promise<void> {
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(discard)] });
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  trace.setGlobalTracerProvider(provider);
  const service = async (on: boolean) => {
    const db = await harness.createTenantwall(schema, migrations);
    const app = await buildApp({
      db,
      adminToken: 'bench-admin-token-0123456789',
      logger: { level: 'info', stream: pino.destination({ dest: '/dev/null', sync: false }) },
      ...(on ? { observability: { processMetrics: true } } : { observability: false }),
    });
    const tenant = await db.tenants.create({ slug: 'bench', name: 'Bench' });
    const { key } = await app.tenantwall.apiKeys.create(tenant.id, { name: 'bench' });
    const ids = await seed(db, tenant.id);
    return { db, app, key, paths: ids.map((id) => `/invoices/${id}`) };
  };
  const on = await service(true);
  const off = await service(false);
  try {
    const onUrl = await listenLocal(on.app);
    const offUrl = await listenLocal(off.app);
    const c = await compareAlternating(
      [
        { name: 'metrics + tracing on', url: onUrl, paths: on.paths, headers: { authorization: `Bearer ${on.key}` } },
        { name: 'metrics + tracing off', url: offUrl, paths: off.paths, headers: { authorization: `Bearer ${off.key}` } },
      ],
      { connections: CONNECTIONS, durationS: DURATION_S, rounds: ROUNDS, warmupS: 3 },
    );
    console.log(`GET /invoices/:id full stack, ${CONNECTIONS} connections, ${ROUNDS} rounds x ${DURATION_S}s each, alternating (autocannon in a separate process, loopback)`);
    for (const f of c.figures) console.log(`  ${f.name} : ${describe(f)}`);
    const [a, b] = c.figures as [TargetFigures, TargetFigures];
    console.log(`  throughput ratio on/off: median ${c.median.toFixed(2)} (target >= 0.97), per round ${c.ratios.map((r) => r.toFixed(2)).join(' ')}   p99 ratio on/off: ${(a.p99 / b.p99).toFixed(2)}`);
    if (INJECT_ROUNDS > 0) {
      const cpu = await injectCpu(on, off);
      console.log(
        `  in-process (app.inject, no sockets, ${INJECT_ROUNDS} rounds x ${INJECT_BLOCK} requests each, 16 at a time, alternating): server CPU per request on ${cpu.on.toFixed(0)} µs, off ${cpu.off.toFixed(0)} µs, on - off per round: median ${cpu.diff.toFixed(1)} µs (quartiles ${cpu.q1.toFixed(1)} .. ${cpu.q3.toFixed(1)})`,
      );
    }
    const scrape = await on.app.inject({ url: '/metrics', headers: { authorization: 'Bearer bench-admin-token-0123456789' } });
    console.log(`  /metrics after the run: ${scrape.statusCode}, ${scrape.body.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} samples`);
  } finally {
    await Promise.allSettled([on.app.close(), off.app.close()]);
    await provider.shutdown();
    trace.disable();
    context.disable();
  }
}

type Service = { app: { inject: (o: { url: string; headers: Record<string, string> }) => Promise<{ statusCode: number }> }; key: string; paths: string[] };

/**
 * Server CPU per request (this process's user + system time over a block of requests) through `app.inject`:
 * no sockets and no load generator competing for the cores, so it follows the code's cost more closely than the
 * throughput does on a shared machine. On and off alternate block by block; the figure is the median of the
 * per-round differences (machine load drifts between rounds, much less within one).
 */
async function injectCpu(on: Service, off: Service): Promise<{ on: number; off: number; diff: number; q1: number; q3: number }> {
  const block = async (s: Service, n: number) => {
    let i = 0;
    const worker = async () => {
      while (i < n) {
        const k = i++;
        const r = await s.app.inject({ url: s.paths[k % s.paths.length] as string, headers: { authorization: `Bearer ${s.key}` } });
        if (r.statusCode !== 200) throw new Error(`in-process bench: status ${r.statusCode}`);
      }
    };
    const c0 = process.cpuUsage();
    await Promise.all(Array.from({ length: 16 }, worker));
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / n;
  };
  await block(on, 1000);
  await block(off, 1000);
  const a: number[] = [];
  const b: number[] = [];
  for (let r = 0; r < INJECT_ROUNDS; r++) {
    if (r % 2 === 0) {
      a.push(await block(on, INJECT_BLOCK));
      b.push(await block(off, INJECT_BLOCK));
    } else {
      b.push(await block(off, INJECT_BLOCK));
      a.push(await block(on, INJECT_BLOCK));
    }
  }
  const q = (v: number[], p: number) => [...v].sort((x, y) => x - y)[Math.min(v.length - 1, Math.floor(v.length * p))] as number;
  const d = a.map((x, i) => x - (b[i] as number));
  return { on: q(a, 0.5), off: q(b, 0.5), diff: q(d, 0.5), q1: q(d, 0.25), q3: q(d, 0.75) };
}

async function seed(db: Tenantwall, tid: string): Promise<string[]> {
  const { rows } = await db.forTenant(tid).query<{ id: string }>(
    `INSERT INTO invoices (tenant_id, customer, amount_cents, status, issued_at)
     SELECT $1, 'customer ' || g, (g * 137) % 100000, 'issued', now() FROM generate_series(1, $2::int) g RETURNING id`,
    [tid, INVOICES],
  );
  await db.dangerouslyCrossTenant().query('ANALYZE invoices');
  return rows.map((r) => r.id);
}
