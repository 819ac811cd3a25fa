import { createHash, timingSafeEqual } from 'node:crypto';
import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { type Tenant, type Tenantwall, TenantwallError } from '../src/index.ts';
import * as S from './schemas.ts';

const errors = { '4xx': S.ErrorResponse, '5xx': S.ErrorResponse };
const security = [{ admin: [] }];

function tenantJson(t: Tenant) {
  return { id: t.id, slug: t.slug, name: t.name, status: t.status, created_at: t.createdAt.toISOString() };
}

function keyJson(k: { id: string; name: string; createdAt: Date; revokedAt: Date | null }) {
  return { id: k.id, name: k.name, created_at: k.createdAt.toISOString(), revoked_at: k.revokedAt?.toISOString() ?? null };
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * The operator API. It works across tenants, so it is not tenant-scoped (`config.tenant: false`) and accepts only
 * the admin token, compared in constant time; a tenant's API key or JWT is refused here.
 */
export async function adminRoutes(app: FastifyInstance, opts: { db: Tenantwall; adminToken: string }): Promise<void> {
  const { db } = opts;
  const expected = digest(opts.adminToken);
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config as object), tenant: false };
  });
  app.addHook('onRequest', async (req) => {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (!m || !timingSafeEqual(digest(m[1] as string), expected)) {
      throw new TenantwallError('admin_unauthorized', 'Admin routes need the admin token.');
    }
  });
  const s = (summary: string, parts: object, ok: object) => ({ tags: ['admin'], summary, security, querystring: S.NoQuery, ...parts, response: { ...ok, ...errors } });
  const tenantOr404 = async (id: string) => {
    const t = await db.tenants.get(id);
    if (!t) throw new TenantwallError('not_found', `No tenant ${id}.`, { details: { resource: 'tenant', field: 'id' } });
    return t;
  };

  app.post('/tenants', { schema: s('Create a tenant', { body: S.TenantCreate }, { 201: S.Tenant }) }, async (req, reply) => {
    const body = req.body as Static<typeof S.TenantCreate>;
    const t = await db.tenants.create({ slug: body.slug, name: body.name, ...(body.id !== undefined ? { id: body.id } : {}) });
    return reply.code(201).send(tenantJson(t));
  });
  app.get('/tenants', { schema: s('List tenants (by slug)', { querystring: S.TenantListQuery }, { 200: S.TenantList }) }, async (req) => {
    const q = req.query as Static<typeof S.TenantListQuery>;
    const list = await db.tenants.list({ limit: q.limit ?? 100, ...(q.status ? { status: q.status } : {}), ...(q.after ? { after: q.after } : {}) });
    return list.map(tenantJson);
  });
  app.get('/tenants/:id', { schema: s('Get a tenant', { params: S.IdParams }, { 200: S.Tenant }) }, async (req) => {
    return tenantJson(await tenantOr404((req.params as Static<typeof S.IdParams>).id));
  });
  app.post('/tenants/:id/suspend', { schema: s('Suspend a tenant: its requests get 403 tenant_suspended', { params: S.IdParams }, { 200: S.Tenant }) }, async (req) => {
    const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
    return tenantJson(await db.tenants.suspend(t.id));
  });
  app.post('/tenants/:id/resume', { schema: s('Resume a suspended tenant', { params: S.IdParams }, { 200: S.Tenant }) }, async (req) => {
    const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
    return tenantJson(await db.tenants.resume(t.id));
  });
  app.post('/tenants/:id/api-keys', { schema: s('Create an API key (the key is shown once)', { params: S.IdParams, body: S.ApiKeyCreate }, { 201: S.CreatedApiKey }) }, async (req, reply) => {
    const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
    const k = await app.tenantwall.apiKeys.create(t.id, req.body as Static<typeof S.ApiKeyCreate>);
    return reply.code(201).send({ ...keyJson(k), key: k.key });
  });
  app.get('/tenants/:id/api-keys', { schema: s('List API keys (never the secrets)', { params: S.IdParams }, { 200: S.ApiKeyList }) }, async (req) => {
    const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
    return (await app.tenantwall.apiKeys.list(t.id)).map(keyJson);
  });
  app.delete('/tenants/:id/api-keys/:keyId', { schema: s('Revoke an API key', { params: S.KeyParams }, { 204: { type: 'null', description: 'Revoked' } }) }, async (req, reply) => {
    const p = req.params as Static<typeof S.KeyParams>;
    const t = await tenantOr404(p.id);
    if (!(await app.tenantwall.apiKeys.revoke(t.id, p.keyId))) {
      throw new TenantwallError('not_found', `Tenant ${t.slug} has no API key ${p.keyId}.`, { details: { resource: 'api key', field: 'keyId' } });
    }
    return reply.code(204).send();
  });
}
