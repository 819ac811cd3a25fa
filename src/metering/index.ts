// tenantwall metering: usage events, meters, plans with quotas and rate limits, billing webhooks.
export { defineMetering, periodBounds, API_REQUESTS_METER, type Aggregation, type Granularity, type QuotaPeriod, type Enforcement, type MeterSpec, type QuotaSpec, type RateLimitSpec, type PlanSpec, type MeteringSpec, type MeteringModel, type Meter, type Plan, type Quota, type RateLimit } from './spec.ts';
export { meteringTables, meteringMigrationSql, METERING_TABLE_NAMES } from './tables.ts';
export { parseUsageEvent, parseUsageBatch, type UsageEventInput, type UsageEvent, type EventLimits } from './events.ts';
export { Metering, resolveMeteringOptions, usageToCsv, quotaExceeded, rateLimited, type MeteringOptions, type ResolvedMeteringOptions, type RecordResult, type BatchResult, type UsageQuery, type UsageRow, type QuotaDecision } from './metering.ts';
export { RateLimiter, PostgresRateLimitStore, RedisRateLimitStore, type RateLimitStore, type RateLimitDecision, type LimiterOptions } from './rate-limit.ts';
export { Webhooks, WebhookRelay, verifyWebhook, writeOutboxEvent, backoffMs, type WebhookEndpoint, type RelayOptions, type RelayRound, type ReplayFilter, type VerifiedWebhook, type BillingEventType } from './webhooks.ts';
export { planLimits } from './plan-limits.ts';
