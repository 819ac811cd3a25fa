import { resolveLimits, type DbLimits } from '../db/limits.ts';
import { TenantwallError } from '../errors.ts';

/** How a meter aggregates its events inside one time bucket. */
export type Aggregation = 'count' | 'sum' | 'max' | 'unique_count' | 'latest';
/** Bucket size of usage queries: `hour`, `day` or `month`. */
export type Granularity = 'minute' | 'hour' | 'day' | 'month';
/** The period a quota resets on: `hour`, `day` or `month`. */
export type QuotaPeriod = 'hour' | 'day' | 'month';
/** How a quota is enforced: `hard` (refused past the limit) or `soft` (counted and reported). */
export type Enforcement = 'hard' | 'soft';

/** A meter: event name, aggregation, source (`server` or `client`). */
export interface MeterSpec {
  /** `[a-z][a-z0-9_.]*`, at most 63 characters, e.g. `api_requests`, `invoices.created`. */
  readonly name: string;
  readonly aggregation: Aggregation;
  /** For `unique_count`: the property whose distinct values are counted (e.g. `user_id`). Required there. */
  readonly uniqueBy?: string;
  readonly description?: string;
  /**
   * Who may write the meter's events. `server` (default): only the application's own code (`Metering.record`,
   * the request hooks); `POST /usage/events` refuses it with 403 `meter_not_writable`, so a tenant cannot inflate
   * or skew what billing trusts. `client`: tenants may also send events through the ingestion route.
   * `api_requests` and every meter a quota bounds are always `server`.
   */
  readonly source?: MeterSource;
}

/** Who may write a meter's events: `server` (the application only) or `client` (also tenants, over HTTP). */
export type MeterSource = 'server' | 'client';

/** A quota of a plan: meter, limit, period, enforcement, warning thresholds. */
export interface QuotaSpec {
  /** The meter whose usage this quota bounds; admitted units are recorded as events of it. */
  readonly meter: string;
  /** Units per period (integer >= 0). */
  readonly limit: number;
  /** Billing period the counter resets on (UTC boundaries). Default `month`. */
  readonly period?: QuotaPeriod;
  /** `hard`: refuse with 429 `quota_exceeded`; `soft`: admit, warn in headers, emit threshold events. Default `hard`. */
  readonly enforcement?: Enforcement;
  /** Percentages of `limit` that emit a `quota.threshold_crossed` webhook once per period. Default `[80, 100]`. */
  readonly thresholds?: readonly number[];
}

/** A rate limit of a plan: requests per window, per tenant or per API key. */
export interface RateLimitSpec {
  /** Count per tenant, or per API key (requests without an API key count under the tenant). */
  readonly scope: 'tenant' | 'apiKey';
  readonly per: 'second' | 'minute';
  /** Requests per window (integer >= 1). */
  readonly limit: number;
  /** `hard`: refuse with 429 `rate_limited`; `soft`: admit with a warning header. Default `hard`. */
  readonly enforcement?: Enforcement;
}

/** A plan: quotas, rate limits and optional per-plan database limits. */
export interface PlanSpec {
  readonly rateLimits?: readonly RateLimitSpec[];
  /** Quotas by name (the name routes refer to, e.g. `invoices`). */
  readonly quotas?: Readonly<Record<string, QuotaSpec>>;
  /** Database limits of the plan's tenants (statement_timeout, ...), applied with `planLimits(metering)`. */
  readonly database?: DbLimits;
}

export type Meter = Readonly<Required<Pick<MeterSpec, 'name' | 'aggregation'>> & { uniqueBy: string | undefined; description: string | undefined; source: MeterSource }>;
export type Quota = Readonly<{ name: string; meter: string; limit: number; period: QuotaPeriod; enforcement: Enforcement; thresholds: readonly number[] }>;
export type RateLimit = Readonly<{ scope: 'tenant' | 'apiKey'; per: 'second' | 'minute'; limit: number; enforcement: Enforcement; windowMs: number }>;
export type Plan = Readonly<{ name: string; rateLimits: readonly RateLimit[]; quotas: Readonly<Record<string, Quota>>; database: DbLimits | undefined }>;

export interface MeteringSpec {
  readonly meters: readonly MeterSpec[];
  /** Plans by name. */
  readonly plans: Readonly<Record<string, PlanSpec>>;
  /** Plan of tenants that were never assigned one. */
  readonly defaultPlan: string;
}

/** A validated metering spec (`defineMetering`): meters, plans, default plan. */
export type MeteringModel = Readonly<{
  meters: ReadonlyMap<string, Meter>;
  plans: ReadonlyMap<string, Plan>;
  defaultPlan: string;
}>;

/** The meter every request hook records (one event per API request). Declared automatically. */
export const API_REQUESTS_METER = 'api_requests';

const NAME_RE = /^[a-z][a-z0-9_.]{0,62}$/;
const PROPERTY_RE = /^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/;
const AGGREGATIONS: readonly Aggregation[] = ['count', 'sum', 'max', 'unique_count', 'latest'];

function invalid(what: string): TenantwallError {
  return new TenantwallError('config_invalid', `Metering declaration: ${what}.`, { details: { field: 'metering' } });
}

/** Validates meters and plans once, at start-up; a typo in a plan fails here, not on the first request. */
export function defineMetering(spec: MeteringSpec): MeteringModel {
  const meters = new Map<string, Meter>();
  const all: MeterSpec[] = [...spec.meters];
  // A sum: the request hook writes one event per (tenant, minute, route, status, API key) whose quantity is the
  // number of requests, not one row per request.
  const declared = all.find((m) => m.name === API_REQUESTS_METER);
  if (!declared) all.push({ name: API_REQUESTS_METER, aggregation: 'sum', description: 'API requests (recorded by the Fastify hook)', source: 'server' });
  else if (declared.aggregation !== 'sum') throw invalid(`meter ${API_REQUESTS_METER} is recorded pre-aggregated per minute: declare it with aggregation sum`);
  else if (declared.source === 'client') throw invalid(`meter ${API_REQUESTS_METER} is recorded by the request hook: it cannot be source client`);
  for (const m of all) {
    if (!NAME_RE.test(m.name)) throw invalid(`meter name ${JSON.stringify(m.name)} must match ${NAME_RE.source}`);
    if (meters.has(m.name)) throw invalid(`meter ${m.name} is declared twice`);
    if (!AGGREGATIONS.includes(m.aggregation)) throw invalid(`meter ${m.name} has unknown aggregation ${JSON.stringify(m.aggregation)}`);
    if (m.aggregation === 'unique_count' && (m.uniqueBy === undefined || !PROPERTY_RE.test(m.uniqueBy))) {
      throw invalid(`unique_count meter ${m.name} needs uniqueBy: the property whose distinct values it counts`);
    }
    const source = m.source ?? 'server';
    if (source !== 'server' && source !== 'client') throw invalid(`meter ${m.name}: source must be server or client`);
    meters.set(m.name, Object.freeze({ name: m.name, aggregation: m.aggregation, uniqueBy: m.uniqueBy, description: m.description, source }));
  }
  const plans = new Map<string, Plan>();
  for (const [name, p] of Object.entries(spec.plans)) {
    if (!NAME_RE.test(name)) throw invalid(`plan name ${JSON.stringify(name)} must match ${NAME_RE.source}`);
    const rateLimits = (p.rateLimits ?? []).map((r, i) => {
      if (r.scope !== 'tenant' && r.scope !== 'apiKey') throw invalid(`plan ${name} rate limit ${i}: scope must be tenant or apiKey`);
      if (r.per !== 'second' && r.per !== 'minute') throw invalid(`plan ${name} rate limit ${i}: per must be second or minute`);
      if (!Number.isInteger(r.limit) || r.limit < 1) throw invalid(`plan ${name} rate limit ${i}: limit must be an integer >= 1`);
      const enforcement = r.enforcement ?? 'hard';
      if (enforcement !== 'hard' && enforcement !== 'soft') throw invalid(`plan ${name} rate limit ${i}: enforcement must be hard or soft`);
      return Object.freeze({ scope: r.scope, per: r.per, limit: r.limit, enforcement, windowMs: r.per === 'second' ? 1000 : 60_000 });
    });
    const quotas: Record<string, Quota> = {};
    for (const [qname, q] of Object.entries(p.quotas ?? {})) {
      if (!NAME_RE.test(qname)) throw invalid(`plan ${name}: quota name ${JSON.stringify(qname)} must match ${NAME_RE.source}`);
      if (!meters.has(q.meter)) throw invalid(`plan ${name} quota ${qname}: meter ${q.meter} is not declared`);
      // Admitted units are recorded on the quota's meter by the server; tenants writing it would skew billing.
      if (meters.get(q.meter)?.source === 'client') throw invalid(`plan ${name} quota ${qname}: meter ${q.meter} is bounded by a quota, so it must be source server`);
      if (!Number.isSafeInteger(q.limit) || q.limit < 0) throw invalid(`plan ${name} quota ${qname}: limit must be an integer >= 0`);
      const period = q.period ?? 'month';
      if (!['hour', 'day', 'month'].includes(period)) throw invalid(`plan ${name} quota ${qname}: period must be hour, day or month`);
      const enforcement = q.enforcement ?? 'hard';
      if (enforcement !== 'hard' && enforcement !== 'soft') throw invalid(`plan ${name} quota ${qname}: enforcement must be hard or soft`);
      const thresholds = [...(q.thresholds ?? [80, 100])].sort((a, b) => a - b);
      for (const t of thresholds) if (!Number.isInteger(t) || t < 1 || t > 1000) throw invalid(`plan ${name} quota ${qname}: thresholds are integer percentages 1..1000`);
      quotas[qname] = Object.freeze({ name: qname, meter: q.meter, limit: q.limit, period, enforcement, thresholds: Object.freeze(thresholds) });
    }
    const database = p.database === undefined ? undefined : resolveLimits(p.database, `plan ${name} database`).limits;
    plans.set(name, Object.freeze({ name, rateLimits: Object.freeze(rateLimits), quotas: Object.freeze(quotas), database }));
  }
  if (!plans.has(spec.defaultPlan)) throw invalid(`defaultPlan ${JSON.stringify(spec.defaultPlan)} is not a declared plan`);
  return Object.freeze({ meters, plans, defaultPlan: spec.defaultPlan });
}

/** Start (inclusive) and end (exclusive) of the UTC period containing `at`. */
export function periodBounds(period: QuotaPeriod | Granularity, at: Date): { start: Date; end: Date } {
  const y = at.getUTCFullYear();
  const mo = at.getUTCMonth();
  const d = at.getUTCDate();
  const h = at.getUTCHours();
  switch (period) {
    case 'month':
      return { start: new Date(Date.UTC(y, mo, 1)), end: new Date(Date.UTC(y, mo + 1, 1)) };
    case 'day':
      return { start: new Date(Date.UTC(y, mo, d)), end: new Date(Date.UTC(y, mo, d + 1)) };
    case 'hour':
      return { start: new Date(Date.UTC(y, mo, d, h)), end: new Date(Date.UTC(y, mo, d, h + 1)) };
    case 'minute': {
      const start = new Date(Math.floor(at.getTime() / 60_000) * 60_000);
      return { start, end: new Date(start.getTime() + 60_000) };
    }
  }
}
