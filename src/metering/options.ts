import { TenantwallError } from '../errors.ts';
import type { RateLimitStore } from './rate-limit.ts';
import type { MeteringModel, MeteringSpec } from './spec.ts';
import type { WebhooksOptions } from './webhooks.ts';

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

/** `MeteringOptions` after resolution. */
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
