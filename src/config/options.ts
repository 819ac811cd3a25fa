import { TenantwallError } from '../errors.ts';
import { type OptionType, bool, defineOptions, ident, int, invalidOption, oneOf, resolveTable, str } from './resolve.ts';

/** How a single tenant-scoped statement carries the tenant to the database. */
export type ScopeMode = 'implicit' | 'explicit';
/** What sits between the application pool and PostgreSQL (docs/poolers.md). */
export type PoolerMode = 'none' | 'transaction';
/** The `pooler` option: a mode, or `auto` to detect it when connecting (docs/poolers.md#detection). */
export type PoolerSetting = PoolerMode | 'auto';

/**
 * Options of the database layer. Resolved once by `resolveOptions`: explicit value > environment variable >
 * default; then validated and frozen. docs/configuration.md documents each field.
 */
export interface TenantwallOptions {
  /** Owner (migrator) connection. Env `DATABASE_URL`. Default: an embedded PostgreSQL is started. */
  databaseUrl?: string | undefined;
  /**
   * Connection of the application role. Env `TENANTWALL_APP_DATABASE_URL`. Default: `databaseUrl` with the user
   * replaced by `appRole` and the password by `appPassword`. Given without `databaseUrl`, the instance runs
   * with the application role only: owner-only operations are `owner_connection_required` (docs/credentials.md).
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
  /**
   * Password of the application role: used to log in (with `databaseUrl`'s host) and given to the role only when
   * tenantwall creates it; an existing role's password is never changed. Env `TENANTWALL_APP_PASSWORD`. Default:
   * none (trust/peer authentication), or, on the embedded server, one kept in `<embeddedDataDir>.app-password`.
   */
  appPassword?: string | undefined;
  /**
   * Create the application role if missing, with `appPassword` (needs CREATEROLE or superuser on the owner
   * connection); an existing role is used as it is. Env `TENANTWALL_MANAGE_ROLES` (`true`/`false`). Default `true`.
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
  /**
   * `transaction`: the application connections go through a transaction-mode pooler (PgBouncer, Supavisor, RDS
   * Proxy, ...): unnamed statements only (no statement cache), no startup parameters, statementTimeoutMs set per
   * transaction. `none`: direct connections (statement cache, startup parameters). `auto`: detected when
   * connecting (a pooler answers with a process id that is not the server's). Env `TENANTWALL_POOLER`. Default
   * `auto`. docs/poolers.md.
   */
  pooler?: PoolerSetting | undefined;
  /**
   * SQL type of tenant ids: `uuid`, `bigint` or `text` (docs/tenant-scope.md, "Tenant key types"). Configured
   * once: the registry, every tenant column, the policy's cast, the guard, API keys, lifecycle, metering and
   * the CLI follow it. Env `TENANTWALL_TENANT_KEY`. Default `uuid`.
   */
  tenantKey?: 'uuid' | 'bigint' | 'text' | undefined;
}

/** `TenantwallOptions` after resolution (`db.options`). */
export type ResolvedOptions = Readonly<{
  databaseUrl: string | undefined;
  /** After `Tenantwall.connect`: the application role's URL in use (given, or derived from `databaseUrl`). */
  appDatabaseUrl: string | undefined;
  appRole: string;
  ownerRole: string | undefined;
  appPassword: string | undefined;
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
  /** `auto` only before `Tenantwall.connect` resolved it: `db.options.pooler` is always `none` or `transaction`. */
  pooler: PoolerSetting;
  tenantKey: 'uuid' | 'bigint' | 'text';
}>;

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

/** A postgres:// URL; a malformed one is `database_url_invalid` naming the option. */
export const pgUrl: OptionType<string> = {
  describe: 'postgres:// URL',
  fromEnv: (raw) => ({ value: raw }),
  check: (v, field) => {
    parseDatabaseUrl(v, field);
    return undefined;
  },
};

const SETTING_RE = /^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$/;

/** The database layer's options (`Tenantwall.connect`); docs/configuration.md documents each. */
export const CORE_OPTIONS = defineOptions('Tenantwall', {
  databaseUrl: { env: 'DATABASE_URL', type: pgUrl, doc: 'Owner (migrator) connection; default: an embedded server.' },
  appDatabaseUrl: { env: 'TENANTWALL_APP_DATABASE_URL', type: pgUrl, doc: 'Connection of the application role; default derived from databaseUrl.' },
  appRole: { env: 'TENANTWALL_APP_ROLE', default: 'tenantwall_app', type: ident, doc: 'Name of the application login role.' },
  ownerRole: { env: 'TENANTWALL_OWNER_ROLE', type: ident, doc: 'NOLOGIN role owning every migrated object.' },
  appPassword: { env: 'TENANTWALL_APP_PASSWORD', type: str(), doc: 'Password of the application role (given to it only when tenantwall creates it).' },
  manageRoles: { env: 'TENANTWALL_MANAGE_ROLES', default: true, type: bool, doc: 'Create the application role when it is missing (never changes an existing one).' },
  settingName: {
    env: 'TENANTWALL_SETTING',
    default: 'tenantwall.tenant_id',
    type: str((v) => (SETTING_RE.test(v) ? undefined : 'must look like namespace.name (lowercase)'), 'namespace.name'),
    doc: 'Custom setting that carries the tenant.',
  },
  scopeMode: { env: 'TENANTWALL_SCOPE_MODE', default: 'implicit', type: oneOf(['implicit', 'explicit']), doc: 'How one statement carries the tenant.' },
  statementCacheSize: { env: 'TENANTWALL_STATEMENT_CACHE', default: 100, type: int(0, 100_000), doc: 'Prepared statements kept per application connection.' },
  poolSize: { env: 'TENANTWALL_POOL_SIZE', default: 10, type: int(1, 1000), doc: 'Max connections of the application pool.' },
  adminPoolSize: { env: 'TENANTWALL_ADMIN_POOL_SIZE', default: 2, type: int(1, 100), doc: 'Max connections of the owner pool.' },
  statementTimeoutMs: { env: 'TENANTWALL_STATEMENT_TIMEOUT_MS', default: 30_000, type: int(0, 86_400_000), doc: 'statement_timeout of application connections.' },
  connectTimeoutMs: { env: 'TENANTWALL_CONNECT_TIMEOUT_MS', default: 5_000, type: int(1, 600_000), doc: 'How long to wait for a connection.' },
  embeddedDataDir: { env: 'TENANTWALL_DATA_DIR', default: '.data/postgres', type: str(), doc: 'Data folder of the embedded server.' },
  embeddedPort: { env: 'TENANTWALL_EMBEDDED_PORT', default: 54329, type: int(1, 65535), doc: 'Port of the embedded server.' },
  pooler: { env: 'TENANTWALL_POOLER', default: 'auto', type: oneOf(['auto', 'none', 'transaction']), doc: 'A transaction-mode pooler between the application pool and PostgreSQL.' },
  tenantKey: { env: 'TENANTWALL_TENANT_KEY', default: 'uuid', type: oneOf(['uuid', 'bigint', 'text']), doc: 'SQL type of tenant ids: uuid, bigint or text.' },
});

/** Resolves `TenantwallOptions`: explicit option, then environment variable, then default; validated and frozen. */
export function resolveOptions(input: TenantwallOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedOptions {
  const r = resolveTable(CORE_OPTIONS, input, env);
  if (r.ownerRole !== undefined && r.ownerRole === r.appRole) throw invalidOption('Tenantwall', 'ownerRole', 'must differ from appRole');
  return r;
}
