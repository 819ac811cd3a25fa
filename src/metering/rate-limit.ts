/**
 * The part of an ioredis client the Redis store uses (structural, so the package's types do not need ioredis
 * installed; an ioredis `Redis` or `Cluster` instance fits).
 */
export interface RedisClientLike {
  defineCommand(name: string, definition: { numberOfKeys: number; lua: string }): void;
  disconnect(): void;
}
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import type { TenantId } from '../tenant/tenant-id.ts';

/**
 * Where the per-window request counts of all processes meet. `claim` atomically takes up to `want` units of
 * the window's budget and answers how many it got and how many the window has handed out in total.
 */
export interface RateLimitStore {
  claim(tenantId: TenantId, key: string, windowStartMs: number, windowMs: number, want: number, limit: number): Promise<{ granted: number; used: number }>;
  close?(): Promise<void>;
}

/** Windows in PostgreSQL (table tw_rate_limits, tenant scope, one statement per claim). */
export class PostgresRateLimitStore implements RateLimitStore {
  readonly #db: Tenantwall;
  constructor(db: Tenantwall) {
    this.#db = db;
  }

  async claim(tenantId: TenantId, key: string, windowStartMs: number, windowMs: number, want: number, limit: number): Promise<{ granted: number; used: number }> {
    // Windows older than a few lengths are garbage; deleting them here keeps the table at a few rows per key
    // without a sweeper process. The upsert's row lock is what serializes claims of one key.
    const { rows } = await this.#db.forTenant(tenantId).query<{ used: string; last_grant: string }>(
      `WITH gc AS (
         DELETE FROM tw_rate_limits WHERE tenant_id = $1 AND key = $2 AND window_start < $3::timestamptz - make_interval(secs => $6::double precision)
       )
       INSERT INTO tw_rate_limits AS r (tenant_id, key, window_start, used, last_grant)
       VALUES ($1, $2, $3, least($4::bigint, $5::bigint), least($4::bigint, $5::bigint))
       ON CONFLICT (tenant_id, key, window_start) DO UPDATE
         SET last_grant = least($4::bigint, greatest(0, $5::bigint - r.used)), used = r.used + least($4::bigint, greatest(0, $5::bigint - r.used))
       RETURNING used, last_grant`,
      [tenantId, key, new Date(windowStartMs), want, limit, (windowMs * 3) / 1000],
    );
    const r = rows[0];
    return { granted: Number(r?.last_grant ?? 0), used: Number(r?.used ?? 0) };
  }
}

const CLAIM_LUA = `
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
local grant = math.min(tonumber(ARGV[1]), math.max(0, tonumber(ARGV[2]) - used))
if grant > 0 then
  used = redis.call('INCRBY', KEYS[1], grant)
  if used == grant then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
end
return {grant, used}`;

/** Windows in Redis: one Lua script per claim (atomic on the server), keys expire after the window. */
export class RedisRateLimitStore implements RateLimitStore {
  readonly #redis: RedisClientLike;
  readonly #prefix: string;
  readonly #owned: boolean;
  constructor(redis: RedisClientLike, options: { prefix?: string; owned?: boolean } = {}) {
    this.#redis = redis;
    this.#prefix = options.prefix ?? 'tw:rl:';
    this.#owned = options.owned ?? false;
    redis.defineCommand('twClaim', { numberOfKeys: 1, lua: CLAIM_LUA });
  }

  async claim(tenantId: TenantId, key: string, windowStartMs: number, windowMs: number, want: number, limit: number): Promise<{ granted: number; used: number }> {
    const k = `${this.#prefix}${tenantId}:${key}:${windowStartMs}`;
    const res = (await (this.#redis as unknown as { twClaim(k: string, w: number, l: number, ttl: number): Promise<[number, number]> }).twClaim(
      k,
      want,
      limit,
      windowMs * 2,
    )) as [number, number];
    return { granted: Number(res[0]), used: Number(res[1]) };
  }

  async close(): Promise<void> {
    if (this.#owned) this.#redis.disconnect();
  }
}

/** The result of a rate-limit take: allowed, limit, remaining, reset. */
export interface RateLimitDecision {
  readonly allowed: boolean;
  readonly limit: number;
  /** Estimated units left in the window across all processes. */
  readonly remaining: number;
  /** End of the window (ms since epoch). */
  readonly resetMs: number;
  /** The store did not answer and the limiter failed open. */
  readonly degraded: boolean;
}

/** Options of `RateLimiter`: failure mode, store timeout, lease sizing. */
export interface LimiterOptions {
  readonly failure: 'open' | 'closed';
  readonly timeoutMs: number;
  readonly maxBatch: number;
  readonly batchFraction: number;
  /** A lease covers about this many milliseconds of this process's recent admission rate. */
  readonly leaseMs: number;
}

class Window {
  local = 0;
  knownUsed = 0;
  lastGrant = 0;
  exhausted = false;
  /** Units this process admitted in this window, and when it admitted the first (ms). */
  admitted = 0;
  firstAdmitMs = 0;
  /** Requests waiting for the claim in flight: demand the next lease should cover. */
  waiting = 0;
  inflight: Promise<void> | undefined;
  /** @param ratePerMs admission rate of the previous window of the same key (units per ms), 0 if none */
  constructor(
    readonly startMs: number,
    readonly ratePerMs: number,
  ) {}
}

/**
 * Fixed-window limiter with local leases. Far from the limit a process claims a batch of units from the store
 * (enough for about `leaseMs` of its recent admission rate, at most `batchFraction` of what is left and at most
 * `maxBatch`) and admits from that lease without a round trip, so a big tenant's requests neither wait on each
 * other nor on the store, while a quiet tenant's leases stay small (little is lost if the process dies). As
 * the window fills, leases shrink to
 * one unit, i.e. every request asks the store: it serializes only near the limit. Every admitted request spent
 * a unit the store handed out, so all processes together never admit more than the limit per window; a lease
 * left unused when the window ends is lost (the error is on the safe side).
 */
export class RateLimiter {
  readonly #store: RateLimitStore;
  readonly #options: LimiterOptions;
  readonly #windows = new Map<string, Window>();

  constructor(store: RateLimitStore, options: LimiterOptions) {
    this.#store = store;
    this.#options = options;
  }

  get store(): RateLimitStore {
    return this.#store;
  }

  /** The window of `key` that contains `now`, created when it starts. */
  #window(tenantId: TenantId, key: string, windowMs: number, now: number): Window {
    const startMs = Math.floor(now / windowMs) * windowMs;
    const mapKey = `${tenantId}|${key}|${windowMs}`;
    let w = this.#windows.get(mapKey);
    if (!w || w.startMs !== startMs) {
      if (this.#windows.size > 50_000) this.#sweep(now);
      // The previous window's rate sizes the first leases of this one; a window long gone says nothing.
      const rate = w && w.startMs + 2 * windowMs > startMs ? w.admitted / windowMs : 0;
      w = new Window(startMs, rate);
      this.#windows.set(mapKey, w);
    }
    return w;
  }

  /**
   * Units to claim: the requests already waiting, or about `leaseMs` of the admission rate (this window's since
   * its first admission, or the previous window's), within the fraction of what is left and maxBatch.
   */
  #want(w: Window, limit: number, now: number): number {
    const rate = Math.max(w.ratePerMs, w.admitted > 0 ? w.admitted / Math.max(1, now - w.firstAdmitMs) : 0);
    const demand = Math.max(w.waiting + 1, Math.ceil(rate * this.#options.leaseMs));
    const left = Math.max(0, limit - w.knownUsed);
    return Math.max(1, Math.min(this.#options.maxBatch, Math.floor(left * this.#options.batchFraction), demand));
  }

  /**
   * The decisions for several limits when none needs a store round trip (each has a unit left in its local
   * lease, or its window is known to be exhausted); else undefined, and nothing was taken.
   */
  takeAllLocal(tenantId: TenantId, limits: ReadonlyArray<{ key: string; limit: number; windowMs: number }>): RateLimitDecision[] | undefined {
    const now = Date.now();
    const windows = limits.map((l) => this.#window(tenantId, l.key, l.windowMs, now));
    if (!windows.every((w) => w.local > 0 || w.exhausted)) return undefined;
    return limits.map((l, i) => this.#takeFrom(windows[i] as Window, tenantId, l.key, l.limit, l.windowMs) as RateLimitDecision);
  }

  /**
   * The decision from window `w` when it needs no store round trip (a unit left in the local lease, or the
   * window known to be exhausted), else undefined: the caller asks the store.
   */
  #takeFrom(w: Window, tenantId: TenantId, key: string, limit: number, windowMs: number): RateLimitDecision | undefined {
    const resetMs = w.startMs + windowMs;
    if (w.local > 0) {
      w.local--;
      if (w.admitted++ === 0) w.firstAdmitMs = Date.now();
      // Refill in the background before the lease runs dry, so requests far from the limit never queue behind
      // a store round trip. Only when the last claim was a real batch: near the limit (one-unit claims) every
      // request asks the store itself.
      if (w.local * 4 < w.lastGrant && w.lastGrant > 1 && !w.inflight && !w.exhausted) this.#refill(w, tenantId, key, limit, windowMs);
      return { allowed: true, limit, remaining: Math.max(0, limit - w.knownUsed) + w.local, resetMs, degraded: false };
    }
    if (w.exhausted) return { allowed: false, limit, remaining: 0, resetMs, degraded: false };
    return undefined;
  }

  async take(tenantId: TenantId, key: string, limit: number, windowMs: number): Promise<RateLimitDecision> {
    for (;;) {
      const w = this.#window(tenantId, key, windowMs, Date.now());
      const local = this.#takeFrom(w, tenantId, key, limit, windowMs);
      if (local) return local;
      if (w.inflight) {
        w.waiting++;
        await w.inflight.catch(() => undefined);
        w.waiting--;
        continue;
      }
      let failed: unknown;
      w.inflight = this.#claimFor(w, tenantId, key, limit, windowMs).then(
        () => undefined,
        (err: unknown) => {
          failed = err;
        },
      );
      await w.inflight;
      w.inflight = undefined;
      if (failed !== undefined) {
        if (this.#options.failure === 'open') return { allowed: true, limit, remaining: Math.max(0, limit - w.knownUsed), resetMs: w.startMs + windowMs, degraded: true };
        throw new TenantwallError('rate_limit_unavailable', `The rate-limit store failed: ${(failed as Error).message ?? String(failed)}.`, { cause: failed });
      }
    }
  }

  #refill(w: Window, tenantId: TenantId, key: string, limit: number, windowMs: number): void {
    w.inflight = this.#claimFor(w, tenantId, key, limit, windowMs)
      // A failed refill is not a failed request: the next request that finds the lease empty asks again and
      // applies the fail-open/closed rule.
      .catch(() => undefined)
      .finally(() => {
        w.inflight = undefined;
      });
  }

  /** Claims the next lease of window `w` from the store and adds what was granted to it. */
  async #claimFor(w: Window, tenantId: TenantId, key: string, limit: number, windowMs: number): Promise<void> {
    const { granted, used } = await this.#claim(tenantId, key, w.startMs, windowMs, this.#want(w, limit, Date.now()), limit);
    w.local += granted;
    w.lastGrant = granted;
    w.knownUsed = used;
    if (granted === 0) w.exhausted = true;
  }

  #claim(tenantId: TenantId, key: string, startMs: number, windowMs: number, want: number, limit: number): Promise<{ granted: number; used: number }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${this.#options.timeoutMs} ms`)), this.#options.timeoutMs);
    });
    return Promise.race([this.#store.claim(tenantId, key, startMs, windowMs, want, limit), timeout]).finally(() => clearTimeout(timer));
  }

  #sweep(now: number): void {
    for (const [k, w] of this.#windows) if (w.startMs + 60_000 < now && !w.inflight) this.#windows.delete(k);
  }
}
