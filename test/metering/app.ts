import Fastify, { type FastifyInstance } from 'fastify';
import { tenantwallPlugin } from '../../src/fastify/index.ts';
import { TenantwallError, type Tenantwall } from '../../src/index.ts';
import { meteringPlugin, type MeteringFastifyOptions } from '../../src/fastify/metering.ts';
import type { Metering } from '../../src/metering/index.ts';

export const ADMIN = 'metering-admin-token-0123456789';

/**
 * A small invoicing-like app: the tenantwall plugin resolves the tenant, the metering plugin enforces and
 * records. `GET /invoices/:id` is a scoped point lookup; `POST /invoices` consumes the `invoices` quota.
 */
export async function buildMeteredApp(
  db: Tenantwall,
  metering: Metering | undefined,
  options: Partial<MeteringFastifyOptions> = {},
  setup: (app: FastifyInstance) => void = () => undefined,
): Promise<FastifyInstance> {
  const app = Fastify({ logger: false, bodyLimit: 64 * 1024 });
  await app.register(tenantwallPlugin, { db, apiKeyCacheTtlMs: 60_000, errorHandler: true, notFoundHandler: true });
  if (metering) await app.register(meteringPlugin, { metering, adminToken: ADMIN, ...options } as MeteringFastifyOptions);
  app.get('/invoices/:id', async (req) => {
    const { rows } = await db.query(`SELECT id, customer FROM invoices WHERE tenant_id = $1 AND id = $2`, [db.currentTenantId(), (req.params as { id: string }).id]);
    if (!rows[0]) throw new TenantwallError('not_found', 'No such invoice.');
    return rows[0];
  });
  app.post('/invoices', { config: { quota: 'invoices' } }, async (req, reply) => {
    const customer = (req.body as { customer?: unknown } | undefined)?.customer;
    if (typeof customer !== 'string') throw new TenantwallError('validation_failed', 'customer is required.', { details: { field: 'customer' } });
    const { rows } = await db.query(`INSERT INTO invoices (tenant_id, customer) VALUES ($1, $2) RETURNING id, customer`, [db.currentTenantId(), customer]);
    return reply.code(201).send(rows[0]);
  });
  setup(app);
  await app.ready();
  return app;
}
