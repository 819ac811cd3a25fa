import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { TtlCache } from '../fastify/ttl-cache.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { type EventLimits, type UsageEvent, type UsageEventInput, parseUsageBatch, parseUsageEvent } from './events.ts';
import { PostgresRateLimitStore, RateLimiter, type RateLimitDecision, type RateLimitStore, RedisRateLimitStore } from './rate-limit.ts';
import { API_REQUESTS_METER, type Granularity, type Meter, type MeteringModel, type MeteringSpec, type Plan, type RateLimit, defineMetering, periodBounds } from './spec.ts';
import { Webhooks, type WebhooksOptions, writeOutboxEvent } from './webhooks.ts';

/**
 * Options of the metering component. Resolved once: explicit value > environment variable > default;
 * validated and frozen. docs/metering.md documents each field.
 */
export interface MeteringOptions {
  /** Meters, plans and the default plan (or an already validated model from `defineMetering`). */
  spec: MeteringSpec | MeteringModel;
  /** Options of `metering.webhooks` (endpoint address allow-list, ...): docs/webhooks.md. */
  webhooks?: WebhooksOptions | undefined;
  /** Max events per batch. Env `TENANTWALL_METERING_MAX_BATCH`. Default 1000. */
  maxBatchSize?: number | undefined;
  /** How far in the future an event timestamp may lie (clock skew), ms. Env `TENANTWALL_METERING_MAX_FUTURE_SKEW_MS`. Default 300000. */
  maxFutureSkewMs?: number | undefined;
  /** How late an event may arrive, ms. Env `TENANTWALL_METERING_MAX_EVENT_AGE_MS`. Default 2764800000 (32 days). */
  maxEventAgeMs?: number | undefined;
  /** Max size of an event's properties as JSON, bytes. Env `TENANTWALL_METERING_MAX_PROPERTIES_BYTES`. Default 4096. */
  maxPropertiesBytes?: number | undefined;
  /** Max buckets one usage query may return per meter. Env `TENANTWALL_METERING_MAX_QUERY_BUCKETS`. Default 10000. */
  maxQueryBuckets?: number | undefined;
  /** Counter rows per (tenant, quota, period). Env `TENANTWALL_QUOTA_SHARDS`. Default 8. */
  quotaShards?: number | undefined;
  /**
   * How long a tenant's plan is cached, ms. A plan change through this process applies at once; other
   * processes apply it after at most this long (hard quota caps change at once everywhere: they live in the
   * database). Env `TENANTWALL_PLAN_CACHE_TTL_MS`. Default 5000.
   */
  planCacheTtlMs?: number | undefined;
  /** `postgres` (table tw_rate_limits) or `redis`. Env `TENANTWALL_RATE_LIMIT_STORE`. Default `postgres`. */
  rateLimitStore?: 'postgres' | 'redis' | RateLimitStore | undefined;
  /** Redis URL for the `redis` store. Env `TENANTWALL_REDIS_URL`. Default `redis://127.0.0.1:6379`. */
  redisUrl?: string | undefined;
  /**
   * When the rate-limit store fails or times out: `open` admits the request (and marks it degraded),
   * `closed` refuses it with 503 `rate_limit_unavailable`. Env `TENANTWALL_RATE_LIMIT_FAILURE`. Default `open`.
   */
  rateLimitFailure?: 'open' | 'closed' | undefined;
  /** Time the rate-limit store gets per claim, ms. Env `TENANTWALL_RATE_LIMIT_TIMEOUT_MS`. Default 250. */
  rateLimitTimeoutMs?: number | undefined;
  /** Largest lease of units one process claims at once. Env `TENANTWALL_RATE_LIMIT_MAX_BATCH`. Default 1000. */
  rateLimitMaxBatch?: number | undefined;
  /**
   * A lease covers about this many milliseconds of the process's recent admission rate for that limit (then
   * capped by the batch fraction and maxBatch). Env `TENANTWALL_RATE_LIMIT_LEASE_MS`. Default 100.
   */
  rateLimitLeaseMs?: number | undefined;
  /** Share of the window's remaining budget one claim may take (0..1]. Env `TENANTWALL_RATE_LIMIT_BATCH_FRACTION`. Default 0.1. */
  rateLimitBatchFraction?: number | undefined;
  /** Flush interval of buffered request events (the `api_requests` meter), ms. Env `TENANTWALL_METERING_FLUSH_MS`. Default 1000. */
  requestFlushMs?: number | undefined;
  /** Buffered request events that trigger an early flush. Env `TENANTWALL_METERING_FLUSH_EVENTS`. Default 2000. */
  requestFlushEvents?: number | undefined;
}

export type ResolvedMeteringOptions = Readonly<{
  maxBatchSize: number;
  maxFutureSkewMs: number;
  maxEventAgeMs: number;
  maxPropertiesBytes: number;
  maxQueryBuckets: number;
  quotaShards: number;
  planCacheTtlMs: number;
  rateLimitStore: 'postgres' | 'redis' | 'custom';
  redisUrl: string;
  rateLimitFailure: 'open' | 'closed';
  rateLimitTimeoutMs: number;
  rateLimitMaxBatch: number;
  rateLimitLeaseMs: number;
  rateLimitBatchFraction: number;
  requestFlushMs: number;
  requestFlushEvents: number;
}>;

function invalid(field: string, why: string): TenantwallError {
  return new TenantwallError('config_invalid', `Metering option ${field} ${why}.`, { details: { field } });
}

function envStr(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

function envNum(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = envStr(env, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n)) throw invalid(name, `must be a number, got ${JSON.stringify(v)}`);
  return n;
}

function int(field: string, v: number, min: number, max: number): number {
  if (!Number.isInteger(v) || v < min || v > max) throw invalid(field, `must be an integer in ${min}..${max}`);
  return v;
}

export function resolveMeteringOptions(input: Omit<MeteringOptions, 'spec'>, env: NodeJS.ProcessEnv = process.env): ResolvedMeteringOptions {
  const store = input.rateLimitStore ?? envStr(env, 'TENANTWALL_RATE_LIMIT_STORE') ?? 'postgres';
  if (typeof store === 'string' && store !== 'postgres' && store !== 'redis') throw invalid('rateLimitStore', 'must be postgres or redis');
  const failure = input.rateLimitFailure ?? envStr(env, 'TENANTWALL_RATE_LIMIT_FAILURE') ?? 'open';
  if (failure !== 'open' && failure !== 'closed') throw invalid('rateLimitFailure', 'must be open or closed');
  const fraction = input.rateLimitBatchFraction ?? envNum(env, 'TENANTWALL_RATE_LIMIT_BATCH_FRACTION') ?? 0.1;
  if (!(fraction > 0 && fraction <= 1)) throw invalid('rateLimitBatchFraction', 'must be in (0, 1]');
  return Object.freeze({
    maxBatchSize: int('maxBatchSize', input.maxBatchSize ?? envNum(env, 'TENANTWALL_METERING_MAX_BATCH') ?? 1000, 1, 100_000),
    maxFutureSkewMs: int('maxFutureSkewMs', input.maxFutureSkewMs ?? envNum(env, 'TENANTWALL_METERING_MAX_FUTURE_SKEW_MS') ?? 300_000, 0, 86_400_000),
    maxEventAgeMs: int('maxEventAgeMs', input.maxEventAgeMs ?? envNum(env, 'TENANTWALL_METERING_MAX_EVENT_AGE_MS') ?? 32 * 86_400_000, 1, 3650 * 86_400_000),
    maxPropertiesBytes: int('maxPropertiesBytes', input.maxPropertiesBytes ?? envNum(env, 'TENANTWALL_METERING_MAX_PROPERTIES_BYTES') ?? 4096, 2, 1_048_576),
    maxQueryBuckets: int('maxQueryBuckets', input.maxQueryBuckets ?? envNum(env, 'TENANTWALL_METERING_MAX_QUERY_BUCKETS') ?? 10_000, 1, 10_000_000),
    quotaShards: int('quotaShards', input.quotaShards ?? envNum(env, 'TENANTWALL_QUOTA_SHARDS') ?? 8, 1, 256),
    planCacheTtlMs: int('planCacheTtlMs', input.planCacheTtlMs ?? envNum(env, 'TENANTWALL_PLAN_CACHE_TTL_MS') ?? 5000, 0, 3_600_000),
    rateLimitStore: typeof store === 'string' ? store : 'custom',
    redisUrl: input.redisUrl ?? envStr(env, 'TENANTWALL_REDIS_URL') ?? 'redis://127.0.0.1:6379',
    rateLimitFailure: failure,
    rateLimitTimeoutMs: int('rateLimitTimeoutMs', input.rateLimitTimeoutMs ?? envNum(env, 'TENANTWALL_RATE_LIMIT_TIMEOUT_MS') ?? 250, 1, 60_000),
    rateLimitMaxBatch: int('rateLimitMaxBatch', input.rateLimitMaxBatch ?? envNum(env, 'TENANTWALL_RATE_LIMIT_MAX_BATCH') ?? 1000, 1, 100_000),
    rateLimitLeaseMs: int('rateLimitLeaseMs', input.rateLimitLeaseMs ?? envNum(env, 'TENANTWALL_RATE_LIMIT_LEASE_MS') ?? 100, 1, 60_000),
    rateLimitBatchFraction: fraction,
    requestFlushMs: int('requestFlushMs', input.requestFlushMs ?? envNum(env, 'TENANTWALL_METERING_FLUSH_MS') ?? 1000, 1, 600_000),
    requestFlushEvents: int('requestFlushEvents', input.requestFlushEvents ?? envNum(env, 'TENANTWALL_METERING_FLUSH_EVENTS') ?? 2000, 1, 1_000_000),
  });
}

export interface RecordResult {
  readonly event_id: string;
  /** True when an event with this id was already recorded for the tenant (nothing was written). */
  readonly duplicate: boolean;
}

export interface BatchResult {
  readonly accepted: number;
  readonly duplicates: number;
  readonly results: readonly RecordResult[];
}

export interface UsageQuery {
  /** Meters to report; default all declared meters. */
  meters?: readonly string[] | undefined;
  /** Inclusive start. Default: start of the current UTC month. */
  from?: Date | string | undefined;
  /** Exclusive end. Default: now. */
  to?: Date | string | undefined;
  granularity?: Granularity | undefined;
  /** Admin queries: only this tenant. */
  tenantId?: string | undefined;
}

export interface UsageRow {
  readonly tenant_id: string;
  readonly meter: string;
  readonly aggregation: string;
  /** Bucket start, ISO 8601 UTC. */
  readonly bucket: string;
  readonly value: number;
  /** Raw events in the bucket. */
  readonly events: number;
}

export interface QuotaDecision {
  readonly quota: string;
  readonly meter: string;
  readonly admitted: boolean;
  readonly enforcement: 'hard' | 'soft';
  readonly used: number;
  readonly limit: number;
  readonly remaining: number;
  readonly resetsAt: Date;
  readonly periodStart: Date;
  /** Soft quota at or above its first threshold (or over the limit). */
  readonly warning: boolean;
}

const GRANULARITY_MS: Record<Granularity, number> = { minute: 60_000, hour: 3_600_000, day: 86_400_000, month: 31 * 86_400_000 };

function aggregateSql(m: Meter): string {
  switch (m.aggregation) {
    case 'count':
      return 'count(*)';
    case 'sum':
      return 'sum(quantity)';
    case 'max':
      return 'max(quantity)';
    case 'unique_count':
      return 'count(DISTINCT properties ->> $5)';
    case 'latest':
      return '(array_agg(quantity ORDER BY occurred_at DESC, received_at DESC, event_id DESC))[1]';
  }
}

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  // Quote when needed; a leading =,+,-,@ is prefixed so spreadsheets do not run it as a formula.
  const safe = /^[=+\-@\t\r]/.test(s) && !/^-?\d/.test(s) ? `'${s}` : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** Usage rows as CSV (header line, RFC 4180 quoting). */
export function usageToCsv(rows: readonly UsageRow[]): string {
  const cols = ['tenant_id', 'meter', 'aggregation', 'bucket', 'value', 'events'] as const;
  return [cols.join(','), ...rows.map((r) => cols.map((c) => csvCell(r[c])).join(','))].join('\r\n') + '\r\n';
}

/**
 * Usage metering, quotas, rate limits and billing hooks on one Tenantwall instance.
 *
 * Rollups are computed from the raw events table when queried (index `(tenant_id, meter, occurred_at)`), not
 * maintained incrementally: a late or retried event is then counted in the right bucket by construction, with no
 * second write per event on the ingestion path (bench/metering.ts measures both ingestion and query cost).
 */
export class Metering {
  readonly db: Tenantwall;
  readonly model: MeteringModel;
  readonly options: ResolvedMeteringOptions;
  readonly webhooks: Webhooks;
  readonly limiter: RateLimiter;
  readonly #limits: EventLimits;
  readonly #plans: TtlCache<TenantId, Plan>;
  readonly #buffer: Map<TenantId, UsageEvent[]> = new Map();
  #buffered = 0;
  readonly #requests = new Map<string, { tenantId: TenantId; minute: number; properties: { route: string; status: number; api_key_id?: string | undefined }; count: number }>();
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(db: Tenantwall, options: MeteringOptions) {
    this.db = db;
    const { spec, ...rest } = options;
    this.model = 'meters' in spec && spec.meters instanceof Map ? (spec as MeteringModel) : defineMetering(spec as MeteringSpec);
    this.options = resolveMeteringOptions(rest);
    this.#limits = this.options;
    this.#plans = new TtlCache(100_000, this.options.planCacheTtlMs);
    this.webhooks = new Webhooks(db, rest.webhooks);
    let store: RateLimitStore;
    if (typeof rest.rateLimitStore === 'object') store = rest.rateLimitStore;
    else if (this.options.rateLimitStore === 'redis') {
      const redis = new Redis(this.options.redisUrl, {
        lazyConnect: false,
        // Queued while (re)connecting; the limiter's own timeout still bounds the wait (fail open/closed).
        enableOfflineQueue: true,
        maxRetriesPerRequest: 0,
        commandTimeout: this.options.rateLimitTimeoutMs,
        retryStrategy: (n) => Math.min(1000, n * 100),
      });
      redis.on('error', () => undefined); // surfaced per claim (fail open/closed)
      store = new RedisRateLimitStore(redis, { owned: true });
    } else store = new PostgresRateLimitStore(db);
    this.limiter = new RateLimiter(store, {
      failure: this.options.rateLimitFailure,
      timeoutMs: this.options.rateLimitTimeoutMs,
      maxBatch: this.options.rateLimitMaxBatch,
      batchFraction: this.options.rateLimitBatchFraction,
      leaseMs: this.options.rateLimitLeaseMs,
    });
  }

  // ---------------------------------------------------------------- events

  /** Validates one event (throws `invalid_usage_event` / `unknown_meter`) without writing it. */
  parseEvent(raw: unknown): UsageEvent {
    return parseUsageEvent(raw, this.model, this.#limits, Date.now());
  }

  /** Records one event in the tenant's scope; a known event_id is answered `duplicate: true`. */
  async record(tenantId: TenantId | string, event: UsageEventInput): Promise<RecordResult> {
    const r = await this.recordBatch(tenantId, [event]);
    return r.results[0] as RecordResult;
  }

  /**
   * Records a batch for one tenant, all-or-nothing: the whole batch is validated first, then written by one
   * statement (dedup and write in the same transaction). Results are per event, in input order.
   */
  async recordBatch(tenantId: TenantId | string, events: readonly unknown[]): Promise<BatchResult> {
    const tid = TenantId.parse(tenantId);
    const parsed = parseUsageBatch(events, this.model, this.#limits, Date.now());
    const fresh = await this.#insert(tid, parsed);
    const seen = new Set<string>();
    const results = parsed.map((e) => {
      // Within a batch the first occurrence of an id is the one that counts.
      const duplicate = !fresh.has(e.eventId) || seen.has(e.eventId);
      seen.add(e.eventId);
      return Object.freeze({ event_id: e.eventId, duplicate });
    });
    const accepted = results.filter((r) => !r.duplicate).length;
    return Object.freeze({ accepted, duplicates: results.length - accepted, results: Object.freeze(results) });
  }

  /** Inserts validated events; returns the ids that were new. One statement, one round trip. */
  async #insert(tid: TenantId, events: readonly UsageEvent[]): Promise<Set<string>> {
    const ids: string[] = [];
    const meters: string[] = [];
    const qty: string[] = [];
    const at: string[] = [];
    const props: (string | null)[] = [];
    const dedup = new Set<string>();
    for (const e of events) {
      if (dedup.has(e.eventId)) continue;
      dedup.add(e.eventId);
      ids.push(e.eventId);
      meters.push(e.meter);
      qty.push(String(e.quantity));
      at.push(e.occurredAt.toISOString());
      props.push(e.properties);
    }
    // The tenant is checked once per statement (the events table has no per-row foreign key, see tables.ts):
    // unknown and deleted tenants record nothing.
    const { rows } = await this.db.forTenant(tid).query<{ status: string | null; ids: string[] }>(
      `WITH t AS (SELECT status FROM ${quoteIdent(this.db.schema.registryTable)} WHERE id = $1),
       ins AS (
         INSERT INTO tw_usage_events (tenant_id, event_id, meter, quantity, occurred_at, properties)
         SELECT $1, u.e, u.m, u.q, u.t, u.p FROM unnest($2::text[], $3::text[], $4::numeric[], $5::timestamptz[], $6::jsonb[]) AS u(e, m, q, t, p)
          WHERE (SELECT status FROM t) IN ('active', 'suspended')
         ON CONFLICT (tenant_id, event_id) DO NOTHING
         RETURNING event_id)
       SELECT (SELECT status FROM t) AS status, ARRAY(SELECT event_id FROM ins) AS ids`,
      [tid, ids, meters, qty, at, props],
    );
    const r = rows[0];
    if (!r || r.status === null) throw new TenantwallError('tenant_not_found', `Tenant ${tid} does not exist.`);
    if (r.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${tid} was deleted.`);
    return new Set(r.ids);
  }

  /**
   * Buffers one event for a background batch write (the request hook's `api_requests` events). Cheap on the
   * request path; events still in the buffer when the process dies are lost, so use `record` for usage that
   * is billed per event.
   */
  enqueue(tenantId: TenantId, event: UsageEventInput): void {
    const e = parseUsageEvent(event, this.model, this.#limits, Date.now());
    let list = this.#buffer.get(tenantId);
    if (!list) {
      list = [];
      this.#buffer.set(tenantId, list);
    }
    list.push(e);
    this.#buffered++;
    if (this.#buffered >= this.options.requestFlushEvents) void this.flush();
    else if (!this.#flushTimer) {
      this.#flushTimer = setTimeout(() => void this.flush(), this.options.requestFlushMs);
      this.#flushTimer.unref();
    }
  }

  /**
   * Counts one API request for the `api_requests` meter. Requests are summed in memory per (tenant, minute,
   * route, status, API key) and written as one event per group at the next flush, so metering requests costs
   * a few rows per minute instead of one row per request. Lost if the process dies before the flush.
   */
  countRequest(tenantId: TenantId, properties: { route: string; status: number; api_key_id?: string | undefined }): void {
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    const key = `${tenantId}\u0000${minute}\u0000${properties.route}\u0000${properties.status}\u0000${properties.api_key_id ?? ''}`;
    const g = this.#requests.get(key);
    if (g) g.count++;
    else {
      this.#requests.set(key, { tenantId, minute, properties, count: 1 });
      if (!this.#flushTimer) {
        this.#flushTimer = setTimeout(() => void this.flush(), this.options.requestFlushMs);
        this.#flushTimer.unref();
      }
    }
  }

  /** Writes buffered events now. */
  flush(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const g of this.#requests.values()) {
      const props: Record<string, unknown> = { route: g.properties.route, status: g.properties.status };
      if (g.properties.api_key_id !== undefined) props.api_key_id = g.properties.api_key_id;
      let list = this.#buffer.get(g.tenantId);
      if (!list) {
        list = [];
        this.#buffer.set(g.tenantId, list);
      }
      list.push(Object.freeze({ eventId: `r_${randomUUID()}`, meter: API_REQUESTS_METER, quantity: g.count, occurredAt: new Date(g.minute), properties: JSON.stringify(props) }));
    }
    this.#requests.clear();
    const batches = [...this.#buffer];
    this.#buffer.clear();
    this.#buffered = 0;
    this.#flushing = this.#flushing.then(async () => {
      for (const [tid, list] of batches) {
        for (let i = 0; i < list.length; i += this.options.maxBatchSize) {
          await this.#insert(tid, list.slice(i, i + this.options.maxBatchSize)).catch(() => undefined);
        }
      }
    });
    return this.#flushing;
  }

  // ---------------------------------------------------------------- usage queries

  /** A tenant's own usage, through its scope: row-level security applies to the query. */
  async usage(tenantId: TenantId | string, query: UsageQuery = {}): Promise<UsageRow[]> {
    const tid = TenantId.parse(tenantId);
    return this.#query(query, (sql, params) => this.db.forTenant(tid).query(sql.replace('/*tenant*/', 'tenant_id = $6 AND'), [...params, tid]));
  }

  /** Every tenant's usage (or one tenant's with `tenantId`), for operators: owner connection. */
  async adminUsage(query: UsageQuery = {}): Promise<UsageRow[]> {
    const tid = query.tenantId === undefined ? null : TenantId.parse(query.tenantId);
    const admin = this.db.dangerouslyCrossTenant();
    return this.#query(query, (sql, params) => admin.query(sql.replace('/*tenant*/', '($6::uuid IS NULL OR tenant_id = $6) AND'), [...params, tid]));
  }

  async #query(q: UsageQuery, run: (sql: string, params: unknown[]) => Promise<{ rows: Record<string, any>[] }>): Promise<UsageRow[]> {
    const bad = (field: string, why: string) => new TenantwallError('invalid_usage_query', `Usage query ${field} ${why}.`, { details: { field } });
    const granularity = q.granularity ?? 'day';
    if (!(granularity in GRANULARITY_MS)) throw bad('granularity', 'must be minute, hour, day or month');
    const date = (field: string, v: Date | string | undefined, dflt: Date): Date => {
      if (v === undefined) return dflt;
      const d = v instanceof Date ? v : /^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$/.test(v) ? new Date(v) : new Date(NaN);
      if (Number.isNaN(d.getTime())) throw bad(field, 'must be an ISO 8601 date or date-time');
      return d;
    };
    const now = new Date();
    const from = date('from', q.from, periodBounds('month', now).start);
    // By default up to the latest timestamp ingestion accepts (now + the allowed clock skew), so an event
    // stamped a little ahead, or in this very millisecond, is in the answer.
    const to = date('to', q.to, new Date(now.getTime() + this.options.maxFutureSkewMs + 1));
    if (from >= to) throw bad('from', 'must be before to');
    if ((to.getTime() - from.getTime()) / GRANULARITY_MS[granularity] > this.options.maxQueryBuckets) {
      throw bad('granularity', `gives more than ${this.options.maxQueryBuckets} buckets for this range; use a coarser one`);
    }
    const names = q.meters && q.meters.length > 0 ? q.meters : [...this.model.meters.keys()];
    const out: UsageRow[] = [];
    for (const name of names) {
      const m = this.model.meters.get(name);
      if (!m) throw new TenantwallError('unknown_meter', `Unknown meter ${JSON.stringify(String(name).slice(0, 80))}.`, { status: 400, details: { field: 'meter', meter: String(name).slice(0, 80) } });
      const { rows } = await run(
        `SELECT tenant_id, date_trunc($4, occurred_at, 'UTC') AS bucket, ${aggregateSql(m)}::float8 AS value, count(*)::int AS events
           FROM tw_usage_events
          WHERE /*tenant*/ meter = $1 AND occurred_at >= $2 AND occurred_at < $3 AND ($5::text IS NULL OR true)
          GROUP BY tenant_id, bucket ORDER BY tenant_id, bucket`,
        [m.name, from, to, granularity, m.uniqueBy ?? null],
      );
      for (const r of rows) {
        out.push(Object.freeze({ tenant_id: r.tenant_id, meter: m.name, aggregation: m.aggregation, bucket: (r.bucket as Date).toISOString(), value: Number(r.value), events: r.events }));
      }
    }
    return out;
  }

  /** Value of every meter over [from, to) as one number each (period totals). */
  async totals(tx: { query: (sql: string, params: unknown[]) => Promise<{ rows: Record<string, any>[] }> }, tid: TenantId, from: Date, to: Date): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const m of this.model.meters.values()) {
      const { rows } = await tx.query(
        `SELECT coalesce(${aggregateSql(m)}, 0)::float8 AS value FROM tw_usage_events
          WHERE tenant_id = $1 AND meter = $2 AND occurred_at >= $3 AND occurred_at < $4 AND ($5::text IS NULL OR true)`,
        [tid, m.name, from, to, m.uniqueBy ?? null],
      );
      out[m.name] = Number(rows[0]?.value ?? 0);
    }
    return out;
  }

  // ---------------------------------------------------------------- plans

  /** The tenant's plan (cached for `planCacheTtlMs`). */
  async planOf(tenantId: TenantId | string): Promise<Plan> {
    const tid = TenantId.parse(tenantId);
    const cached = this.#plans.get(tid);
    if (cached) return cached;
    const { rows } = await this.db.forTenant(tid).query<{ plan: string }>(`SELECT plan FROM tw_tenant_plans WHERE tenant_id = $1`, [tid]);
    const name = rows[0]?.plan ?? this.model.defaultPlan;
    // A plan removed from code falls back to the default instead of failing every request of the tenant.
    const plan = this.model.plans.get(name) ?? (this.model.plans.get(this.model.defaultPlan) as Plan);
    this.#plans.set(tid, plan);
    return plan;
  }

  /**
   * Assigns a plan. In one transaction: the assignment, the `plan.changed` outbox event, and the re-split of
   * every hard quota counter of the current periods to the new limits (effective at once in every process).
   */
  async setPlan(tenantId: TenantId | string, planName: string): Promise<{ changed: boolean; version: number }> {
    const tid = TenantId.parse(tenantId);
    const plan = this.model.plans.get(planName);
    if (!plan) throw new TenantwallError('unknown_plan', `Plan ${JSON.stringify(planName)} is not declared.`, { details: { plan: planName } });
    const result = await this.db.forTenant(tid).transaction(async (tx) => {
      const before = await tx.query<{ plan: string; version: number }>(`SELECT plan, version FROM tw_tenant_plans WHERE tenant_id = $1 FOR UPDATE`, [tid]);
      const previous = before.rows[0]?.plan ?? this.model.defaultPlan;
      if (before.rows[0] && previous === planName) return { changed: false, version: before.rows[0].version };
      const { rows } = await tx.query<{ version: number }>(
        `INSERT INTO tw_tenant_plans (tenant_id, plan) VALUES ($1, $2)
         ON CONFLICT (tenant_id, slot) DO UPDATE SET plan = excluded.plan, version = tw_tenant_plans.version + 1, changed_at = now()
         RETURNING version`,
        [tid, planName],
      );
      const version = rows[0]?.version ?? 1;
      const now = new Date();
      for (const q of Object.values(plan.quotas)) {
        const { start } = periodBounds(q.period, now);
        await tx.query(`SELECT tw_quota_rebalance($1, $2, $3, $4, $5)`, [tid, q.name, start, q.limit, q.enforcement === 'hard']);
      }
      if (previous !== planName) {
        await writeOutboxEvent(tx, `plan.changed:${tid}:${version}`, 'plan.changed', {
          tenant_id: tid,
          previous_plan: previous,
          plan: planName,
          version,
          changed_at: now.toISOString(),
        });
      }
      return { changed: previous !== planName, version };
    });
    this.#plans.delete(tid);
    return result;
  }

  // ---------------------------------------------------------------- quotas

  /**
   * Admits `amount` units against a quota of the tenant's plan. Hard: refused (admitted false) when it would
   * exceed the limit. Soft: always admitted. Threshold events are written in the same transaction. A plan
   * without this quota admits everything (unlimited).
   */
  async consume(tenantId: TenantId | string, quotaName: string, amount = 1): Promise<QuotaDecision | undefined> {
    const tid = TenantId.parse(tenantId);
    if (!Number.isSafeInteger(amount) || amount < 0) throw new TenantwallError('config_invalid', 'Quota amounts are integers >= 0.', { details: { field: 'amount' } });
    const plan = await this.planOf(tid);
    const q = plan.quotas[quotaName];
    if (!q) return undefined;
    const { start, end } = periodBounds(q.period, new Date());
    let rows: Array<{ admitted: boolean; used: string; quota_limit: string }>;
    for (let attempt = 1; ; attempt++) {
      try {
        ({ rows } = await this.db.forTenant(tid).query<{ admitted: boolean; used: string; quota_limit: string }>(
          `SELECT admitted, used, quota_limit FROM tw_quota_consume($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [tid, q.name, q.meter, start, end, amount, q.limit, this.options.quotaShards, q.enforcement === 'hard', q.thresholds],
        ));
        break;
      } catch (err) {
        // Lock waits are ordered by shard, so deadlocks should not happen; if one does, the statement was rolled
        // back as a whole and is safe to run again.
        if ((err as { code?: string }).code !== '40P01' || attempt >= 3) throw err;
      }
    }
    const r = rows[0];
    const used = Number(r?.used ?? 0);
    const limit = Number(r?.quota_limit ?? q.limit);
    const first = q.thresholds[0] ?? 100;
    return Object.freeze({
      quota: q.name,
      meter: q.meter,
      admitted: r?.admitted === true,
      enforcement: q.enforcement,
      used,
      limit,
      remaining: Math.max(0, limit - used),
      resetsAt: end,
      periodStart: start,
      warning: limit === 0 ? used > 0 : used * 100 >= first * limit,
    });
  }

  /** Current state of a quota without consuming. */
  status(tenantId: TenantId | string, quotaName: string): Promise<QuotaDecision | undefined> {
    return this.consume(tenantId, quotaName, 0);
  }

  /** Gives back units admitted in the period starting `periodStart` (the work they paid for failed). */
  async release(tenantId: TenantId | string, quotaName: string, periodStart: Date, amount = 1): Promise<number> {
    const tid = TenantId.parse(tenantId);
    const { rows } = await this.db.forTenant(tid).query<{ n: string }>(`SELECT tw_quota_release($1, $2, $3, $4) AS n`, [tid, quotaName, periodStart, amount]);
    return Number(rows[0]?.n ?? 0);
  }

  /** Throws `quota_exceeded` (429, used/limit/resets_at) when a hard quota refuses. */
  async requireQuota(tenantId: TenantId | string, quotaName: string, amount = 1): Promise<QuotaDecision | undefined> {
    const d = await this.consume(tenantId, quotaName, amount);
    if (d && !d.admitted) throw quotaExceeded(d);
    return d;
  }

  // ---------------------------------------------------------------- rate limits

  /**
   * Checks every rate limit of the tenant's plan for one request. Returns the decisions (tightest first);
   * throws `rate_limited` when a hard one refuses.
   */
  async rateLimit(tenantId: TenantId | string, apiKeyId?: string): Promise<Array<RateLimitDecision & { spec: RateLimit }>> {
    const tid = TenantId.parse(tenantId);
    const plan = await this.planOf(tid);
    const out: Array<RateLimitDecision & { spec: RateLimit }> = [];
    for (const l of this.#limitsOf(plan, apiKeyId)) out.push(withSpec(await this.limiter.take(tid, l.key, l.limit, l.windowMs), l.spec));
    return decideRates(out);
  }

  /**
   * `rateLimit` when it can be answered without a round trip (plan cached, every limit served from the local
   * lease or known exhausted); undefined otherwise, and then nothing was taken. Throws `rate_limited` like it.
   */
  rateLimitLocal(tenantId: TenantId, apiKeyId?: string): Array<RateLimitDecision & { spec: RateLimit }> | undefined {
    const plan = this.#plans.get(tenantId);
    if (!plan) return undefined;
    const limits = this.#limitsOf(plan, apiKeyId);
    const decisions = this.limiter.takeAllLocal(tenantId, limits);
    if (!decisions) return undefined;
    const out: Array<RateLimitDecision & { spec: RateLimit }> = [];
    for (let i = 0; i < decisions.length; i++) out.push(withSpec(decisions[i] as RateLimitDecision, (limits[i] as LimitOfPlan).spec));
    return decideRates(out);
  }

  /** The limiter keys of a plan's rate limits for one API key, built once per (plan, key). */
  readonly #planLimits = new WeakMap<Plan, Map<string, readonly LimitOfPlan[]>>();
  #limitsOf(plan: Plan, apiKeyId: string | undefined): readonly LimitOfPlan[] {
    let byKey = this.#planLimits.get(plan);
    if (!byKey) this.#planLimits.set(plan, (byKey = new Map()));
    let limits = byKey.get(apiKeyId ?? '');
    if (!limits) {
      if (byKey.size >= 10_000) byKey.clear();
      limits = plan.rateLimits.map((rl) => ({ key: rateLimitKey(rl, apiKeyId), limit: rl.limit, windowMs: rl.windowMs, spec: rl }));
      byKey.set(apiKeyId ?? '', limits);
    }
    return limits;
  }

  // ---------------------------------------------------------------- billing events

  /**
   * Closes a billing period: for every tenant (or the given ones) writes one `period.closed` outbox event with
   * the final usage of every meter over the period. Its id is `period.closed:<tenant>:<period start>`, so a
   * re-run writes nothing new and cannot bill twice. Events arriving later for a closed period are still
   * recorded and queryable but not in the closed event.
   */
  async closePeriod(input: { period?: 'month' | 'day' | 'hour'; at: Date; tenantIds?: readonly string[] }): Promise<{ written: number; existing: number }> {
    const period = input.period ?? 'month';
    const { start, end } = periodBounds(period, input.at);
    let ids: string[];
    if (input.tenantIds) ids = input.tenantIds.map((t) => TenantId.parse(t));
    else {
      const { rows } = await this.db
        .dangerouslyCrossTenant()
        .query<{ id: string }>(`SELECT id FROM ${quoteIdent(this.db.schema.registryTable)} WHERE status <> 'deleted' ORDER BY id`);
      ids = rows.map((r) => r.id);
    }
    let written = 0;
    let existing = 0;
    for (const id of ids) {
      const tid = TenantId.parse(id);
      const ok = await this.db.forTenant(tid).transaction(async (tx) => {
        const usage = await this.totals(tx, tid, start, end);
        const plan = await tx.query<{ plan: string }>(`SELECT plan FROM tw_tenant_plans WHERE tenant_id = $1`, [tid]);
        return writeOutboxEvent(tx, `period.closed:${tid}:${period}:${start.toISOString()}`, 'period.closed', {
          tenant_id: tid,
          period,
          period_start: start.toISOString(),
          period_end: end.toISOString(),
          plan: plan.rows[0]?.plan ?? this.model.defaultPlan,
          usage,
        });
      });
      if (ok) written++;
      else existing++;
    }
    return { written, existing };
  }

  /**
   * Suspends a tenant and writes `tenant.suspended` in the same transaction (owner connection). The registry's
   * change listeners (caches of this process) are notified afterwards.
   */
  async suspendTenant(tenantId: TenantId | string, reason = 'suspended'): Promise<void> {
    const tid = TenantId.parse(tenantId);
    const registry = quoteIdent(this.db.schema.registryTable);
    const eventId = `tenant.suspended:${tid}:${randomUUID()}`;
    const changed = await this.db.dangerouslyCrossTenant().transaction(async (c) => {
      const { rowCount } = await c.query(`UPDATE ${registry} SET status = 'suspended' WHERE id = $1 AND status = 'active'`, [tid]);
      if (!rowCount) return false;
      await c.query(`INSERT INTO tw_outbox (tenant_id, id, type, payload) VALUES ($1, $2, 'tenant.suspended', $3)`, [
        tid,
        eventId,
        JSON.stringify({ tenant_id: tid, reason, suspended_at: new Date().toISOString() }),
      ]);
      return true;
    });
    if (!changed) {
      const t = await this.db.tenants.get(tid);
      if (!t) throw new TenantwallError('tenant_not_found', `Tenant ${tid} does not exist.`);
      if (t.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${t.slug} was deleted.`);
      return; // already suspended: no second event
    }
    // Idempotent no-op update that fires the registry's listeners (tenant and API key caches).
    await this.db.tenants.suspend(tid);
  }

  async close(): Promise<void> {
    await this.flush();
    await this.limiter.store.close?.();
  }
}

export function quotaExceeded(d: QuotaDecision): TenantwallError {
  return new TenantwallError('quota_exceeded', `Quota ${d.quota} is used up for this period (${d.used} of ${d.limit}).`, {
    details: {
      quota: d.quota,
      used: d.used,
      limit: d.limit,
      resets_at: d.resetsAt.toISOString(),
      retry_after: Math.max(1, Math.ceil((d.resetsAt.getTime() - Date.now()) / 1000)),
    },
  });
}

export function rateLimited(d: RateLimitDecision & { spec: RateLimit }): TenantwallError {
  return new TenantwallError('rate_limited', `Rate limit of ${d.limit} requests per ${d.spec.per} (${d.spec.scope === 'apiKey' ? 'API key' : 'tenant'}) reached.`, {
    details: {
      scope: d.spec.scope,
      per: d.spec.per,
      used: d.limit - d.remaining,
      limit: d.limit,
      resets_at: new Date(d.resetMs).toISOString(),
      retry_after: Math.max(1, Math.ceil((d.resetMs - Date.now()) / 1000)),
    },
  });
}

type LimitOfPlan = Readonly<{ key: string; limit: number; windowMs: number; spec: RateLimit }>;

function rateLimitKey(rl: RateLimit, apiKeyId: string | undefined): string {
  return rl.scope === 'apiKey' && apiKeyId !== undefined ? `key:${apiKeyId}:${rl.per}` : `tenant:${rl.per}${rl.scope === 'apiKey' ? ':nokey' : ''}`;
}

/** A decision with the limit it is about (fields copied: faster than a spread on the request path). */
function withSpec(d: RateLimitDecision, spec: RateLimit): RateLimitDecision & { spec: RateLimit } {
  return { allowed: d.allowed, limit: d.limit, remaining: d.remaining, resetMs: d.resetMs, degraded: d.degraded, spec };
}

/** Tightest limit first; a refusal by a hard limit throws `rate_limited`. */
function decideRates(out: Array<RateLimitDecision & { spec: RateLimit }>): Array<RateLimitDecision & { spec: RateLimit }> {
  if (out.length > 1) out.sort((a, b) => a.remaining - b.remaining);
  for (const d of out) if (!d.allowed && d.spec.enforcement === 'hard') throw rateLimited(d);
  return out;
}
