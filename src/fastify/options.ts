import { bool, defineOptions, ident, int, invalidOption, listOf, resolveTable, str } from '../config/resolve.ts';
import type { Tenantwall } from '../db/tenantwall.ts';

/** A tenant resolver of the Fastify plugin: `apiKey`, `jwt`, `subdomain` or `header`. */
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
  /**
   * Install tenantwall's error handler (`tenantwallErrorHandler`) on the context the plugin is registered in, and
   * at the root also answer requests Node's HTTP parser refuses in the same shape (unless the app set its own
   * `clientErrorHandler`). Off: the app's error handler (or Fastify's) stays; `TenantwallError`s carry
   * `statusCode`, and `toHttpError` gives the mapping. Env `TENANTWALL_ERROR_HANDLER`. Default `false`.
   */
  errorHandler?: boolean | undefined;
  /** Install a 404 `not_found` handler in the tenantwall shape. Env `TENANTWALL_NOT_FOUND_HANDLER`. Default `false`. */
  notFoundHandler?: boolean | undefined;
  /**
   * Replace the `application/json` body parser of the plugin's context with the strict one (UTF-8 only,
   * duplicate keys, NUL and lone surrogates refused). Env `TENANTWALL_STRICT_JSON`. Default `true`.
   */
  strictJson?: boolean | undefined;
  /**
   * Register `@fastify/helmet` (optional peer dependency) in the plugin's context with tenantwall's CSP.
   * Env `TENANTWALL_SECURITY_HEADERS`. Default `false`.
   */
  securityHeaders?: boolean | undefined;
  /** Log query-string values (otherwise `[redacted]`). Env `TENANTWALL_LOG_QUERY_VALUES`. Default `false`. */
  logQueryValues?: boolean | undefined;
}

/** `TenantwallFastifyOptions` after resolution. */
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
  errorHandler: boolean;
  notFoundHandler: boolean;
  strictJson: boolean;
  securityHeaders: boolean;
  logQueryValues: boolean;
}>;

const DOMAIN_RE = /^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/** The Fastify plugin's options; docs/fastify.md and docs/configuration.md document each. */
export const FASTIFY_OPTIONS = defineOptions('Fastify plugin', {
  resolvers: { env: 'TENANTWALL_RESOLVERS', type: listOf(RESOLVERS), doc: 'Which resolvers run, in this order.' },
  requireCredential: { env: 'TENANTWALL_REQUIRE_CREDENTIAL', default: true, type: bool, doc: 'Refuse requests no authenticating source named.' },
  apiKeyTable: { env: 'TENANTWALL_API_KEY_TABLE', default: 'api_keys', type: ident, doc: 'Tenant table holding API keys.' },
  apiKeyCacheTtlMs: { env: 'TENANTWALL_API_KEY_CACHE_TTL_MS', default: 5_000, type: int(0, 3_600_000), doc: 'How long a verified API key is trusted without asking the database.' },
  jwtSecret: { env: 'TENANTWALL_JWT_SECRET', type: str((v) => (Buffer.byteLength(v) < 32 ? 'must be at least 32 bytes' : undefined)), doc: 'HS256 shared secret.' },
  jwtPublicKey: { env: 'TENANTWALL_JWT_PUBLIC_KEY', type: str(), doc: 'RS256 or ES256 public key, PEM (SPKI).' },
  jwtJwksFile: { env: 'TENANTWALL_JWT_JWKS_FILE', type: str(), doc: 'Path of a JSON Web Key Set file.' },
  jwtIssuer: { env: 'TENANTWALL_JWT_ISSUER', type: str(), doc: 'Required iss.' },
  jwtAudience: { env: 'TENANTWALL_JWT_AUDIENCE', type: str(), doc: 'Required aud.' },
  jwtTenantClaim: { env: 'TENANTWALL_JWT_TENANT_CLAIM', default: 'tenant_id', type: str(), doc: 'Claim carrying the tenant id.' },
  jwtClockToleranceSec: { env: 'TENANTWALL_JWT_CLOCK_TOLERANCE_S', default: 5, type: int(0, 300), doc: 'Allowed clock skew for exp/nbf, seconds.' },
  baseDomain: {
    env: 'TENANTWALL_BASE_DOMAIN',
    type: str((v) => (DOMAIN_RE.test(v.toLowerCase().replace(/^\./, '')) ? undefined : 'must be a domain name such as api.example.com'), 'domain'),
    doc: 'Base domain for <slug>.<baseDomain> tenant subdomains.',
  },
  trustTenantHeader: { env: 'TENANTWALL_TRUST_TENANT_HEADER', default: false, type: bool, doc: 'Accept X-Tenant-ID from a trusted gateway.' },
  tenantCacheSize: { env: 'TENANTWALL_TENANT_CACHE_SIZE', default: 10_000, type: int(0, 10_000_000), doc: 'Max tenants in the lookup cache.' },
  tenantCacheTtlMs: { env: 'TENANTWALL_TENANT_CACHE_TTL_MS', default: 10_000, type: int(0, 3_600_000), doc: 'Lifetime of a cached tenant, ms.' },
  errorHandler: { env: 'TENANTWALL_ERROR_HANDLER', default: false, type: bool, doc: "Install tenantwall's error handler in the plugin's context." },
  notFoundHandler: { env: 'TENANTWALL_NOT_FOUND_HANDLER', default: false, type: bool, doc: 'Install a 404 not_found handler in the plugin\'s context.' },
  strictJson: { env: 'TENANTWALL_STRICT_JSON', default: true, type: bool, doc: 'Strict application/json parser: UTF-8, no duplicate keys, no NUL.' },
  securityHeaders: { env: 'TENANTWALL_SECURITY_HEADERS', default: false, type: bool, doc: 'Register @fastify/helmet with tenantwall\'s CSP.' },
  logQueryValues: { env: 'TENANTWALL_LOG_QUERY_VALUES', default: false, type: bool, doc: 'Log query-string values instead of [redacted].' },
});

/** Resolves the Fastify plugin options: explicit option, then environment variable, then default. */
export function resolveFastifyOptions(input: Omit<TenantwallFastifyOptions, 'db'>, env: NodeJS.ProcessEnv = process.env): ResolvedFastifyOptions {
  const o = resolveTable(FASTIFY_OPTIONS, input, env);
  const invalid = (field: string, why: string) => invalidOption('Fastify plugin', field, why);
  const keyCount = [o.jwtSecret, o.jwtPublicKey, o.jwtJwksFile].filter((k) => k !== undefined).length;
  // One key type per deployment: accepting both an HMAC secret and a public key is what algorithm confusion feeds on.
  if (keyCount > 1) throw invalid('jwtSecret/jwtPublicKey/jwtJwksFile', 'are exclusive: configure one JWT key source');
  let jwt: ResolvedFastifyOptions['jwt'];
  if (keyCount === 1) {
    if (!o.jwtIssuer) throw invalid('jwtIssuer', 'is required when a JWT key is configured (tokens of other issuers must not pass)');
    if (!o.jwtAudience) throw invalid('jwtAudience', 'is required when a JWT key is configured (tokens for other services must not pass)');
    jwt = Object.freeze({
      secret: o.jwtSecret,
      publicKey: o.jwtPublicKey,
      jwksFile: o.jwtJwksFile,
      issuer: o.jwtIssuer,
      audience: o.jwtAudience,
      tenantClaim: o.jwtTenantClaim,
      clockToleranceSec: o.jwtClockToleranceSec,
    });
  }
  const baseDomain = o.baseDomain?.toLowerCase().replace(/^\./, '');
  const resolvers =
    o.resolvers ??
    RESOLVERS.filter((r) => r === 'apiKey' || (r === 'jwt' && jwt) || (r === 'subdomain' && baseDomain) || (r === 'header' && o.trustTenantHeader));
  if (resolvers.includes('jwt') && !jwt) throw invalid('resolvers', 'names jwt but no jwtSecret, jwtPublicKey or jwtJwksFile is configured');
  if (resolvers.includes('subdomain') && !baseDomain) throw invalid('resolvers', 'names subdomain but baseDomain is not set');
  if (resolvers.includes('header') && !o.trustTenantHeader) {
    throw invalid('resolvers', 'names header but trustTenantHeader is false (the header is only for a trusted gateway)');
  }
  return Object.freeze({
    resolvers: Object.freeze([...resolvers]),
    requireCredential: o.requireCredential,
    apiKeyTable: o.apiKeyTable,
    apiKeyCacheTtlMs: o.apiKeyCacheTtlMs,
    jwt,
    baseDomain,
    trustTenantHeader: o.trustTenantHeader,
    tenantCacheSize: o.tenantCacheSize,
    tenantCacheTtlMs: o.tenantCacheTtlMs,
    errorHandler: o.errorHandler,
    notFoundHandler: o.notFoundHandler,
    strictJson: o.strictJson,
    securityHeaders: o.securityHeaders,
    logQueryValues: o.logQueryValues,
  });
}
