import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { type Tenant, type Tenantwall, TenantwallError, deleteTenant, suspendTenant } from 'tenantwall';
import { AdminAuth, type AdminAuthOptions } from './admin-auth.ts';
import { op } from './openapi.ts';
import { decodeCursor, encodeCursor } from './repo/cursor.ts';
import * as S from './schemas.ts';

/**
 * Slugs that are never tenants: they become subdomains (`<slug>.<base domain>`), and these name the service's
 * own hosts or would pass for them.
 */
export const RESERVED_SLUGS: ReadonlySet<string> = new Set([
  'admin', 'api', 'app', 'assets', 'auth', 'billing', 'cdn', 'dashboard', 'docs', 'help', 'login', 'mail', 'metrics',
  'oauth', 'root', 'smtp', 'sso', 'static', 'status', 'support', 'system', 'www',
]);

function tenantJson(t: Tenant) {
  return { id: t.id, slug: t.slug, name: t.name, status: t.status, created_at: t.createdAt.toISOString() };
}

function keyJson(k: { id: string; name: string; createdAt: Date; revokedAt: Date | null }) {
  return { id: k.id, name: k.name, created_at: k.createdAt.toISOString(), revoked_at: k.revokedAt?.toISOString() ?? null };
}

/** Keyset pages of the admin lists, in the same `cursor` / `next_cursor` shape as every other list. */
function pageOf<T extends { id: string }>(rows: T[], limit: number, sort: string, value: (r: T) => string) {
  const more = rows.length > limit;
  const data = more ? rows.slice(0, limit) : rows;
  const last = data[data.length - 1];
  return { data, next_cursor: more && last ? encodeCursor({ sort, order: 'asc', value: value(last), id: last.id }) : null };
}

/**
 * The operator API. It works across tenants, so it is not tenant-scoped (`config.tenant: false`) and accepts only
 * admin tokens (admin-auth.ts): the configured bootstrap token or a named token; a tenant's API key or JWT is
 * refused here, and failed attempts are rate-limited per client address.
 */
export async function adminRoutes(app: FastifyInstance, opts: { db: Tenantwall; auth: AdminAuth }): Promise<void> {
  const { db, auth } = opts;
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config as object), tenant: false };
  });
  app.addHook('onRequest', auth.check);
  const tenantOr404 = async (id: string) => {
    const t = await db.tenants.get(id);
    if (!t) throw new TenantwallError('not_found', `No tenant ${id}.`, { details: { resource: 'tenant', field: 'id' } });
    return t;
  };
  const admin = { tag: 'admin', security: 'admin' } as const;

  app.post(
    '/tenants',
    op({ ...admin, id: 'createTenant', summary: 'Create a tenant', description: 'Creates an active tenant. The slug becomes its subdomain; reserved names are refused with `invalid_slug`.', body: S.TenantCreate, ok: { 201: S.Tenant }, errors: ['invalid_slug', 'tenant_exists'] }),
    async (req, reply) => {
      const body = req.body as Static<typeof S.TenantCreate>;
      if (RESERVED_SLUGS.has(body.slug)) {
        throw new TenantwallError('invalid_slug', `The slug "${body.slug}" is reserved (it would name one of the service's own hosts).`, { details: { field: 'slug' } });
      }
      const t = await db.tenants.create({ slug: body.slug, name: body.name, ...(body.id !== undefined ? { id: body.id } : {}) });
      return reply.code(201).send(tenantJson(t));
    },
  );
  app.get(
    '/tenants',
    op({ ...admin, id: 'listTenants', summary: 'List tenants', description: 'Tenants ordered by slug, one page at a time (`cursor` / `next_cursor`).', querystring: S.TenantListQuery, ok: { 200: S.Page(S.Tenant) }, errors: ['invalid_cursor'] }),
    async (req) => {
      const q = req.query as Static<typeof S.TenantListQuery>;
      const limit = q.limit ?? 20;
      const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, { sort: 'slug', order: 'asc', kind: 'text' }).value;
      const list = await db.tenants.list({ limit: limit + 1, ...(q.status ? { status: q.status } : {}), ...(after !== undefined ? { after: String(after) } : {}) });
      const page = pageOf(list, limit, 'slug', (t) => t.slug);
      return { data: page.data.map(tenantJson), next_cursor: page.next_cursor };
    },
  );
  app.get('/tenants/:id', op({ ...admin, id: 'getTenant', summary: 'Get a tenant', description: 'One tenant by id, whatever its status.', params: S.IdParams, ok: { 200: S.Tenant }, errors: ['not_found'] }), async (req) => {
    return tenantJson(await tenantOr404((req.params as Static<typeof S.IdParams>).id));
  });
  app.delete(
    '/tenants/:id',
    op({
      ...admin,
      id: 'deleteTenant',
      summary: 'Delete a tenant and all its rows',
      description:
        'Irreversible: every row of the tenant is deleted and a tombstone (status `deleted`) is kept. The tenant is suspended first, so its requests stop at once. `confirm` must repeat the slug (typed confirmation), otherwise `confirmation_required`.',
      params: S.IdParams,
      querystring: S.TenantDeleteQuery,
      ok: { 200: S.TenantDeleted },
      errors: ['not_found', 'confirmation_required', 'tenant_deleted', 'tenant_busy', 'move_in_progress'],
    }),
    async (req) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      const { confirm } = req.query as Static<typeof S.TenantDeleteQuery>;
      if (confirm !== t.slug) {
        throw new TenantwallError('confirmation_required', `Deleting tenant ${t.slug} is irreversible: repeat its slug as ?confirm=${t.slug}.`, { details: { field: 'confirm', tenant: t.slug } });
      }
      const r = await deleteTenant(db, t.id, { confirm });
      return { tenant: tenantJson(r.tenant), rows_deleted: r.rowsDeleted, dropped_partitions: [...r.droppedPartitions] };
    },
  );
  app.post(
    '/tenants/:id/suspend',
    op({ ...admin, id: 'suspendTenant', summary: 'Suspend a tenant', description: 'Its requests get 403 `tenant_suspended` until resumed.', params: S.IdParams, ok: { 200: S.Tenant }, errors: ['not_found', 'tenant_deleted'] }),
    async (req) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      // Through the lifecycle: the `tenant.suspended` billing event commits with the status change.
      return tenantJson(await suspendTenant(db, t.id));
    },
  );
  app.post(
    '/tenants/:id/resume',
    op({ ...admin, id: 'resumeTenant', summary: 'Resume a suspended tenant', description: 'The tenant is active again.', params: S.IdParams, ok: { 200: S.Tenant }, errors: ['not_found', 'tenant_deleted'] }),
    async (req) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      return tenantJson(await db.tenants.resume(t.id));
    },
  );
  app.post(
    '/tenants/:id/api-keys',
    op({ ...admin, id: 'createApiKey', summary: 'Create an API key', description: 'The key is in this answer only; the service stores its hash.', params: S.IdParams, body: S.ApiKeyCreate, ok: { 201: S.CreatedApiKey }, errors: ['not_found'] }),
    async (req, reply) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      const k = await app.tenantwall.apiKeys.create(t.id, req.body as Static<typeof S.ApiKeyCreate>);
      return reply.code(201).send({ ...keyJson(k), key: k.key });
    },
  );
  app.get(
    '/tenants/:id/api-keys',
    op({ ...admin, id: 'listApiKeys', summary: 'List API keys', description: "A tenant's keys (never the secrets), oldest first, one page at a time.", params: S.IdParams, querystring: S.PageOnlyQuery, ok: { 200: S.Page(S.ApiKey) }, errors: ['not_found', 'invalid_cursor'] }),
    async (req) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      const q = req.query as Static<typeof S.PageOnlyQuery>;
      const limit = q.limit ?? 20;
      const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, { sort: 'created_at', order: 'asc', kind: 'timestamp' });
      // A tenant has a handful of keys: the store lists them all in (created_at, id) order.
      const keys = (await app.tenantwall.apiKeys.list(t.id)).map(keyJson).sort((x, y) => (x.created_at === y.created_at ? (x.id < y.id ? -1 : 1) : x.created_at < y.created_at ? -1 : 1));
      const rest = after === undefined ? keys : keys.filter((k) => k.created_at > String(after.value) || (k.created_at === after.value && k.id > after.id));
      return pageOf(rest.slice(0, limit + 1), limit, 'created_at', (k) => k.created_at);
    },
  );
  app.delete(
    '/tenants/:id/api-keys/:keyId',
    op({ ...admin, id: 'revokeApiKey', summary: 'Revoke an API key', description: 'Takes effect at once; revoking twice is not an error.', params: S.KeyParams, ok: { 204: null }, errors: ['not_found'] }),
    async (req, reply) => {
      const p = req.params as Static<typeof S.KeyParams>;
      const t = await tenantOr404(p.id);
      if (!(await app.tenantwall.apiKeys.revoke(t.id, p.keyId))) {
        throw new TenantwallError('not_found', `Tenant ${t.slug} has no API key ${p.keyId}.`, { details: { resource: 'api key', field: 'keyId' } });
      }
      return reply.code(204).send();
    },
  );

  // ---- admin tokens ----
  app.post(
    '/tokens',
    op({ ...admin, id: 'createAdminToken', summary: 'Create a named admin token', description: 'The token is in this answer only; the service stores its sha256. Name tokens after their holder to revoke one without the others.', body: S.AdminTokenCreate, ok: { 201: S.CreatedAdminToken } }),
    async (req, reply) => reply.code(201).send(await auth.create((req.body as Static<typeof S.AdminTokenCreate>).name)),
  );
  app.get(
    '/tokens',
    op({ ...admin, id: 'listAdminTokens', summary: 'List admin tokens', description: 'Named admin tokens (never the secrets), oldest first, one page at a time. The bootstrap token of the configuration is not listed.', querystring: S.PageOnlyQuery, ok: { 200: S.Page(S.AdminToken) }, errors: ['invalid_cursor'] }),
    async (req) => {
      const q = req.query as Static<typeof S.PageOnlyQuery>;
      const limit = q.limit ?? 20;
      const c = q.cursor === undefined ? undefined : decodeCursor(q.cursor, { sort: 'created_at', order: 'asc', kind: 'timestamp' });
      return pageOf(await auth.list(limit + 1, c && { created_at: String(c.value), id: c.id }), limit, 'created_at', (t) => t.created_at);
    },
  );
  app.delete(
    '/tokens/:tokenId',
    op({ ...admin, id: 'revokeAdminToken', summary: 'Revoke an admin token', description: 'Requests with it are refused from the next one on; revoking twice is not an error.', params: S.TokenParams, ok: { 204: null }, errors: ['not_found'] }),
    async (req, reply) => {
      const { tokenId } = req.params as Static<typeof S.TokenParams>;
      if (!(await auth.revoke(tokenId))) throw new TenantwallError('not_found', `No admin token ${tokenId}.`, { details: { resource: 'admin token', field: 'tokenId' } });
      return reply.code(204).send();
    },
  );
}

export { AdminAuth, type AdminAuthOptions };
