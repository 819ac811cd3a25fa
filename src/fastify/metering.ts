import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import type { FastifyContextConfig, FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema } from 'fastify';
import { TenantwallError, isTenantwallError } from '../errors.ts';
import type { UsageEventInput } from '../metering/events.ts';
import type { Metering } from '../metering/metering.ts';
import { type QuotaDecision, quotaExceeded } from '../metering/quotas.ts';
import type { RateLimitDecision } from '../metering/rate-limit.ts';
import type { Granularity, RateLimit } from '../metering/spec.ts';
import { type UsageRow, usageToCsv } from '../metering/usage.ts';
import type { TenantId } from '../tenant/tenant-id.ts';
import { TtlCache } from '../util/ttl-cache.ts';

/**
 * Options of the metering Fastify plugin. Register it after the tenantwall plugin (tenantwall/fastify), which
 * resolves the tenant of each request and maps errors to responses.
 */
export interface MeteringFastifyOptions {
  metering: Metering;
  /** Prefix of the tenant routes (ingestion, own usage, own quotas). Default `/usage`. */
  usagePrefix?: string | undefined;
  /** Admin bearer token for the cross-tenant routes. Default: none (admin routes are not registered). */
  adminToken?: string | undefined;
  /** Prefix of the admin routes. Default `/admin/usage`. */
  adminPrefix?: string | undefined;
  /** Count tenant requests on `api_requests`, summed in memory per minute (see `requestFlushMs`). Default `true`. */
  recordRequests?: boolean | undefined;
  /** Enforce the plan's rate limits on every tenant route. Default `true`. */
  rateLimits?: boolean | undefined;
  /** Body limit of the ingestion route, bytes. Default 1048576. */
  ingestBodyLimit?: number | undefined;
  /**
   * Quotas of routes you do not want to touch, keyed `"<METHOD> <route url>"` (e.g. `"POST /invoices"`); a route's
   * own `config.quota` wins. Default: none.
   */
  routeQuotas?: Readonly<Record<string, string | { name: string; amount?: number }>> | undefined;
  /**
   * Rows-created metering: `"<METHOD> <route url>"` -> table name. A 2xx answer records one `rows.created` event
   * (declare that meter) with `{ table }`, before the answer is sent. Counts top-level rows created through the
   * API. Default: none.
   */
  createdRows?: Readonly<Record<string, string>> | undefined;
}

/** Per-request metering state (`request.usage`). */
export interface RequestUsage {
  rate: Array<RateLimitDecision & { spec: RateLimit }>;
  /** The quota this route consumed (or refused on). */
  consumed: QuotaDecision | undefined;
  amount: number;
  /** Last known state of every quota of the plan, for the headers. */
  quotas: readonly QuotaDecision[];
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Quota this route consumes before its handler runs: a quota name of the plan, or `{ name, amount }`. */
    quota?: string | { name: string; amount?: number };
    /** `false`: no rate limit, quota or request metering on this route. Default: metered. */
    metering?: boolean;
  }
  interface FastifyRequest {
    usage: RequestUsage | null;
  }
}

function sha(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The meter `createdRows` records. */
export const ROWS_CREATED_METER = 'rows.created';

/**
 * Keeps the metering routes out of an OpenAPI document when the app uses @fastify/swagger (its `hide` flag).
 * Typed through FastifySchema on purpose: swagger's type augmentation is not a dependency of this plugin, so a
 * consumer's tsc passes with or without @fastify/swagger installed.
 */
const hiddenFromDocs = (): FastifySchema => ({ hide: true }) as FastifySchema;

const GRANULARITIES = new Set(['minute', 'hour', 'day', 'month']);

function parseUsageQuery(q: Record<string, unknown>): { meters?: string[]; from?: string; to?: string; granularity?: Granularity; format: 'json' | 'csv'; tenantId?: string } {
  const str = (field: string): string | undefined => {
    const v = q[field];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw new TenantwallError('invalid_usage_query', `Usage query ${field} must be given once.`, { details: { field } });
    return v;
  };
  const format = str('format') ?? 'json';
  if (format !== 'json' && format !== 'csv') throw new TenantwallError('invalid_usage_query', 'Usage query format must be json or csv.', { details: { field: 'format' } });
  const granularity = str('granularity');
  if (granularity !== undefined && !GRANULARITIES.has(granularity)) {
    throw new TenantwallError('invalid_usage_query', 'Usage query granularity must be minute, hour, day or month.', { details: { field: 'granularity' } });
  }
  const meter = str('meter');
  const out: ReturnType<typeof parseUsageQuery> = { format };
  if (meter !== undefined) out.meters = meter.split(',').map((s) => s.trim()).filter(Boolean);
  const from = str('from');
  const to = str('to');
  const tenantId = str('tenant_id');
  if (from !== undefined) out.from = from;
  if (to !== undefined) out.to = to;
  if (granularity !== undefined) out.granularity = granularity as Granularity;
  if (tenantId !== undefined) out.tenantId = tenantId;
  return out;
}

function sendUsage(reply: FastifyReply, rows: UsageRow[], format: 'json' | 'csv') {
  if (format === 'csv') return reply.type('text/csv; charset=utf-8').header('content-disposition', 'attachment; filename="usage.csv"').send(usageToCsv(rows));
  return reply.send({ data: rows });
}

function headerList(ds: readonly QuotaDecision[], pick: (d: QuotaDecision) => string | number): string {
  return ds.map((d) => `${d.quota}=${pick(d)}`).join(', ');
}

/** The remaining-quota headers of a list of quota states; computed once per list (lists are per state change). */
const headersOf = new WeakMap<readonly QuotaDecision[], Record<string, string>>();
function quotaHeaders(quotas: readonly QuotaDecision[]): Record<string, string> {
  let h = headersOf.get(quotas);
  if (!h) {
    h = {
      'x-quota-limit': headerList(quotas, (d) => d.limit),
      'x-quota-used': headerList(quotas, (d) => d.used),
      'x-quota-remaining': headerList(quotas, (d) => d.remaining),
      'x-quota-reset': headerList(quotas, (d) => d.resetsAt.toISOString()),
    };
    const warn = quotas.filter((d) => d.warning);
    if (warn.length > 0) h['x-quota-warning'] = headerList(warn, (d) => `${Math.floor((d.used * 100) / Math.max(1, d.limit))}%`);
    headersOf.set(quotas, h);
  }
  return h;
}

/** The last known state of every quota of a tenant's plan; `list()` is the same array until a state changes. */
class QuotaView {
  readonly #states = new Map<string, QuotaDecision>();
  #list: readonly QuotaDecision[] | undefined;

  set(name: string, d: QuotaDecision): void {
    this.#states.set(name, d);
    this.#list = undefined;
  }

  list(): readonly QuotaDecision[] {
    this.#list ??= Object.freeze([...this.#states.values()]);
    return this.#list;
  }
}

const meteringPlugin: FastifyPluginAsync<MeteringFastifyOptions> = async (fastify, opts) => {
  const metering = opts.metering;
  const prefix = (opts.usagePrefix ?? '/usage').replace(/\/$/, '');
  const adminPrefix = (opts.adminPrefix ?? '/admin/usage').replace(/\/$/, '');
  const recordRequests = opts.recordRequests ?? true;
  const enforceRates = opts.rateLimits ?? true;
  const ingestBodyLimit = opts.ingestBodyLimit ?? 1_048_576;
  const routeQuotas = opts.routeQuotas ?? {};
  const createdRows = opts.createdRows ?? {};
  if (Object.keys(createdRows).length > 0 && !metering.model.meters.has(ROWS_CREATED_METER)) {
    throw new TenantwallError('config_invalid', `createdRows records the meter ${ROWS_CREATED_METER}: declare it ({ name: '${ROWS_CREATED_METER}', aggregation: 'count' }).`);
  }
  if (opts.adminToken !== undefined && opts.adminToken.length < 16) {
    throw new TenantwallError('config_invalid', 'The metering admin token must be at least 16 characters.', { details: { field: 'adminToken' } });
  }
  if (!fastify.hasDecorator('tenantwall')) {
    throw new TenantwallError('config_invalid', 'Register the tenantwall Fastify plugin before the metering plugin: it resolves the tenant of each request.');
  }
  // Quota states for the headers of routes that consume nothing: refreshed at most once per plan-cache TTL.
  const known = new TtlCache<TenantId, QuotaView>(100_000, Math.max(1000, metering.options.planCacheTtlMs));

  async function quotaStates(tenantId: TenantId): Promise<QuotaView> {
    const cached = known.get(tenantId);
    if (cached) return cached;
    const m = new QuotaView();
    const plan = await metering.planOf(tenantId);
    for (const name of Object.keys(plan.quotas)) {
      const d = await metering.status(tenantId, name);
      if (d) m.set(name, d);
    }
    known.set(tenantId, m);
    return m;
  }

  /** The quota a route consumes: its `config.quota`, else the plugin's `routeQuotas` entry for "METHOD /url". */
  const routeQuota = (config: FastifyContextConfig | undefined, method: string, url: string) => config?.quota ?? routeQuotas[`${method} ${url}`];

  fastify.decorateRequest('usage', null);
  const metered = (request: FastifyRequest) => request.tenant !== null && !request.is404 && request.routeOptions.config.metering !== false;

  const rateLimitedHeaders = (reply: FastifyReply, err: unknown) => {
    if (isTenantwallError(err, 'rate_limited')) {
      const d = err.details as { limit: number; retry_after: number; used: number };
      reply.header('retry-after', String(d.retry_after));
      reply.header('ratelimit-limit', String(d.limit));
      reply.header('ratelimit-remaining', '0');
      reply.header('ratelimit-reset', String(d.retry_after));
    }
  };

  // Headers are set as soon as their values are known (onRequest, preHandler); Fastify keeps them on error
  // responses too.
  const rateHeaders = (reply: FastifyReply, rate: RequestUsage['rate']) => {
    const tight = rate[0];
    if (tight) {
      reply.header('ratelimit-limit', String(tight.limit));
      reply.header('ratelimit-remaining', String(tight.remaining));
      reply.header('ratelimit-reset', String(Math.max(0, Math.ceil((tight.resetMs - Date.now()) / 1000))));
    }
    const softOver = rate.find((d) => !d.allowed && d.spec.enforcement === 'soft');
    if (softOver) reply.header('x-ratelimit-warning', `soft limit of ${softOver.limit} per ${softOver.spec.per} exceeded`);
    if (rate.some((d) => d.degraded)) reply.header('x-ratelimit-degraded', 'store unavailable; admitted (fail open)');
  };
  const setQuotas = (reply: FastifyReply, usage: RequestUsage, quotas: readonly QuotaDecision[]) => {
    usage.quotas = quotas;
    if (quotas.length > 0) reply.headers(quotaHeaders(quotas));
  };

  // The hooks are callback style and synchronous when everything they need is cached or leased locally (the
  // common case): no promise and no extra turn of the event loop per request.
  fastify.addHook('onRequest', (request, reply, done) => {
    if (!metered(request)) return done();
    const tenant = request.tenant as NonNullable<typeof request.tenant>;
    const usage: RequestUsage = { rate: [], consumed: undefined, amount: 0, quotas: [] };
    request.usage = usage;
    if (!enforceRates) return done();
    const apiKeyId = request.tenantAuth?.apiKeyId;
    let local: RequestUsage['rate'] | undefined;
    try {
      local = metering.rateLimitLocal(tenant.id, apiKeyId);
    } catch (err) {
      rateLimitedHeaders(reply, err);
      return done(err as Error);
    }
    if (local) {
      usage.rate = local;
      rateHeaders(reply, local);
      return done();
    }
    metering.rateLimit(tenant.id, apiKeyId).then(
      (rate) => {
        usage.rate = rate;
        rateHeaders(reply, rate);
        done();
      },
      (err: unknown) => {
        rateLimitedHeaders(reply, err);
        done(err as Error);
      },
    );
  });

  async function consumeQuota(reply: FastifyReply, usage: RequestUsage, tenantId: TenantId, q: string | { name: string; amount?: number } | undefined): Promise<void> {
    const states = await quotaStates(tenantId);
    if (q !== undefined) {
      const name = typeof q === 'string' ? q : q.name;
      const amount = typeof q === 'string' ? 1 : (q.amount ?? 1);
      const d = await metering.consume(tenantId, name, amount);
      if (d) {
        states.set(name, d);
        usage.consumed = d;
        if (!d.admitted) {
          setQuotas(reply, usage, states.list());
          reply.header('retry-after', String(Math.max(1, Math.ceil((d.resetsAt.getTime() - Date.now()) / 1000))));
          throw quotaExceeded(d);
        }
        usage.amount = amount;
      }
    }
    setQuotas(reply, usage, states.list());
  }

  fastify.addHook('preHandler', (request, reply, done) => {
    const usage = request.usage;
    if (!usage || !request.tenant) return done();
    const tenantId = request.tenant.id;
    const q = routeQuota(request.routeOptions.config, request.method, request.routeOptions.url ?? '');
    const cached = q === undefined ? known.get(tenantId) : undefined;
    if (cached) {
      setQuotas(reply, usage, cached.list());
      return done();
    }
    consumeQuota(reply, usage, tenantId, q).then(() => done(), (err: unknown) => done(err as Error));
  });

  /**
   * A request that consumed quota and failed gives the units back before its response is sent, so a client
   * that retries after the error finds them available. Settles to undefined when there is nothing to give back.
   */
  const giveBack = (request: FastifyRequest, reply: FastifyReply): Promise<void> | undefined => {
    const usage = request.usage;
    const c = usage?.consumed;
    if (!usage || !c || usage.amount <= 0 || reply.statusCode < 400 || !request.tenant) return undefined;
    const tenantId = request.tenant.id;
    const amount = usage.amount;
    usage.amount = 0;
    return metering
      .release(tenantId, c.quota, c.periodStart, amount)
      .then(
        () => undefined,
        (err: unknown) => request.log.warn({ err }, 'quota release failed'),
      )
      .finally(() => known.delete(tenantId));
  };

  /**
   * The usage events a successful answer bills: the quota units it consumed (answers below 400) and the row it
   * created (2xx answers of a `createdRows` route). Taken once: a request's events are recorded at most once.
   */
  const takeBilledEvents = (request: FastifyRequest, reply: FastifyReply): UsageEventInput[] => {
    const usage = request.usage;
    if (!usage || !request.tenant || billed.has(request)) return [];
    billed.add(request);
    const events: UsageEventInput[] = [];
    const table = createdRows[`${request.method} ${request.routeOptions.url ?? ''}`];
    if (table !== undefined && reply.statusCode >= 200 && reply.statusCode < 300) {
      events.push({ event_id: `c_${randomUUID()}`, meter: ROWS_CREATED_METER, properties: { table } });
    }
    const c = usage.consumed;
    if (c && usage.amount > 0 && reply.statusCode < 400) {
      events.push({ event_id: `q_${randomUUID()}`, meter: c.meter, quantity: usage.amount, properties: { quota: c.quota } });
    }
    return events;
  };
  /** Requests whose billed events were taken (recorded before the answer, or buffered after it). */
  const billed = new WeakSet<FastifyRequest>();

  /**
   * Records the billed events of a successful answer in one statement before the answer is sent, so a
   * kill -9 after the acknowledgment cannot lose them (the in-memory buffer would). The write itself is already
   * committed: if recording fails, the events go to the buffer (retried by its flushes) and the answer stands.
   */
  const recordBilled = (request: FastifyRequest, reply: FastifyReply): Promise<void> | undefined => {
    const events = takeBilledEvents(request, reply);
    if (events.length === 0) return undefined;
    const tenantId = (request.tenant as NonNullable<typeof request.tenant>).id;
    return metering.recordBatch(tenantId, events).then(
      () => undefined,
      (err: unknown) => {
        request.log.warn({ err }, 'usage events of this answer not recorded before it; buffered');
        try {
          for (const e of events) metering.enqueue(tenantId, e);
        } catch (invalid) {
          request.log.error({ err: invalid }, 'usage events of this answer refused');
        }
      },
    );
  };

  // Routes that consume quota or create rows get an onSend hook (the others pay nothing for it): a failed
  // answer gives its quota back, a successful one records its usage events, both before the answer is sent.
  fastify.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.some((m) => routeQuota(route.config as FastifyContextConfig | undefined, m, route.url) !== undefined || createdRows[`${m} ${route.url}`] !== undefined)) return;
    const beforeSend = (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
      const pending = reply.statusCode >= 400 ? giveBack(request, reply) : recordBilled(request, reply);
      if (!pending) return done(null, payload);
      void pending.then(() => done(null, payload));
    };
    route.onSend = [...(route.onSend === undefined ? [] : [route.onSend].flat()), beforeSend] as NonNullable<typeof route.onSend>;
  });

  fastify.addHook('onResponse', (request, reply, done) => {
    const usage = request.usage;
    if (!usage || !request.tenant) return done();
    const tenantId = request.tenant.id;
    if (recordRequests) {
      metering.countRequest(tenantId, { route: request.routeOptions.url ?? '', status: reply.statusCode, api_key_id: request.tenantAuth?.apiKeyId });
    }
    // A route declared before this plugin has no onSend hook: its events are buffered after the answer.
    for (const e of takeBilledEvents(request, reply)) metering.enqueue(tenantId, e);
    if (reply.statusCode < 400) return done();
    // Failed, and not given back before the response (a route declared before this plugin): give it back now.
    const pending = giveBack(request, reply);
    if (!pending) return done();
    void pending.then(() => done());
  });

  // ---- tenant routes: everything runs in the resolved tenant's scope ----
  fastify.post(`${prefix}/events`, { bodyLimit: ingestBodyLimit, schema: hiddenFromDocs() }, async (request, reply) => {
    const tenantId = (request.tenant as NonNullable<typeof request.tenant>).id;
    const body = request.body as unknown;
    // A batch is `{ "events": [...] }`; anything else is one event.
    if (typeof body === 'object' && body !== null && !Array.isArray(body) && 'events' in body) {
      const keys = Object.keys(body);
      if (keys.length !== 1) throw new TenantwallError('invalid_usage_event', 'A batch body has only the field "events".', { details: { field: keys.find((k) => k !== 'events') ?? 'events' } });
      // Tenants write only meters declared `source: 'client'` (403 meter_not_writable otherwise).
      const result = await metering.recordBatch(tenantId, (body as { events: unknown }).events as unknown[], { source: 'client' });
      return reply.code(200).send(result);
    }
    if (body === undefined || body === null) throw new TenantwallError('invalid_usage_event', 'Send one event or { "events": [...] } as JSON.', { details: { field: 'body' } });
    return reply.code(200).send(await metering.record(tenantId, body as never, { source: 'client' }));
  });

  fastify.get(prefix, { schema: hiddenFromDocs() }, async (request, reply) => {
    const tenantId = (request.tenant as NonNullable<typeof request.tenant>).id;
    const q = parseUsageQuery(request.query as Record<string, unknown>);
    if (q.tenantId !== undefined && q.tenantId !== tenantId) {
      // Asking for another tenant's usage looks exactly like asking for a tenant that has none.
      return sendUsage(reply, [], q.format);
    }
    const rows = await metering.usage(tenantId, { meters: q.meters, from: q.from, to: q.to, granularity: q.granularity });
    return sendUsage(reply, rows, q.format);
  });

  fastify.get(`${prefix}/quotas`, { schema: hiddenFromDocs() }, async (request) => {
    const tenantId = (request.tenant as NonNullable<typeof request.tenant>).id;
    const plan = await metering.planOf(tenantId);
    const quotas = [];
    for (const name of Object.keys(plan.quotas)) {
      const d = await metering.status(tenantId, name);
      if (d) quotas.push({ quota: d.quota, meter: d.meter, enforcement: d.enforcement, used: d.used, limit: d.limit, remaining: d.remaining, resets_at: d.resetsAt.toISOString() });
    }
    return { plan: plan.name, quotas, rate_limits: plan.rateLimits.map((r) => ({ scope: r.scope, per: r.per, limit: r.limit, enforcement: r.enforcement })) };
  });

  // ---- admin routes: all tenants, owner connection ----
  const adminToken = opts.adminToken;
  if (adminToken !== undefined) {
    const expected = sha(adminToken);
    const requireAdmin = async (request: FastifyRequest) => {
      const m = /^Bearer[ ]+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
      if (!m || !timingSafeEqual(sha(m[1] as string), expected)) {
        throw new TenantwallError('admin_unauthorized', 'Admin routes need the admin bearer token.');
      }
    };
    const adminConfig = { tenant: false, metering: false };
    fastify.get(adminPrefix, { config: adminConfig, preHandler: requireAdmin, schema: hiddenFromDocs() }, async (request, reply) => {
      const q = parseUsageQuery(request.query as Record<string, unknown>);
      const rows = await metering.adminUsage({ meters: q.meters, from: q.from, to: q.to, granularity: q.granularity, tenantId: q.tenantId });
      return sendUsage(reply, rows, q.format);
    });
    fastify.put(`${adminPrefix}/tenants/:id/plan`, { config: adminConfig, preHandler: requireAdmin, schema: hiddenFromDocs() }, async (request) => {
      const { id } = request.params as { id: string };
      const plan = (request.body as { plan?: unknown } | undefined)?.plan;
      if (typeof plan !== 'string') throw new TenantwallError('validation_failed', 'Send { "plan": "<name>" }.', { details: { field: 'plan' } });
      const r = await metering.setPlan(id, plan);
      known.delete(id as TenantId);
      return { tenant_id: id, plan, changed: r.changed, version: r.version };
    });
  }

  fastify.addHook('onClose', async () => {
    await metering.flush();
  });
};

(meteringPlugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(meteringPlugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'tenantwall-metering';

export { meteringPlugin };
