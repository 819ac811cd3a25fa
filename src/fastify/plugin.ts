import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import type { Tenantwall } from '../db/tenantwall.ts';
import type { Tenant } from '../db/tenant-registry.ts';
import { TenantwallError } from '../errors.ts';
import { runWithTenant } from '../tenant/context.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { ApiKeyStore, looksLikeApiKey } from './api-keys.ts';
import { makeErrorHandler, tenantwallClientErrorHandler, tenantwallNotFoundHandler } from './http-errors.ts';
import { installStrictJsonParser } from './json.ts';
import { createJwtVerifier, type JwtVerifier } from './jwt.ts';
import { type ResolvedFastifyOptions, type ResolverName, type TenantwallFastifyOptions, resolveFastifyOptions } from './options.ts';
import { TenantCache } from './tenant-cache.ts';

/** How the tenant of a request was established. */
export interface TenantAuth {
  /** Every source that named the tenant, in resolver order. */
  readonly sources: readonly ResolverName[];
  /** API key id when an API key authenticated the request. */
  readonly apiKeyId?: string;
  /** `sub` of the JWT when a JWT authenticated the request. */
  readonly subject?: string;
}

/** What the plugin decorates the instance with (`fastify.tenantwall`). */
export interface TenantwallFastify {
  readonly db: Tenantwall;
  readonly options: ResolvedFastifyOptions;
  readonly apiKeys: ApiKeyStore;
  /** Resolves the tenant of a request without running a handler (what the onRequest hook does). */
  resolve(request: FastifyRequest): Promise<{ tenant: Tenant; auth: TenantAuth }>;
}

declare module 'fastify' {
  interface FastifyInstance {
    tenantwall: TenantwallFastify;
  }
  interface FastifyRequest {
    /** The resolved tenant, or null on routes with `config: { tenant: false }`. */
    tenant: Tenant | null;
    tenantAuth: TenantAuth | null;
  }
  interface FastifyContextConfig {
    /** `false`: the route is not tenant-scoped (health checks, docs, admin). Default: tenant required. */
    tenant?: boolean;
  }
}

interface Candidate {
  source: ResolverName;
  tenantId: TenantId;
  authenticated: boolean;
  apiKeyId?: string;
  subject?: string;
}

function unauthenticated(message: string, reason: string): TenantwallError {
  return new TenantwallError('unauthenticated', message, { details: { reason } });
}

function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
  if (!m) throw unauthenticated('The Authorization header must be "Bearer <token>".', 'malformed_authorization');
  return m[1];
}

function repeatedHeader(raw: readonly string[]): string | undefined {
  let host = 0;
  let auth = 0;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name === 'host' && ++host > 1) return 'Host';
    if (name === 'authorization' && ++auth > 1) return 'Authorization';
  }
  return undefined;
}

function subdomainSlug(request: FastifyRequest, baseDomain: string): string | undefined {
  const host = request.hostname.toLowerCase().replace(/\.$/, '');
  const suffix = `.${baseDomain}`;
  if (!host.endsWith(suffix)) return undefined;
  const label = host.slice(0, -suffix.length);
  // Only a direct child label is a tenant; deeper names (a.b.<base>) are not.
  return label.length > 0 && !label.includes('.') ? label : undefined;
}

const tenantwallPlugin: FastifyPluginAsync<TenantwallFastifyOptions> = async (fastify, opts) => {
  const { db, ...rest } = opts;
  const options = resolveFastifyOptions(rest);
  const apiKeys = new ApiKeyStore(db, { table: options.apiKeyTable, cacheTtlMs: options.apiKeyCacheTtlMs });
  const jwt: JwtVerifier | undefined = options.jwt ? await createJwtVerifier(options.jwt) : undefined;
  const tenants = new TenantCache(db, options.tenantCacheSize, options.tenantCacheTtlMs);
  const unsubscribe = db.tenants.onChange((t) => {
    tenants.forget(t);
    apiKeys.forgetTenant(t.id);
  });
  fastify.addHook('onClose', async () => unsubscribe());

  const apiKeyCandidate = (k: { tenantId: TenantId; keyId: string }): Candidate => ({ source: 'apiKey', tenantId: k.tenantId, authenticated: true, apiKeyId: k.keyId });

  // Synchronous when the answer is cached (the common case): no promise, no extra turn of the event loop.
  function fromSource(source: ResolverName, request: FastifyRequest, token: string | undefined): Candidate | undefined | Promise<Candidate | undefined> {
    switch (source) {
      case 'apiKey': {
        if (token === undefined || !looksLikeApiKey(token)) return undefined;
        const hit = apiKeys.cached(token);
        return hit ? apiKeyCandidate(hit) : apiKeys.verify(token).then(apiKeyCandidate);
      }
      case 'jwt': {
        if (token === undefined || !jwt || looksLikeApiKey(token)) return undefined;
        return jwt.verify(token).then((v) => ({ source, tenantId: v.tenantId, authenticated: true, ...(v.subject !== undefined ? { subject: v.subject } : {}) }));
      }
      case 'subdomain': {
        const slug = subdomainSlug(request, options.baseDomain as string);
        if (slug === undefined) return undefined;
        return tenants.getBySlug(slug).then((t) => {
          if (!t || t.status === 'deleted') throw unauthenticated(`No tenant has the subdomain ${JSON.stringify(slug)}.`, 'unknown_subdomain');
          return { source, tenantId: t.id, authenticated: false };
        });
      }
      case 'header': {
        const raw = request.headers['x-tenant-id'];
        if (raw === undefined) return undefined;
        if (typeof raw !== 'string' || !TenantId.is(raw)) throw unauthenticated('X-Tenant-ID must be one tenant id (a lowercase UUID).', 'malformed_tenant_header');
        return { source, tenantId: raw, authenticated: true };
      }
    }
  }

  function decide(found: readonly Candidate[], token: string | undefined): Candidate {
    if (token !== undefined && !found.some((c) => c.source === 'apiKey' || c.source === 'jwt')) {
      throw unauthenticated('The bearer token is neither an API key nor a JWT this service accepts.', 'unsupported_token');
    }
    const first = found[0];
    if (!first) throw unauthenticated('No credentials: send Authorization: Bearer <API key or JWT>.', 'no_credentials');
    if (found.some((c) => c.tenantId !== first.tenantId)) {
      throw new TenantwallError('tenant_conflict', `The request names more than one tenant (${found.map((c) => c.source).join(', ')}).`, {
        details: { sources: found.map((c) => c.source) },
      });
    }
    if (options.requireCredential && !found.some((c) => c.authenticated)) {
      throw unauthenticated('This route needs a credential (API key or JWT); a subdomain only names the tenant.', 'credential_required');
    }
    return first;
  }

  type Resolved = { tenant: Tenant; auth: TenantAuth };

  function admit(tenant: Tenant | undefined, found: readonly Candidate[]): Resolved {
    if (!tenant || tenant.status === 'deleted') throw unauthenticated('The credentials name an unknown tenant.', 'unknown_tenant');
    if (tenant.status === 'suspended') throw new TenantwallError('tenant_suspended', `Tenant ${tenant.slug} is suspended.`);
    const key = found.find((c) => c.apiKeyId !== undefined)?.apiKeyId;
    const subject = found.find((c) => c.subject !== undefined)?.subject;
    const auth: TenantAuth = Object.freeze({
      sources: found.map((c) => c.source),
      ...(key !== undefined ? { apiKeyId: key } : {}),
      ...(subject !== undefined ? { subject } : {}),
    });
    return { tenant, auth };
  }

  /**
   * Every resolver in order from `start`, then the checks: a value when everything was cached, a promise
   * (continuing from the resolver that had to wait) otherwise.
   */
  function resolveFrom(request: FastifyRequest, token: string | undefined, found: Candidate[], start: number): Resolved | Promise<Resolved> {
    for (let i = start; i < options.resolvers.length; i++) {
      const c = fromSource(options.resolvers[i] as ResolverName, request, token);
      if (c instanceof Promise) {
        return c.then((x) => {
          if (x) found.push(x);
          return resolveFrom(request, token, found, i + 1);
        });
      }
      if (c) found.push(c);
    }
    const first = decide(found, token);
    const cached = tenants.peek(first.tenantId);
    return cached ? admit(cached, found) : tenants.get(first.tenantId).then((t) => admit(t, found));
  }

  const resolveNow = (request: FastifyRequest) => resolveFrom(request, bearerToken(request), [], 0);

  async function resolve(request: FastifyRequest): Promise<Resolved> {
    return resolveNow(request);
  }

  fastify.decorate('tenantwall', Object.freeze({ db, options, apiKeys, resolve }));
  fastify.decorateRequest('tenant', null);
  fastify.decorateRequest('tenantAuth', null);

  function bind(request: FastifyRequest, reply: FastifyReply, resolved: Resolved): void {
    request.tenant = resolved.tenant;
    request.tenantAuth = resolved.auth;
    // A tenant's data must not be kept by shared caches (or the browser), nor sniffed into another type.
    reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    // Every later line of this request (including Fastify's "request completed") carries the tenant. pino adds
    // it to the request's own child logger in place; other loggers get a child.
    const log = request.log as FastifyRequest['log'] & { setBindings?: (bindings: Record<string, unknown>) => void };
    if (typeof log.setBindings === 'function' && reply.log === log) log.setBindings({ tenantId: resolved.tenant.id });
    else reply.log = request.log = log.child({ tenantId: resolved.tenant.id });
  }

  // Callback style: a request whose credentials are cached is resolved without a promise.
  fastify.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void) => {
    let resolved: ReturnType<typeof resolveNow>;
    try {
      // Node keeps the first of repeated Host and Authorization headers and drops the others, while a proxy in
      // front may act on another one: refuse the ambiguity (RFC 9112 requires a 400 for a repeated Host).
      const repeated = repeatedHeader(request.raw.rawHeaders);
      if (repeated) throw new TenantwallError('bad_request', `The ${repeated} header appears more than once.`, { details: { field: repeated } });
      // Unknown routes answer 404 without asking for credentials; opted-out routes are not tenant-scoped.
      if (request.is404 || request.routeOptions.config.tenant === false) {
        done();
        return;
      }
      resolved = resolveNow(request);
    } catch (err) {
      done(err as Error);
      return;
    }
    if (!(resolved instanceof Promise)) {
      bind(request, reply, resolved);
      done();
      return;
    }
    resolved.then(
      (r) => {
        bind(request, reply, r);
        done();
      },
      (err: unknown) => done(err as Error),
    );
  });

  // Callback style on purpose: calling `done` inside runWithTenant makes the handler, and everything it
  // awaits, run in the tenant's AsyncLocalStorage context, so `db.query` is scoped without passing ids.
  fastify.addHook('preHandler', (request, _reply, done) => {
    const tenant = request.tenant;
    if (!tenant) {
      done();
      return;
    }
    runWithTenant(tenant.id, () => done(), { requestId: request.id, apiKeyId: request.tenantAuth?.apiKeyId });
  });

  // The app's own handlers stay unless the app asks for tenantwall's (issue 13: living inside someone else's app).
  if (options.errorHandler) {
    fastify.setErrorHandler(makeErrorHandler(fastify.initialConfig.bodyLimit ?? 1_048_576));
    replaceDefaultClientErrorHandler(fastify);
  }
  if (options.notFoundHandler) fastify.setNotFoundHandler(tenantwallNotFoundHandler);
  if (options.strictJson) installStrictJsonParser(fastify);
  if (options.securityHeaders) await registerHelmet(fastify);
};

/**
 * Requests Node's HTTP parser refuses never reach a route, so no error handler sees them: Fastify answers them
 * from its `clientErrorHandler`. Replace Fastify's default one (never one the app set) so they get the same
 * error shape. Only from the root context: the server is shared by every context.
 */
function replaceDefaultClientErrorHandler(fastify: FastifyInstance): void {
  if (fastify.prefix !== '' || !fastify.server) return;
  for (const listener of fastify.server.listeners('clientError')) {
    if ((listener as { name?: string }).name !== 'bound defaultClientErrorHandler') continue;
    fastify.server.removeListener('clientError', listener as (...args: unknown[]) => void);
    fastify.server.on('clientError', tenantwallClientErrorHandler.bind(fastify));
  }
}

/**
 * Content Security Policy of `securityHeaders`: helmet's defaults (scripts and styles from the page's own
 * origin, no plugins, no framing by other sites) without `upgrade-insecure-requests`, which would send a page
 * served over plain HTTP (a local or internal deployment) to https:// for its own scripts and break it.
 * Documentation pages that load their scripts from their own origin (@fastify/swagger-ui) work under it.
 */
export const TENANTWALL_CSP_DIRECTIVES: Readonly<Record<string, readonly string[] | null>> = Object.freeze({
  'default-src': ["'self'"],
  'base-uri': ["'self'"],
  'font-src': ["'self'", 'https:', 'data:'],
  'form-action': ["'self'"],
  'frame-ancestors': ["'self'"],
  'img-src': ["'self'", 'data:'],
  'object-src': ["'none'"],
  'script-src': ["'self'"],
  'script-src-attr': ["'none'"],
  'style-src': ["'self'", 'https:', "'unsafe-inline'"],
  'upgrade-insecure-requests': null,
});

async function registerHelmet(fastify: FastifyInstance): Promise<void> {
  let helmet: unknown;
  try {
    helmet = (await import('@fastify/helmet')).default;
  } catch (cause) {
    throw new TenantwallError('config_invalid', 'Fastify plugin option securityHeaders needs the optional peer dependency @fastify/helmet: npm install @fastify/helmet.', {
      cause,
      details: { field: 'securityHeaders' },
    });
  }
  const directives = Object.fromEntries(Object.entries(TENANTWALL_CSP_DIRECTIVES).map(([k, v]) => [k, v === null ? null : [...v]]));
  await fastify.register(helmet as FastifyPluginAsync<Record<string, unknown>>, { contentSecurityPolicy: { useDefaults: false, directives } });
}

// Same effect as fastify-plugin: hooks and decorators apply to the context the plugin is registered in (the
// whole application at the root, or only a prefix when registered inside `app.register(..., { prefix })`).
(tenantwallPlugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(tenantwallPlugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'tenantwall';

export { tenantwallPlugin };
