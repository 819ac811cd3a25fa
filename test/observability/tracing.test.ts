/**
 * Traces: one span per tenant-scoped statement, a child of the active span, with tenant.id, the statement
 * fingerprint, the guard verdict and the rows; refused statements end as error spans. In-memory exporter of
 * the OpenTelemetry SDK; the real data path against PostgreSQL.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { STATEMENT_SPAN, createGuard, createMetrics, createTracingObserver, statementFingerprint, traceStatements, type TenantId } from '../../src/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginMigrations, pluginSchema } from '../fastify/app.ts';

let t: TestTenantwall;
const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
const manager = new AsyncLocalStorageContextManager().enable();

before(async () => {
  context.setGlobalContextManager(manager);
  t = await createTestTenantwall(pluginSchema, pluginMigrations, { guard: createGuard(pluginSchema) });
});
after(async () => {
  context.disable();
  await provider.shutdown();
  await t.close();
});

test('one span per statement, child of the active span, with tenant, fingerprint, verdict and rows', async () => {
  const off = traceStatements(t.db, { tracerProvider: provider });
  try {
    const tenant = await t.db.tenants.create({ slug: `tr-${randomUUID().slice(0, 8)}`, name: 'Tr' });
    const tracer = provider.getTracer('test');
    const insert = `INSERT INTO notes (tenant_id, body) VALUES ($1, 'a'), ($1, 'b')`;
    const select = 'SELECT body FROM notes WHERE tenant_id = $1';
    const parent = await tracer.startActiveSpan('request', async (span) => {
      const scope = t.db.forTenant(tenant.id);
      await scope.query(insert, [tenant.id]);
      const { rows } = await scope.query(select, [tenant.id]);
      assert.equal(rows.length, 2);
      await assert.rejects(scope.query('SELECT body FROM notes'), { code: 'unscoped_query' });
      await scope.transaction(async (tx) => tx.query(select, [tenant.id]));
      span.end();
      return span.spanContext();
    });
    const spans = exporter.getFinishedSpans().filter((s) => s.name === STATEMENT_SPAN);
    assert.equal(spans.length, 4);
    for (const s of spans) {
      assert.equal(s.parentSpanContext?.spanId, parent.spanId, 'statement span is a child of the request span');
      assert.equal(s.spanContext().traceId, parent.traceId);
      assert.equal(s.attributes['tenant.id'], tenant.id);
    }
    const [ins, sel, refused, inTx] = spans;
    assert.equal(ins?.attributes['db.statement.fingerprint'], statementFingerprint(insert));
    assert.equal(sel?.attributes['db.statement.fingerprint'], statementFingerprint(select));
    assert.equal(sel?.attributes['tenantwall.guard.verdict'], 'allowed');
    assert.equal(sel?.attributes['db.response.returned_rows'], 2);
    assert.equal(refused?.attributes['tenantwall.guard.verdict'], 'refused');
    assert.equal(refused?.attributes['error.type'], 'unscoped_query');
    assert.equal(refused?.status.code, 2); // SpanStatusCode.ERROR
    assert.equal(inTx?.attributes['tenantwall.in_transaction'], true);
    assert.equal(inTx?.attributes['db.response.returned_rows'], 2);
    // No parameter value reaches a span.
    assert.ok(!JSON.stringify(spans.map((s) => s.attributes)).includes("'a'"));
  } finally {
    off();
  }
  // Removed: no more spans.
  exporter.reset();
  await t.db.forTenant(randomUUID() as TenantId).query('SELECT 1 AS one');
  assert.equal(exporter.getFinishedSpans().length, 0);
});

test('without an SDK the global tracer is a no-op and the observer follows nothing', async () => {
  assert.equal(trace.getTracerProvider().getTracer('x').startSpan('y').isRecording(), false);
  const observer = createTracingObserver();
  assert.equal(observer.start({ tenantId: randomUUID() as TenantId, sql: 'SELECT 1', inTransaction: false }), undefined);
});

test('a statement PostgreSQL rejects ends its span once, as an error, in and out of a transaction; metrics count it as error', async () => {
  const metrics = createMetrics({ db: t.db, processMetrics: false });
  const off = traceStatements(t.db, { tracerProvider: provider });
  exporter.reset();
  try {
    const tenant = await t.db.tenants.create({ slug: `te-${randomUUID().slice(0, 8)}`, name: 'Te' });
    const bad = 'SELECT no_such_column FROM notes WHERE tenant_id = $1';
    const scope = t.db.forTenant(tenant.id);
    await assert.rejects(scope.query(bad, [tenant.id]));
    await assert.rejects(scope.transaction(async (tx) => tx.query(bad, [tenant.id])));
    const spans = exporter.getFinishedSpans().filter((s) => s.name === STATEMENT_SPAN && s.attributes['db.statement.fingerprint'] === statementFingerprint(bad));
    assert.equal(spans.length, 2);
    for (const s of spans) {
      assert.equal(s.status.code, 2); // SpanStatusCode.ERROR
      assert.equal(s.attributes['tenantwall.guard.verdict'], 'allowed');
      assert.equal(s.attributes['db.response.returned_rows'], 0);
      assert.equal(s.attributes['tenant.id'], tenant.id);
    }
    assert.deepEqual(spans.map((s) => s.attributes['tenantwall.in_transaction']), [false, true]);
    const text = await metrics.metrics();
    const errors = text.split('\n').filter((l) => l.startsWith('tenantwall_db_statements_total{') && l.includes('outcome="error"'));
    assert.equal(errors.reduce((n, l) => n + Number(l.split(' ').pop()), 0), 2);
  } finally {
    off();
    metrics.close();
  }
});
