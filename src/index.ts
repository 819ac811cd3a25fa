// The public API of tenantwall. Integrations live in subpath exports (tenantwall/fastify).
export { ERROR_CODES, TenantwallError, isTenantwallError, type ErrorCode } from './errors.ts';
export { TenantId } from './tenant/tenant-id.ts';
export { runWithTenant, currentTenantContext, requireTenantId, type TenantContext } from './tenant/context.ts';
export { resolveOptions, parseDatabaseUrl, type TenantwallOptions, type ResolvedOptions, type ScopeMode } from './config/options.ts';
export {
  Tenantwall,
  TenantScope,
  type CreateTenantwallOptions,
  type CrossTenantHandle,
  type ForTenantOptions,
  type Params,
  type QueryOptions,
  type Row,
  type StatementGuard,
  type StatementVerdict,
  type TenantQueryable,
  type TenantTransaction,
} from './db/tenantwall.ts';
export { TenantRegistry, parseSlug, assertActive, type Tenant, type TenantStatus, type CreateTenantInput } from './db/tenant-registry.ts';
export { startEmbeddedPostgres, type EmbeddedServer, type EmbeddedServerOptions } from './db/embedded.ts';
export { mapPgError, isConnectionError } from './db/pg-errors.ts';
// per-tenant database limits (issue 17)
export { resolveLimits, type DbLimits, type LimitsProvider, type LimitName, type LimitExceeded, type ResolvedLimits } from './db/limits.ts';
export {
  defineSchema,
  tenantTable,
  globalTable,
  type Schema,
  type SchemaSpec,
  type TenantTable,
  type GlobalTable,
  type TableDecl,
  type ColumnSpec,
  type ForeignKeySpec,
  type IndexSpec,
  type PartitionSpec,
} from './schema/declare.ts';
export { schemaSql, tableSql, registrySql, rlsSql, tenantPredicate, quoteIdent, quoteLiteral, citusConversionStatements, type DdlContext } from './schema/ddl.ts';
export { renderMigrations, applyMigrations, checksum, type Migration, type MigrationContext, type RenderedMigration, type MigrateResult } from './schema/migrations.ts';
// guard
export { createGuard, type Guard, type GuardOptions } from './guard/guard.ts';
export { type Analysis } from './guard/analyze.ts';
export { DEFAULT_SAFE_FUNCTIONS, DEFAULT_SAFE_OPERATORS } from './guard/allow-lists.ts';
// audit
export { runAudit, reachesThreshold, type AuditOptions, type IsolationCheckOptions } from './audit/run-audit.ts';
export { AUDIT_RULES, VERIFY_ATTACKS, ruleInfo } from './audit/rules.ts';
export { parseExceptions, loadExceptionsFile, type AuditException } from './audit/exceptions.ts';
export { formatText, formatJson, formatSarif, formatPgTap } from './audit/format.ts';
export { emitSql } from './audit/emit-sql.ts';
export { runVerify, type VerifyOptions } from './audit/verify.ts';
export { databaseChecksum } from './audit/checksum.ts';
export type { Finding, Report, RuleInfo, Severity, ObjectKind, SuppressedFinding, Category, CoverageEntry } from './audit/types.ts';
// lifecycle
export { createProgressPrinter, type Progress, type ProgressListener } from './lifecycle/progress.ts';
export { OperationRegistry, type OperationRegistryOptions, type OperationTracker, type RunningOperation, type StartOperationOptions } from './lifecycle/operations.ts';
export { resolveTenant, tenantChecksums, type Placement, type TableSum } from './lifecycle/internal.ts';
export {
  createTenant,
  tenantInfo,
  listTenants,
  renameTenant,
  scopeForActiveTenant,
  type CreateTenantOptions,
  type TenantInfo,
} from './lifecycle/tenants.ts';
export { suspendTenant, type SuspendOptions } from './lifecycle/suspend.ts';
export { moveTenant, abortMove, type MoveOptions, type MoveResult, type MovedTable, type AbortMoveResult } from './lifecycle/move.ts';
export { exportTenant, type ExportOptions, type ExportResult, type ExportManifest, type ManifestTable, type ExportFormat } from './lifecycle/export.ts';
export { importTenant, type ImportOptions, type ImportResult } from './lifecycle/import.ts';
export { deleteTenant, type DeleteOptions, type DeleteResult } from './lifecycle/delete.ts';
export { bucketPartitionName, sharedPartitionName, dedicatedPartitionName, dedicatedPartitionSql } from './schema/ddl.ts';
// metering
export { defineMetering, periodBounds, API_REQUESTS_METER, type Aggregation, type Granularity, type QuotaPeriod, type Enforcement, type MeterSource, type MeterSpec, type QuotaSpec, type RateLimitSpec, type PlanSpec, type MeteringSpec, type MeteringModel, type Meter, type Plan, type Quota, type RateLimit } from './metering/spec.ts';
export { meteringTables, meteringMigrationSql, METERING_TABLE_NAMES, METERING_FUNCTION_NAMES } from './metering/tables.ts';
export { parseUsageEvent, parseUsageBatch, type UsageEventInput, type UsageEvent, type EventLimits } from './metering/events.ts';
export { resolveMeteringOptions, type MeteringOptions, type ResolvedMeteringOptions } from './metering/options.ts';
export { Metering } from './metering/metering.ts';
export type { RecordResult, BatchResult, RecordOptions } from './metering/ingest.ts';
export { usageToCsv, type UsageQuery, type UsageRow } from './metering/usage.ts';
export { quotaExceeded, type QuotaDecision } from './metering/quotas.ts';
export { rateLimited } from './metering/plan-rate-limits.ts';
export type { ClosePeriodInput } from './metering/billing.ts';
export { RateLimiter, PostgresRateLimitStore, RedisRateLimitStore, type RateLimitStore, type RateLimitDecision, type LimiterOptions, type RedisClientLike } from './metering/rate-limit.ts';
export { Webhooks, WebhookRelay, verifyWebhook, writeOutboxEvent, retryDelayMs, webhookId, resolveWebhooksOptions, BILLING_EVENT_TYPES, DEFAULT_RETRY_SCHEDULE_MS, type WebhookEndpoint, type WebhookDelivery, type WebhooksOptions, type RelayOptions, type RelayRound, type ReplayFilter, type VerifiedWebhook, type BillingEventType } from './metering/webhooks.ts';
export { planLimits } from './metering/plan-limits.ts';
// observability (metrics, traces, noisy neighbours)
export type { StatementObserver, StatementEvent, StatementOutcome, GuardVerdict } from './db/observer.ts';
export type { PoolStats } from './db/tenantwall.ts';
export { TenantwallMetrics, createMetrics, type MetricsOptions, type RequestRecord, type QuotaUse, type OperationProgress, type TrackedOperation } from './observability/metrics.ts';
export { createTracingObserver, traceStatements, statementFingerprint, TRACER_NAME, STATEMENT_SPAN, type TracingOptions } from './observability/tracing.ts';
export { TenantActivity, rankActivity, OTHER_TENANTS, ACTIVITY_RESOURCES, type ActivityCounts, type ActivityResource, type TopReport, type TopTenant, type TopOptions, type NoisySuggestion } from './observability/activity.ts';
export { OTHER_LABEL, NO_TENANT_LABEL } from './observability/labels.ts';
export { resolveObservabilityOptions, OBSERVABILITY_OPTIONS, type ObservabilityOptions, type ResolvedObservabilityOptions } from './observability/options.ts';
export { rebalanceCluster, parseNode, type CitusNode, type CitusPlacement, type RebalanceResult, type RebalanceMove } from './lifecycle/citus.ts';
// adopting an existing database, generated and online migrations
export { loadMigrations, onlineSteps, applyOnlineMigration, type OnlineStep, type OnlineStepKind, type MigrationProgress, type ApplyMigrationsOptions } from './schema/migrations.ts';
export { TENANT_KEY_TYPES, TEXT_TENANT_ID_PATTERN, tenantKeyType, type TenantKeyType } from './tenant/tenant-id.ts';
export { TENANT_KEY_COLUMN_TYPE, tenantKeySql } from './schema/ddl.ts';
export type { PoolerMode, PoolerSetting } from './config/options.ts';
export type { PoolerDetection } from './db/pooler.ts';
