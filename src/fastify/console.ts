import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance, FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema } from 'fastify';
import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import type { TenantwallMetrics } from '../observability/metrics.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { requireOptional } from '../util/optional.ts';

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
}

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
const hidden = (): FastifySchema => ({ hide: true }) as FastifySchema;
const esc = (s: unknown) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

interface Session {
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
  const sessions = new Map<string, Session>();

  await fastify.register(async (c: FastifyInstance) => {
    await c.register(helmet, {
      contentSecurityPolicy: { directives: { defaultSrc: ["'self'"], scriptSrc: ["'self'"], styleSrc: ["'self'"], imgSrc: ["'self'", 'data:'], formAction: ["'self'"], frameAncestors: ["'none'"] } },
    });
    c.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 16 * 1024 }, (_req, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(body as string)));
    });
    const config = { tenant: false, metering: false };
    const cookieOf = (req: FastifyRequest) => /(?:^|;\s*)tw_console=([A-Za-z0-9_-]+)/.exec(req.headers.cookie ?? '')?.[1];
    const session = (req: FastifyRequest): Session | undefined => {
      const id = cookieOf(req);
      const s = id === undefined ? undefined : sessions.get(id);
      if (!s) return undefined;
      if (s.expires <= Date.now()) {
        sessions.delete(id as string);
        return undefined;
      }
      return s;
    };
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
      sessions.set(id, { csrf: randomBytes(24).toString('base64url'), expires: Date.now() + ttl });
      reply.header('set-cookie', `${COOKIE}=${id}; Path=${prefix}; HttpOnly; SameSite=Strict; Max-Age=${Math.floor(ttl / 1000)}${opts.secureCookie ? '; Secure' : ''}`);
      return reply.code(303).header('location', `${prefix}/`).send();
    });
    c.post('/logout', { config, schema: hidden() }, async (req, reply) => {
      action(req);
      sessions.delete(cookieOf(req) as string);
      reply.header('set-cookie', `${COOKIE}=; Path=${prefix}; HttpOnly; SameSite=Strict; Max-Age=0`);
      return reply.code(303).header('location', `${prefix}/login`).send();
    });

    c.get('/', { config, schema: hidden() }, async (req, reply) => {
      const s = requirePage(req, reply);
      if (!s) return reply;
      const q = String((req.query as Record<string, unknown>).q ?? '').trim().toLowerCase();
      const all = await db.tenants.list({ limit: 1000 });
      const found = q === '' ? all : all.filter((t) => t.slug.includes(q) || t.name.toLowerCase().includes(q) || t.id === q);
      const rows = found
        .slice(0, 200)
        .map((t) => `<tr><td><a href="${prefix}/tenants/${t.id}">${esc(t.slug)}</a></td><td>${esc(t.name)}</td><td>${t.status}</td><td>${t.createdAt.toISOString().slice(0, 10)}</td></tr>`)
        .join('');
      return page(reply, 'Tenants', s, `<form method="get" action="${prefix}/" role="search"><label>Search <input name="q" value="${esc(q)}" type="search"></label> <button>Find</button></form>
<p>${found.length} of ${all.length} tenants</p><table><thead><tr><th>slug</th><th>name</th><th>status</th><th>created</th></tr></thead><tbody>${rows}</tbody></table>`);
    });

    const tenantOf = async (id: string): Promise<Tenant> => {
      if (!TenantId.is(id)) throw new TenantwallError('not_found', 'No such tenant.');
      const t = await db.tenants.get(id);
      if (!t) throw new TenantwallError('not_found', 'No such tenant.');
      return t;
    };

    c.get('/tenants/:id', { config, schema: hidden() }, async (req, reply) => {
      const s = requirePage(req, reply);
      if (!s) return reply;
      const t = await tenantOf((req.params as { id: string }).id);
      const keys = await fastify.tenantwall.apiKeys.list(t.id);
      const series = metrics?.activity.series(t.id) ?? [];
      const data = { t: series.map((b) => b.start / 1000), requests: series.map((b) => b.requests), statements: series.map((b) => b.statements), dbMs: series.map((b) => Math.round(b.dbMs * 100) / 100) };
      const top = metrics?.activity.top({ limit: 100_000 }).tenants.find((x) => x.tenantId === t.id);
      const share = (x: number) => `<progress max="100" value="${(x * 100).toFixed(1)}">${(x * 100).toFixed(1)}%</progress> ${(x * 100).toFixed(1)}%`;
      const created = (req.query as Record<string, unknown>).created;
      const keyRows = keys
        .map((k) => `<tr><td>${esc(k.name)}</td><td>${k.id}</td><td>${k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : 'active'}</td><td>${k.revokedAt ? '' : `<form class="inline" method="post" action="${prefix}/tenants/${t.id}/api-keys/${k.id}/revoke">${csrfField(s)}<button>Revoke ${esc(k.name)}</button></form>`}</td></tr>`)
        .join('');
      return page(
        reply,
        `Tenant ${t.slug}`,
        s,
        `<p>${esc(t.name)} - <strong id="status">${t.status}</strong> - ${t.id}</p>
<form class="inline" method="post" action="${prefix}/tenants/${t.id}/${t.status === 'suspended' ? 'resume' : 'suspend'}">${csrfField(s)}<button>${t.status === 'suspended' ? 'Resume' : 'Suspend'}</button></form>
<h2>Activity (last ${Math.round((metrics?.activity.windowMs ?? 0) / 1000)} s)</h2>
<div id="usage-chart"></div><script type="application/json" id="usage-data">${JSON.stringify(data).replace(/</g, '\\u003c')}</script>
${top ? `<p>Share of database time ${share(top.share.dbMs)}<br>Share of requests ${share(top.share.requests)}</p>` : '<p>No activity in the window.</p>'}
<h2>API keys</h2>${typeof created === 'string' ? `<p role="status">New key (shown once): <code id="new-key">${esc(created)}</code></p>` : ''}
<table><thead><tr><th>name</th><th>id</th><th>state</th><th></th></tr></thead><tbody>${keyRows}</tbody></table>
<form method="post" action="${prefix}/tenants/${t.id}/api-keys">${csrfField(s)}<label>Name <input name="name" required maxlength="100"></label> <button>Create key</button></form>
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
        if (verb === 'suspend' && t.status === 'active') await db.tenants.suspend(t.id);
        if (verb === 'resume' && t.status === 'suspended') await db.tenants.resume(t.id);
        return reply.code(303).header('location', `${prefix}/tenants/${t.id}`).send();
      });
    }

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
