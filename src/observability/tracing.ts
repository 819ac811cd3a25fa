import { createHash } from 'node:crypto';
import type * as Otel from '@opentelemetry/api';
import type { StatementEvent, StatementObserver, StatementOutcome } from '../db/observer.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { requireOptional } from '../util/optional.ts';

/** Name of the tracer tenantwall's spans come from. */
export const TRACER_NAME = 'tenantwall';
/** Name of the span of one tenant-scoped statement. */
export const STATEMENT_SPAN = 'tenantwall.statement';

const fingerprints = new Map<string, string>();

/**
 * The fingerprint of a statement: the first 16 hex digits of the SHA-256 of its text. Statements are sent with
 * bind parameters, so one fingerprint is one statement shape; values never reach a span. Cached (bounded).
 */
export function statementFingerprint(sql: string): string {
  let f = fingerprints.get(sql);
  if (f === undefined) {
    f = createHash('sha256').update(sql).digest('hex').slice(0, 16);
    if (fingerprints.size >= 10_000) fingerprints.clear();
    fingerprints.set(sql, f);
  }
  return f;
}

/** Options of `createTracingObserver`. */
export interface TracingOptions {
  /**
   * The tracer provider (an `@opentelemetry/api` TracerProvider, typed loosely so the package's types do not
   * need the optional peer); default the global one (`trace.getTracerProvider()`, a no-op until an SDK registers).
   */
  tracerProvider?: { getTracer(name: string, version?: string): unknown } | undefined;
}

/**
 * A statement observer that makes one OpenTelemetry span per tenant-scoped statement (`tenantwall.statement`,
 * kind CLIENT), a child of the active span (the request's, with an instrumented HTTP server), with `tenant.id`,
 * `db.statement.fingerprint`, `tenantwall.guard.verdict`, `db.response.returned_rows` and `db.system.name`.
 * Uses `@opentelemetry/api` (an optional peer dependency): without an SDK its spans are no-ops.
 *
 * Cost: the span starts with constant options and no attributes, so without an SDK (or when the sampler drops
 * it) a statement costs one context lookup and a no-op span: no attribute object, no fingerprint. A recorded span
 * gets all its attributes in one `setAttributes` when the statement ends (the SDK checks them once, instead of
 * twice at the start and once per later attribute); samplers and `onStart` of span processors therefore see no
 * attributes, only the name, the kind and the parent.
 */
export function createTracingObserver(options: TracingOptions = {}): StatementObserver {
  const api = requireOptional<typeof Otel>('@opentelemetry/api', 'tracing');
  const provider = (options.tracerProvider ?? api.trace.getTracerProvider()) as Otel.TracerProvider;
  const tracer = provider.getTracer(TRACER_NAME);
  const START: Otel.SpanOptions = Object.freeze({ kind: api.SpanKind.CLIENT });
  const context = api.context;
  const ERROR = api.SpanStatusCode.ERROR;
  return {
    start(e: StatementEvent) {
      const span = tracer.startSpan(STATEMENT_SPAN, START, context.active());
      if (!span.isRecording()) {
        span.end();
        return undefined;
      }
      return (o: StatementOutcome) => {
        const err = o.error as { code?: unknown; message?: unknown } | undefined;
        span.setAttributes({
          'tenant.id': e.tenantId,
          'db.system.name': 'postgresql',
          'db.statement.fingerprint': statementFingerprint(e.sql),
          'tenantwall.in_transaction': e.inTransaction,
          'tenantwall.guard.verdict': o.verdict,
          'db.response.returned_rows': o.rows,
          'error.type': o.error !== undefined && typeof err?.code === 'string' ? err.code : undefined,
        });
        if (o.error !== undefined) span.setStatus({ code: ERROR, message: typeof err?.message === 'string' ? err.message : String(o.error) });
        span.end();
      };
    },
  };
}

/** Adds a tracing observer to `db`; returns the function that removes it. */
export function traceStatements(db: Tenantwall, options: TracingOptions = {}): () => void {
  return db.observe(createTracingObserver(options));
}
