import { randomBytes } from 'node:crypto';
import { TenantwallError } from '../errors.ts';

/** How a single tenant-scoped statement carries the tenant to the database. */
export type ScopeMode = 'implicit' | 'explicit';

/**
 * Options of the database layer. Resolved once by `resolveOptions`: explicit value > environment variable >
 * default; then validated and frozen. docs/configuration.md documents each field.
 */
export interface TenantwallOptions {
  /** Owner (migrator) connection. Env `DATABASE_URL`. Default: an embedded PostgreSQL is started. */
  databaseUrl?: string | undefined;
  /**
   * Connection of the application role. Env `TENANTWALL_APP_DATABASE_URL`. Default: `databaseUrl` with the user
   * replaced by `appRole` and the password by `appPassword`.
   */
  appDatabaseUrl?: string | undefined;
  /** Name of the application login role. Env `TENANTWALL_APP_ROLE`. Default `tenantwall_app`. */
  appRole?: string | undefined;
  /**
   * NOLOGIN role that owns every migrated object; migrations run under `SET ROLE` to it, so the objects belong
   * to neither the login you migrate with nor the application. Env `TENANTWALL_OWNER_ROLE`. Default: none (the
   * `databaseUrl` user owns them).
   */
  ownerRole?: string | undefined;
  /** Password of the application role. Env `TENANTWALL_APP_PASSWORD`. Default: random for this process. */
  appPassword?: string | undefined;
  /**
   * Create the application role if missing and set its password at start-up (needs CREATEROLE or superuser on
   * the owner connection). Env `TENANTWALL_MANAGE_ROLES` (`true`/`false`). Default `true`.
   */
  manageRoles?: boolean | undefined;
  /** Custom setting that carries the tenant. Env `TENANTWALL_SETTING`. Default `tenantwall.tenant_id`. */
  settingName?: string | undefined;
  /**
   * `implicit`: set_config + statement before one Sync (fastest). `explicit`: BEGIN; SET LOCAL; statement;
   * COMMIT pipelined before one Sync (what Citus propagates). Env `TENANTWALL_SCOPE_MODE`. Default `implicit`.
   * On a Citus coordinator `Tenantwall.connect` always uses `explicit` (implicit cannot reach the workers).
   */
  scopeMode?: ScopeMode | undefined;
  /**
   * Prepared statements kept per application connection for tenant-scoped statements (0 = none: every
   * statement is parsed afresh). With a cache the app connections plan every execution for its own parameters
   * (plan_cache_mode = force_custom_plan). Env `TENANTWALL_STATEMENT_CACHE`. Default 100.
   */
  statementCacheSize?: number | undefined;
  /** Max connections of the application pool. Env `TENANTWALL_POOL_SIZE`. Default 10. */
  poolSize?: number | undefined;
  /** Max connections of the owner/admin pool. Env `TENANTWALL_ADMIN_POOL_SIZE`. Default 2. */
  adminPoolSize?: number | undefined;
  /** statement_timeout of application connections, ms (0 = none). Env `TENANTWALL_STATEMENT_TIMEOUT_MS`. Default 30000. */
  statementTimeoutMs?: number | undefined;
  /** Time to wait for a connection, ms. Env `TENANTWALL_CONNECT_TIMEOUT_MS`. Default 5000. */
  connectTimeoutMs?: number | undefined;
  /** Data folder of the embedded server. Env `TENANTWALL_DATA_DIR`. Default `.data/postgres`. */
  embeddedDataDir?: string | undefined;
  /** Port of the embedded server. Env `TENANTWALL_EMBEDDED_PORT`. Default 54329. */
  embeddedPort?: number | undefined;
}

export type ResolvedOptions = Readonly<{
  databaseUrl: string | undefined;
  appDatabaseUrl: string | undefined;
  appRole: string;
  ownerRole: string | undefined;
  appPassword: string;
  manageRoles: boolean;
  settingName: string;
  scopeMode: ScopeMode;
  statementCacheSize: number;
  poolSize: number;
  adminPoolSize: number;
  statementTimeoutMs: number;
  connectTimeoutMs: number;
  embeddedDataDir: string;
  embeddedPort: number;
}>;

const IDENT_RE = /^[a-z_][a-z0-9_]{0,62}$/;
const SETTING_RE = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/;

function invalid(field: string, why: string): TenantwallError {
  return new TenantwallError('config_invalid', `Option ${field} ${why}.`, { details: { field } });
}

function envInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw)) throw invalid(name, `must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function envBool(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw invalid(name, `must be true or false, got ${JSON.stringify(raw)}`);
}

function envStr(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

/** Parses a postgres:// URL; throws `database_url_invalid` naming the option. */
export function parseDatabaseUrl(url: string, field = 'databaseUrl'): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (cause) {
    throw new TenantwallError('database_url_invalid', `${field} is not a URL.`, { cause, details: { field } });
  }
  if (parsed.protocol !== 'postgres:' && parsed.protocol !== 'postgresql:') {
    throw new TenantwallError('database_url_invalid', `${field} must use postgres:// (got ${parsed.protocol}//).`, {
      details: { field },
    });
  }
  if (!parsed.hostname && !parsed.searchParams.get('host')) {
    throw new TenantwallError('database_url_invalid', `${field} has no host.`, { details: { field } });
  }
  if (parsed.pathname.length <= 1) {
    throw new TenantwallError('database_url_invalid', `${field} names no database.`, { details: { field } });
  }
  return parsed;
}

function positive(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw invalid(field, `must be an integer in ${min}..${max}`);
  return value;
}

export function resolveOptions(input: TenantwallOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  const databaseUrl = input.databaseUrl ?? envStr(env, 'DATABASE_URL');
  const appDatabaseUrl = input.appDatabaseUrl ?? envStr(env, 'TENANTWALL_APP_DATABASE_URL');
  if (databaseUrl !== undefined) parseDatabaseUrl(databaseUrl, 'databaseUrl (DATABASE_URL)');
  if (appDatabaseUrl !== undefined) parseDatabaseUrl(appDatabaseUrl, 'appDatabaseUrl (TENANTWALL_APP_DATABASE_URL)');

  const appRole = input.appRole ?? envStr(env, 'TENANTWALL_APP_ROLE') ?? 'tenantwall_app';
  if (!IDENT_RE.test(appRole)) throw invalid('appRole', 'must be a lowercase SQL identifier ([a-z_][a-z0-9_]*)');
  const ownerRole = input.ownerRole ?? envStr(env, 'TENANTWALL_OWNER_ROLE');
  if (ownerRole !== undefined && (!IDENT_RE.test(ownerRole) || ownerRole === appRole)) {
    throw invalid('ownerRole', 'must be a lowercase SQL identifier different from appRole');
  }
  const settingName = input.settingName ?? envStr(env, 'TENANTWALL_SETTING') ?? 'tenantwall.tenant_id';
  if (!SETTING_RE.test(settingName)) throw invalid('settingName', 'must look like namespace.name (lowercase)');
  const scopeMode = input.scopeMode ?? (envStr(env, 'TENANTWALL_SCOPE_MODE') as ScopeMode | undefined) ?? 'implicit';
  if (scopeMode !== 'implicit' && scopeMode !== 'explicit') throw invalid('scopeMode', 'must be "implicit" or "explicit"');

  return Object.freeze({
    databaseUrl,
    appDatabaseUrl,
    appRole,
    ownerRole,
    appPassword: input.appPassword ?? envStr(env, 'TENANTWALL_APP_PASSWORD') ?? randomBytes(18).toString('base64url'),
    manageRoles: input.manageRoles ?? envBool(env, 'TENANTWALL_MANAGE_ROLES') ?? true,
    settingName,
    scopeMode,
    statementCacheSize: positive('statementCacheSize', input.statementCacheSize ?? envInt(env, 'TENANTWALL_STATEMENT_CACHE') ?? 100, 0, 100_000),
    poolSize: positive('poolSize', input.poolSize ?? envInt(env, 'TENANTWALL_POOL_SIZE') ?? 10, 1, 1000),
    adminPoolSize: positive('adminPoolSize', input.adminPoolSize ?? envInt(env, 'TENANTWALL_ADMIN_POOL_SIZE') ?? 2, 1, 100),
    statementTimeoutMs: positive(
      'statementTimeoutMs',
      input.statementTimeoutMs ?? envInt(env, 'TENANTWALL_STATEMENT_TIMEOUT_MS') ?? 30_000,
      0,
      86_400_000,
    ),
    connectTimeoutMs: positive(
      'connectTimeoutMs',
      input.connectTimeoutMs ?? envInt(env, 'TENANTWALL_CONNECT_TIMEOUT_MS') ?? 5_000,
      1,
      600_000,
    ),
    embeddedDataDir: input.embeddedDataDir ?? envStr(env, 'TENANTWALL_DATA_DIR') ?? '.data/postgres',
    embeddedPort: positive('embeddedPort', input.embeddedPort ?? envInt(env, 'TENANTWALL_EMBEDDED_PORT') ?? 54329, 1, 65535),
  });
}
