import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { type TenantwallFastifyOptions, errorBody, meteringPlugin, tenantwallPlugin } from 'tenantwall/fastify';
import { TenantwallLogController } from 'tenantwall/fastify/log-controller';
import { typeboxSerializerCompiler, typeboxValidatorCompiler } from 'tenantwall/fastify/typebox';
import { type Metering, type Tenantwall, TenantwallError } from 'tenantwall';
import { type TSchema, Type } from '@sinclair/typebox';
import { AdminAuth, type AdminAuthOptions, adminRoutes } from './admin.ts';
import { createdRows, routeQuotas } from './metering.ts';
import { type OperationSpec, contract, op, usageOperations } from './openapi.ts';
import { tenantRoutes } from './routes.ts';
import * as S from './schemas.ts';

export interface AppOptions {
  db: Tenantwall;
  /** Bootstrap bearer token of the admin API (not a tenant credential); named tokens are created through the API. */
  adminToken: string;
  /** Lockout of failed admin authentication (admin-auth.ts). */
  adminAuth?: AdminAuthOptions;
  /** `servers` of the OpenAPI document. Default: http://127.0.0.1:3000 (npm start). */
  servers?: Array<{ url: string; description: string }>;
  /** Fastify logger option. Default: no logging (tests). */
  logger?: FastifyServerOptions['logger'];
  /** Max request body, bytes. Default 64 KiB. */
  bodyLimit?: number;
  /** Options of the tenantwall plugin besides `db` (resolvers, JWT keys, base domain, caches). */
  tenantwall?: Omit<TenantwallFastifyOptions, 'db'>;
  /** Usage metering, plan quotas and rate limits (service/metering.ts). Default: off. */
  metering?: Metering;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** Path of the first string in `value` that PostgreSQL text cannot hold as sent (NUL, lone surrogate). */
function illFormedField(value: unknown): string | undefined {
  // Iterative: bodies may be nested thousands deep.
  const stack: Array<[unknown, string]> = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (typeof v === 'string') {
      if (v.includes('\u0000') || LONE_SURROGATE.test(v)) return path || 'body';
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) stack.push([x, path ? `${path}.${k}` : k]);
    }
  }
  return undefined;
}

/**
 * JSON bodies must be UTF-8 (RFC 8259) and their strings well-formed: Fastify's default parser decodes invalid
 * bytes to U+FFFD and JSON allows lone-surrogate escapes, both of which would be stored as something other
 * than what the client sent. Refused with a 400 instead; prototype poisoning stays refused by the default parser.
 */
function strictJsonBodies(app: FastifyInstance): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    // A declared charset other than UTF-8 is refused rather than decoded as UTF-8 (the client meant other text).
    const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase();
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      done(new TenantwallError('unsupported_media_type', `Unsupported charset "${charset}": send JSON bodies as UTF-8.`, { details: { field: 'content-type' } }), undefined);
      return;
    }
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch (cause) {
      done(new TenantwallError('invalid_json', 'The body is not valid UTF-8.', { cause, details: { field: 'body' } }), undefined);
      return;
    }
    void parseJson(req, text, (err, value) => {
      if (err) return done(err, undefined);
      const field = illFormedField(value);
      if (field !== undefined) {
        return done(new TenantwallError('validation_failed', `Invalid body field "${field}": text must be well-formed Unicode without NUL characters.`, { details: { field, location: 'body' } }), undefined);
      }
      done(null, value);
    });
  });
}

/** The invoicing API as a Fastify instance (not listening): `npm start` listens, tests use inject. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  if (options.adminToken.length < 16) throw new TenantwallError('config_invalid', 'The admin token must be at least 16 characters.', { details: { field: 'adminToken' } });
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 64 * 1024,
    // close() must not wait for clients that stopped mid-request (Node keeps them until its headers timeout).
    forceCloseConnections: true,
    // Ids from clients are never trusted as request ids (log forging); Fastify generates them.
    requestIdHeader: false,
    // One line per request, written once the tenant is known, so every line carries request and tenant id.
    logController: new TenantwallLogController(),
    // URLs the router cannot decode (e.g. %FF) get the same error shape as every other refusal.
    frameworkErrors: (error, _req, reply) => {
      const err = new TenantwallError('bad_request', `The request URL could not be read (${error.code}).`, { cause: error });
      void (reply as FastifyReply).code(400).send(errorBody(err));
    },
  });
  app.setValidatorCompiler(typeboxValidatorCompiler);
  app.setSerializerCompiler(typeboxSerializerCompiler);
  // JSON only: without this, text/plain bodies would be parsed into strings and fail later as "not an object".
  app.removeContentTypeParser('text/plain');
  strictJsonBodies(app);

  await app.register(tenantwallPlugin, { db: options.db, errorHandler: true, notFoundHandler: true, securityHeaders: true, ...options.tenantwall });
  const auth = new AdminAuth(options.db, options.adminToken, options.adminAuth);

  // Routes of the documentation plugins are public (no tenant): they are registered below this hook.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) route.config = { ...(route.config as object), tenant: false };
  });
  // Operations the document describes although their routes carry no schema of their own: the metering
  // plugin's usage routes (hidden by the plugin) and the document itself.
  const described: Record<string, OperationSpec & { response?: Record<number, unknown> }> = {
    ...(options.metering ? usageOperations() : {}),
    'GET /openapi.json': {
      id: 'getOpenApiDocument',
      summary: 'This OpenAPI document',
      description: 'The OpenAPI 3.1 description of this API.',
      tag: 'health',
      security: 'public',
      ok: { 200: Type.Object({}, { additionalProperties: true, description: 'OpenAPI 3.1 document' }) },
    },
  };
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'tenantwall invoicing API',
        version: '0.1.0',
        description: 'Multi-tenant invoicing on tenantwall. Tenant routes take an API key or JWT; admin routes an admin token. Every error has the shape of `Error`; each operation lists the statuses and codes it can answer (docs/errors.md).',
        contact: { name: 'tenantwall', url: 'https://github.com/tenantwall/tenantwall' },
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'Tenant API key (tw_...) or JWT' },
          admin: { type: 'http', scheme: 'bearer', description: 'Admin token: the bootstrap token (TENANTWALL_ADMIN_TOKEN) or a named token (twadm_...)' },
        },
      },
    },
    transform: ({ schema, url, route }) => {
      const methods = [route.method].flat();
      const spec = methods.map((m) => described[`${m} ${url}`]).find((x) => x !== undefined);
      if (!spec) return { schema, url };
      const built = op(spec).schema as Record<string, unknown> & { response: Record<string, unknown> };
      if (spec.response) Object.assign(built.response, spec.response);
      return { schema: built as unknown as typeof schema, url };
    },
    transformObject: (generated) =>
      contract((generated as { openapiObject: Record<string, unknown> }).openapiObject, {
        metering: options.metering !== undefined,
        quotaRoutes: new Set(options.metering ? Object.keys(routeQuotas) : []),
        servers: options.servers ?? [{ url: 'http://127.0.0.1:3000', description: 'npm start (local)' }],
      }),
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });
  // After @fastify/swagger, which documents the routes registered after it.
  if (options.metering) await app.register(meteringPlugin, { metering: options.metering, adminToken: options.adminToken, routeQuotas, createdRows });

  app.get('/openapi.json', { config: { tenant: false }, schema: { querystring: S.NoQuery } }, async () => app.swagger());
  app.get(
    '/healthz',
    { config: { tenant: false }, ...op({ id: 'getHealth', summary: 'Liveness', description: 'The process serves requests.', tag: 'health', security: 'public', ok: { 200: S.Health as TSchema } }) },
    async () => ({ status: 'ok' }),
  );
  app.get(
    '/readyz',
    {
      config: { tenant: false },
      ...op({ id: 'getReadiness', summary: 'Readiness', description: 'The database answers (503 `database_unreachable` otherwise).', tag: 'health', security: 'public', ok: { 200: S.Health }, errors: ['database_unreachable'] }),
    },
    async (_req, reply) => {
      if (await options.db.ping()) return { status: 'ready' };
      const err = new TenantwallError('database_unreachable', 'The database does not answer.');
      return reply.code(503).send(errorBody(err));
    },
  );

  await app.register(async (admin) => adminRoutes(admin, { db: options.db, auth }), { prefix: '/admin' });
  await app.register(async (api) => tenantRoutes(api, options.db));
  return app;
}
