import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema } from 'fastify';
import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { deleteTenant } from '../lifecycle/delete.ts';
import { MANIFEST, exportTenant } from '../lifecycle/export.ts';
import { moveTenant } from '../lifecycle/move.ts';
import { suspendTenant } from '../lifecycle/suspend.ts';
import type { Metering } from '../metering/metering.ts';
import type { TenantwallMetrics } from '../observability/metrics.ts';
import { dedicatedPartitionName, quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { requireOptional } from '../util/optional.ts';
import { OperationRegistry, type RunningOperation } from '../lifecycle/operations.ts';

/**
 * Options of the operator console (`consolePlugin`, mounted at `prefix`): an admin logs in with the admin token
 * and gets a session cookie; every action needs the session's CSRF token. Register it after the tenantwall
 * plugin (it uses `fastify.tenantwall.apiKeys`). Needs the optional packages `@fastify/helmet` and `uplot`.
 */
export interface ConsoleFastifyOptions {
  db: Tenantwall;
  /** The admin token the login form accepts (at least 16 characters). */
  adminToken: string;
  /** Metrics whose activity the tenant and noisy-neighbour pages show (optional). */
  metrics?: TenantwallMetrics | undefined;
  /** Mount point. Default `/console`. */
  prefix?: string | undefined;
  /** Session lifetime, ms. Default 8 hours. */
  sessionTtlMs?: number | undefined;
  /** Mark the cookie `Secure` (behind HTTPS). Default `false`. */
  secureCookie?: boolean | undefined;
  /** The isolation page's checks, e.g. tenantwall's `runAudit` and `runVerify` bound to the database (optional). */
  isolation?: ConsoleIsolation | undefined;
  /** Metering of the service: the tenant page's usage chart per meter, quota bars and webhook deliveries (optional). */
  metering?: Metering | undefined;
  /** Where the console's exports are written (one folder each). Default the OS temp directory. */
  exportDir?: string | undefined;
  /** How long finished move/export/delete operations (and the export files) are kept, ms. Default 1 hour. */
  operationRetentionMs?: number | undefined;
  /**
   * Where login sessions are kept. Default: in this process's memory, so a session is known only to the process
   * that logged it in. Behind several processes (replicas, the reference service's operators) pass a shared store,
   * e.g. a table (the reference service's `console_sessions`).
   */
  sessions?: ConsoleSessionStore | undefined;
}

/**
 * A store of console sessions. Only the SHA-256 (hex) of a session id is handed to it, never the id (the cookie),
 * so what the store holds cannot be replayed as a cookie; the CSRF token is derived from the id.
 */
export interface ConsoleSessionStore {
  /** Keeps a new session until `expiresAt`. */
  create(idHash: string, expiresAt: Date): Promise<void>;
  /** When the session expires; `undefined` when it is not known (never created, logged out, swept). */
  expiresAt(idHash: string): Promise<Date | undefined>;
  /** Forgets the session (logout). */
  delete(idHash: string): Promise<void>;
}

/** The default session store: a map in this process's memory, expired sessions swept at each login. */
function memorySessions(): ConsoleSessionStore {
  const sessions = new Map<string, number>();
  return {
    async create(idHash, expiresAt) {
      const now = Date.now();
      for (const [k, until] of sessions) if (until <= now) sessions.delete(k);
      sessions.set(idHash, expiresAt.getTime());
    },
    async expiresAt(idHash) {
      const until = sessions.get(idHash);
      return until === undefined ? undefined : new Date(until);
    },
    async delete(idHash) {
      sessions.delete(idHash);
    },
  };
}

/** The consoles mounted in this process, by their Tenantwall: which operations each one holds. */
type ConsoleOperation = RunningOperation<'move' | 'export' | 'delete'>;
const consoleOperations = new WeakMap<Tenantwall, Set<OperationRegistry>>();

/**
 * Whether a console mounted with `db` in this process runs or keeps the operation `id` (a move, export or delete
 * started from it; its page, status and files are served only by this process). For routing the console's
 * requests among several processes, as the reference service's operators do.
 */
export function consoleHoldsOperation(db: Tenantwall, id: string): boolean {
  for (const ops of consoleOperations.get(db) ?? []) if (ops.get(id) !== undefined) return true;
  return false;
}

/** The usage ranges of the tenant page: bucket size and bucket count. */
const CONSOLE_USAGE_RANGES = Object.freeze({
  '24h': { label: 'last 24 hours', granularity: 'hour', buckets: 24 },
  '7d': { label: 'last 7 days', granularity: 'hour', buckets: 168 },
  '30d': { label: 'last 30 days', granularity: 'day', buckets: 30 },
  '90d': { label: 'last 90 days', granularity: 'day', buckets: 90 },
} as const);

const BUCKET_MS = { hour: 3_600_000, day: 86_400_000 } as const;
/** Rows of the tenants page and of the webhook deliveries table. */
const PAGE_ROWS = 50;

/** A finding as the isolation page shows it (the shape of tenantwall's audit findings). */
export interface ConsoleFinding {
  readonly ruleId: string;
  readonly severity: string;
  readonly object: string;
  readonly message: string;
  readonly docUrl: string;
}

/** What the isolation page runs: the catalog audit and `verify` with tenant A attacking tenant B. */
export interface ConsoleIsolation {
  audit(): Promise<{ readonly findings: readonly ConsoleFinding[] }>;
  verify(tenantA: string, tenantB: string): Promise<{ readonly findings: readonly ConsoleFinding[]; readonly notes?: readonly string[] }>;
}

const COOKIE = 'tw_console';
const sha = (s: string) => createHash('sha256').update(s).digest();
const idHashOf = (id: string) => createHash('sha256').update(`tenantwall-console-session:${id}`).digest('hex');
const csrfOf = (id: string) => createHash('sha256').update(`tenantwall-console-csrf:${id}`).digest('base64url');
const hidden = (): FastifySchema => ({ hide: true }) as FastifySchema;
const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

interface Session {
  id: string;
  csrf: string;
  expires: number;
}

/**
 * The operator console: tenants (search, status), one tenant (activity chart, API keys create/revoke,
 * suspend/resume), noisy neighbours. Server-rendered HTML, assets served locally, CSP and security headers by
 * @fastify/helmet, session cookie (HttpOnly, SameSite=Strict) after an admin-token login, CSRF token on every form.
 */
const consolePlugin: FastifyPluginAsync<ConsoleFastifyOptions> = async (fastify, opts) => {
  if (opts.adminToken.length < 16) throw new TenantwallError('config_invalid', 'The console admin token must be at least 16 characters.', { details: { field: 'adminToken' } });
  const helmetModule = requireOptional<{ default?: unknown }>('@fastify/helmet', 'console');
  const helmet = (helmetModule.default ?? helmetModule) as FastifyPluginAsync<Record<string, unknown>>;
  const require = createRequire(import.meta.url);
  const uplotDir = path.dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  // From source: beside this file. Compiled (dist/fastify): the package ships src/, where the assets live.
  const here = path.dirname(new URL(import.meta.url).pathname);
  const ownDir = [path.join(here, 'console-assets'), path.join(here, '../../src/fastify/console-assets')].find((d) => fs.existsSync(d)) as string;
  const assets: Record<string, { body: Buffer; type: string }> = {
    'uplot.js': { body: fs.readFileSync(path.join(uplotDir, 'uPlot.iife.min.js')), type: 'text/javascript; charset=utf-8' },
    'uplot.css': { body: fs.readFileSync(path.join(uplotDir, 'uPlot.min.css')), type: 'text/css; charset=utf-8' },
    'console.js': { body: fs.readFileSync(path.join(ownDir, 'console.js')), type: 'text/javascript; charset=utf-8' },
    'console.css': { body: fs.readFileSync(path.join(ownDir, 'console.css')), type: 'text/css; charset=utf-8' },
  };
  const { db, metrics } = opts;
  const prefix = (opts.prefix ?? '/console').replace(/\/$/, '');
  const ttl = opts.sessionTtlMs ?? 8 * 3_600_000;
  const expected = sha(opts.adminToken);
  const store = opts.sessions ?? memorySessions();
  /** The session of each request, read from the store once, before its handler runs. */
  const sessionOf = new WeakMap<FastifyRequest, Session>();

  await fastify.register(async (c: FastifyInstance) => {
    await c.register(helmet, {
      contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'", 'data:'], formAction: ["'self'"], frameAncestors: ["'none'"] } },
    });
    c.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    const config = { tenant: false, metering: false };
    const cookieOf = (req: FastifyRequest) => /(?:^|;\s*)tw_console=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1];
    c.addHook('onRequest', async (req) => {
      const id = cookieOf(req);
      if (id === undefined || req.url.startsWith(`${prefix}/assets/`)) return;
      const expires = await store.expiresAt(idHashOf(id));
      if (expires !== undefined && expires.getTime() > Date.now()) sessionOf.set(req, { id, csrf: csrfOf(id), expires: expires.getTime() });
    });
    const session = (req: FastifyRequest): Session | undefined => sessionOf.get(req);
    const page = (reply: FastifyReply, title: string, s: Session | undefined, body: string, extra = '') =>
      reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${esc(title)} - tenantwall console</title><link rel="icon" href="data:,"><link rel="stylesheet" href="${prefix}/assets/console.css">${extra}</head>
<body><header><strong>tenantwall console</strong>${s ? `<a href="${prefix}/">Tenants</a><a href="${prefix}/top">Noisy neighbours</a><a href="${prefix}/isolation">Isolation</a><form class="inline" method="post" action="${prefix}/logout"><input type="hidden" name="_csrf" value="${s.csrf}"><button>Log out</button></form>` : ''}</header>
<main><h1>${esc(title)}</h1>${body}</main></body></html>`);
    /** Pages: a login redirect without a session. Actions: 401/403 (checked in `action`). */
    const requirePage = (req: FastifyRequest, reply: FastifyReply): Session | undefined => {
      const s = session(req);
      if (!s) void reply.code(303).header('location', `${prefix}/login`).send();
      return s;
    };
    const action = (req: FastifyRequest): Session => {
      const s = session(req);
      if (!s) throw new TenantwallError('admin_unauthorized', 'Console actions need an admin session: log in first.');
      const token = (req.body as Record<string, unknown> | undefined)?._csrf;
      if (typeof token !== 'string' || token.length !== s.csrf.length || !timingSafeEqual(Buffer.from(token), Buffer.from(s.csrf))) {
        throw new TenantwallError('csrf_token_invalid', 'The CSRF token of the session is missing or wrong.');
      }
      return s;
    };
    // A refused console action in a browser (a form post: Accept text/html) gets a page saying why, with the
    // same status; API-style callers (no text/html) get the service's JSON error from the parent handler.
    c.setErrorHandler((err, req, reply) => {
      const accept = String(req.headers.accept ?? '');
      if (!(err instanceof TenantwallError) || !accept.includes('text/html')) throw err;
      const s = session(req);
      const back = typeof req.headers.referer === 'string' && req.headers.referer.startsWith(`${req.protocol}://${req.host}${prefix}/`) ? req.headers.referer : `${prefix}/`;
      return page(reply.code(err.status), 'Refused', s, `<p role="alert" id="error"><strong>${esc(err.code)}</strong>: ${esc(err.message)}</p><p><a href="${esc(back)}">Back</a></p>`);
    });
    const csrfField = (s: Session) => `<input type="hidden" name="_csrf" value="${s.csrf}">`;

    c.get('/assets/:name', { config, schema: hidden() }, async (req, reply) => {
      const a = assets[(req.params as { name: string }).name];
      if (!a) throw new TenantwallError('not_found', 'No such console asset.');
      return reply.type(a.type).header('cache-control', 'public, max-age=3600').send(a.body);
    });
    c.get('/login', { config, schema: hidden() }, async (_req, reply) =>
      page(reply, 'Log in', undefined, `<form method="post" action="${prefix}/login"><label>Admin token <input type="password" name="token" autocomplete="current-password" required autofocus></label> <button>Log in</button></form>`),
    );
    c.post('/login', { config, schema: hidden() }, async (req, reply) => {
      const token = (req.body as Record<string, unknown> | undefined)?.token;
      if (typeof token !== 'string' || !timingSafeEqual(sha(token), expected)) {
        return page(reply.code(401), 'Log in', undefined, `<p role="alert">Wrong admin token.</p><form method="post" action="${prefix}/login"><label>Admin token <input type="password" name="token" required autofocus></label> <button>Log in</button></form>`);
      }
      const id = randomBytes(24).toString('base64url');
      await store.create(idHashOf(id), new Date(Date.now() + ttl));
      reply.header('set-cookie', `${COOKIE}=${id}; Path=${prefix}; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(ttl / 1000)}${opts.secureCookie ? '; Secure' : ''}`);
      return reply.code(303).header('location', `${prefix}/`).send();
    });
    c.post('/logout', { config, schema: hidden() }, async (req, reply) => {
      await store.delete(idHashOf(action(req).id));
      reply.header('set-cookie', `${COOKIE}=; Path=${prefix}; HttpOnly; SameSite=Strict; Max-Age=0`);
      return reply.code(303).header('location', `${prefix}/login`).send();
    });

    const ops = new OperationRegistry<ConsoleOperation['kind']>({ retentionMs: opts.operationRetentionMs, dir: opts.exportDir, metrics });
    /** Starts a console operation: one per tenant at a time; an export gets a directory for its files. */
    const startOperation = (kind: ConsoleOperation['kind'], t: Tenant, work: Parameters<typeof ops.start>[2]): ConsoleOperation => {
      const busy = ops.runningFor(t.id);
      if (busy) throw new TenantwallError('tenant_busy', `The console's ${busy.kind} of tenant ${t.slug} is still running; wait for it to end.`, { details: { operation: busy.id } });
      return ops.start(kind, t, work, kind === 'export' ? { dir: ops.makeDir(), keepDir: true } : {});
    };
    fastify.addHook('onClose', async () => ops.close());
    const held = consoleOperations.get(db) ?? new Set();
    consoleOperations.set(db, held.add(ops));
    fastify.addHook('onClose', async () => void held.delete(ops));
    const owner = () => db.dangerouslyCrossTenant();
    const registry = quoteIdent(db.schema.registryTable);
    // Placement from the catalog: one pg_class lookup for a whole page of tenants (no lifecycle session per tenant).
    const dedicatedTables = db.schema.tenantTables.filter((x) => x.partition && x.partition.dedicated !== false).map((x) => x.name);
    const placements = async (ids: readonly string[]): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      if (dedicatedTables.length === 0 || ids.length === 0) {
        for (const id of ids) out.set(id, 'shared');
      } else {
        const names = ids.flatMap((id) => dedicatedTables.map((tb) => dedicatedPartitionName(tb, id)));
        const { rows } = await owner().query<{ relname: string }>('SELECT relname FROM pg_class WHERE relname = ANY($1)', [names]);
        const found = new Set(rows.map((r) => r.relname));
        for (const id of ids) {
          const n = dedicatedTables.filter((tb) => found.has(dedicatedPartitionName(tb, id))).length;
          out.set(id, n === 0 ? 'shared' : n === dedicatedTables.length ? 'dedicated' : 'mixed');
        }
      }
      for (const id of ids) {
        const run = ops.runningFor(id);
        if (run?.kind === 'move') out.set(id, `${out.get(id)} (moving)`);
      }
      return out;
    };
    /** An inline SVG sparkline of the tenant's activity (requests + statements per bucket of the window). */
    const sparkline = (id: string): string => {
      const series = metrics?.activity.series(id) ?? [];
      if (series.length === 0) return '';
      const v = series.map((b) => b.requests + b.statements);
      const max = Math.max(1, ...v);
      const w = 100;
      const h = 20;
      const pts = v.map((x, i) => `${((i * w) / Math.max(1, v.length - 1)).toFixed(1)},${(h - 1 - (x / max) * (h - 2)).toFixed(1)}`).join(' ');
      const sum = v.reduce((a, b) => a + b, 0);
      return `<svg class="spark" viewBox="0 0 ${w} ${h}" width="${w}" height="${h}" role="img" aria-label="${sum} requests and statements in the window"><polyline points="${pts}"/></svg>`;
    };

    c.get('/', { config, schema: hidden() }, async (req, reply) => {
      const s = requirePage(req, reply);
      if (!s) return reply;
      const query = req.query as Record<string, unknown>;
      const q = String(query.q ?? '').trim().toLowerCase().slice(0, 200);
      const status = ['active', 'suspended', 'deleted', 'all'].includes(String(query.status)) ? String(query.status) : 'live';
      const after = typeof query.after === 'string' ? query.after.slice(0, 200) : '';
      const like = `%${q.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
      // Bounded whatever the tenant count: the slug index gives the page in order, LIMIT cuts it; a search
      // (substring of slug or name, or an exact id) filters the registry rows and stops at the page too.
      // Fixed SQL fragments per filter (no parameter decides a branch), so the planner sees `status <> 'deleted'`
      // and walks the registry's partial slug index for the plain page.
      const params: unknown[] = [];
      const arg = (v: unknown) => `$${params.push(v)}`;
      const where = [status === 'live' ? `status <> 'deleted'` : status === 'all' ? 'true' : `status = ${arg(status)}`];
      if (q !== '') where.push(`(slug LIKE ${arg(like)} OR lower(name) LIKE $${params.length} OR id::text = ${arg(q)})`);
      if (after !== '') where.push(`slug > ${arg(after)}`);
      const { rows } = await owner().query<{ id: string; slug: string; name: string; status: string; created_at: Date }>(
        `SELECT id, slug, name, status, created_at FROM ${registry} WHERE ${where.join(' AND ')} ORDER BY slug LIMIT ${PAGE_ROWS + 1}`,
        params,
      );
      const found = rows.slice(0, PAGE_ROWS);
      const place = await placements(found.map((t) => t.id));
      const list = found
        .map(
          (t) =>
            `<tr><td><a href="${prefix}/tenants/${t.id}">${esc(t.slug)}</a></td><td>${esc(t.name)}</td><td>${t.status}</td><td class="placement">${esc(place.get(t.id))}</td><td>${sparkline(t.id)}</td><td>${t.created_at.toISOString().slice(0, 10)}</td></tr>`,
        )
        .join('');
      const more = rows.length > PAGE_ROWS ? `<a href="${prefix}/?${new URLSearchParams({ q, status, after: found[found.length - 1]?.slug ?? '' })}">Next ${PAGE_ROWS}</a>` : '';
      const statusOptions = ['live', 'active', 'suspended', 'deleted', 'all'].map((x) => `<option${x === status ? ' selected' : ''}>${x}</option>`).join('');
      return page(
        reply,
        'Tenants',
        s,
        `<form method="get" action="${prefix}/" role="search"><label>Search <input name="q" value="${esc(q)}" type="search"></label> <label>Status <select name="status">${statusOptions}</select></label> <button>Find</button></form>
<p>${found.length}${more ? '+' : ''} tenant(s)${after ? ` after ${esc(after)}` : ''}</p><div class="scroll"><table><thead><tr><th>slug</th><th>name</th><th>status</th><th>placement</th><th>activity</th><th>created</th></tr></thead><tbody>${list}</tbody></table></div>${more}`,
      );
    });

    const tenantOf = async (id: string): Promise<Tenant> => {
      if (!TenantId.is(id)) throw new TenantwallError('not_found', 'No such tenant.');
      const t = await db.tenants.get(id);
      if (!t) throw new TenantwallError('not_found', 'No such tenant.');
      return t;
    };

    /** Usage of every meter over the chosen range, zero-filled per bucket (null for max/latest meters without events). */
    const usageOf = async (t: Tenant, rangeKey: keyof typeof CONSOLE_USAGE_RANGES) => {
      if (!opts.metering) return undefined;
      const r = CONSOLE_USAGE_RANGES[rangeKey];
      const step = BUCKET_MS[r.granularity];
      const now = Date.now();
      const last = Math.floor(now / step) * step;
      const from = last - (r.buckets - 1) * step;
      const metering = opts.metering;
      // One query per meter (each aggregates in SQL over the (tenant_id, meter, occurred_at) index), run side by side.
      const rows = (
        await Promise.all([...metering.model.meters.keys()].map((meter) => metering.adminUsage({ tenantId: t.id, meters: [meter], from: new Date(from), to: new Date(last + step), granularity: r.granularity })))
      ).flat();
      const x = Array.from({ length: r.buckets }, (_, i) => (from + i * step) / 1000);
      const meters = [...opts.metering.model.meters.values()].map((m) => {
        const additive = m.aggregation === 'count' || m.aggregation === 'sum' || m.aggregation === 'unique_count';
        const values: Array<number | null> = x.map(() => (additive ? 0 : null));
        for (const row of rows) {
          if (row.meter !== m.name) continue;
          const i = Math.round((Date.parse(row.bucket) - from) / step);
          if (i >= 0 && i < values.length) values[i] = row.value;
        }
        const total = additive ? values.reduce<number>((a, b) => a + (b ?? 0), 0) : undefined;
        return { meter: m.name, aggregation: m.aggregation, values, total };
      });
      return { range: rangeKey, granularity: r.granularity, t: x, meters };
    };
    const json = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');
    const opLink = (o: ConsoleOperation) => `<a href="${prefix}/operations/${o.id}">${o.kind} ${o.status}${o.progress ? ` (${esc(o.progress.phase)} ${o.progress.done}${o.progress.total !== null ? `/${o.progress.total}` : ''})` : ''}</a>`;

    c.get('/tenants/:id', { config, schema: hidden() }, async (req, reply) => {
      const s = requirePage(req, reply);
      if (!s) return reply;
      const t = await tenantOf((req.params as { id: string }).id);
      const query = req.query as Record<string, unknown>;
      const rangeKey = (Object.hasOwn(CONSOLE_USAGE_RANGES, String(query.range)) ? String(query.range) : '30d') as keyof typeof CONSOLE_USAGE_RANGES;
      const live = t.status !== 'deleted';
      const [keys, place, usage, plan, deliveries] = await Promise.all([
        live ? fastify.tenantwall.apiKeys.list(t.id) : Promise.resolve([]),
        placements([t.id]),
        usageOf(t, rangeKey),
        opts.metering && live ? opts.metering.planOf(t.id).catch(() => undefined) : Promise.resolve(undefined),
        opts.metering ? opts.metering.webhooks.deliveries({ tenantId: t.id, newest: PAGE_ROWS }) : Promise.resolve(undefined),
      ]);
      const quotas = plan && t.status === 'active' ? await Promise.all(Object.keys(plan.quotas).map((name) => opts.metering!.status(t.id, name))) : [];
      const series = metrics?.activity.series(t.id) ?? [];
      const data = { t: series.map((b) => b.start / 1000), requests: series.map((b) => b.requests), statements: series.map((b) => b.statements), dbMs: series.map((b) => Math.round(b.dbMs * 100) / 100) };
      const top = metrics?.activity.top({ limit: 100_000 }).tenants.find((x) => x.tenantId === t.id);
      const share = (x: number) => `<progress max="100" value="${(x * 100).toFixed(1)}">${(x * 100).toFixed(1)}%</progress> ${(x * 100).toFixed(1)}%`;
      const created = query.created;
      const replayed = query.replayed;
      const keyRows = keys
        .map((k) => `<tr><td>${esc(k.name)}</td><td>${k.id}</td><td>${k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : 'active'}</td><td>${k.revokedAt ? '' : `<form class="inline" method="post" action="${prefix}/tenants/${t.id}/api-keys/${k.id}/revoke">${csrfField(s)}<button>Revoke ${esc(k.name)}</button></form>`}</td></tr>`)
        .join('');
      const running = ops.runningFor(t.id);
      const placement = place.get(t.id) ?? 'shared';
      const moveTo = placement.startsWith('dedicated') ? 'shared' : 'dedicated';
      const actions = live
        ? `<div class="actions"><form class="inline" method="post" action="${prefix}/tenants/${t.id}/${t.status === 'suspended' ? 'resume' : 'suspend'}">${csrfField(s)}<button>${t.status === 'suspended' ? 'Resume' : 'Suspend'}</button></form>
${dedicatedTables.length > 0 ? `<form class="inline" method="post" action="${prefix}/tenants/${t.id}/move">${csrfField(s)}<input type="hidden" name="to" value="${moveTo}"><button>Move to ${moveTo}</button></form>` : ''}
<form class="inline" method="post" action="${prefix}/tenants/${t.id}/export">${csrfField(s)}<button>Export</button></form></div>`
        : '';
      const rangeOptions = Object.entries(CONSOLE_USAGE_RANGES).map(([k, r]) => `<option value="${k}"${k === rangeKey ? ' selected' : ''}>${r.label}</option>`).join('');
      const usageHtml = usage
        ? `<h2>Usage per meter</h2><form method="get" action="${prefix}/tenants/${t.id}" class="range"><label>Range <select name="range" id="range">${rangeOptions}</select></label> <button>Show</button></form>
<div id="meter-chart" class="chart"></div><script type="application/json" id="meter-data">${json(usage)}</script>
<div class="scroll"><table id="meter-totals"><thead><tr><th>meter</th><th>aggregation</th><th>${esc(CONSOLE_USAGE_RANGES[rangeKey].label)}</th></tr></thead><tbody>${usage.meters
            .map((m) => `<tr><td>${esc(m.meter)}</td><td>${m.aggregation}</td><td data-meter="${esc(m.meter)}">${m.total !== undefined ? m.total : (m.values.filter((v) => v !== null).at(-1) ?? '-')}</td></tr>`)
            .join('')}</tbody></table></div>`
        : '';
      const quotaHtml = plan
        ? `<h2>Quotas of plan <span id="plan">${esc(plan.name)}</span></h2>${
            quotas.length === 0
              ? `<p>${t.status === 'active' ? 'The plan has no quotas.' : 'Quota use is read for active tenants only.'}</p>`
              : `<ul class="quotas">${quotas
                  .filter((d) => d !== undefined)
                  .map(
                    (d) =>
                      `<li><label for="quota-${esc(d.quota)}">${esc(d.quota)} (${esc(d.meter)}, ${d.enforcement})</label> <meter id="quota-${esc(d.quota)}" min="0" max="${d.limit}" value="${Math.min(d.used, d.limit)}" high="${d.limit * 0.8}" data-used="${d.used}" data-limit="${d.limit}">${d.used} / ${d.limit}</meter> ${d.used} / ${d.limit}${d.used > d.limit ? ' (over)' : ''}, resets ${d.resetsAt.toISOString().slice(0, 10)}</li>`,
                  )
                  .join('')}</ul>`
          }`
        : '';
      const deliveryHtml = deliveries
        ? `<h2>Webhook deliveries</h2>${typeof replayed === 'string' ? `<p role="status" id="replayed">${esc(replayed)} delivery(ies) queued again.</p>` : ''}${
            deliveries.length === 0
              ? '<p>No deliveries.</p>'
              : `<div class="scroll"><table id="deliveries"><thead><tr><th>event</th><th>endpoint</th><th>status</th><th>attempts</th><th>last answer</th><th>created</th><th></th></tr></thead><tbody>${deliveries
                  .map(
                    (d) =>
                      `<tr data-webhook-id="${esc(d.webhookId)}"><td>${esc(d.type)}<br><code>${esc(d.webhookId)}</code></td><td>${esc(d.endpoint)}</td><td class="status">${esc(d.status)}</td><td class="attempts">${d.attempts}</td><td>${d.lastStatus ?? ''}${d.lastError ? ` ${esc(d.lastError.slice(0, 80))}` : ''}</td><td>${d.createdAt.slice(0, 19)}</td><td>${
                        d.status === 'dead' || d.status === 'delivered'
                          ? `<form class="inline" method="post" action="${prefix}/tenants/${t.id}/webhooks/replay">${csrfField(s)}<input type="hidden" name="event" value="${esc(d.eventId)}"><input type="hidden" name="endpoint" value="${esc(d.endpointId)}"><button aria-label="Replay ${esc(d.type)} ${esc(d.webhookId)}">Replay</button></form>`
                          : ''
                      }</td></tr>`,
                  )
                  .join('')}</tbody></table></div>`
          }`
        : '';
      const recent = ops.of(t.id).slice(0, 5);
      return page(
        reply,
        `Tenant ${t.slug}`,
        s,
        `<p>${esc(t.name)} - <strong id="status">${t.status}</strong> - <span id="placement">${esc(placement)}</span> placement - ${t.id}</p>
${actions}${running ? `<p role="status">Running: ${opLink(running)}</p>` : ''}${recent.length > 0 ? `<p>Operations: ${recent.map(opLink).join(', ')}</p>` : ''}
${usageHtml}${quotaHtml}
<h2>Activity (last ${Math.round((metrics?.activity.windowMs ?? 0) / 1000)} s)</h2>
<div id="usage-chart" class="chart"></div><script type="application/json" id="usage-data">${json(data)}</script>
${top ? `<p>Share of database time ${share(top.share.dbMs)}<br>Share of requests ${share(top.share.requests)}</p>` : '<p>No activity in the window.</p>'}
${live ? `<h2>API keys</h2>${typeof created === 'string' ? `<p role="status">New key (shown once): <code id="new-key">${esc(created)}</code></p>` : ''}
<div class="scroll"><table><thead><tr><th>name</th><th>id</th><th>state</th><th></th></tr></thead><tbody>${keyRows}</tbody></table></div>
<form method="post" action="${prefix}/tenants/${t.id}/api-keys">${csrfField(s)}<label>Name <input name="name" required maxlength="100"></label> <button>Create key</button></form>` : ''}
${deliveryHtml}
${live ? `<h2>Delete</h2><form method="post" action="${prefix}/tenants/${t.id}/delete" class="danger">${csrfField(s)}<p>Deletes every row of the tenant; irreversible.</p><label>Type the slug <code>${esc(t.slug)}</code> to confirm <input name="confirm" autocomplete="off" spellcheck="false" data-confirm="${esc(t.slug)}"></label> <button id="delete-button">Delete tenant</button></form>` : ''}
<script src="${prefix}/assets/uplot.js"></script><script src="${prefix}/assets/console.js"></script>`,
        `<link rel="stylesheet" href="${prefix}/assets/uplot.css">`,
      );
    });

    c.post('/tenants/:id/api-keys', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      const t = await tenantOf((req.params as { id: string }).id);
      const name = (req.body as Record<string, unknown>).name;
      if (typeof name !== 'string' || name.trim() === '' || name.length > 100) throw new TenantwallError('validation_failed', 'A key needs a name (1-100 characters).', { details: { field: 'name' } });
      const k = await fastify.tenantwall.apiKeys.create(t.id, { name });
      // Shown once, on the page the browser is sent to (the key is not stored anywhere readable).
      return reply.code(303).header('location', `${prefix}/tenants/${t.id}?created=${encodeURIComponent(k.key)}`).send();
    });
    c.post('/tenants/:id/api-keys/:key/revoke', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      const p = req.params as { id: string; key: string };
      const t = await tenantOf(p.id);
      await fastify.tenantwall.apiKeys.revoke(t.id, p.key);
      return reply.code(303).header('location', `${prefix}/tenants/${t.id}`).send();
    });
    for (const verb of ['suspend', 'resume'] as const) {
      c.post(`/tenants/:id/${verb}`, { config, schema: hidden() }, async (req, reply) => {
        action(req);
        const t = await tenantOf((req.params as { id: string }).id);
        // Through the lifecycle: the `tenant.suspended` billing event commits with the status change.
        if (verb === 'suspend' && t.status === 'active') await suspendTenant(db, t.id, { reason: 'console' });
        if (verb === 'resume' && t.status === 'suspended') await db.tenants.resume(t.id);
        return reply.code(303).header('location', `${prefix}/tenants/${t.id}`).send();
      });
    }
    const liveTenant = async (req: FastifyRequest): Promise<Tenant> => {
      const t = await tenantOf((req.params as { id: string }).id);
      if (t.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${t.slug} was deleted.`);
      return t;
    };
    const toOperation = (reply: FastifyReply, o: ConsoleOperation) => reply.code(303).header('location', `${prefix}/operations/${o.id}`).send();
    c.post('/tenants/:id/move', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      const t = await liveTenant(req);
      const to = (req.body as Record<string, unknown>).to;
      if (to !== 'dedicated' && to !== 'shared') throw new TenantwallError('validation_failed', 'Move to "dedicated" or "shared".', { details: { field: 'to' } });
      const o = startOperation('move', t, async ({ onProgress }) => {
        const r = await moveTenant(db, t.id, to, { onProgress });
        return { from: r.from, to: r.to, resumed: r.resumed, rows: r.tables.reduce((n, x) => n + x.rows, 0), rowsCopied: r.rowsCopied, writeBlockedMs: Math.round(r.writeBlockedMs), totalMs: Math.round(r.totalMs) };
      });
      return toOperation(reply, o);
    });
    c.post('/tenants/:id/export', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      const t = await liveTenant(req);
      const o = startOperation('export', t, async ({ dir, onProgress }) => {
        const r = await exportTenant(db, t.id, { dir: dir as string, format: 'ndjson', onProgress });
        return { rows: r.rows, files: [MANIFEST, ...r.manifest.tables.map((x) => x.file)] };
      });
      return toOperation(reply, o);
    });
    c.post('/tenants/:id/delete', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      const t = await liveTenant(req);
      const confirm = (req.body as Record<string, unknown>).confirm;
      // Checked here, before anything starts (the library checks again): the typed slug, exactly.
      if (confirm !== t.slug) {
        throw new TenantwallError('confirmation_required', `Deleting tenant ${t.slug} is irreversible: type its slug (${t.slug}) in the confirmation field.`, { details: { field: 'confirm', tenant: t.slug } });
      }
      const o = startOperation('delete', t, async ({ onProgress }) => {
        const r = await deleteTenant(db, t.id, { confirm, onProgress });
        return { rowsDeleted: r.rowsDeleted, droppedPartitions: r.droppedPartitions.length };
      });
      return toOperation(reply, o);
    });
    c.post('/tenants/:id/webhooks/replay', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      const t = await tenantOf((req.params as { id: string }).id);
      if (!opts.metering) throw new TenantwallError('not_found', 'Metering is not configured in the console.');
      const body = req.body as Record<string, unknown>;
      const [event, endpoint] = [body.event, body.endpoint];
      if (typeof event !== 'string' || event === '' || typeof endpoint !== 'string') throw new TenantwallError('validation_failed', 'Choose a delivery to replay.', { details: { field: 'event' } });
      const n = await opts.metering.webhooks.replay({ tenantId: t.id, eventId: event, endpointId: endpoint, statuses: ['dead', 'delivered'] });
      return reply.code(303).header('location', `${prefix}/tenants/${t.id}?replayed=${n}#deliveries`).send();
    });

    const opOf = (req: FastifyRequest): ConsoleOperation => {
      const o = ops.get((req.params as { op: string }).op);
      if (!o) throw new TenantwallError('not_found', 'No such operation (finished operations are kept an hour).');
      return o;
    };
    const opJson = (o: ConsoleOperation) => {
      const { dir: _dir, ...info } = o;
      return info;
    };
    c.get('/operations/:op', { config, schema: hidden() }, async (req, reply) => {
      const s = requirePage(req, reply);
      if (!s) return reply;
      const o = opOf(req);
      const p = o.progress;
      const files = o.kind === 'export' && o.status === 'succeeded' ? ((o.result?.files as string[] | undefined) ?? []) : [];
      return page(
        reply,
        `${o.kind[0]?.toUpperCase()}${o.kind.slice(1)} of ${o.slug}`,
        s,
        `<div id="operation" data-status="${o.status}" data-status-url="${prefix}/operations/${o.id}/status" role="status" aria-live="polite">
<p>Status: <strong id="op-status">${o.status}</strong></p>
<p><label for="op-progress">Progress</label> <progress id="op-progress"${p && p.total !== null ? ` max="${Math.max(1, p.total)}" value="${p.done}"` : o.status === 'running' ? '' : ' max="1" value="1"'}></progress> <span id="op-phase">${p ? `${esc(p.phase)}${p.table ? ` ${esc(p.table)}` : ''} ${p.done}${p.total !== null ? ` / ${p.total}` : ''}` : 'starting'}</span></p>
${o.error ? `<p role="alert" id="op-error">${esc(o.error.code)}: ${esc(o.error.message)}</p>` : ''}
${o.result ? `<pre id="op-result">${esc(JSON.stringify(o.result, null, 2))}</pre>` : ''}
${files.length > 0 ? `<ul id="op-files">${files.map((f) => `<li><a href="${prefix}/operations/${o.id}/files/${encodeURIComponent(f)}" download>${esc(f)}</a></li>`).join('')}</ul>` : ''}
</div><p><a href="${prefix}/tenants/${o.tenantId}">Back to ${esc(o.slug)}</a></p><script src="${prefix}/assets/console.js"></script>`,
      );
    });
    c.get('/operations/:op/status', { config, schema: hidden() }, async (req, reply) => {
      if (!session(req)) throw new TenantwallError('admin_unauthorized', 'Console data needs an admin session: log in first.');
      return reply.header('cache-control', 'no-store').send(opJson(opOf(req)));
    });
    c.get('/operations/:op/files/:file', { config, schema: hidden() }, async (req, reply) => {
      if (!session(req)) throw new TenantwallError('admin_unauthorized', 'Console downloads need an admin session: log in first.');
      const o = opOf(req);
      const file = (req.params as { file: string }).file;
      const files = o.kind === 'export' && o.status === 'succeeded' ? ((o.result?.files as string[] | undefined) ?? []) : [];
      if (!files.includes(file) || !o.dir) throw new TenantwallError('not_found', 'No such file in this export.');
      return reply
        .type(file.endsWith('.json') ? 'application/json' : 'application/x-ndjson')
        .header('content-disposition', `attachment; filename="${o.slug}-${file.replace(/[^A-Za-z0-9._-]/g, '_')}"`)
        .send(fs.createReadStream(path.join(o.dir, path.basename(file))));
    });

    let lastAudit: { at: Date; findings: readonly ConsoleFinding[] } | undefined;
    let lastVerify: { at: Date; a: string; b: string; findings: readonly ConsoleFinding[]; notes: readonly string[] } | undefined;
    const findingRows = (f: readonly ConsoleFinding[]) =>
      f.length === 0
        ? '<p class="ok">No findings.</p>'
        : `<table><thead><tr><th>severity</th><th>rule</th><th>object</th><th>finding</th></tr></thead><tbody>${f
            .map((x) => `<tr><td>${esc(x.severity)}</td><td><a href="${esc(x.docUrl)}">${esc(x.ruleId)}</a></td><td>${esc(x.object)}</td><td>${esc(x.message)}</td></tr>`)
            .join('')}</tbody></table>`;
    c.get('/isolation', { config, schema: hidden() }, async (req, reply) => {
      const s = requirePage(req, reply);
      if (!s) return reply;
      if (!opts.isolation) return page(reply, 'Isolation', s, '<p>No isolation checks configured (the <code>isolation</code> option).</p>');
      const tenants = await db.tenants.list({ status: 'active', limit: 1000 });
      const options = (sel: number) => tenants.map((t, i) => `<option value="${t.id}"${i === sel ? ' selected' : ''}>${esc(t.slug)}</option>`).join('');
      return page(
        reply,
        'Isolation',
        s,
        `<h2>Audit</h2><form method="post" action="${prefix}/isolation/audit">${csrfField(s)}<button>Run audit</button></form>
${lastAudit ? `<p id="audit-report">Audit of ${lastAudit.at.toISOString()}: ${lastAudit.findings.length} finding(s)</p>${findingRows(lastAudit.findings)}` : '<p>No audit run yet.</p>'}
<h2>Verify</h2><form method="post" action="${prefix}/isolation/verify">${csrfField(s)}<label>Tenant A <select name="a">${options(0)}</select></label> <label>attacks tenant B <select name="b">${options(1)}</select></label> <button>Run verify</button></form>
${lastVerify ? `<p id="verify-report">Verify of ${lastVerify.at.toISOString()} (${lastVerify.a} attacking ${lastVerify.b}): ${lastVerify.findings.length} finding(s)</p>${findingRows(lastVerify.findings)}${lastVerify.notes.map((n) => `<p>${esc(n)}</p>`).join('')}` : '<p>No verify run yet.</p>'}`,
      );
    });
    c.post('/isolation/audit', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      if (!opts.isolation) throw new TenantwallError('not_found', 'No isolation checks configured.');
      lastAudit = { at: new Date(), findings: (await opts.isolation.audit()).findings };
      return reply.code(303).header('location', `${prefix}/isolation`).send();
    });
    c.post('/isolation/verify', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      if (!opts.isolation) throw new TenantwallError('not_found', 'No isolation checks configured.');
      const body = req.body as Record<string, unknown>;
      const [a, b] = [body.a, body.b];
      if (typeof a !== 'string' || typeof b !== 'string' || !TenantId.is(a) || !TenantId.is(b) || a === b) {
        throw new TenantwallError('validation_failed', 'Choose two different tenants.', { details: { field: 'b' } });
      }
      const r = await opts.isolation.verify(a, b);
      lastVerify = { at: new Date(), a, b, findings: r.findings, notes: r.notes ?? [] };
      return reply.code(303).header('location', `${prefix}/isolation`).send();
    });

    c.get('/top', { config, schema: hidden() }, async (req, reply) => {
      const s = requirePage(req, reply);
      if (!s) return reply;
      if (!metrics) return page(reply, 'Noisy neighbours', s, '<p>Metrics are not enabled.</p>');
      const r = metrics.activity.top({ by: 'dbMs', limit: 50 });
      const rows = r.tenants
        .map((t) => `<tr><td>${t.tenantId === 'other' ? 'other' : `<a href="${prefix}/tenants/${t.tenantId}">${t.tenantId}</a>`}</td><td>${t.dbMs.toFixed(1)} (${(t.share.dbMs * 100).toFixed(1)}%)</td><td>${t.statements}</td><td>${t.rows}</td><td>${t.requests}</td><td>${t.noisy ? `<span class="noisy">noisy: ${t.noisyOn.join(', ')}</span><br>${t.suggestions.map((x) => `<code>${esc(x.command)}</code>`).join('<br>')}` : ''}</td></tr>`)
        .join('');
      return page(reply, 'Noisy neighbours', s, `<p>Last ${Math.round(r.windowMs / 1000)} s, ${r.activeTenants} active tenants, noisy at >= ${r.noisySharePercent}%.</p>
<table><thead><tr><th>tenant</th><th>db ms</th><th>statements</th><th>rows</th><th>requests</th><th></th></tr></thead><tbody>${rows}</tbody></table>`);
    });
  }, { prefix });
};

export { consolePlugin };
