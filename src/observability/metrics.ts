import type * as Prom from 'prom-client';
import type { StatementEvent, StatementObserver, StatementOutcome } from '../db/observer.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { requireOptional } from '../util/optional.ts';
import { TenantActivity } from './activity.ts';
import { NO_TENANT_LABEL, TenantCounterStore, TenantLabels } from './labels.ts';
import { type ObservabilityOptions, type ResolvedObservabilityOptions, resolveObservabilityOptions } from './options.ts';


/** One HTTP request as the metrics count it (the Fastify plugin reports every response). */
export interface RequestRecord {
  /** The resolved tenant, if any. */
  readonly tenantId: string | undefined;
  readonly method: string;
  /** The route pattern (`/invoices/:id`), never the raw URL; `unmatched` for 404s without a route. */
  readonly route: string;
  readonly statusCode: number;
  readonly durationSeconds: number;
  /** The error code of a refused request (`rate_limited`, `quota_exceeded`, ...). */
  readonly errorCode?: string | undefined;
  /** The quota of a `quota_exceeded` refusal. */
  readonly quota?: string | undefined;
}

/** A quota's state of one tenant (from the metering plugin), for the quota-use gauge. */
export interface QuotaUse {
  readonly quota: string;
  readonly used: number;
  readonly limit: number;
}

/** Options of `createMetrics`: the tenantwall instance to observe and the observability options. */
export interface MetricsOptions extends ObservabilityOptions {
  /** The instance whose tenant-scoped statements are measured (an observer is added) and whose pools are reported. */
  db?: Tenantwall | undefined;
}

const statusClass = (code: number) => `${Math.floor(code / 100)}xx`;
const key = (...labels: string[]) => JSON.stringify(labels);

/**
 * Prometheus metrics of a tenantwall service (prom-client, an optional peer dependency): per tenant (bounded
 * label, see `TenantLabels`) database time, statements, rows, guard refusals, requests by route and status
 * class, 429s by reason, rate-limit rejections and quota use; globally request and statement latency, pool
 * connections, webhook outbox depth, delivery lag and dead letters. docs/observability.md lists every series.
 */
export class TenantwallMetrics {
  readonly options: ResolvedObservabilityOptions;
  /** Per-tenant activity over the window (the noisy-neighbour report: `activity.top()`). */
  readonly activity: TenantActivity;
  /** The statement observer (added to `db` by `createMetrics`). */
  readonly observer: StatementObserver;
  /** The Content-Type of `metrics()`. */
  readonly contentType: string;
  readonly #registry: Prom.Registry;
  readonly #labels: TenantLabels;
  readonly #statements: TenantCounterStore;
  readonly #dbSeconds: TenantCounterStore;
  readonly #rows: TenantCounterStore;
  readonly #refusals: TenantCounterStore;
  readonly #requests: TenantCounterStore;
  readonly #tooMany: TenantCounterStore;
  readonly #rateLimited: TenantCounterStore;
  readonly #quotaUse = new Map<string, Map<string, QuotaUse>>();
  readonly #requestDuration: Prom.Histogram<string>;
  readonly #statementDuration: Prom.Histogram<string>;
  #unobserve: (() => void) | undefined;

  constructor(input: MetricsOptions = {}) {
    const { db, ...rest } = input;
    this.options = resolveObservabilityOptions(rest);
    const prom = requireOptional<typeof Prom>('prom-client', 'metrics');
    const p = this.options.metricsPrefix;
    this.#registry = new prom.Registry();
    this.contentType = this.#registry.contentType;
    if (this.options.processMetrics) prom.collectDefaultMetrics({ register: this.#registry, prefix: p });
    this.activity = new TenantActivity({ windowMs: this.options.activityWindowMs, maxTenants: this.options.activityMaxTenants, noisySharePercent: this.options.noisySharePercent });
    const labels = (this.#labels = new TenantLabels(this.options.tenantLabels));
    const registry = this.#registry;
    const tenantCounter = (name: string, help: string, extra: string[]): TenantCounterStore => {
      const store = new TenantCounterStore(labels);
      new prom.Counter({
        name: p + name,
        help,
        labelNames: ['tenant', ...extra],
        registers: [registry],
        collect() {
          this.reset();
          for (const [tenant, k, v] of store.series()) {
            const values = JSON.parse(k) as string[];
            this.inc(Object.fromEntries([['tenant', tenant], ...extra.map((n, i) => [n, values[i] ?? ''])]), v);
          }
        },
      });
      return store;
    };
    const activity = this.activity;
    const quotaUse = this.#quotaUse;
    // Before any counter collects: the label choice for this scrape.
    new prom.Gauge({
      name: `${p}metrics_tenant_labels`,
      help: 'Tenants that have their own label right now (at most the configured bound; the rest are "other").',
      registers: [registry],
      collect() {
        const scores = new Map<string, number>();
        for (const [t, c] of activity.totals()) scores.set(t, c.requests + c.statements);
        labels.rebalance(scores);
        for (const t of quotaUse.keys()) if (!labels.labelled().has(t)) quotaUse.delete(t);
        this.set(labels.labelled().size);
      },
    });
    this.#statements = tenantCounter('db_statements_total', 'Tenant-scoped statements, by outcome (ok, error, refused by the guard).', ['outcome']);
    this.#dbSeconds = tenantCounter('db_time_seconds_total', 'Database time of tenant-scoped statements (round trip included), seconds.', []);
    this.#rows = tenantCounter('db_rows_total', 'Rows returned by tenant-scoped statements.', []);
    this.#refusals = tenantCounter('guard_refusals_total', 'Tenant-scoped statements the statement guard refused.', []);
    this.#requests = tenantCounter('http_requests_total', 'HTTP requests by tenant, method, route and status class.', ['method', 'route', 'status_class']);
    this.#tooMany = tenantCounter('http_429_total', 'Requests refused with 429, by reason (error code) and quota.', ['reason', 'quota']);
    this.#rateLimited = tenantCounter('rate_limit_rejections_total', 'Requests refused by a rate limit.', []);
    new prom.Gauge({
      name: `${p}quota_used_ratio`,
      help: 'Use of each quota against its limit (labelled tenants only), last seen on a request.',
      labelNames: ['tenant', 'quota'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [tenant, m] of quotaUse) for (const q of m.values()) this.set({ tenant, quota: q.quota }, q.limit > 0 ? q.used / q.limit : 0);
      },
    });
    this.#requestDuration = new prom.Histogram({
      name: `${p}http_request_duration_seconds`,
      help: 'HTTP request latency by method, route and status class.',
      labelNames: ['method', 'route', 'status_class'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.#statementDuration = new prom.Histogram({
      name: `${p}db_statement_duration_seconds`,
      help: 'Latency of tenant-scoped statements that were sent.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: [registry],
    });
    if (db) this.#globalDbMetrics(prom, db);
    this.observer = { start: (e) => this.#startStatement(e) };
  }

  #startStatement(e: StatementEvent): (o: StatementOutcome) => void {
    return (o) => this.recordStatement(e.tenantId, o);
  }

  /** Counts one tenant-scoped statement (what the observer does). */
  recordStatement(tenantId: string, o: StatementOutcome): void {
    const outcome = o.verdict === 'refused' ? 'refused' : o.error === undefined ? 'ok' : 'error';
    this.#statements.inc(tenantId, key(outcome));
    if (outcome === 'refused') {
      this.#refusals.inc(tenantId, '[]');
      this.activity.record(tenantId, { statements: 1, refusals: 1 });
      return;
    }
    this.#dbSeconds.inc(tenantId, '[]', o.durationMs / 1000);
    if (o.rows > 0) this.#rows.inc(tenantId, '[]', o.rows);
    this.#statementDuration.observe(o.durationMs / 1000);
    this.activity.record(tenantId, { statements: 1, dbMs: o.durationMs, rows: o.rows });
  }

  /** Counts one HTTP request (the Fastify plugin calls it for every response). */
  recordRequest(r: RequestRecord): void {
    const cls = statusClass(r.statusCode);
    const tenant = r.tenantId ?? NO_TENANT_LABEL;
    this.#requests.inc(tenant, key(r.method, r.route, cls));
    this.#requestDuration.observe({ method: r.method, route: r.route, status_class: cls }, r.durationSeconds);
    if (r.statusCode === 429) {
      this.#tooMany.inc(tenant, key(r.errorCode ?? 'unknown', r.quota ?? ''));
      if (r.errorCode === 'rate_limited') this.#rateLimited.inc(tenant, '[]');
    }
    if (r.tenantId !== undefined) this.activity.record(r.tenantId, { requests: 1 });
  }

  /** Records the last known quota states of a tenant (kept for labelled tenants only). */
  recordQuotas(tenantId: string, quotas: readonly QuotaUse[]): void {
    if (quotas.length === 0 || this.#labels.labelOf(tenantId) !== tenantId) return;
    let m = this.#quotaUse.get(tenantId);
    if (!m) this.#quotaUse.set(tenantId, (m = new Map()));
    for (const q of quotas) m.set(q.quota, { quota: q.quota, used: q.used, limit: q.limit });
  }

  /** The Prometheus text exposition of every metric. */
  metrics(): Promise<string> {
    return this.#registry.metrics();
  }

  /** Adds the statement observer to `db` (done by `createMetrics`); returns the function that removes it. */
  attach(db: Tenantwall): () => void {
    this.#unobserve?.();
    const off = db.observe(this.observer);
    this.#unobserve = off;
    return off;
  }

  /** Stops observing the instance's statements. */
  close(): void {
    this.#unobserve?.();
    this.#unobserve = undefined;
  }

  #globalDbMetrics(prom: typeof Prom, db: Tenantwall): void {
    const p = this.options.metricsPrefix;
    const registry = this.#registry;
    new prom.Gauge({
      name: `${p}pool_connections`,
      help: 'Connections of the application and owner pools: total, idle, waiting (callers queued for one), max.',
      labelNames: ['pool', 'state'],
      registers: [registry],
      collect() {
        const s = db.poolStats();
        for (const pool of ['app', 'owner'] as const) for (const state of ['total', 'idle', 'waiting', 'max'] as const) this.set({ pool, state }, s[pool][state]);
      },
    });
    if (!db.schema.table('tw_webhook_deliveries')) return;
    // One query per scrape for the three webhook gauges, on the owner connection (a global table).
    let pending: Promise<{ pending: number; dead: number; lag: number; oldest: number } | undefined> | undefined;
    const read = () =>
      (pending ??= db
        .dangerouslyCrossTenant()
        .query<{ pending: string; dead: string; lag: number | null; oldest: number | null }>(
          `SELECT count(*) FILTER (WHERE status IN ('pending', 'in_flight')) AS pending,
                  count(*) FILTER (WHERE status = 'dead') AS dead,
                  extract(epoch FROM avg(delivered_at - event_created_at) FILTER (WHERE status = 'delivered' AND delivered_at > now() - interval '5 minutes'))::float8 AS lag,
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE status IN ('pending', 'in_flight')))::float8 AS oldest
             FROM tw_webhook_deliveries`,
        )
        .then(
          (r) => {
            const row = r.rows[0];
            return row ? { pending: Number(row.pending), dead: Number(row.dead), lag: row.lag ?? 0, oldest: row.oldest ?? 0 } : undefined;
          },
          () => undefined,
        )
        .finally(() => setImmediate(() => (pending = undefined))));
    const gauge = (name: string, help: string, pick: (v: { pending: number; dead: number; lag: number; oldest: number }) => number) =>
      new prom.Gauge({
        name: p + name,
        help,
        registers: [registry],
        async collect() {
          const v = await read();
          if (v) this.set(pick(v));
        },
      });
    gauge('webhook_outbox_depth', 'Webhook deliveries waiting to be sent (pending or in flight).', (v) => v.pending);
    gauge('webhook_dead_letters', 'Webhook deliveries that exhausted their attempts (replay with tenantwall webhooks replay).', (v) => v.dead);
    gauge('webhook_delivery_lag_seconds', 'Mean time from event to delivery of the deliveries of the last 5 minutes.', (v) => v.lag);
    gauge('webhook_oldest_pending_age_seconds', 'Age of the oldest delivery still waiting.', (v) => v.oldest);
  }
}

/** Creates the metrics and starts measuring every tenant-scoped statement of `options.db`. */
export function createMetrics(options: MetricsOptions = {}): TenantwallMetrics {
  const m = new TenantwallMetrics(options);
  if (options.db) m.attach(options.db);
  return m;
}
