// tenantwall metering: usage events, meters, plans with quotas and rate limits, billing webhooks.
export { defineMetering, periodBounds, API_REQUESTS_METER, type Aggregation, type Granularity, type QuotaPeriod, type Enforcement, type MeterSource, type MeterSpec, type QuotaSpec, type RateLimitSpec, type PlanSpec, type MeteringSpec, type MeteringModel, type Meter, type Plan, type Quota, type RateLimit } from './spec.ts';
export { meteringTables, meteringMigrationSql, METERING_TABLE_NAMES, METERING_FUNCTION_NAMES } from './tables.ts';
export { parseUsageEvent, parseUsageBatch, type UsageEventInput, type UsageEvent, type EventLimits } from './events.ts';
export { resolveMeteringOptions, type MeteringOptions, type ResolvedMeteringOptions } from './options.ts';
export { Metering } from './metering.ts';
export type { RecordResult, BatchResult, RecordOptions } from './ingest.ts';
export { usageToCsv, type UsageQuery, type UsageRow } from './usage.ts';
export { quotaExceeded, type QuotaDecision } from './quotas.ts';
export { rateLimited } from './plan-rate-limits.ts';
export type { ClosePeriodInput } from './billing.ts';
export { RateLimiter, PostgresRateLimitStore, RedisRateLimitStore, type RateLimitStore, type RateLimitDecision, type LimiterOptions, type RedisClientLike } from './rate-limit.ts';
export { Webhooks, WebhookRelay, verifyWebhook, writeOutboxEvent, retryDelayMs, webhookId, resolveWebhooksOptions, BILLING_EVENT_TYPES, DEFAULT_RETRY_SCHEDULE_MS, type WebhookEndpoint, type WebhookDelivery, type WebhooksOptions, type RelayOptions, type RelayRound, type ReplayFilter, type VerifiedWebhook, type BillingEventType } from './webhooks.ts';
export { planLimits } from './plan-limits.ts';
