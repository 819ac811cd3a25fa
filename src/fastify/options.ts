import { TenantwallError } from '../errors.ts';
import type { Tenantwall } from '../db/tenantwall.ts';

export type ResolverName = 'apiKey' | 'jwt' | 'subdomain' | 'header';
const RESOLVERS: readonly ResolverName[] = ['apiKey', 'jwt', 'subdomain', 'header'];

/**
 * Options of the tenantwall Fastify plugin. Resolved once by `resolveFastifyOptions`: explicit value >
 * environment variable > default; validated and frozen. docs/fastify.md documents each field.
 */
export interface TenantwallFastifyOptions {
  /** The connected tenantwall instance (required). */
  db: Tenantwall;
  /**
   * Which resolvers run, in this order. Env `TENANTWALL_RESOLVERS` (comma separated). Default: `apiKey`, then
   * `jwt` when a JWT key is configured, `subdomain` when `baseDomain` is set, `header` when `trustTenantHeader`.
   */
  resolvers?: readonly ResolverName[] | undefined;
  /**
   * Refuse a request unless an authenticating source (API key, JWT, or the trusted gateway header) named the
   * tenant; a subdomain alone only identifies. Env `TENANTWALL_REQUIRE_CREDENTIAL`. Default `true`.
   */
  requireCredential?: boolean | undefined;
  /** Tenant table holding API keys (see `apiKeysTable()`). Env `TENANTWALL_API_KEY_TABLE`. Default `api_keys`. */
  apiKeyTable?: string | undefined;
  /**
   * How long a verified API key is trusted without asking the database, ms. Revocation through this process
   * is immediate; other processes notice it after at most this long. 0 disables the cache.
   * Env `TENANTWALL_API_KEY_CACHE_TTL_MS`. Default 5000.
   */
  apiKeyCacheTtlMs?: number | undefined;
  /** HS256 shared secret (at least 32 bytes). Env `TENANTWALL_JWT_SECRET`. Default: none. */
  jwtSecret?: string | undefined;
  /** RS256 or ES256 public key, PEM (SPKI). Env `TENANTWALL_JWT_PUBLIC_KEY`. Default: none. */
  jwtPublicKey?: string | undefined;
  /** Path of a JSON Web Key Set file (RS256/ES256 keys). Env `TENANTWALL_JWT_JWKS_FILE`. Default: none. */
  jwtJwksFile?: string | undefined;
  /** Required `iss` (required when a JWT key is configured). Env `TENANTWALL_JWT_ISSUER`. */
  jwtIssuer?: string | undefined;
  /** Required `aud` (required when a JWT key is configured). Env `TENANTWALL_JWT_AUDIENCE`. */
  jwtAudience?: string | undefined;
  /** Claim carrying the tenant id (a UUID). Env `TENANTWALL_JWT_TENANT_CLAIM`. Default `tenant_id`. */
  jwtTenantClaim?: string | undefined;
  /** Allowed clock skew for `exp`/`nbf`, seconds. Env `TENANTWALL_JWT_CLOCK_TOLERANCE_S`. Default 5. */
  jwtClockToleranceSec?: number | undefined;
  /** Base domain for `<slug>.<baseDomain>` tenant subdomains. Env `TENANTWALL_BASE_DOMAIN`. Default: none. */
  baseDomain?: string | undefined;
  /**
   * Accept `X-Tenant-ID` as an authenticating source. Only behind a trusted gateway that strips the header from
   * client requests. Env `TENANTWALL_TRUST_TENANT_HEADER`. Default `false`.
   */
  trustTenantHeader?: boolean | undefined;
  /** Max tenants in the lookup cache. Env `TENANTWALL_TENANT_CACHE_SIZE`. Default 10000. */
  tenantCacheSize?: number | undefined;
  /**
   * Lifetime of a cached tenant, ms. A suspend/resume through this process drops the entry at once; other
   * processes see it after at most this long. 0 disables the cache. Env `TENANTWALL_TENANT_CACHE_TTL_MS`.
   * Default 10000.
   */
  tenantCacheTtlMs?: number | undefined;
}

export type ResolvedFastifyOptions = Readonly<{
  resolvers: readonly ResolverName[];
  requireCredential: boolean;
  apiKeyTable: string;
  apiKeyCacheTtlMs: number;
  jwt:
    | Readonly<{
        secret: string | undefined;
        publicKey: string | undefined;
        jwksFile: string | undefined;
        issuer: string;
        audience: string;
        tenantClaim: string;
        clockToleranceSec: number;
      }>
    | undefined;
  baseDomain: string | undefined;
  trustTenantHeader: boolean;
  tenantCacheSize: number;
  tenantCacheTtlMs: number;
}>;

function invalid(field: string, why: string): TenantwallError {
  return new TenantwallError('config_invalid', `Fastify plugin option ${field} ${why}.`, { details: { field } });
}

function envStr(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const raw = env[name];
  return raw === undefined || raw === '' ? undefined : raw;
}

function envInt(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const raw = envStr(env, name);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw)) throw invalid(name, `must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return Number(raw);
}

function envBool(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const raw = envStr(env, name);
  if (raw === undefined) return undefined;
  if (raw === 'true' || raw === '1') return true;
  if (raw === 'false' || raw === '0') return false;
  throw invalid(name, `must be true or false, got ${JSON.stringify(raw)}`);
}

function int(field: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) throw invalid(field, `must be an integer in ${min}..${max}`);
  return value;
}

const IDENT_RE = /^[a-z_][a-z0-9_]{0,62}$/;
const DOMAIN_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

export function resolveFastifyOptions(input: Omit<TenantwallFastifyOptions, 'db'>, env: NodeJS.ProcessEnv = process.env): ResolvedFastifyOptions {
  const secret = input.jwtSecret ?? envStr(env, 'TENANTWALL_JWT_SECRET');
  const publicKey = input.jwtPublicKey ?? envStr(env, 'TENANTWALL_JWT_PUBLIC_KEY');
  const jwksFile = input.jwtJwksFile ?? envStr(env, 'TENANTWALL_JWT_JWKS_FILE');
  const keyCount = [secret, publicKey, jwksFile].filter((k) => k !== undefined).length;
  // One key type per deployment: accepting both an HMAC secret and a public key is what algorithm confusion feeds on.
  if (keyCount > 1) throw invalid('jwtSecret/jwtPublicKey/jwtJwksFile', 'are exclusive: configure one JWT key source');
  if (secret !== undefined && Buffer.byteLength(secret) < 32) throw invalid('jwtSecret', 'must be at least 32 bytes');
  let jwt: ResolvedFastifyOptions['jwt'];
  if (keyCount === 1) {
    const issuer = input.jwtIssuer ?? envStr(env, 'TENANTWALL_JWT_ISSUER');
    const audience = input.jwtAudience ?? envStr(env, 'TENANTWALL_JWT_AUDIENCE');
    if (!issuer) throw invalid('jwtIssuer', 'is required when a JWT key is configured (tokens of other issuers must not pass)');
    if (!audience) throw invalid('jwtAudience', 'is required when a JWT key is configured (tokens for other services must not pass)');
    const tenantClaim = input.jwtTenantClaim ?? envStr(env, 'TENANTWALL_JWT_TENANT_CLAIM') ?? 'tenant_id';
    jwt = Object.freeze({
      secret,
      publicKey,
      jwksFile,
      issuer,
      audience,
      tenantClaim,
      clockToleranceSec: int('jwtClockToleranceSec', input.jwtClockToleranceSec ?? envInt(env, 'TENANTWALL_JWT_CLOCK_TOLERANCE_S') ?? 5, 0, 300),
    });
  }
  const baseDomain = (input.baseDomain ?? envStr(env, 'TENANTWALL_BASE_DOMAIN'))?.toLowerCase().replace(/^\./, '');
  if (baseDomain !== undefined && !DOMAIN_RE.test(baseDomain)) throw invalid('baseDomain', 'must be a domain name such as api.example.com');
  const trustTenantHeader = input.trustTenantHeader ?? envBool(env, 'TENANTWALL_TRUST_TENANT_HEADER') ?? false;

  let resolvers: readonly ResolverName[];
  const fromEnv = envStr(env, 'TENANTWALL_RESOLVERS');
  if (input.resolvers !== undefined || fromEnv !== undefined) {
    resolvers = input.resolvers ?? (fromEnv as string).split(',').map((s) => s.trim()) as ResolverName[];
    for (const r of resolvers) if (!RESOLVERS.includes(r)) throw invalid('resolvers', `has unknown resolver ${JSON.stringify(r)} (known: ${RESOLVERS.join(', ')})`);
    if (new Set(resolvers).size !== resolvers.length) throw invalid('resolvers', 'lists a resolver twice');
    if (resolvers.length === 0) throw invalid('resolvers', 'must name at least one resolver');
  } else {
    resolvers = RESOLVERS.filter(
      (r) => r === 'apiKey' || (r === 'jwt' && jwt) || (r === 'subdomain' && baseDomain) || (r === 'header' && trustTenantHeader),
    );
  }
  if (resolvers.includes('jwt') && !jwt) throw invalid('resolvers', 'names jwt but no jwtSecret, jwtPublicKey or jwtJwksFile is configured');
  if (resolvers.includes('subdomain') && !baseDomain) throw invalid('resolvers', 'names subdomain but baseDomain is not set');
  if (resolvers.includes('header') && !trustTenantHeader) {
    throw invalid('resolvers', 'names header but trustTenantHeader is false (the header is only for a trusted gateway)');
  }
  const apiKeyTable = input.apiKeyTable ?? envStr(env, 'TENANTWALL_API_KEY_TABLE') ?? 'api_keys';
  if (!IDENT_RE.test(apiKeyTable)) throw invalid('apiKeyTable', 'must be a lowercase SQL identifier');

  return Object.freeze({
    resolvers: Object.freeze([...resolvers]),
    requireCredential: input.requireCredential ?? envBool(env, 'TENANTWALL_REQUIRE_CREDENTIAL') ?? true,
    apiKeyTable,
    apiKeyCacheTtlMs: int('apiKeyCacheTtlMs', input.apiKeyCacheTtlMs ?? envInt(env, 'TENANTWALL_API_KEY_CACHE_TTL_MS') ?? 5_000, 0, 3_600_000),
    jwt,
    baseDomain,
    trustTenantHeader,
    tenantCacheSize: int('tenantCacheSize', input.tenantCacheSize ?? envInt(env, 'TENANTWALL_TENANT_CACHE_SIZE') ?? 10_000, 0, 10_000_000),
    tenantCacheTtlMs: int('tenantCacheTtlMs', input.tenantCacheTtlMs ?? envInt(env, 'TENANTWALL_TENANT_CACHE_TTL_MS') ?? 10_000, 0, 3_600_000),
  });
}
