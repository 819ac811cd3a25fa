/**
 * Metering:
 * 1. Ingestion: batches of 1000 usage events through `recordBatch` (one INSERT ... SELECT FROM unnest ...
 *    ON CONFLICT DO NOTHING RETURNING per batch), 10% of every batch being retries of already stored ids, so the
 *    dedup path is exercised. Reported as events/s (stored + deduplicated), next to a baseline of the same batches
 *    as bare INSERTs on the owner connection (the database's own cost), as a ratio.
 * 2. Usage query cost: rollups are computed from the raw events at query time; the month of one tenant by day.
 * 3. Request cost: `GET /invoices/:id` of the reference service with metering on (rate limits of the plan,
 *    quota headers, requests counted in memory and written as `api_requests` events per minute) vs off, same database, same process,
 *    alternating autocannon rounds from a separate process (bench/load.ts). Figures are printed, never asserted; the machine is shared, so they are noisy.
 */
import pino from 'pino';
import { buildApp } from '../examples/invoicing-service/src/app.ts';
import { meteringSpec } from '../examples/invoicing-service/src/metering.ts';
import { migrations, schema } from '../examples/invoicing-service/src/schema.ts';
import { Metering, type MeteringSpec, type TenantId } from '../src/index.ts';
import { type BenchHarness, listenLocal, measureWithCpu } from './harness.ts';
import { compareAlternating, describe } from './load.ts';

const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 5000);
const BATCH = 1000;
const TENANTS = 50;
const CONNECTIONS = Number(process.env.BENCH_HTTP_CONNECTIONS ?? 32);
const DURATION_S = Number(process.env.BENCH_HTTP_DURATION_S ?? 4);
const ROUNDS = Number(process.env.BENCH_HTTP_ROUNDS ?? 6);

// The service's meters, plus a plan whose limits the benchmark never reaches: refusals would be cheaper than
// admissions and flatter the "on" figure.
const spec: MeteringSpec = {
  ...meteringSpec,
  meters: [...meteringSpec.meters, { name: 'tokens', aggregation: 'sum' }],
  plans: {
    ...meteringSpec.plans,
    bench: {
      rateLimits: [
        { scope: 'tenant', per: 'second', limit: 1_000_000 },
        { scope: 'apiKey', per: 'minute', limit: 100_000_000 },
      ],
      quotas: { invoices: { meter: 'invoices.created', limit: 1_000_000, period: 'month', enforcement: 'hard' } },
    },
  },
};

function fmt(n: number): string {
  return Math.round(n).toLocaleString('en-US');
}

export default async function meteringBench(harness: BenchHarness): Promise<void> {
  const db = await harness.createTenantwall(schema, migrations, { poolSize: 12 });
  const metering = new Metering(db, { spec });
  const tenants: TenantId[] = [];
  for (let i = 0; i < TENANTS; i++) tenants.push((await db.tenants.create({ slug: `m${i}`, name: `M${i}` })).id);

  // ---- 1. ingestion
  const next = new Map<TenantId, number>();
  const now = Date.now();
  const batchFor = (tid: TenantId) => {
    const start = next.get(tid) ?? 0;
    next.set(tid, start + BATCH - BATCH / 10);
    // The first tenth of each batch repeats the last ids of the previous batch: retries, answered as duplicates.
    return Array.from({ length: BATCH }, (_, i) => ({
      event_id: `ev-${start - BATCH / 10 + i}`,
      meter: 'tokens',
      quantity: (i % 7) + 1,
      timestamp: new Date(now - ((start + i) % 86_400) * 1000).toISOString(),
      properties: { model: i % 2 === 0 ? 'small' : 'large' },
    }));
  };
  let accepted = 0;
  let duplicates = 0;
  await metering.recordBatch(tenants[0] as TenantId, batchFor(tenants[0] as TenantId)); // warm-up
  // CPU per event of this process (Node.js: building the batch, validating, binding) and of this database's
  // PostgreSQL backends, for recordBatch and for the baseline below.
  const database = new URL(db.options.databaseUrl as string).pathname.slice(1);
  const cpuPerEvent = (m: { ops: number; nodeUs: number; pgUs: number }) =>
    `CPU per event: node ${(m.nodeUs / (m.ops * BATCH)).toFixed(1)} µs, postgres ${(m.pgUs / (m.ops * BATCH)).toFixed(1)} µs`;
  const r = await measureWithCpu(
    async (i) => {
      const tid = tenants[i % TENANTS] as TenantId;
      const res = await metering.recordBatch(tid, batchFor(tid));
      accepted += res.accepted;
      duplicates += res.duplicates;
    },
    { durationMs: DURATION_MS, concurrency: 8 },
    database,
  );
  const eventsPerSec = (r.opsPerSec * BATCH);
  console.log(`ingestion: batches of ${BATCH} (10% retried ids), 8 concurrent writers, ${TENANTS} tenants, ${DURATION_MS / 1000}s`);
  console.log(`  ${fmt(eventsPerSec)} events/s (target >= 50,000)   ${fmt(r.opsPerSec)} batches/s   batch p50 ${r.p50.toFixed(1)} ms  p99 ${r.p99.toFixed(1)} ms`);
  console.log(`  stored ${fmt(accepted)}, answered duplicate ${fmt(duplicates)}; ${cpuPerEvent(r)}`);
  // Baseline in the same run: the same batches as one bare `INSERT ... SELECT FROM unnest ... ON CONFLICT DO
  // NOTHING` each, on the owner connection, already in column arrays (no validation, no tenant scope, no registry
  // check, no per-event results): what the database alone costs for this write. The machine is shared, so only
  // the ratio of the two, measured minutes apart at most, means something.
  const owner = db.dangerouslyCrossTenant();
  const bare = await measureWithCpu(
    async (i) => {
      const tid = tenants[i % TENANTS] as TenantId;
      const b = batchFor(tid);
      await owner.query(
        `INSERT INTO tw_usage_events (tenant_id, event_id, meter, quantity, occurred_at, properties)
         SELECT $1, u.e, u.m, u.q, u.t, u.p FROM unnest($2::text[], $3::text[], $4::numeric[], $5::timestamptz[], $6::jsonb[]) AS u(e, m, q, t, p)
         ON CONFLICT (tenant_id, event_id) DO NOTHING`,
        [tid, b.map((e) => e.event_id), b.map((e) => e.meter), b.map((e) => String(e.quantity)), b.map((e) => e.timestamp), b.map((e) => JSON.stringify(e.properties))],
      );
    },
    { durationMs: DURATION_MS, concurrency: 8 },
    database,
  );
  console.log(`  baseline, bare unnest insert on the owner connection: ${fmt(bare.opsPerSec * BATCH)} events/s; recordBatch / baseline ${(r.opsPerSec / bare.opsPerSec).toFixed(2)}; ${cpuPerEvent(bare)}`);

  // ---- 2. query cost (aggregation from raw events)
  const big = tenants[0] as TenantId;
  const count = Number((await db.forTenant(big).query(`SELECT count(*) AS n FROM tw_usage_events WHERE tenant_id = $1`, [big])).rows[0]?.n);
  await db.dangerouslyCrossTenant().query('ANALYZE tw_usage_events');
  const times: number[] = [];
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    await metering.usage(big, { meters: ['tokens'], granularity: 'day', from: new Date(now - 31 * 86_400_000), to: new Date(now + 60_000) });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  console.log(`usage query: one tenant's month by day over ${fmt(count)} raw events: median ${times[3]?.toFixed(1)} ms (aggregated on query, no rollup table)`);

  // ---- 3. request cost: metering + quotas on vs off
  const logger = { level: 'info', stream: pino.destination({ dest: '/dev/null', sync: false }) };
  const off = await buildApp({ db, adminToken: 'bench-admin-token-0123456789', logger });
  const on = await buildApp({ db, adminToken: 'bench-admin-token-0123456789', logger, metering });
  const tenant = tenants[1] as TenantId;
  await metering.setPlan(tenant, 'bench');
  const { key } = await on.tenantwall.apiKeys.create(tenant, { name: 'bench' });
  const { rows } = await db.forTenant(tenant).query<{ id: string }>(
    `INSERT INTO invoices (tenant_id, customer, amount_cents, status, issued_at)
     SELECT $1, 'customer ' || g, g * 100, 'issued', now() FROM generate_series(1, 2000) g RETURNING id`,
    [tenant],
  );
  const ids = rows.map((x) => x.id);
  await db.dangerouslyCrossTenant().query('ANALYZE invoices');
  const offUrl = await listenLocal(off);
  const onUrl = await listenLocal(on);
  const paths = ids.map((id) => `/invoices/${id}`);
  const headers = { authorization: `Bearer ${key}` };
  try {
    const probe = await fetch(`${onUrl}/invoices/${ids[0]}`, { headers });
    if (probe.status !== 200 || !probe.headers.get('x-quota-remaining')) console.log(`! metered app answered ${probe.status} without quota headers`);
    const c = await compareAlternating(
      [
        { name: 'metering on ', url: onUrl, paths, headers },
        { name: 'metering off', url: offUrl, paths, headers },
      ],
      { connections: CONNECTIONS, durationS: DURATION_S, rounds: ROUNDS, warmupS: 2 },
    );
    await metering.flush();
    const recorded = Number((await db.forTenant(tenant).query(`SELECT coalesce(sum(quantity), 0) AS n FROM tw_usage_events WHERE tenant_id = $1 AND meter = 'api_requests'`, [tenant])).rows[0]?.n);
    console.log(`GET /invoices/:id of the reference service, ${CONNECTIONS} connections, ${ROUNDS} rounds x ${DURATION_S}s each, alternating (autocannon in a separate process, loopback)`);
    for (const f of c.figures) console.log(`  ${f.name}: ${describe(f)}`);
    console.log(`  ${fmt(recorded)} requests counted on api_requests`);
    console.log(`  throughput ratio on/off: median ${c.median.toFixed(2)} (target >= 0.90), per round ${c.ratios.map((r) => r.toFixed(2)).join(' ')}`);
  } finally {
    await on.close();
    await off.close();
    await metering.close();
  }
}
