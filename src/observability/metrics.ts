import type * as Prom from 'prom-client';
import type { StatementEvent, StatementObserver, StatementOutcome } from '../db/observer.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { requireOptional } from '../util/optional.ts';
import { TenantActivity } from './activity.ts';
import { type FastHistogram, type HistogramSeries, createFastHistogram } from './histogram.ts';
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

/** One progress report of a long tenant operation (the shape of lifecycle's `Progress`). */
export interface OperationProgress {
  readonly phase: string;
  readonly table?: string | undefined;
  readonly done: number;
  readonly total?: number | undefined;
}

/** A long tenant operation (move, export, import, delete) as the metrics follow it: `trackOperation`. */
export interface TrackedOperation {
  /** Feed it the operation's progress reports (a lifecycle `onProgress` listener). */
  onProgress(p: OperationProgress): void;
  /** The operation ended: its series are removed and `lifecycle_operations_total{outcome}` counts it. Idempotent. */
  end(outcome: 'succeeded' | 'failed'): void;
}

/** Options of `createMetrics`: the tenantwall instance to observe and the observability options. */
export interface MetricsOptions extends ObservabilityOptions {
  /** The instance whose tenant-scoped statements are measured (an observer is added) and whose pools are reported. */
  db?: Tenantwall | undefined;
}

const statusClass = (code: number) => `${Math.floor(code / 100)}xx`;
const key = (...labels: string[]) => JSON.stringify(labels);
const NO_LABELS = key();
const OUTCOME_KEYS = { ok: key('ok'), error: key('error'), refused: key('refused') };
/** Route x method entries of the request cache before new ones are no longer cached (routes are patterns: bounded). */
const MAX_ROUTE_ENTRIES = 10_000;

/** What a request of one method, route pattern and status class updates, built once. */
interface RequestSeries {
  /** The other-labels key of `http_requests_total`. */
  readonly counterKey: string;
  readonly duration: HistogramSeries;
}

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
  readonly #requestDuration: FastHistogram;
  readonly #statementDuration: HistogramSeries;
  readonly #statementHistogram: FastHistogram;
  /** Method + route -> the series per status class (index: first digit of the status). */
  readonly #requestSeries = new Map<string, Map<string, Array<RequestSeries | undefined>>>();
  #requestEntries = 0;
  readonly #operations = new Set<{ operation: string; tenant: string; phases: Map<string, Map<string, { done: number; total: number }>> }>();
  readonly #operationsEnded: Prom.Counter<string>;
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
    this.#requestDuration = createFastHistogram(prom, {
      name: `${p}http_request_duration_seconds`,
      help: 'HTTP request latency by method, route and status class.',
      labelNames: ['method', 'route', 'status_class'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    });
    this.#statementHistogram = createFastHistogram(prom, {
      name: `${p}db_statement_duration_seconds`,
      help: 'Latency of tenant-scoped statements that were sent.',
      labelNames: [],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers: [registry],
    });
    this.#statementDuration = this.#statementHistogram.series('', {});
    const operations = this.#operations;
    new prom.Gauge({
      name: `${p}lifecycle_operations_running`,
      help: 'Long tenant operations (move, export, import, delete) running in this process.',
      labelNames: ['operation'],
      registers: [registry],
      collect() {
        this.reset();
        const n = new Map<string, number>();
        for (const o of operations) n.set(o.operation, (n.get(o.operation) ?? 0) + 1);
        for (const [operation, v] of n) this.set({ operation }, v);
      },
    });
    const progressGauge = (name: string, help: string, pick: (x: { done: number; total: number }) => number) =>
      new prom.Gauge({
        name: p + name,
        help,
        labelNames: ['operation', 'tenant', 'phase'],
        registers: [registry],
        collect() {
          // Only running operations have series: the label set is bounded by the operations running at once.
          this.reset();
          for (const o of operations) {
            for (const [phase, tables] of o.phases) {
              let v = 0;
              for (const x of tables.values()) v += pick(x);
              this.set({ operation: o.operation, tenant: o.tenant, phase }, v);
            }
          }
        },
      });
    progressGauge('lifecycle_operation_done', 'Units done by a running operation, per phase (rows for copy/rows phases, tables for switch), summed over its tables.', (x) => x.done);
    progressGauge('lifecycle_operation_total', 'Units a running operation expects per phase, as far as known.', (x) => x.total);
    this.#operationsEnded = new prom.Counter({
      name: `${p}lifecycle_operations_total`,
      help: 'Long tenant operations that ended, by operation and outcome (succeeded, failed).',
      labelNames: ['operation', 'outcome'],
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
    const label = this.#labels.labelOf(tenantId);
    if (o.verdict === 'refused') {
      this.#statements.incLabel(label, OUTCOME_KEYS.refused, 1);
      this.#refusals.incLabel(label, NO_LABELS, 1);
      this.activity.countStatement(tenantId, 0, 0, 1);
      return;
    }
    this.#statements.incLabel(label, o.error === undefined ? OUTCOME_KEYS.ok : OUTCOME_KEYS.error, 1);
    const seconds = o.durationMs / 1000;
    this.#dbSeconds.incLabel(label, NO_LABELS, seconds);
    if (o.rows > 0) this.#rows.incLabel(label, NO_LABELS, o.rows);
    this.#statementHistogram.observe(this.#statementDuration, seconds);
    this.activity.countStatement(tenantId, o.durationMs, o.rows, 0);
  }

  /** Counts one HTTP request (the Fastify plugin calls it for every response). */
  recordRequest(r: RequestRecord): void {
    const tenant = r.tenantId ?? NO_TENANT_LABEL;
    const series = this.#seriesOf(r.method, r.route, r.statusCode);
    this.#requests.inc(tenant, series.counterKey);
    this.#requestDuration.observe(series.duration, r.durationSeconds);
    if (r.statusCode === 429) {
      this.#tooMany.inc(tenant, key(r.errorCode ?? 'unknown', r.quota ?? ''));
      if (r.errorCode === 'rate_limited') this.#rateLimited.inc(tenant, NO_LABELS);
    }
    if (r.tenantId !== undefined) this.activity.countRequest(r.tenantId);
  }

  /** The series of a method, route pattern and status class: built on first use, then two map lookups. */
  #seriesOf(method: string, route: string, statusCode: number): RequestSeries {
    // Index by the status class digit; a status outside 100-599 (never sent by Node) is not cached.
    const index = statusCode >= 100 && statusCode < 600 ? Math.floor(statusCode / 100) : -1;
    let byMethod = this.#requestSeries.get(route);
    let byClass = byMethod?.get(method);
    const cached = index < 0 ? undefined : byClass?.[index];
    if (cached !== undefined) return cached;
    const cls = statusClass(statusCode);
    const k = key(method, route, cls);
    const series: RequestSeries = { counterKey: k, duration: this.#requestDuration.series(k, { method, route, status_class: cls }) };
    if (index < 0 || this.#requestEntries >= MAX_ROUTE_ENTRIES) return series;
    if (!byMethod) this.#requestSeries.set(route, (byMethod = new Map()));
    if (!byClass) {
      byMethod.set(method, (byClass = []));
      this.#requestEntries++;
    }
    byClass[index] = series;
    return series;
  }

  /** Records the last known quota states of a tenant (kept for labelled tenants only). */
  recordQuotas(tenantId: string, quotas: readonly QuotaUse[]): void {
    if (quotas.length === 0 || this.#labels.labelOf(tenantId) !== tenantId) return;
    let m = this.#quotaUse.get(tenantId);
    if (!m) this.#quotaUse.set(tenantId, (m = new Map()));
    for (const q of quotas) m.set(q.quota, { quota: q.quota, used: q.used, limit: q.limit });
  }

  /**
   * Follows a long tenant operation: while it runs, `lifecycle_operations_running` counts it and
   * `lifecycle_operation_done` / `lifecycle_operation_total` show its progress per phase (labelled with its
   * tenant: only running operations have series); `end` removes them and counts the outcome.
   */
  trackOperation(operation: string, tenantId: string): TrackedOperation {
    const o = { operation, tenant: tenantId, phases: new Map<string, Map<string, { done: number; total: number }>>() };
    this.#operations.add(o);
    let ended = false;
    return {
      onProgress: (p) => {
        if (ended) return;
        let tables = o.phases.get(p.phase);
        if (!tables) o.phases.set(p.phase, (tables = new Map()));
        tables.set(p.table ?? '', { done: p.done, total: p.total ?? p.done });
      },
      end: (outcome) => {
        if (ended) return;
        ended = true;
        this.#operations.delete(o);
        this.#operationsEnded.inc({ operation, outcome });
      },
    };
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
    // The outbox is a global table: its gauges come from processes with the owner connection (the one running the
    // webhook relay); a process with the application role only exports none.
    if (!db.schema.table('tw_webhook_deliveries') || !db.hasOwner) return;
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
