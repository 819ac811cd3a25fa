/**
 * A "world" for the adversarial suite: a fresh database with the service schema, the invoicing app built the way
 * production builds it (plus optional test-only routes added through the Fastify instance), N tenants with one
 * API key each, JWT signing for each tenant, and a superuser connection to look at the truth behind the API.
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { SignJWT } from 'jose';
import pg from 'pg';
import { buildApp, type AppOptions } from '../../../examples/invoicing-service/src/app.ts';
import { startDocumentWorker } from '../../../examples/invoicing-service/src/documents.ts';
import type { TenantWorker } from '../../../src/jobs/index.ts';
import { ContractChecker } from '../../service/contract.ts';
import { migrations, schema } from '../../../examples/invoicing-service/src/schema.ts';
import type { CreateTenantwallOptions, Tenantwall } from '../../../src/index.ts';
import { serviceGuard } from '../../../examples/invoicing-service/src/guard.ts';
import { createTestTenantwall, type TestTenantwall } from '../../helpers/db.ts';
import { disableRls } from '../../service/setup.ts';

export const ADMIN_TOKEN = 'adversarial-admin-token-0123456789abcdef';
export const JWT_SECRET = 'adversarial-hs256-secret-that-is-long-enough-0123456789';
export const JWT_ISS = 'https://issuer.adversarial.test';
export const JWT_AUD = 'tenantwall-adversarial';
export const BASE_DOMAIN = 'adv.test';

export interface WorldTenant {
  readonly idx: number;
  readonly id: string;
  readonly slug: string;
  readonly key: string;
  readonly keyId: string;
  /** Uppercase tag put into every text value this tenant writes; never a substring of a UUID or of another tag. */
  readonly marker: string;
}

export interface World {
  readonly app: FastifyInstance;
  readonly db: Tenantwall;
  readonly t: TestTenantwall;
  readonly tenants: readonly WorldTenant[];
  /** Superuser client on the test database (the truth, RLS does not apply). */
  readonly su: pg.Client;
  /** Base URL when `listen` was asked for. */
  readonly url: string | undefined;
  /** The cause of every 5xx answer (the body says only `internal_error`): newest last, at most 200 kept. */
  readonly serverErrors: Array<{ method: string; url: string; status: number; cause: string }>;
  admin(opts: InjectOptions): Promise<LightMyRequestResponse>;
  as(who: WorldTenant, opts: InjectOptions, via?: 'key' | 'jwt'): Promise<LightMyRequestResponse>;
  jwt(who: WorldTenant, claims?: Record<string, unknown>): Promise<string>;
  /** Row counts of every table of the service (tenant tables per tenant, registry, keys). */
  counts(): Promise<Record<string, number>>;
  close(): Promise<void>;
}

export interface WorldOptions {
  tenants: number;
  app?: Partial<AppOptions>;
  db?: Partial<CreateTenantwallOptions>;
  /**
   * Check every response against /openapi.json (test/service/contract.ts); close() fails on any violation.
   * Only for worlds without test-only routes (`extend`), which the document does not describe.
   */
  contract?: boolean;
  /** Test-only routes or hooks, added before the app is ready. Never part of the production service. */
  extend?: (app: FastifyInstance, db: Tenantwall) => void | Promise<void>;
  listen?: boolean;
  /** The service's statement guard, as `npm start` runs it. Default false (the probes of pool poisoning are unscoped on purpose). */
  guard?: boolean;
  /** Row-level security disabled on every table (superuser), to attack the guard alone. Needs `guard`. */
  rlsOff?: boolean;
  /** On a Citus coordinator: only the first workers registered, shard count (test/citus/cluster.ts). */
  citus?: { registerWorkers?: number; shardCount?: number };
}

export function hex(bytes: number): string {
  return randomBytes(bytes).toString('hex');
}

export async function signHs256(claims: Record<string, unknown>, opts: { exp?: string | number; secret?: string } = {}): Promise<string> {
  return new SignJWT(claims)
    .setProtectedHeader({ alg: 'HS256' })
    .setIssuedAt()
    .setIssuer(JWT_ISS)
    .setAudience(JWT_AUD)
    .setExpirationTime(opts.exp ?? '10m')
    .sign(new TextEncoder().encode(opts.secret ?? JWT_SECRET));
}

export async function createWorld(opts: WorldOptions): Promise<World> {
  const t = await createTestTenantwall(schema, migrations, { ...(opts.guard ? { guard: serviceGuard() } : {}), ...opts.db }, opts.citus);
  if (opts.rlsOff) {
    if (!opts.guard) throw new Error('rlsOff without guard would leave no layer');
    await disableRls(t.database.name);
  }
  const su = new pg.Client({ connectionString: t.database.url });
  su.on('error', () => undefined);
  await su.connect();
  let app: FastifyInstance | undefined;
  let worker: TenantWorker | undefined;
  try {
    app = await buildApp({
      db: t.db,
      adminToken: ADMIN_TOKEN,
      // Probes send tenant credentials to admin routes on purpose: no lockout of the loopback address.
      adminAuth: { maxFailures: 1_000_000 },
      ...opts.app,
      tenantwall: { jwtSecret: JWT_SECRET, jwtIssuer: JWT_ISS, jwtAudience: JWT_AUD, ...opts.app?.tenantwall },
    });
    const serverErrors: World['serverErrors'] = [];
    app.addHook('onError', async (req, reply, err) => {
      const e = err as Error & { code?: string; cause?: { code?: string; message?: string } };
      const status = reply.statusCode >= 500 ? reply.statusCode : ((e as { status?: number; statusCode?: number }).status ?? 500);
      if (status < 500) return;
      serverErrors.push({ method: req.method, url: req.url, status, cause: `${e.code ?? e.name}: ${e.message}${e.cause ? ` (cause ${e.cause.code ?? ''} ${e.cause.message ?? ''})` : ''}` });
      if (serverErrors.length > 200) serverErrors.shift();
    });
    await opts.extend?.(app, t.db);
    // The document worker runs next to the app, as in `npm start`: issued invoices get their PDF while the world
    // is fuzzed (no queue on Citus: service/schema.ts migration 5).
    if (t.db.citusVersion === undefined) worker = await startDocumentWorker(t.db, { pollIntervalMs: 200 });
    const contract = opts.contract ? new ContractChecker(() => (app as FastifyInstance).swagger() as Record<string, unknown>) : undefined;
    contract?.install(app);
    await app.ready();
    let url: string | undefined;
    if (opts.listen) {
      await app.listen({ host: '127.0.0.1', port: 0 });
      url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
    }
    const theApp = app;
    const admin = (o: InjectOptions) => theApp.inject({ ...o, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...o.headers } });
    const run = hex(3).toUpperCase().replace(/[0-9]/g, (d) => 'GHIJKLMNOP'[Number(d)] as string);
    const tenants: WorldTenant[] = [];
    for (let i = 0; i < opts.tenants; i++) {
      const slug = `adv-${i}-${hex(3)}`;
      // Tenant 0 starts with dedicated placement (its own partitions), the others shared: both layouts are fuzzed.
      const created = await admin({ method: 'POST', url: '/admin/tenants', payload: { slug, name: `Adversarial ${i}`, ...(i === 0 ? { placement: 'dedicated' } : {}) } });
      if (created.statusCode !== 201) throw new Error(`tenant create: ${created.statusCode} ${created.body}`);
      const id = created.json().id as string;
      const key = await admin({ method: 'POST', url: `/admin/tenants/${id}/api-keys`, payload: { name: 'adversarial' } });
      if (key.statusCode !== 201) throw new Error(`key create: ${key.statusCode} ${key.body}`);
      // Letters only (no hex digits a-f) so a marker never hides inside a UUID, a key or another marker.
      const marker = `QZ${'GHIJKLMNOPRSTUVWXY'[i % 18]}${i}${run}Q`;
      tenants.push(Object.freeze({ idx: i, id, slug, key: key.json().key as string, keyId: key.json().id as string, marker }));
    }
    // Tenant 0's dedicated partitions were created with row-level security on (as every partition is): off too.
    if (opts.rlsOff) await disableRls(t.database.name);
    const jwt = (who: WorldTenant, claims: Record<string, unknown> = {}) => signHs256({ tenant_id: who.id, sub: `user-${who.idx}`, ...claims });
    return {
      app,
      db: t.db,
      t,
      tenants,
      su,
      url,
      serverErrors,
      admin,
      jwt,
      async as(who, o, via = 'key') {
        const token = via === 'key' ? who.key : await jwt(who);
        return theApp.inject({ ...o, headers: { authorization: `Bearer ${token}`, ...o.headers } });
      },
      async counts() {
        const { rows } = await su.query<{ k: string; n: number }>(`
          SELECT 'customers:' || tenant_id AS k, count(*)::int AS n FROM customers GROUP BY tenant_id
          UNION ALL SELECT 'invoices:' || tenant_id, count(*)::int FROM invoices GROUP BY tenant_id
          UNION ALL SELECT 'invoice_line_items:' || tenant_id, count(*)::int FROM invoice_line_items GROUP BY tenant_id
          UNION ALL SELECT 'api_keys:' || tenant_id, count(*)::int FROM api_keys GROUP BY tenant_id
          UNION ALL SELECT 'api_keys_revoked', count(*)::int FROM api_keys WHERE revoked_at IS NOT NULL
          UNION ALL SELECT 'tenants:' || status, count(*)::int FROM tenants GROUP BY status`);
        return Object.fromEntries(rows.map((r) => [r.k, r.n]));
      },
      async close() {
        const closing = theApp.close().catch(() => undefined);
        // Sockets of clients that aborted mid-response can keep close() waiting for the keep-alive timeout (72 s).
        if (opts.listen) theApp.server.closeAllConnections();
        await closing;
        await worker?.stop().catch(() => undefined);
        await su.end().catch(() => undefined);
        await t.close();
        if (contract && contract.violations.length > 0) throw new Error(`responses outside the OpenAPI document:\n${contract.violations.slice(0, 50).join('\n')}`);
      },
    };
  } catch (err) {
    await app?.close().catch(() => undefined);
    await worker?.stop().catch(() => undefined);
    await su.end().catch(() => undefined);
    await t.close();
    throw err;
  }
}
