/**
 * Observability: `GET /invoices/:id` through the whole service with metrics and tracing on (the default: the
 * statement observer, prom-client counters, an OpenTelemetry span per statement recorded by a registered SDK
 * and exported to nowhere) against the same service built with `observability: false` and no tracer, each on
 * its own database and pool, alternately in the same run (autocannon in a separate process). Figures are
 * printed, never asserted.
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
    const scrape = await on.app.inject({ url: '/metrics', headers: { authorization: 'Bearer bench-admin-token-0123456789' } });
    console.log(`  /metrics after the run: ${scrape.statusCode}, ${scrape.body.split('\n').filter((l) => l !== '' && !l.startsWith('#')).length} samples`);
  } finally {
    await Promise.allSettled([on.app.close(), off.app.close()]);
    await provider.shutdown();
    trace.disable();
    context.disable();
  }
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
