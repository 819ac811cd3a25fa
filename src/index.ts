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
  type Params,
  type QueryOptions,
  type Row,
  type StatementGuard,
  type TenantQueryable,
  type TenantTransaction,
} from './db/tenantwall.ts';
export { TenantRegistry, parseSlug, assertActive, type Tenant, type TenantStatus, type CreateTenantInput } from './db/tenant-registry.ts';
export { startEmbeddedPostgres, type EmbeddedServer, type EmbeddedServerOptions } from './db/embedded.ts';
export { mapPgError, isConnectionError } from './db/pg-errors.ts';
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
export {
  createTenantKysely,
  TenantScopePlugin,
  TenantScopeTransformer,
  TenantwallDialect,
  TENANT_PARAMETER,
  type TenantColumn,
  type TenantKyselyOptions,
} from './guard/kysely.ts';
export { prepareQuery, type Param, type PreparedQuery, type PreparedValue } from './guard/kysely-prepared.ts';
// audit
export { runAudit, reachesThreshold, type AuditOptions, type IsolationCheckOptions } from './audit/run-audit.ts';
export { AUDIT_RULES, VERIFY_ATTACKS, ruleInfo } from './audit/rules.ts';
export { parseExceptions, loadExceptionsFile, type AuditException } from './audit/exceptions.ts';
export { formatText, formatJson, formatSarif } from './audit/format.ts';
export { runVerify, type VerifyOptions } from './audit/verify.ts';
export { databaseChecksum } from './audit/checksum.ts';
export type { Finding, Report, RuleInfo, Severity, ObjectKind, SuppressedFinding } from './audit/types.ts';
// lifecycle
export { createProgressPrinter, type Progress, type ProgressListener } from './lifecycle/progress.ts';
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
export { moveTenant, abortMove, type MoveOptions, type MoveResult, type MovedTable, type AbortMoveResult } from './lifecycle/move.ts';
export { exportTenant, type ExportOptions, type ExportResult, type ExportManifest, type ManifestTable, type ExportFormat } from './lifecycle/export.ts';
export { importTenant, type ImportOptions, type ImportResult } from './lifecycle/import.ts';
export { deleteTenant, type DeleteOptions, type DeleteResult } from './lifecycle/delete.ts';
export { bucketPartitionName, sharedPartitionName, dedicatedPartitionName, dedicatedPartitionSql } from './schema/ddl.ts';
// metering
export * from './metering/index.ts';
