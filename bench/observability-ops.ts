/**
 * `npm run bench -- observability-ops` (only when named): CPU time per call of the observability pieces a request
 * runs, in one process without a database: `recordRequest`, the metrics statement observer, the tracing
 * observer without an SDK and with one (batch processor, spans dropped). Median of 7 runs of 200,000 calls.
 * Figures are printed, never asserted.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { TenantId } from '../src/index.ts';
import { TenantwallMetrics } from '../src/observability/metrics.ts';
import { createTracingObserver } from '../src/observability/tracing.ts';

const discard: SpanExporter = { export: (_spans, done) => done({ code: 0 }), shutdown: async () => undefined };
const CALLS = 200_000;

export default async function observabilityOpsBench(): Promise<void> {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const provider = new BasicTracerProvider({ spanProcessors: [new BatchSpanProcessor(discard)] });
  try {
    const metrics = new TenantwallMetrics({ processMetrics: false });
    const noSdk = createTracingObserver({ tracerProvider: trace.getTracerProvider() });
    const sdk = createTracingObserver({ tracerProvider: provider });
    const tenantId = '0193b8c4-1111-7222-8333-444455556666' as TenantId;
    const sql = 'select "id", "customer", "amount_cents", "status", "issued_at" from "invoices" where "id" = $1';
    const event = { tenantId, sql, inTransaction: false };
    const outcome = { verdict: 'unchecked' as const, rows: 1, durationMs: 0.8, error: undefined };
    const cases: Array<[string, (i: number) => void]> = [
      ['recordRequest', (i) => metrics.recordRequest({ tenantId, method: 'GET', route: '/invoices/:id', statusCode: 200, durationSeconds: 0.001 + (i % 7) * 0.001 })],
      ['metrics statement observer', () => metrics.observer.start(event)?.(outcome)],
      ['tracing observer, no SDK', () => noSdk.start(event)?.(outcome)],
      ['tracing observer, SDK', () => sdk.start(event)?.(outcome)],
    ];
    console.log(`CPU per call, ns (median of 7 runs x ${CALLS.toLocaleString('en')} calls; min, max)`);
    for (const [name, fn] of cases) {
      const runs: number[] = [];
      for (let r = 0; r < 7; r++) {
        const c0 = process.cpuUsage();
        for (let i = 0; i < CALLS; i++) fn(i);
        const c = process.cpuUsage(c0);
        runs.push(((c.user + c.system) * 1000) / CALLS);
        await new Promise((resolve) => setImmediate(resolve)); // lets the batch processor export
      }
      runs.sort((a, b) => a - b);
      console.log(`  ${name.padEnd(28)} ${(runs[3] as number).toFixed(0).padStart(6)}  (${(runs[0] as number).toFixed(0)}, ${(runs[6] as number).toFixed(0)})`);
    }
  } finally {
    await provider.shutdown();
    context.disable();
  }
}
