/**
 * One server of the HTTP bench, in its own process (bench/http.ts forks one per target), so no target pays for
 * another's process-wide costs: AsyncLocalStorage's promise hooks, once enabled by tenantwall's implicit context,
 * slow every promise of the process, and a baseline sharing that process would be measured slower than it is.
 *
 * Protocol (IPC): the parent sends one `start` message; the child answers `{ ready: url }`. Then `profile-start`
 * and `profile-stop` (with the number of requests served meanwhile) answer the server CPU per request by part
 * (bench/profile.ts); `inject` runs requests through `app.inject` (no sockets) and answers this process's CPU and
 * garbage-collection pause time per request; `close` ends the process.
 */
import { context, trace } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { BasicTracerProvider, BatchSpanProcessor, type Sampler, SamplingDecision, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import Fastify, { type FastifyInstance } from 'fastify';
import type { AddressInfo } from 'node:net';
import { PerformanceObserver } from 'node:perf_hooks';
import pg from 'pg';
import pino from 'pino';
import { buildApp } from '../examples/invoicing-service/src/app.ts';
import { serviceGuard } from '../examples/invoicing-service/src/guard.ts';
// A namespace import: an earlier checkout running this file (BENCH_HTTP_BEFORE) has no `unpartitionedSchema`.
import * as serviceSchema from '../examples/invoicing-service/src/schema.ts';
import { tenantwallPlugin } from '../src/fastify/index.ts';
import { createTenantKysely } from '../src/kysely/index.ts';
import { Tenantwall } from '../src/index.ts';
import { type Part, startProfile } from './profile.ts';

export type ServerKind = 'tenantwall' | 'service' | 'bare';

export interface StartMessage {
  readonly type: 'start';
  readonly kind: ServerKind;
  /** Owner (superuser) URL of the bench database. */
  readonly databaseUrl: string;
  readonly appPassword: string;
  readonly poolSize: number;
  /** The database was created by the migrations before partitioning (`service unpartitioned`). */
  readonly layout?: 'unpartitioned';
  /**
   * service only: `traced` = metrics on and an OpenTelemetry SDK registered in the process (every statement span
   * recorded by a batch processor that drops it); `context` = metrics on and only the SDK's AsyncLocalStorage
   * context manager, in use (no tracer provider: spans are no-ops); `off` = `observability: false` and no SDK; default
   * (`untraced`): the service's default (metrics on, spans no-ops without an SDK).
   */
  readonly observability?: 'traced' | 'context' | 'untraced' | 'off';
  /** bare only: API key -> tenant id. */
  readonly keys?: ReadonlyArray<readonly [string, string]>;
}

export const COLS = 'id, customer, customer_id, amount_cents, currency, status, issued_at, created_at, updated_at';
export const SELECT_ONE = `SELECT ${COLS} FROM invoices WHERE tenant_id = $1 AND id = $2`;

const IdParams = { type: 'object', properties: { id: { type: 'string', format: 'uuid' } }, required: ['id'], additionalProperties: false } as const;
const Invoice = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    customer: { type: 'string' },
    customer_id: { type: ['string', 'null'] },
    amount_cents: { type: 'integer' },
    currency: { type: 'string' },
    status: { type: 'string' },
    issued_at: { type: ['string', 'null'], format: 'date-time' },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
  },
} as const;
const routeSchema = { params: IdParams, response: { 200: Invoice } };

type Row = { id: string; amount_cents: string | number } & Record<string, unknown>;
const toJson = (r: Row) => ({ ...r, amount_cents: Number(r.amount_cents) });

/** tenantwall as its README shows it: the plugin resolves the API key, the route queries in the tenant's scope. */
async function tenantwallApp(db: Tenantwall): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  await app.register(tenantwallPlugin, { db });
  const k = createTenantKysely<any>(db);
  app.get<{ Params: { id: string } }>('/invoices/:id', { schema: routeSchema }, async (req, reply) => {
    const { rows } = await db.query<Row>(SELECT_ONE, [req.tenant?.id, req.params.id]);
    const r = rows[0];
    return r ? toJson(r) : reply.code(404).send({ error: 'not_found' });
  });
  app.get<{ Params: { id: string } }>('/k/invoices/:id', { schema: routeSchema }, async (req, reply) => {
    const r = (await k.selectFrom('invoices').select(COLS.split(', ')).where('id', '=', req.params.id).executeTakeFirst()) as Row | undefined;
    return r ? toJson(r) : reply.code(404).send({ error: 'not_found' });
  });
  return app;
}

/** The baseline a careful engineer writes by hand: key map, one named prepared statement, no tenancy layer. */
function bareApp(pool: pg.Pool, keys: ReadonlyMap<string, string>): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get<{ Params: { id: string } }>('/invoices/:id', { schema: routeSchema }, async (req, reply) => {
    const header = req.headers.authorization;
    const tenantId = header?.startsWith('Bearer ') ? keys.get(header.slice(7)) : undefined;
    if (tenantId === undefined) return reply.code(401).send({ error: 'unauthenticated' });
    const { rows } = await pool.query<Row>({ name: 'invoice_by_id', text: SELECT_ONE, values: [tenantId, req.params.id] });
    const r = rows[0];
    return r ? toJson(r) : reply.code(404).send({ error: 'not_found' });
  });
  return app;
}

/** Whether the `traced` server's sampler records spans (`recording` message): an A/B in one process. */
let recording = true;

/** Accepts and drops every span: the SDK's recording and batching cost without a collector. */
const discard: SpanExporter = { export: (_spans, done) => done({ code: 0 }), shutdown: async () => undefined };

/** An OpenTelemetry SDK as a service would register it: AsyncLocalStorage context, a batch span processor. */
async function registerTracing(contextOnly: boolean): Promise<() => Promise<void>> {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  // In use, as the batch processor's export (or an instrumented HTTP server) would put it: from the first
  // `context.with`, every async resource of the process carries a second AsyncLocalStorage store.
  context.with(context.active(), () => undefined);
  if (contextOnly) return async () => undefined;
  // Samples every span (as the SDK's default does for root spans) until a `recording` message turns it off.
  const sampler: Sampler = { shouldSample: () => ({ decision: recording ? SamplingDecision.RECORD_AND_SAMPLED : SamplingDecision.NOT_RECORD }), toString: () => 'bench switch' };
  const provider = new BasicTracerProvider({ sampler, spanProcessors: [new BatchSpanProcessor(discard)] });
  trace.setGlobalTracerProvider(provider);
  return () => provider.shutdown();
}

const send = (msg: unknown) => process.send?.(msg);
let close: (() => Promise<void>) | undefined;
let stopProfile: ((requests: number) => Promise<Map<Part, number>>) | undefined;

/** `inject`: `count` requests through `app.inject`, `concurrency` at a time, paths and headers cycled. */
export interface InjectMessage {
  readonly type: 'inject';
  readonly paths: readonly string[];
  readonly headers: ReadonlyArray<Record<string, string>>;
  readonly count: number;
  readonly concurrency: number;
}

let served: FastifyInstance | undefined;
let next = 0;

/** Garbage-collection pause time of this process so far, ms (PerformanceObserver 'gc' entries). */
let gcMs = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) gcMs += e.duration;
}).observe({ entryTypes: ['gc'] });

/** What `inject` answers: this process's CPU and garbage-collection pause time per request, µs. */
export interface InjectResult {
  readonly cpu: number;
  readonly gc: number;
}

/** This process's CPU and GC time per request (µs) over `count` requests sent through `app.inject`. */
async function inject(msg: InjectMessage): Promise<InjectResult> {
  const app = served as FastifyInstance;
  let left = msg.count;
  const worker = async () => {
    while (left-- > 0) {
      const i = next++ % msg.paths.length;
      const r = await app.inject({ url: msg.paths[i] as string, headers: msg.headers[i] as Record<string, string> });
      if (r.statusCode !== 200) throw new Error(`inject: ${msg.paths[i]} answered ${r.statusCode}`);
    }
  };
  const c0 = process.cpuUsage();
  const gc0 = gcMs;
  await Promise.all(Array.from({ length: msg.concurrency }, worker));
  const c = process.cpuUsage(c0);
  await new Promise((resolve) => setImmediate(resolve)); // the observer's entries of this block are delivered
  return { cpu: (c.user + c.system) / msg.count, gc: ((gcMs - gc0) * 1000) / msg.count };
}

process.on('message', (msg: StartMessage | InjectMessage | { type: 'recording'; on: boolean } | { type: 'profile-start' } | { type: 'profile-stop'; requests: number } | { type: 'close' }) => {
  void (async () => {
    try {
      if (msg.type === 'start') {
        let app: FastifyInstance;
        if (msg.kind === 'bare') {
          const pool = new pg.Pool({ connectionString: msg.databaseUrl, max: msg.poolSize });
          pool.on('error', () => {}); // idle clients end when the database is dropped
          app = bareApp(pool, new Map(msg.keys ?? []));
          close = async () => {
            await app.close();
            await pool.end();
          };
        } else {
          const untrace = msg.observability === 'traced' || msg.observability === 'context' ? await registerTracing(msg.observability === 'context') : undefined;
          const db = await Tenantwall.connect({ schema: msg.layout === 'unpartitioned' ? serviceSchema.unpartitionedSchema : serviceSchema.schema, databaseUrl: msg.databaseUrl, manageRoles: false, appPassword: msg.appPassword, poolSize: msg.poolSize, guard: serviceGuard() });
          app =
            msg.kind === 'tenantwall'
              ? await tenantwallApp(db)
              : await buildApp({
                  db,
                  adminToken: 'bench-admin-token-0123456789',
                  logger: { level: 'info', stream: pino.destination({ dest: '/dev/null', sync: false }) },
                  ...(msg.observability === 'off' ? { observability: false as const } : {}),
                });
          close = async () => {
            await app.close();
            await db.close();
            await untrace?.();
          };
        }
        served = app;
        await app.listen({ port: 0, host: '127.0.0.1' });
        send({ ready: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` });
      } else if (msg.type === 'recording') {
        recording = msg.on;
        send({ recording: msg.on });
      } else if (msg.type === 'inject') {
        send({ perRequest: await inject(msg) });
      } else if (msg.type === 'profile-start') {
        stopProfile = await startProfile();
        send({ profiling: true });
      } else if (msg.type === 'profile-stop') {
        const parts = await (stopProfile as NonNullable<typeof stopProfile>)(msg.requests);
        send({ parts: [...parts] });
      } else if (msg.type === 'close') {
        await close?.();
        process.exit(0);
      }
    } catch (err) {
      send({ error: String((err as Error)?.stack ?? err) });
    }
  })();
});
send({ up: true });
