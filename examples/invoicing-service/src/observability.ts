import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { type Metering, type ObservabilityOptions, type Tenantwall, type TenantwallMetrics, createMetrics, runAudit, runVerify, traceStatements } from 'tenantwall';
import { consolePlugin, observabilityPlugin } from 'tenantwall/fastify';
import { Type } from '@sinclair/typebox';
import type { OperationSpec } from './openapi.ts';
import { RELAY_TABLES, consoleSessionsTable } from './operator.ts';

/** The observability plugin's routes (it registers them hidden), keyed "<METHOD> <url>", as `op()` specs. */
export function observabilityOperations(): Record<string, OperationSpec & { response?: Record<number, unknown> }> {
  return {
    'GET /metrics': {
      id: 'getMetrics',
      checksQuery: false,
      summary: 'Prometheus metrics',
      description: 'Per-tenant requests, database time, statements, rows, guard refusals, 429s and quota use (the most active tenants by label, the rest as `other`), latency histograms, pools and the webhook outbox (docs/observability.md).',
      tag: 'admin',
      security: 'admin',
      ok: {},
      response: { 200: { description: 'Prometheus text exposition format', content: { 'text/plain': { schema: Type.String() } } } },
    },
    'GET /admin/observability/top': {
      id: 'getTenantActivity',
      checksQuery: false,
      summary: 'Noisy neighbours',
      description: 'Tenants ranked by database time, statements, rows or requests (`by`) over the activity window, with shares, noisy flags and suggested commands (what `tenantwall top` reads).',
      tag: 'admin',
      security: 'admin',
      querystring: Type.Object({ by: Type.Optional(Type.Union([Type.Literal('dbMs'), Type.Literal('statements'), Type.Literal('rows'), Type.Literal('requests')])), limit: Type.Optional(Type.String({ pattern: '^[0-9]+$' })) }),
      ok: { 200: Type.Object({}, { additionalProperties: true, description: 'The activity report (TopReport)' }) },
    },
  };
}

/**
 * Metrics and traces of the service (docs/observability.md): Prometheus at /metrics and the noisy-neighbour
 * report at /admin/observability/top, both behind the admin auth (the bootstrap or a named admin token); one
 * OpenTelemetry span per tenant-scoped statement (a no-op until the process registers an SDK); the operator
 * console at /console (admin-token login; with metering, usage charts, quotas and webhook deliveries). Returns the
 * metrics, which also follow the admin API's move/export/import jobs.
 */
export async function registerObservability(
  app: FastifyInstance,
  o: { db: Tenantwall; adminToken: string; authorize: (request: FastifyRequest, reply: FastifyReply) => Promise<void>; options?: ObservabilityOptions | false | undefined; metering?: Metering | undefined },
): Promise<TenantwallMetrics | undefined> {
  if (o.options === false) return undefined;
  const metrics = createMetrics({ db: o.db, ...o.options });
  const untrace = traceStatements(o.db);
  app.addHook('onClose', async () => {
    untrace();
    metrics.close();
  });
  await app.register(observabilityPlugin, { metrics, authorize: o.authorize });
  // The operator console at /console: log in with the bootstrap admin token. Its isolation page runs the
  // catalog audit and verify (tenant A attacking tenant B, rolled back) against this service's database, as the
  // owner. A web process without the owner relays the console to an operator (operator.ts): no isolation here.
  const databaseUrl = o.db.options.databaseUrl;
  const appRole = o.db.options.appRole;
  const isolation =
    databaseUrl === undefined
      ? undefined
      : {
          audit: () => runAudit({ databaseUrl, appRole, globalTables: RELAY_TABLES }),
          verify: (a: string, b: string) => runVerify({ databaseUrl, appDatabaseUrl: o.db.options.appDatabaseUrl, appRole, tenants: [a, b] }),
        };
  // Sessions in the console_sessions table (owner only) so every process with the owner knows them; a web
  // process without it relays the console and keeps none.
  const sessions = databaseUrl === undefined ? undefined : consoleSessionsTable(o.db);
  await app.register(consolePlugin, { db: o.db, adminToken: o.adminToken, metrics, isolation, metering: o.metering, sessions });
  return metrics;
}
