import { AUDIT_HINT } from './hint.ts';
import fs from 'node:fs';
import { DEFAULT_SOURCE_ALLOW } from './usage.ts';
import { parseDatabaseUrl } from '../config/options.ts';
import { TenantwallError } from '../errors.ts';
import { type AuditException, loadExceptionsFile, parseExceptions } from './exceptions.ts';

/** Options shared by `runAudit` and `runVerify`. Explicit value > environment variable > default. */
export interface IsolationCheckOptions {
  /** Connection to audit (any role that can read the catalog). Env `DATABASE_URL`. Required unless `client` is given. */
  databaseUrl?: string | undefined;
  /** Name of the tenant column. Env `TENANTWALL_TENANT_COLUMN`. Default `tenant_id`. */
  tenantColumn?: string | undefined;
  /** Custom setting carrying the tenant. Env `TENANTWALL_SETTING`. Default `tenantwall.tenant_id`. */
  settingName?: string | undefined;
  /** Role the application connects as. Env `TENANTWALL_APP_ROLE`. Default `tenantwall_app`. */
  appRole?: string | undefined;
  /**
   * Tenant tables (`table` or `schema.table`); their partitions are included. Default: every table that has the
   * tenant column.
   */
  tables?: readonly string[] | undefined;
  /**
   * Tables, views and sequences (`name` or `schema.name`) holding data shared by all tenants. Every other relation
   * the application role can reach must be a tenant relation, or `exposure-unknown-relation` reports it. Env
   * `TENANTWALL_GLOBAL_TABLES` (comma-separated). Default none (the tenant registry is recognised by itself).
   */
  globalTables?: readonly string[] | undefined;
  /** Reasoned exceptions, or the path of a JSON exception file (docs/audit.md). Default none. */
  exceptions?: readonly AuditException[] | string | undefined;
  /**
   * A project directory to scan for the plain cross-tenant handle (`dangerouslyCrossTenant(`) outside the
   * allowed paths (rule `cross-tenant-handle-in-source`). Env `TENANTWALL_AUDIT_SOURCE`. Default: no scan.
   */
  source?: string | undefined;
  /**
   * Globs (relative to `source`) where the plain cross-tenant handle is expected. Env
   * `TENANTWALL_AUDIT_SOURCE_ALLOW` (comma-separated). Default: any `migrations` or `lifecycle` directory and any
   * `migrate*` file (DEFAULT_SOURCE_ALLOW).
   */
  sourceAllow?: readonly string[] | undefined;
  /** Days of the break-glass access log that `break-glass-all-tenants` reads. Env `TENANTWALL_AUDIT_ACCESS_LOG_DAYS`. Default 30. */
  accessLogDays?: number | undefined;
}

/** Options of `runVerify` that the shared resolution also reads (so no other code reads the environment). */
export interface AppConnectionOptions {
  /** The application role's connection. Env `TENANTWALL_APP_DATABASE_URL`. */
  appDatabaseUrl?: string | undefined;
}

export interface ResolvedCheckOptions {
  readonly databaseUrl: string | undefined;
  readonly appDatabaseUrl: string | undefined;
  readonly tenantColumn: string;
  readonly settingName: string;
  readonly appRole: string;
  readonly tables: readonly string[] | undefined;
  readonly globalTables: readonly string[];
  /** False when the application role was neither passed nor set in the environment (the default was taken). */
  readonly appRoleGiven: boolean;
  readonly exceptions: readonly AuditException[];
  readonly source: string | undefined;
  readonly sourceAllow: readonly string[];
  readonly accessLogDays: number;
}

const SETTING_RE = /^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/;

/** The one entry point for audit and verify options: explicit value, then environment, then default; validated and frozen. */
export function resolveCheckOptions(o: IsolationCheckOptions & AppConnectionOptions, env: NodeJS.ProcessEnv = process.env): ResolvedCheckOptions {
  const str = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
  const databaseUrl = o.databaseUrl ?? str(env.DATABASE_URL);
  if (databaseUrl !== undefined) parseDatabaseUrl(databaseUrl, 'databaseUrl (DATABASE_URL)');
  const appDatabaseUrl = str(o.appDatabaseUrl) ?? str(env.TENANTWALL_APP_DATABASE_URL);
  if (appDatabaseUrl !== undefined) parseDatabaseUrl(appDatabaseUrl, 'appDatabaseUrl (TENANTWALL_APP_DATABASE_URL)');
  const tenantColumn = o.tenantColumn ?? str(env.TENANTWALL_TENANT_COLUMN) ?? 'tenant_id';
  const settingName = o.settingName ?? str(env.TENANTWALL_SETTING) ?? 'tenantwall.tenant_id';
  const givenRole = o.appRole ?? str(env.TENANTWALL_APP_ROLE);
  const appRole = givenRole ?? 'tenantwall_app';
  const list = (v: string | undefined) => (v ?? '').split(',').map((x) => x.trim()).filter((x) => x !== '');
  const globalTables = o.globalTables ? [...o.globalTables] : list(str(env.TENANTWALL_GLOBAL_TABLES));
  const bad = (field: string, why: string) => new TenantwallError('config_invalid', `Option ${field} ${why} (docs/audit.md).`, { hint: AUDIT_HINT, details: { field } });
  if (tenantColumn.trim() === '') throw bad('tenantColumn', 'must not be empty');
  if (!SETTING_RE.test(settingName)) throw bad('settingName', 'must look like namespace.name');
  if (appRole.trim() === '') throw bad('appRole', 'must not be empty');
  const source = str(o.source) ?? str(env.TENANTWALL_AUDIT_SOURCE);
  if (source !== undefined && !fs.statSync(source, { throwIfNoEntry: false })?.isDirectory()) throw bad('source', `must be a directory (got ${JSON.stringify(source)})`);
  const sourceAllow = o.sourceAllow ? [...o.sourceAllow] : env.TENANTWALL_AUDIT_SOURCE_ALLOW !== undefined ? list(env.TENANTWALL_AUDIT_SOURCE_ALLOW) : [...DEFAULT_SOURCE_ALLOW];
  const daysRaw = o.accessLogDays ?? (str(env.TENANTWALL_AUDIT_ACCESS_LOG_DAYS) === undefined ? 30 : Number(env.TENANTWALL_AUDIT_ACCESS_LOG_DAYS));
  if (!Number.isInteger(daysRaw) || daysRaw < 1 || daysRaw > 3660) throw bad('accessLogDays', 'must be an integer number of days in 1..3660');
  // Lists given in code get the same validation as files: a rule id that does not exist silences nothing.
  const exceptions = typeof o.exceptions === 'string' ? loadExceptionsFile(o.exceptions) : parseExceptions([...(o.exceptions ?? [])], 'exceptions option');
  return Object.freeze({
    databaseUrl,
    appDatabaseUrl,
    tenantColumn,
    settingName,
    appRole,
    tables: o.tables && o.tables.length > 0 ? Object.freeze([...o.tables]) : undefined,
    globalTables: Object.freeze(globalTables),
    appRoleGiven: givenRole !== undefined,
    exceptions: Object.freeze([...exceptions]),
    source,
    sourceAllow: Object.freeze(sourceAllow),
    accessLogDays: daysRaw,
  });
}
