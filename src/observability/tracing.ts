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
 */
export function createTracingObserver(options: TracingOptions = {}): StatementObserver {
  const api = requireOptional<typeof Otel>('@opentelemetry/api', 'tracing');
  const provider = (options.tracerProvider ?? api.trace.getTracerProvider()) as Otel.TracerProvider;
  const tracer = provider.getTracer(TRACER_NAME);
  return {
    start(e: StatementEvent) {
      const span = tracer.startSpan(
        STATEMENT_SPAN,
        {
          kind: api.SpanKind.CLIENT,
          attributes: { 'tenant.id': e.tenantId, 'db.system.name': 'postgresql', 'db.statement.fingerprint': statementFingerprint(e.sql), 'tenantwall.in_transaction': e.inTransaction },
        },
        api.context.active(),
      );
      if (!span.isRecording()) {
        span.end();
        return undefined;
      }
      return (o: StatementOutcome) => {
        span.setAttribute('tenantwall.guard.verdict', o.verdict);
        span.setAttribute('db.response.returned_rows', o.rows);
        if (o.error !== undefined) {
          const err = o.error as { code?: unknown; message?: unknown };
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: typeof err.message === 'string' ? err.message : String(o.error) });
          if (typeof err.code === 'string') span.setAttribute('error.type', err.code);
        }
        span.end();
      };
    },
  };
}

/** Adds a tracing observer to `db`; returns the function that removes it. */
export function traceStatements(db: Tenantwall, options: TracingOptions = {}): () => void {
  return db.observe(createTracingObserver(options));
}
