/**
 * HTTP: `GET /invoices/:id` through the whole stack (API key resolution, tenant context, one-round-trip scoped
 * query under forced RLS, TypeBox validation, response serialization, pino logging to /dev/null) against a bare
 * Fastify route in the same process that runs the same SELECT over a plain pg pool with no tenancy at all.
 * Both servers listen on loopback and are driven by autocannon from a separate process (bench/load.ts) in the
 * same run, alternately, so machine noise hits both. Figures are printed, never asserted.
 */
import Fastify from 'fastify';
import pg from 'pg';
import pino from 'pino';
import { buildApp } from '../examples/invoicing-service/src/app.ts';
import { migrations, schema } from '../examples/invoicing-service/src/schema.ts';
import { type BenchHarness, listenLocal } from './harness.ts';
import { type TargetFigures, compareAlternating, describe } from './load.ts';

const INVOICES = 2_000;
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 4);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 6);
const COLS = 'id, customer, customer_id, amount_cents, currency, status, issued_at, created_at, updated_at';

export default async function httpBench(harness: BenchHarness): Promise<void> {
  const db = await harness.createTenantwall(schema, migrations);
  const dbName = new URL(db.options.databaseUrl as string).pathname.slice(1);
  const app = await buildApp({
    db,
    adminToken: 'bench-admin-token-0123456789',
    logger: { level: 'info', stream: pino.destination({ dest: '/dev/null', sync: false }) },
  });
  const tenant = await db.tenants.create({ slug: 'bench', name: 'Bench' });
  const other = await db.tenants.create({ slug: 'other', name: 'Other' });
  const { key } = await app.tenantwall.apiKeys.create(tenant.id, { name: 'bench' });
  const seed = async (tid: string) => {
    const { rows } = await db.forTenant(tid).query<{ id: string }>(
      `INSERT INTO invoices (tenant_id, customer, amount_cents, status, issued_at)
       SELECT $1, 'customer ' || g, (g * 137) % 100000, 'issued', now() FROM generate_series(1, $2::int) g RETURNING id`,
      [tid, INVOICES],
    );
    return rows.map((r) => r.id);
  };
  const ids = await seed(tenant.id);
  await seed(other.id);
  await db.dangerouslyCrossTenant().query('ANALYZE invoices');

  // The baseline: same SELECT, same pool size, no tenant anywhere (superuser connection, so no RLS either).
  const rawPool = new pg.Pool({ connectionString: harness.urlOf(dbName), max: db.options.poolSize });
  // Idle clients are terminated when the harness drops the database: not an error of the run.
  rawPool.on('error', () => {});
  const bare = Fastify({ logger: false });
  bare.get<{ Params: { id: string } }>('/invoices/:id', async (req, reply) => {
    const { rows } = await rawPool.query(`SELECT ${COLS} FROM invoices WHERE id = $1`, [req.params.id]);
    const r = rows[0];
    if (!r) return reply.code(404).send({ error: 'not found' });
    return { ...r, amount_cents: Number(r.amount_cents) };
  });

  const fullUrl = await listenLocal(app);
  const bareUrl = await listenLocal(bare);
  const paths = ids.map((id) => `/invoices/${id}`);

  try {
    // Sanity: both answer 200 with the same row.
    const probe = ids[0] as string;
    const [a, b] = await Promise.all([
      fetch(`${fullUrl}/invoices/${probe}`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.json()),
      fetch(`${bareUrl}/invoices/${probe}`).then((r) => r.json()),
    ]);
    if (JSON.stringify(a) !== JSON.stringify(b)) console.log(`! full stack and bare route disagree:\n  ${JSON.stringify(a)}\n  ${JSON.stringify(b)}`);

    const c = await compareAlternating(
      [
        { name: 'full stack', url: fullUrl, paths, headers: { authorization: `Bearer ${key}` } },
        { name: 'bare route', url: bareUrl, paths },
      ],
      { connections: CONNECTIONS, durationS: DURATION_S, rounds: ROUNDS, warmupS: 3 },
    );
    console.log(`GET /invoices/:id, ${CONNECTIONS} connections, ${ROUNDS} rounds x ${DURATION_S}s each, alternating (autocannon in a separate process, loopback)`);
    for (const f of c.figures) console.log(`  ${f.name} : ${describe(f)}`);
    const [full, base] = c.figures as [TargetFigures, TargetFigures];
    console.log(`  throughput ratio full/bare: median ${c.median.toFixed(2)} (target >= 0.80), per round ${c.ratios.map((r) => r.toFixed(2)).join(' ')}   p99 ratio full/bare: ${(full.p99 / base.p99).toFixed(2)}`);
  } finally {
    // Every server closes even if one fails, and the raw pool ends before the harness drops the database.
    const closed = await Promise.allSettled([app.close(), bare.close()]);
    await rawPool.end();
    const failed = closed.find((c) => c.status === 'rejected');
    if (failed) console.log(`! closing a server failed: ${String(failed.reason)}`);
  }
}
