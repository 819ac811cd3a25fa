// tenantwall/access: audited break-glass access and the tenant-readable access log (docs/break-glass.md).
export {
  dangerouslyBreakGlass,
  readAccessLog,
  accessLogTables,
  accessLogMigrationSql,
  type BreakGlassOptions,
  type BreakGlassHandle,
  type AccessLogEntry,
} from './break-glass.ts';
