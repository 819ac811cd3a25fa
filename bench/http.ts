/**
 * HTTP: `GET /invoices/:id` against the best hand-written route (issue 20), on two traffic shapes:
 *
 * - **mix**: BENCH_HTTP_TENANTS (1,000) tenants with Zipf-distributed sizes (s = 1) over BENCH_HTTP_INVOICES
 *   (1,000,000) invoices, an API key each; requests pick a row uniformly, so a tenant's share of the traffic
 *   follows its size. Every server starts with cold caches (API keys, tenants, statements); the first run of
 *   each is printed as "cold" and not counted.
 * - **one tenant**: the largest tenant of that data set, its one key, ids over all its rows.
 *
 * Targets, all in this process, driven alternately by autocannon from a separate process (bench/load.ts):
 * - `tenantwall`: Fastify + the tenantwall plugin (API-key resolution), guard on, the route calls `db.query`
 *   with the tenant predicate (default plan mode), as README's "Use tenantwall in your app" does;
 * - `tw kysely`: the same with the Kysely integration writing the predicate;
 * - `service`: the reference service (metering, quotas, rate limits, its headers), informational;
 * - `bare` (the baseline): Fastify, an in-memory map from API key to tenant id, one named prepared statement
 *   `WHERE tenant_id = $1 AND id = $2` over a plain pg pool of the same size, as the table owner (no RLS).
 *
 * Every answer of a sample of requests is checked to be the same row on every target. Ratios are per round
 * against `bare` in the same run; the median and the per-round range are printed, never asserted. Then each
 * target is profiled in-process (bench/profile.ts) and its server CPU per request is shown by part, beside the
 * PostgreSQL CPU per request measured from /proc.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import pino from 'pino';
import { buildApp } from '../examples/invoicing-service/src/app.ts';
import { serviceGuard } from '../examples/invoicing-service/src/guard.ts';
import { migrations, schema } from '../examples/invoicing-service/src/schema.ts';
import { ApiKeyStore, tenantwallPlugin } from '../src/fastify/index.ts';
import { createTenantKysely } from '../src/kysely/index.ts';
import type { Tenantwall } from '../src/index.ts';
import { type BenchHarness, listenLocal } from './harness.ts';
import { type LoadTarget, LoadGenerator, type TargetFigures, compareAlternating, describe } from './load.ts';
import { formatParts, profileParts } from './profile.ts';

const TENANTS = Number(process.env.BENCH_HTTP_TENANTS ?? 1_000);
const INVOICES = Number(process.env.BENCH_HTTP_INVOICES ?? 1_000_000);
const SAMPLE = Number(process.env.BENCH_HTTP_SAMPLE ?? 20_000);
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 5);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 5);
const WARMUP_S = Number(process.env.BENCH_HTTP_WARMUP_S ?? 4);
const PROFILE_S = Number(process.env.BENCH_HTTP_PROFILE_S ?? 3);
const TARGETS = (process.env.BENCH_HTTP_TARGETS ?? 'tenantwall,tw kysely,service').split(',').filter(Boolean);
const COLS = 'id, customer, customer_id, amount_cents, currency, status, issued_at, created_at, updated_at';
const SELECT_ONE = `SELECT ${COLS} FROM invoices WHERE tenant_id = $1 AND id = $2`;

const IdParams = {
  type: 'object',
  properties: { id: { type: 'string', format: 'uuid' } },
  required: ['id'],
  additionalProperties: false,
} as const;
const Invoice = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    customer: { type: 'string' },
    customer_id: { type: ['string', 'null'] },
    amount_cents: { type: 'integer' },
    currency: { type: 'string' },
    status: { type: 'string' },
    issued_at: { type: ['string', 'null'], format: 'date-time' },
    created_at: { type: 'string', format: 'date-time' },
    updated_at: { type: 'string', format: 'date-time' },
  },
} as const;
const routeSchema = { params: IdParams, response: { 200: Invoice } };

type Row = { id: string; amount_cents: string | number } & Record<string, unknown>;
const toJson = (r: Row) => ({ ...r, amount_cents: Number(r.amount_cents) });

/** Zipf sizes (s = 1) summing to about `total`, largest first, each at least 1. */
function zipfSizes(n: number, total: number): number[] {
  let h = 0;
  for (let i = 1; i <= n; i++) h += 1 / i;
  return Array.from({ length: n }, (_, i) => Math.max(1, Math.round(total / (i + 1) / h)));
}

/** tenantwall as its README shows it: the plugin resolves the API key, the route queries in the tenant's scope. */
async function tenantwallApp(db: Tenantwall): Promise<FastifyInstance> {
  const app = Fastify({ logger: false });
  await app.register(tenantwallPlugin, { db });
  const k = createTenantKysely<any>(db);
  app.get<{ Params: { id: string } }>('/invoices/:id', { schema: routeSchema }, async (req, reply) => {
    const { rows } = await db.query<Row>(SELECT_ONE, [req.tenant?.id, req.params.id]);
    const r = rows[0];
    return r ? toJson(r) : reply.code(404).send({ error: 'not_found' });
  });
  app.get<{ Params: { id: string } }>('/k/invoices/:id', { schema: routeSchema }, async (req, reply) => {
    const r = (await k.selectFrom('invoices').select(COLS.split(', ')).where('id', '=', req.params.id).executeTakeFirst()) as Row | undefined;
    return r ? toJson(r) : reply.code(404).send({ error: 'not_found' });
  });
  return app;
}

/** The baseline a careful engineer writes by hand: key map, one named prepared statement, no tenancy layer. */
function bareApp(pool: pg.Pool, keys: ReadonlyMap<string, string>): FastifyInstance {
  const app = Fastify({ logger: false });
  app.get<{ Params: { id: string } }>('/invoices/:id', { schema: routeSchema }, async (req, reply) => {
    const header = req.headers.authorization;
    const tenantId = header?.startsWith('Bearer ') ? keys.get(header.slice(7)) : undefined;
    if (tenantId === undefined) return reply.code(401).send({ error: 'unauthenticated' });
    const { rows } = await pool.query<Row>({ name: 'invoice_by_id', text: SELECT_ONE, values: [tenantId, req.params.id] });
    const r = rows[0];
    return r ? toJson(r) : reply.code(404).send({ error: 'not_found' });
  });
  return app;
}

export default async function httpBench(harness: BenchHarness): Promise<void> {
  const db = await harness.createTenantwall(schema, migrations, { guard: serviceGuard() });
  const dbName = new URL(db.options.databaseUrl as string).pathname.slice(1);
  const t0 = performance.now();

  // Tenants, a key each, Zipf-sized invoices (inserted by the owner in one statement).
  const sizes = zipfSizes(TENANTS, INVOICES);
  const tenantIds: string[] = [];
  for (let i = 0; i < TENANTS; i++) tenantIds.push((await db.tenants.create({ slug: `bench-${i}`, name: `Bench ${i}` })).id);
  const store = new ApiKeyStore(db);
  const keyOf = new Map<string, string>();
  const tenantOfKey = new Map<string, string>();
  for (const id of tenantIds) {
    const { key } = await store.create(id, { name: 'bench' });
    keyOf.set(id, key);
    tenantOfKey.set(key, id);
  }
  const owner = db.dangerouslyCrossTenant();
  await owner.query(
    `INSERT INTO invoices (tenant_id, customer, amount_cents, status, issued_at)
     SELECT t.id, 'customer ' || g, (g * 137) % 100000, 'issued', now()
     FROM unnest($1::uuid[], $2::int[]) AS t(id, n), generate_series(1, t.n) AS g`,
    [tenantIds, sizes],
  );
  await owner.query('VACUUM ANALYZE invoices').catch(async () => owner.query('ANALYZE invoices'));
  const total = sizes.reduce((a, b) => a + b, 0);
  const { rows: mixRows } = await owner.query<{ tenant_id: string; id: string }>(`SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT $1`, [SAMPLE]);
  const big = tenantIds[0] as string;
  const { rows: bigRows } = await owner.query<{ id: string }>(`SELECT id FROM invoices WHERE tenant_id = $1 ORDER BY random() LIMIT $2`, [big, SAMPLE]);
  console.log(
    `data: ${TENANTS} tenants, ${total} invoices (Zipf s=1: largest ${sizes[0]}, median ${sizes[Math.floor(TENANTS / 2)]}, smallest ${sizes[TENANTS - 1]}), seeded in ${((performance.now() - t0) / 1000).toFixed(0)} s; ` +
      `mix sample ${mixRows.length} requests over ${new Set(mixRows.map((r) => r.tenant_id)).size} tenants`,
  );

  const rawPool = new pg.Pool({ connectionString: harness.urlOf(dbName), max: db.options.poolSize });
  rawPool.on('error', () => {}); // idle clients are terminated when the harness drops the database
  const servers: Array<{ name: string; app: FastifyInstance; prefix: string }> = [];
  const tw = await tenantwallApp(db);
  if (TARGETS.includes('tenantwall')) servers.push({ name: 'tenantwall', app: tw, prefix: '' });
  if (TARGETS.includes('tw kysely')) servers.push({ name: 'tw kysely', app: tw, prefix: '/k' });
  let service: FastifyInstance | undefined;
  if (TARGETS.includes('service')) {
    service = await buildApp({ db, adminToken: 'bench-admin-token-0123456789', logger: { level: 'info', stream: pino.destination({ dest: '/dev/null', sync: false }) } });
    servers.push({ name: 'service', app: service, prefix: '' });
  }
  servers.push({ name: 'bare', app: bareApp(rawPool, tenantOfKey), prefix: '' });
  const urls = new Map<FastifyInstance, string>();
  for (const s of servers) if (!urls.has(s.app)) urls.set(s.app, await listenLocal(s.app));

  const shapes = [
    { name: `mix: ${TENANTS} Zipf tenants, a key each, ${total} invoices`, rows: mixRows },
    { name: `one tenant: the largest (${sizes[0]} invoices), one key`, rows: bigRows.map((r) => ({ tenant_id: big, id: r.id })) },
  ];
  const load = await LoadGenerator.start();
  try {
    // Same answers everywhere, on a sample of the mix.
    for (const r of mixRows.slice(0, 50)) {
      const headers = { authorization: `Bearer ${keyOf.get(r.tenant_id)}` };
      const bodies = await Promise.all(servers.map((s) => fetch(`${urls.get(s.app)}${s.prefix}/invoices/${r.id}`, { headers }).then((x) => x.text())));
      if (new Set(bodies).size !== 1) {
        console.log(`! the targets disagree on /invoices/${r.id}:\n${servers.map((s, i) => `  ${s.name}: ${bodies[i]}`).join('\n')}`);
        break;
      }
    }
    const parts: Array<Array<{ name: string; perRequest: Map<import('./profile.ts').Part, number> }>> = [];
    for (const shape of shapes) {
      const targets: LoadTarget[] = servers.map((s) => ({
        name: s.name,
        url: urls.get(s.app) as string,
        paths: shape.rows.map((r) => `${s.prefix}/invoices/${r.id}`),
        pathHeaders: shape.rows.map((r) => ({ authorization: `Bearer ${keyOf.get(r.tenant_id)}` })),
      }));
      const c = await compareAlternating(targets, { connections: CONNECTIONS, durationS: DURATION_S, rounds: ROUNDS, warmupS: WARMUP_S, load });
      console.log(`\n${shape.name}: GET /invoices/:id, ${CONNECTIONS} connections, ${ROUNDS} rounds x ${DURATION_S}s after a ${WARMUP_S}s warm-up, alternating`);
      for (const [i, f] of c.figures.entries()) {
        console.log(`  ${f.name.padEnd(11)}: ${describe(f)}`);
        if (c.warmup?.[i]) console.log(`  ${''.padEnd(11)}  cold start (warm-up run): ${c.warmup[i].rps.toFixed(0)} req/s, p99 ${c.warmup[i].p99.toFixed(1)} ms`);
      }
      const base = c.figures[c.figures.length - 1] as TargetFigures;
      for (const [i, f] of c.figures.slice(0, -1).entries()) {
        const r = c.byTarget[i] as { ratios: readonly number[]; median: number };
        const target = f.name === 'service' ? '(informational)' : shape.name.startsWith('mix') ? '(target >= 0.90)' : '(target >= 0.95 tenantwall, >= 0.90 kysely)';
        console.log(`  ${f.name} / bare: median ${r.median.toFixed(2)} ${target}, per round ${Math.min(...r.ratios).toFixed(2)}-${Math.max(...r.ratios).toFixed(2)} [${r.ratios.map((x) => x.toFixed(2)).join(' ')}]   p99 ratio ${(f.p99 / base.p99).toFixed(2)}`);
      }
      // Where the server CPU goes, by part (a profiled run per target; profiling slows it, so not counted above).
      const columns: Array<{ name: string; perRequest: Map<import('./profile.ts').Part, number> }> = [];
      for (const t of targets) {
        const p = await profileParts(async () => (await load.run(t, CONNECTIONS, PROFILE_S)).requests);
        columns.push({ name: t.name, perRequest: p.perRequest });
      }
      console.log(formatParts(columns));
      console.log(`  ${'postgres (all backends, /proc)'.padEnd(48)}${c.figures.map((f) => f.cpu.postgres.toFixed(1).padStart(14)).join('')}`);
      parts.push(columns);
    }
  } finally {
    load.close();
    const closed = await Promise.allSettled([...new Set(servers.map((s) => s.app))].map((a) => a.close()));
    await rawPool.end();
    const failed = closed.find((c) => c.status === 'rejected');
    if (failed) console.log(`! closing a server failed: ${String(failed.reason)}`);
  }
}
