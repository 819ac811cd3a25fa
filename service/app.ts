import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';
import type { Tenantwall } from '../src/index.ts';
import { TenantwallLogController, type TenantwallFastifyOptions, errorBody, tenantwallPlugin, typeboxValidatorCompiler } from '../src/fastify/index.ts';
import { TenantwallError } from '../src/index.ts';
import { adminRoutes } from './admin.ts';
import { tenantRoutes } from './routes.ts';

export interface AppOptions {
  db: Tenantwall;
  /** Bearer token of the admin API (not a tenant credential). */
  adminToken: string;
  /** Fastify logger option. Default: no logging (tests). */
  logger?: FastifyServerOptions['logger'];
  /** Max request body, bytes. Default 64 KiB. */
  bodyLimit?: number;
  /** Options of the tenantwall plugin besides `db` (resolvers, JWT keys, base domain, caches). */
  tenantwall?: Omit<TenantwallFastifyOptions, 'db'>;
}

/** The invoicing API as a Fastify instance (not listening): `npm start` listens, tests use inject. */
export async function buildApp(options: AppOptions): Promise<FastifyInstance> {
  if (options.adminToken.length < 16) throw new TenantwallError('config_invalid', 'The admin token must be at least 16 characters.', { details: { field: 'adminToken' } });
  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: options.bodyLimit ?? 64 * 1024,
    // Ids from clients are never trusted as request ids (log forging); Fastify generates them.
    requestIdHeader: false,
    // One line per request, written once the tenant is known, so every line carries request and tenant id.
    logController: new TenantwallLogController(),
  });
  app.setValidatorCompiler(typeboxValidatorCompiler);
  // JSON only: without this, text/plain bodies would be parsed into strings and fail later as "not an object".
  app.removeContentTypeParser('text/plain');

  await app.register(tenantwallPlugin, { db: options.db, ...options.tenantwall });

  // Routes of the documentation plugins are public (no tenant): they are registered below this hook.
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/docs')) route.config = { ...(route.config as object), tenant: false };
  });
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'tenantwall invoicing API',
        version: '0.1.0',
        description: 'Multi-tenant invoicing on tenantwall. Tenant routes take an API key or JWT; admin routes the admin token.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', description: 'Tenant API key (tw_...) or JWT' },
          admin: { type: 'http', scheme: 'bearer', description: 'Admin token (TENANTWALL_ADMIN_TOKEN)' },
        },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.get('/openapi.json', { config: { tenant: false }, schema: { hide: true } }, async () => app.swagger());
  app.get('/healthz', { config: { tenant: false }, schema: { tags: ['health'], summary: 'Liveness: the process serves requests' } }, async () => ({ status: 'ok' }));
  app.get('/readyz', { config: { tenant: false }, schema: { tags: ['health'], summary: 'Readiness: the database answers' } }, async (_req, reply) => {
    if (await options.db.ping()) return { status: 'ready' };
    const err = new TenantwallError('database_unreachable', 'The database does not answer.');
    return reply.code(503).send(errorBody(err));
  });

  await app.register(async (admin) => adminRoutes(admin, { db: options.db, adminToken: options.adminToken }), { prefix: '/admin' });
  await app.register(async (api) => tenantRoutes(api, options.db));
  return app;
}
