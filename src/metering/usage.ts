import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import type { ResolvedMeteringOptions } from './options.ts';
import { type Granularity, type Meter, type MeteringModel, periodBounds } from './spec.ts';

/** A usage query: meters, time range, granularity. */
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

/** One row of a usage report: meter, bucket start, value. */
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

type Run = (sql: string, params: unknown[]) => Promise<{ rows: Record<string, any>[] }>;

/**
 * Usage reports. Rollups are computed from the raw events table when queried (index `(tenant_id, meter,
 * occurred_at)`), not maintained incrementally: a late or retried event is then counted in the right bucket by
 * construction, with no second write per event on the ingestion path (bench/metering.ts measures both).
 */
export class UsageReports {
  readonly #db: Tenantwall;
  readonly #model: MeteringModel;
  readonly #options: ResolvedMeteringOptions;

  constructor(db: Tenantwall, model: MeteringModel, options: ResolvedMeteringOptions) {
    this.#db = db;
    this.#model = model;
    this.#options = options;
  }

  /** A tenant's own usage, through its scope: row-level security applies to the query. */
  async usage(tenantId: TenantId | string, query: UsageQuery = {}): Promise<UsageRow[]> {
    const tid = TenantId.parse(tenantId);
    return this.#query(query, (sql, params) => this.#db.forTenant(tid).query(sql.replace('/*tenant*/', 'tenant_id = $6 AND'), [...params, tid]));
  }

  /** Every tenant's usage (or one tenant's with `tenantId`), for operators: owner connection. */
  async adminUsage(query: UsageQuery = {}): Promise<UsageRow[]> {
    const tid = query.tenantId === undefined ? null : TenantId.parse(query.tenantId);
    const admin = this.#db.dangerouslyCrossTenant();
    return this.#query(query, (sql, params) => admin.query(sql.replace('/*tenant*/', `($6::${TenantId.sqlType()} IS NULL OR tenant_id = $6) AND`), [...params, tid]));
  }

  async #query(q: UsageQuery, run: Run): Promise<UsageRow[]> {
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
    const to = date('to', q.to, new Date(now.getTime() + this.#options.maxFutureSkewMs + 1));
    if (from >= to) throw bad('from', 'must be before to');
    if ((to.getTime() - from.getTime()) / GRANULARITY_MS[granularity] > this.#options.maxQueryBuckets) {
      throw bad('granularity', `gives more than ${this.#options.maxQueryBuckets} buckets for this range; use a coarser one`);
    }
    const names = q.meters && q.meters.length > 0 ? q.meters : [...this.#model.meters.keys()];
    const out: UsageRow[] = [];
    for (const name of names) {
      const m = this.#model.meters.get(name);
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
  async totals(tx: { query: Run }, tid: TenantId, from: Date, to: Date): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const m of this.#model.meters.values()) {
      const { rows } = await tx.query(
        `SELECT coalesce(${aggregateSql(m)}, 0)::float8 AS value FROM tw_usage_events
          WHERE tenant_id = $1 AND meter = $2 AND occurred_at >= $3 AND occurred_at < $4 AND ($5::text IS NULL OR true)`,
        [tid, m.name, from, to, m.uniqueBy ?? null],
      );
      out[m.name] = Number(rows[0]?.value ?? 0);
    }
    return out;
  }
}
