import type { Redis as RedisClient } from 'ioredis';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { requireOptional } from '../util/optional.ts';
import type { MeteringOptions, ResolvedMeteringOptions } from './options.ts';
import type { Plans } from './plans.ts';
import { PostgresRateLimitStore, RateLimiter, type RateLimitDecision, type RateLimitStore, RedisRateLimitStore } from './rate-limit.ts';
import type { Plan, RateLimit } from './spec.ts';

export type PlanRateDecision = RateLimitDecision & { spec: RateLimit };

/** The rate limits of the tenant's plan, on the configured store (PostgreSQL, Redis or your own). */
export class PlanRateLimits {
  readonly limiter: RateLimiter;
  readonly #plans: Plans;

  constructor(db: Tenantwall, plans: Plans, options: ResolvedMeteringOptions, store: MeteringOptions['rateLimitStore']) {
    this.#plans = plans;
    let s: RateLimitStore;
    if (typeof store === 'object') s = store;
    else if (options.rateLimitStore === 'redis') {
      // ioredis is an optional peer: loaded only when this store is configured.
      const { Redis } = requireOptional<{ Redis: typeof RedisClient }>('ioredis', "rateLimitStore: 'redis'");
      const redis = new Redis(options.redisUrl, {
        lazyConnect: false,
        // Queued while (re)connecting; the limiter's own timeout still bounds the wait (fail open/closed).
        enableOfflineQueue: true,
        maxRetriesPerRequest: 0,
        commandTimeout: options.rateLimitTimeoutMs,
        retryStrategy: (n) => Math.min(1000, n * 100),
      });
      redis.on('error', () => undefined); // surfaced per claim (fail open/closed)
      s = new RedisRateLimitStore(redis, { owned: true });
    } else s = new PostgresRateLimitStore(db);
    this.limiter = new RateLimiter(s, {
      failure: options.rateLimitFailure,
      timeoutMs: options.rateLimitTimeoutMs,
      maxBatch: options.rateLimitMaxBatch,
      batchFraction: options.rateLimitBatchFraction,
      leaseMs: options.rateLimitLeaseMs,
    });
  }

  async rateLimit(tenantId: TenantId | string, apiKeyId?: string): Promise<PlanRateDecision[]> {
    const tid = TenantId.parse(tenantId);
    const plan = await this.#plans.planOf(tid);
    const out: PlanRateDecision[] = [];
    for (const l of this.#limitsOf(plan, apiKeyId)) out.push(withSpec(await this.limiter.take(tid, l.key, l.limit, l.windowMs), l.spec));
    return decideRates(out);
  }

  rateLimitLocal(tenantId: TenantId, apiKeyId?: string): PlanRateDecision[] | undefined {
    const plan = this.#plans.cached(tenantId);
    if (!plan) return undefined;
    const limits = this.#limitsOf(plan, apiKeyId);
    const decisions = this.limiter.takeAllLocal(tenantId, limits);
    if (!decisions) return undefined;
    const out: PlanRateDecision[] = [];
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
}

/** The `rate_limited` (429) error for a refused rate-limit decision. */
export function rateLimited(d: PlanRateDecision): TenantwallError {
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
function decideRates(out: PlanRateDecision[]): PlanRateDecision[] {
  if (out.length > 1) out.sort((a, b) => a.remaining - b.remaining);
  for (const d of out) if (!d.allowed && d.spec.enforcement === 'hard') throw rateLimited(d);
  return out;
}
