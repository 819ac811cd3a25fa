import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyServerOptions } from 'fastify';
import { type TenantwallFastifyOptions, errorBody, meteringPlugin, tenantwallPlugin } from 'tenantwall/fastify';
import { TenantwallLogController } from 'tenantwall/fastify/log-controller';
import { installJobQueue } from 'tenantwall/jobs';
import { typeboxSerializerCompiler, typeboxValidatorCompiler } from 'tenantwall/fastify/typebox';
import { type Metering, type ObservabilityOptions, type Tenantwall, TenantwallError } from 'tenantwall';
import { type TSchema, Type } from '@sinclair/typebox';
import { AdminAuth, type AdminAuthOptions, adminRoutes, streamedOperations } from './admin.ts';
import { Jobs, type JobsOptions, appJobs } from './jobs.ts';
import { AdminRelay, type AdminRelayOptions, relayHook } from './operator.ts';
import { createdRows, routeQuotas } from './metering.ts';
import { observabilityOperations, registerObservability } from './observability.ts';
import { type OperationSpec, contract, op, usageOperations } from './openapi.ts';
import { documentOperations, tenantRoutes } from './routes.ts';
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
  /** Metrics at /metrics and statement traces (observability.ts), or `false`. Default: on, behind the admin auth. */
  observability?: ObservabilityOptions | false;
  /** Lifecycle jobs of the admin API (move, export, import; jobs.ts): retention and temp directory. */
  jobs?: JobsOptions;
  /** Largest import upload, bytes. Default 1 GiB. */
  importMaxBytes?: number;
  /**
   * Install (or upgrade) graphile-worker's schema at start (`installJobQueue`, owner connection, idempotent): issuing
   * an invoice enqueues its rendering, which needs the queue. Default true; skipped on Citus (no queue triggers,
   * schema.ts migration 5) and without an owner connection.
   */
  installJobQueue?: boolean;
  /**
   * Without an owner connection (`db` connected with the application role's URL only): how admin requests reach
   * an operator process (operator.ts). Default: a relay on the Tenantwall's application URL.
   */
  relay?: AdminRelayOptions;
}

/** The invoicing API as a Fastify instance (not listening): `npm start` listens, tests use inject. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  if (options.adminToken.length < 16) throw new TenantwallError('config_invalid', 'The admin token must be at least 16 characters.', { details: { field: 'adminToken' } });
  if (options.installJobQueue !== false && options.db.citusVersion === undefined && options.db.options.databaseUrl !== undefined) await installJobQueue(options.db);
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
  // JSON bodies: the tenantwall plugin's strict parser (UTF-8 only, no duplicate keys, no NUL or lone surrogates).

  // A web process without the owner relays the admin API and the console to an operator process (operator.ts):
  // before any other hook, so a relayed request is neither resolved as a tenant's nor parsed here.
  const relay = options.db.hasOwner ? undefined : await AdminRelay.connect(options.db, options.relay);
  if (relay) {
    app.addHook('onRequest', relayHook(options.db, relay));
    app.addHook('onClose', async () => relay.close());
  }
  await app.register(tenantwallPlugin, { db: options.db, errorHandler: true, notFoundHandler: true, securityHeaders: true, ...options.tenantwall });
  const auth = new AdminAuth(options.db, options.adminToken, { ...options.adminAuth, ...(relay ? { tokenValid: (h: Buffer) => relay.tokenValid(h) } : {}) });

  // Routes of the documentation plugins are public (no tenant): they are registered below this hook.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) route.config = { ...(route.config as object), tenant: false };
  });
  // Operations the document describes although their routes carry no schema of their own: the metering
  // plugin's usage routes (hidden by the plugin) and the document itself.
  const described: Record<string, OperationSpec & { response?: Record<number, unknown> }> = {
    ...(options.metering ? usageOperations() : {}),
    ...(options.observability === false ? {} : observabilityOperations()),
    ...streamedOperations(),
    ...documentOperations(),
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
  const metrics = await registerObservability(app, { db: options.db, adminToken: options.adminToken, authorize: auth.check, options: options.observability, metering: options.metering });

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

  // Jobs report their progress to the metrics (lifecycle_operation_* series while they run).
  const jobs = new Jobs({ ...options.jobs, ...(metrics ? { metrics } : {}) });
  appJobs.set(app, jobs);
  // Running jobs finish before the database goes (a move cut short would be resumable, but not reported).
  app.addHook('onClose', async () => jobs.close());
  await app.register(async (admin) => adminRoutes(admin, { db: options.db, auth, jobs, ...(options.importMaxBytes !== undefined ? { importMaxBytes: options.importMaxBytes } : {}) }), { prefix: '/admin' });
  await app.register(async (api) => tenantRoutes(api, options.db));
  return app;
}
