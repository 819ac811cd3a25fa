import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import {
  type Tenant,
  type Tenantwall,
  TenantwallError,
  createTenant,
  deleteTenant,
  exportTenant,
  importTenant,
  listTenants,
  moveTenant,
  dedicatedPartitionName,
  suspendTenant,
  tenantInfo,
} from 'tenantwall';
import { AdminAuth, type AdminAuthOptions } from './admin-auth.ts';
import type { Jobs } from './jobs.ts';
import { type OperationSpec, op } from './openapi.ts';
import { exportStream, writeUpload } from './transfer.ts';
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

function tenantJson(t: Tenant, placement: string) {
  return { id: t.id, slug: t.slug, name: t.name, status: t.status, placement, created_at: t.createdAt.toISOString() };
}

/** Default cap of an import upload (`buildApp({ importMaxBytes })`). */
export const IMPORT_MAX_BYTES = 1024 * 1024 * 1024;

const admin = { tag: 'admin', security: 'admin' } as const;

/**
 * The two admin operations whose bodies are not JSON: the export download and the import upload. Their routes
 * carry no response/body schema (a stream is not serialized or validated as JSON); the document describes them
 * from these specs (buildApp's `described`).
 */
export function streamedOperations(): Record<string, OperationSpec & { response?: Record<number, unknown> }> {
  const ndjson = (description: string) => ({ content: { 'application/x-ndjson': { schema: { type: 'string', description } } } });
  const format =
    'NDJSON: line 1 is the export manifest (docs/lifecycle.md), each further line one row, `{"table":"<table>","row":{...}}`, tables in manifest order. Rows are the export files\' lines verbatim, so an upload is checked row for row against the manifest\'s checksums.';
  return {
    'GET /admin/jobs/:jobId/download': {
      ...admin,
      id: 'downloadExport',
      summary: 'Download a finished export',
      description: `Streams the export of a succeeded export job (409 \`conflict\` while it runs, when it failed, or for a job of another kind). ${format}`,
      params: S.JobParams,
      ok: {},
      response: {
        200: {
          description: 'The export, streamed',
          headers: { 'Content-Disposition': { type: 'string', description: 'attachment; filename="tenant-<id>.ndjson"' } },
          ...ndjson('One JSON object per line'),
        },
      },
      errors: ['not_found', 'conflict'],
    },
    'POST /admin/tenants/import': {
      ...admin,
      id: 'importTenant',
      summary: 'Import an export into a new tenant (job)',
      description: `Uploads an export (the download of an export job, unchanged) and imports it into a NEW tenant as a job: all rows or none, every table's row count and checksum verified before COMMIT. ${format} Answers 202 with the job; its result holds the new tenant.`,
      querystring: S.TenantImportQuery,
      body: ndjson('An export download') as unknown as NonNullable<OperationSpec['body']>,
      ok: { 202: S.Job },
      errors: ['invalid_slug', 'tenant_exists', 'import_invalid'],
    },
  };
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
export async function adminRoutes(app: FastifyInstance, opts: { db: Tenantwall; auth: AdminAuth; jobs: Jobs; importMaxBytes?: number }): Promise<void> {
  const { db, auth, jobs } = opts;
  // Placement from the catalog in one query on the pool (tenantInfo would open a lifecycle session per call).
  const dedicatedTables = db.schema.tenantTables.filter((x) => x.partition && x.partition.dedicated !== false).map((x) => x.name);
  const placementOf = async (id: string): Promise<'shared' | 'dedicated' | 'mixed'> => {
    // On Citus nothing is partitioned by tenant: the catalog of shards says whether the tenant has its own (a tenant
    // pinned to a node, dedicated-node, is dedicated here).
    if (db.citusVersion !== undefined) return (await tenantInfo(db, id)).placement === 'shared' ? 'shared' : 'dedicated';
    if (dedicatedTables.length === 0) return 'shared';
    // Attached partitions only: an unfinished move to dedicated keeps its staging copies under the same names, while
    // the tenant's rows are still shared (and that move must stay resumable with `to: dedicated`).
    const { rows } = await db
      .dangerouslyCrossTenant()
      .query<{ n: number }>('SELECT count(*)::int AS n FROM pg_class WHERE relname = ANY($1) AND relispartition', [dedicatedTables.map((x) => dedicatedPartitionName(x, id))]);
    const n = rows[0]?.n ?? 0;
    return n === 0 ? 'shared' : n === dedicatedTables.length ? 'dedicated' : 'mixed';
  };
  const withPlacement = async (t: Tenant) => tenantJson(t, t.status === 'deleted' ? 'shared' : await placementOf(t.id));
  app.addHook('onRoute', (route) => {
    route.config = { ...(route.config as object), tenant: false };
  });
  app.addHook('onRequest', auth.check);
  const tenantOr404 = async (id: string) => {
    const t = await db.tenants.get(id);
    if (!t) throw new TenantwallError('not_found', `No tenant ${id}.`, { details: { resource: 'tenant', field: 'id' } });
    return t;
  };

  app.post(
    '/tenants',
    op({ ...admin, id: 'createTenant', summary: 'Create a tenant', description: 'Creates an active tenant, `shared` by default; `placement: dedicated` also creates its own (empty) partition of every partitioned table in the same transaction. The slug becomes its subdomain; reserved names are refused with `invalid_slug`.', body: S.TenantCreate, ok: { 201: S.Tenant }, errors: ['invalid_slug', 'tenant_exists'] }),
    async (req, reply) => {
      const body = req.body as Static<typeof S.TenantCreate>;
      if (RESERVED_SLUGS.has(body.slug)) {
        throw new TenantwallError('invalid_slug', `The slug "${body.slug}" is reserved (it would name one of the service's own hosts).`, { details: { field: 'slug' } });
      }
      const created = await createTenant(db, { slug: body.slug, name: body.name, ...(body.id !== undefined ? { id: body.id } : {}), ...(body.placement ? { placement: body.placement } : {}) });
      return reply.code(201).send(tenantJson(created.tenant, created.placement));
    },
  );
  app.get(
    '/tenants',
    op({ ...admin, id: 'listTenants', summary: 'List tenants', description: 'Tenants ordered by slug, one page at a time (`cursor` / `next_cursor`).', querystring: S.TenantListQuery, ok: { 200: S.Page(S.Tenant) }, errors: ['invalid_cursor'] }),
    async (req) => {
      const q = req.query as Static<typeof S.TenantListQuery>;
      const limit = q.limit ?? 20;
      const after = q.cursor === undefined ? undefined : decodeCursor(q.cursor, { sort: 'slug', order: 'asc', kind: 'text' }).value;
      const list = await listTenants(db, { limit: limit + 1, ...(q.status ? { status: q.status } : {}), ...(after !== undefined ? { after: String(after) } : {}) });
      const page = pageOf(
        list.map((i) => ({ ...i, id: i.tenant.id })),
        limit,
        'slug',
        (i) => i.tenant.slug,
      );
      return { data: page.data.map((i) => tenantJson(i.tenant, i.placement)), next_cursor: page.next_cursor };
    },
  );
  app.get('/tenants/:id', op({ ...admin, id: 'getTenant', summary: 'Get a tenant', description: 'One tenant by id, whatever its status.', params: S.IdParams, ok: { 200: S.Tenant }, errors: ['not_found'] }), async (req) => {
    return withPlacement(await tenantOr404((req.params as Static<typeof S.IdParams>).id));
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
      return { tenant: tenantJson(r.tenant, 'shared'), rows_deleted: r.rowsDeleted, dropped_partitions: [...r.droppedPartitions] };
    },
  );
  app.post(
    '/tenants/:id/suspend',
    op({ ...admin, id: 'suspendTenant', summary: 'Suspend a tenant', description: 'Its requests get 403 `tenant_suspended` until resumed.', params: S.IdParams, ok: { 200: S.Tenant }, errors: ['not_found', 'tenant_deleted'] }),
    async (req) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      // Through the lifecycle: the `tenant.suspended` billing event commits with the status change.
      return withPlacement(await suspendTenant(db, t.id));
    },
  );
  app.post(
    '/tenants/:id/resume',
    op({ ...admin, id: 'resumeTenant', summary: 'Resume a suspended tenant', description: 'The tenant is active again.', params: S.IdParams, ok: { 200: S.Tenant }, errors: ['not_found', 'tenant_deleted'] }),
    async (req) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      return withPlacement(await db.tenants.resume(t.id));
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

  // ---- lifecycle jobs: move, export, import ----
  const jobOps = { params: S.IdParams, ok: { 202: S.Job } } as const;
  app.post(
    '/tenants/:id/move',
    op({
      ...admin,
      ...jobOps,
      id: 'moveTenant',
      summary: 'Move a tenant between shared and dedicated placement (job)',
      description:
        'Starts an online move (docs/lifecycle.md) as a job and answers 202 with it; follow it at `GET /admin/jobs/{jobId}`. To dedicated: rows are copied while the tenant keeps working, then one short switch. Back to shared: one transaction. A move interrupted by a restart resumes when started again.',
      body: S.TenantMove,
      errors: ['not_found', 'tenant_deleted', 'placement_unchanged', 'tenant_busy'],
    }),
    async (req, reply) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      if (t.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${t.slug} was deleted.`);
      const { to } = req.body as Static<typeof S.TenantMove>;
      const now = await placementOf(t.id);
      if (now === to) throw new TenantwallError('placement_unchanged', `Tenant ${t.slug} is already ${to}.`, { details: { field: 'to' } });
      const job = jobs.start('move', t.id, async ({ onProgress }) => {
        const r = await moveTenant(db, t.id, to, { onProgress });
        return {
          from: r.from,
          to: r.to,
          resumed: r.resumed,
          rows: r.tables.reduce((n, x) => n + x.rows, 0),
          tables: r.tables.map((x) => ({ table: x.table, rows: x.rows })),
          rows_copied: r.rowsCopied,
          reconciled_rows: r.reconciledRows,
          write_blocked_ms: Math.round(r.writeBlockedMs),
          read_blocked_ms: Math.round(r.readBlockedMs),
          total_ms: Math.round(r.totalMs),
        };
      });
      return reply.code(202).send(job);
    },
  );
  app.post(
    '/tenants/:id/export',
    op({
      ...admin,
      ...jobOps,
      id: 'exportTenant',
      summary: 'Export a tenant (job)',
      description:
        "Exports every row of the tenant from one snapshot as a job and answers 202 with it; when it succeeded, `GET /admin/jobs/{jobId}/download` streams the export (NDJSON). The files are kept for an hour (`jobs.retentionMs`).",
      errors: ['not_found', 'tenant_deleted', 'tenant_busy'],
    }),
    async (req, reply) => {
      const t = await tenantOr404((req.params as Static<typeof S.IdParams>).id);
      if (t.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${t.slug} was deleted.`);
      const job = jobs.start('export', t.id, async ({ dir, onProgress }) => {
        const r = await exportTenant(db, t.id, { dir, format: 'ndjson', onProgress });
        return { rows: r.rows, tables: r.manifest.tables.map((x) => ({ table: x.table, rows: x.rows })) };
      });
      return reply.code(202).send({ ...job, result: null });
    },
  );
  // Uploads are streamed to disk, never buffered: the body is the raw request stream (capped by importMaxBytes).
  app.addContentTypeParser('application/x-ndjson', (_req, payload, done) => done(null, payload));
  app.post('/tenants/import', { schema: { hide: true, querystring: S.TenantImportQuery } }, async (req, reply) => {
    const q = req.query as Static<typeof S.TenantImportQuery>;
    if (RESERVED_SLUGS.has(q.slug)) throw new TenantwallError('invalid_slug', `The slug "${q.slug}" is reserved (it would name one of the service's own hosts).`, { details: { field: 'slug' } });
    if (await db.tenants.getBySlug(q.slug)) throw new TenantwallError('tenant_exists', `A tenant with slug ${q.slug} exists.`, { details: { field: 'slug' } });
    const body = req.body as Readable | undefined;
    if (!body || typeof (body as Readable).pipe !== 'function') {
      throw new TenantwallError('unsupported_media_type', 'Upload the export as application/x-ndjson.', { details: { field: 'content-type' } });
    }
    const dir = jobs.makeDir();
    try {
      await writeUpload(body, dir, new Set(db.schema.tenantTables.map((x) => x.name)), opts.importMaxBytes ?? IMPORT_MAX_BYTES);
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      throw err;
    }
    const id = randomUUID();
    const job = jobs.start(
      'import',
      id,
      async ({ onProgress }) => {
        const r = await importTenant(db, { dir, slug: q.slug, id, ...(q.name ? { name: q.name } : {}), ...(q.placement ? { placement: q.placement } : {}), onProgress });
        return { tenant: await withPlacement(r.tenant), rows: r.rows, tables: r.tables.map((x) => ({ table: x.table, rows: x.rows })) };
      },
      dir,
    );
    return reply.code(202).send(job);
  });
  app.get(
    '/jobs/:jobId',
    op({ ...admin, id: 'getJob', summary: 'Status of a job', description: 'Progress of a running job, the result of a succeeded one, the error of a failed one. Jobs live in the service process and are kept an hour after they end.', params: S.JobParams, ok: { 200: S.Job }, errors: ['not_found'] }),
    async (req) => {
      const job = jobs.get((req.params as Static<typeof S.JobParams>).jobId);
      if (!job) throw new TenantwallError('not_found', 'No such job.', { details: { resource: 'job', field: 'jobId' } });
      const { dir: _dir, ...info } = job;
      return info;
    },
  );
  app.get('/jobs/:jobId/download', { schema: { hide: true, params: S.JobParams, querystring: S.NoQuery } }, async (req, reply) => {
    const job = jobs.get((req.params as Static<typeof S.JobParams>).jobId);
    if (!job) throw new TenantwallError('not_found', 'No such job.', { details: { resource: 'job', field: 'jobId' } });
    if (job.kind !== 'export') throw new TenantwallError('conflict', `Job ${job.id} is a ${job.kind} job: only export jobs have a download.`, { details: { field: 'jobId', kind: job.kind } });
    if (job.status !== 'succeeded' || !fs.existsSync(job.dir)) {
      throw new TenantwallError('conflict', `Export job ${job.id} is ${job.status}: download it once it succeeded.`, { details: { field: 'jobId', status: job.status } });
    }
    return reply.type('application/x-ndjson').header('content-disposition', `attachment; filename="tenant-${job.tenant_id}.ndjson"`).send(exportStream(job.dir));
  });

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
