import type { TenantId } from '../tenant/tenant-id.ts';

/** Per-tenant activity counted by `TenantActivity`. */
export interface ActivityCounts {
  /** Database time of tenant-scoped statements, ms. */
  dbMs: number;
  statements: number;
  rows: number;
  requests: number;
  /** Statements the guard refused. */
  refusals: number;
}

/** A resource `top` ranks by. */
export type ActivityResource = 'dbMs' | 'statements' | 'rows' | 'requests';
const RESOURCES: readonly ActivityResource[] = ['dbMs', 'statements', 'rows', 'requests'];

/** The key under which tenants past `maxTenants` of a bucket are counted. */
export const OTHER_TENANTS = 'other';

const zero = (): ActivityCounts => ({ dbMs: 0, statements: 0, rows: 0, requests: 0, refusals: 0 });

interface Bucket {
  start: number;
  tenants: Map<string, ActivityCounts>;
}

/** What `top` suggests for a noisy tenant, with the command that does it. */
export interface NoisySuggestion {
  readonly action: string;
  readonly command: string;
}

/** One tenant of a `top` report. */
export interface TopTenant extends Readonly<ActivityCounts> {
  /** The tenant id, or `other` for the tenants past the tracking bound. */
  readonly tenantId: string;
  /** Share of each resource over the window, 0..1. */
  readonly share: Readonly<Record<ActivityResource, number>>;
  /** True when a share reaches the configured noisy share (and more than one tenant was active). */
  readonly noisy: boolean;
  /** The resources whose share flagged it. */
  readonly noisyOn: readonly ActivityResource[];
  readonly suggestions: readonly NoisySuggestion[];
}

/** The noisy-neighbour report: tenants ranked by one resource over a window. */
export interface TopReport {
  readonly windowMs: number;
  /** Start and end of the window (ISO 8601). */
  readonly from: string;
  readonly to: string;
  readonly by: ActivityResource;
  readonly noisySharePercent: number;
  readonly activeTenants: number;
  readonly totals: Readonly<ActivityCounts>;
  readonly tenants: readonly TopTenant[];
}

/** Options of `TenantActivity.top`. */
export interface TopOptions {
  /** Rank by this resource. Default `dbMs`. */
  by?: ActivityResource | undefined;
  /** At most this many tenants. Default 20. */
  limit?: number | undefined;
}

/**
 * Per-tenant activity over a sliding window, in buckets of a tenth of the window: database time, statements,
 * rows, requests and guard refusals. Memory is bounded by `maxTenants` per bucket (later tenants of a full bucket
 * count as `other`). Feeds the metric label choice (the most active tenants keep their own label) and the
 * noisy-neighbour report (`top`, `tenantwall top`, the console).
 */
export class TenantActivity {
  readonly windowMs: number;
  readonly #bucketMs: number;
  readonly #maxTenants: number;
  readonly #noisyShare: number;
  readonly #now: () => number;
  readonly #buckets: Bucket[] = [];

  constructor(options: { windowMs: number; maxTenants: number; noisySharePercent: number; now?: () => number }) {
    this.windowMs = options.windowMs;
    this.#bucketMs = Math.max(100, Math.floor(options.windowMs / 10));
    this.#maxTenants = options.maxTenants;
    this.#noisyShare = options.noisySharePercent / 100;
    this.#now = options.now ?? Date.now;
  }

  /** Adds to a tenant's counts in the current bucket. */
  record(tenantId: TenantId | string, delta: Partial<ActivityCounts>): void {
    const c = this.#counts(tenantId);
    if (delta.dbMs) c.dbMs += delta.dbMs;
    if (delta.statements) c.statements += delta.statements;
    if (delta.rows) c.rows += delta.rows;
    if (delta.requests) c.requests += delta.requests;
    if (delta.refusals) c.refusals += delta.refusals;
  }

  /** One statement of a tenant (what the metrics' statement observer counts; `record` without its delta object). */
  countStatement(tenantId: TenantId | string, dbMs: number, rows: number, refusals: number): void {
    const c = this.#counts(tenantId);
    c.statements++;
    c.dbMs += dbMs;
    c.rows += rows;
    c.refusals += refusals;
  }

  /** One request of a tenant. */
  countRequest(tenantId: TenantId | string): void {
    this.#counts(tenantId).requests++;
  }

  /** The tenant's counts in the current bucket (`other` past `maxTenants`). */
  #counts(tenantId: string): ActivityCounts {
    const bucket = this.#current();
    let c = bucket.tenants.get(tenantId);
    if (!c) {
      const key = bucket.tenants.size >= this.#maxTenants ? OTHER_TENANTS : tenantId;
      c = bucket.tenants.get(key);
      if (!c) bucket.tenants.set(key, (c = zero()));
    }
    return c;
  }

  #current(): Bucket {
    const start = Math.floor(this.#now() / this.#bucketMs) * this.#bucketMs;
    const last = this.#buckets[this.#buckets.length - 1];
    if (last && last.start === start) return last;
    const bucket: Bucket = { start, tenants: new Map() };
    this.#buckets.push(bucket);
    this.#expire(start);
    return bucket;
  }

  #expire(now: number): void {
    const oldest = now - this.windowMs;
    while (this.#buckets.length > 0 && (this.#buckets[0] as Bucket).start < oldest) this.#buckets.shift();
  }

  /** One tenant's counts per bucket of the window, oldest first (buckets without its activity are zeros). */
  series(tenantId: string): Array<{ start: number } & ActivityCounts> {
    this.#expire(Math.floor(this.#now() / this.#bucketMs) * this.#bucketMs);
    return this.#buckets.map((b) => ({ start: b.start, ...(b.tenants.get(tenantId) ?? zero()) }));
  }

  /** Every tenant's counts summed over the window. */
  totals(): Map<string, ActivityCounts> {
    this.#expire(Math.floor(this.#now() / this.#bucketMs) * this.#bucketMs);
    const out = new Map<string, ActivityCounts>();
    for (const b of this.#buckets) {
      for (const [t, c] of b.tenants) {
        let o = out.get(t);
        if (!o) out.set(t, (o = zero()));
        o.dbMs += c.dbMs;
        o.statements += c.statements;
        o.rows += c.rows;
        o.requests += c.requests;
        o.refusals += c.refusals;
      }
    }
    return out;
  }

  /** The noisy-neighbour report: tenants ranked by `by` over the window, with shares, flags and suggestions. */
  top(options: TopOptions = {}): TopReport {
    const by = options.by ?? 'dbMs';
    const limit = options.limit ?? 20;
    const now = this.#now();
    return rankActivity(this.totals(), { by, limit, noisySharePercent: this.#noisyShare * 100, windowMs: this.windowMs, now });
  }
}

/** Ranks per-tenant totals (also used by `tenantwall top` to merge several processes). */
export function rankActivity(
  totals: ReadonlyMap<string, ActivityCounts>,
  o: { by: ActivityResource; limit: number; noisySharePercent: number; windowMs: number; now: number },
): TopReport {
  const sum = zero();
  for (const c of totals.values()) {
    sum.dbMs += c.dbMs;
    sum.statements += c.statements;
    sum.rows += c.rows;
    sum.requests += c.requests;
    sum.refusals += c.refusals;
  }
  const active = [...totals.keys()].filter((t) => t !== OTHER_TENANTS).length;
  const ranked = [...totals.entries()].sort((a, b) => b[1][o.by] - a[1][o.by] || b[1].statements - a[1].statements).slice(0, o.limit);
  const threshold = o.noisySharePercent / 100;
  const tenants = ranked.map(([tenantId, c]): TopTenant => {
    const share = Object.fromEntries(RESOURCES.map((r) => [r, sum[r] > 0 ? c[r] / sum[r] : 0])) as Record<ActivityResource, number>;
    const noisyOn = tenantId === OTHER_TENANTS || active < 2 ? [] : RESOURCES.filter((r) => share[r] >= threshold && c[r] > 0);
    return { tenantId, ...c, share, noisy: noisyOn.length > 0, noisyOn, suggestions: suggest(tenantId, noisyOn) };
  });
  return {
    windowMs: o.windowMs,
    from: new Date(o.now - o.windowMs).toISOString(),
    to: new Date(o.now).toISOString(),
    by: o.by,
    noisySharePercent: o.noisySharePercent,
    activeTenants: active,
    totals: sum,
    tenants,
  };
}

function suggest(tenantId: string, noisyOn: readonly ActivityResource[]): NoisySuggestion[] {
  const out: NoisySuggestion[] = [];
  if (noisyOn.some((r) => r !== 'requests')) {
    out.push({ action: 'Give it a dedicated partition (its rows and plans apart from the shared ones)', command: `tenantwall tenants move ${tenantId} --to dedicated` });
  }
  if (noisyOn.length > 0) {
    out.push({ action: 'Move it to a plan whose limits match its use (rate limits, quotas, database limits)', command: `tenantwall usage set-plan ${tenantId} <plan>` });
  }
  return out;
}

/** The resources `top` ranks by: `dbMs`, `statements`, `rows`, `requests`. */
export const ACTIVITY_RESOURCES = RESOURCES;
