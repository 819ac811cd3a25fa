/**
 * Core data path: a tenant-scoped primary-key lookup and single-row insert through `forTenant(id)` against the
 * same statement sent bare through the pg driver (same app role, same pool size) on an identical copy of the
 * table without RLS. Rounds alternate between variants so drift on a shared 2-core machine hits all of them.
 */
import { createGuard, defineSchema, tenantTable, type Migration, type TenantId } from '../src/index.ts';
import { type BenchHarness, measure, postgresCpu, postgresCpuSince } from './harness.ts';

export const schema = defineSchema({
  tables: [
    tenantTable({
      name: 'invoices',
      columns: {
        id: { type: 'uuid', default: 'gen_random_uuid()' },
        customer: { type: 'text' },
        amount_cents: { type: 'bigint' },
      },
    }),
  ],
});
export const migrations: Migration[] = [
  { version: 1, name: 'init', sql: (ctx) => ctx.createSchema() },
  {
    version: 2,
    name: 'baseline copy without RLS',
    // Same shape, keys and registry foreign key as invoices; only row-level security and tenant scoping differ.
    sql: (ctx) => `CREATE TABLE invoices_plain (LIKE invoices INCLUDING ALL);
ALTER TABLE invoices_plain ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id);
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices_plain TO ${ctx.appRole};`,
  },
];

const PLAN_LIMITS = Object.freeze({ statementTimeoutMs: 30_000, lockTimeoutMs: 5_000, idleInTransactionSessionTimeoutMs: 60_000, workMem: '4MB' });
const TENANTS = 100;
const PER_TENANT = 1000;
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const CONCURRENCY = 16;
const POOL = 8;

export type Variant = { name: string; op: (i: number) => Promise<unknown> };

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/**
 * Runs every variant once per round, one after the other, and reports per variant the median over rounds of
 * its throughput, latencies and ratio to the first variant measured in the SAME round: on a shared 2-core
 * machine throughput drifts by tens of percent between rounds, far more than between variants within one.
 */
export async function compare(title: string, variants: Variant[]): Promise<Map<string, { ops: number; ratio: number }>> {
  const samples = new Map<string, Array<{ opsPerSec: number; p50: number; p99: number; ratio: number; pgUs: number }>>();
  for (const v of variants) await measure(v.op, { durationMs: 500, concurrency: CONCURRENCY }); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    let base = 0;
    for (const v of variants) {
      const pg0 = postgresCpu();
      const m = await measure(v.op, { durationMs: DURATION_MS, concurrency: CONCURRENCY });
      const pgUs = postgresCpuSince(pg0) / m.ops;
      if (base === 0) base = m.opsPerSec;
      samples.set(v.name, [...(samples.get(v.name) ?? []), { ...m, ratio: m.opsPerSec / base, pgUs }]);
    }
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const out = new Map<string, { ops: number; ratio: number }>();
  console.log(`\n${title} (median of ${ROUNDS} rounds x ${DURATION_MS} ms, ${CONCURRENCY} workers, pool ${POOL}; ratio = vs the first line in the same round; pg = CPU time of the PostgreSQL processes per operation)`);
  for (const v of variants) {
    const s = samples.get(v.name) ?? [];
    const ratios = s.map((x) => x.ratio);
    const ops = median(s.map((x) => x.opsPerSec));
    const ratio = median(ratios);
    out.set(v.name, { ops, ratio });
    console.log(
      `  ${v.name.padEnd(50)} ${fmt(ops).padStart(8)} ops/s  p50 ${fmt(median(s.map((x) => x.p50)), 3)} ms  p99 ${fmt(median(s.map((x) => x.p99)), 3)} ms  ratio ${fmt(ratio, 2)} (${fmt(Math.min(...ratios), 2)}-${fmt(Math.max(...ratios), 2)})  pg ${fmt(median(s.map((x) => x.pgUs)))} µs`,
    );
  }
  return out;
}

export default async function run(h: BenchHarness): Promise<void> {
  // The recommended setup: the guard on, so plan: 'auto' (the default) can prove key lookups plan-independent.
  const db = await h.createTenantwall(schema, migrations, { poolSize: POOL, guard: createGuard(schema) });
  const explicitDb = await h.createTenantwall(schema, migrations, { poolSize: POOL, scopeMode: 'explicit' });
  const uncachedDb = await h.createTenantwall(schema, migrations, { poolSize: POOL, statementCacheSize: 0 });
  // Per-plan database limits (issue 17): every limit set, from an async provider like planLimits(metering).
  const limitsDb = await h.createTenantwall(schema, migrations, { poolSize: POOL, guard: createGuard(schema), limits: async () => PLAN_LIMITS });
  const tenants: TenantId[] = [];
  for (let i = 0; i < TENANTS; i++) tenants.push((await db.tenants.create({ slug: `t${i}`, name: `T${i}` })).id);
  for (const other of [explicitDb, uncachedDb, limitsDb]) {
    for (const [i, id] of tenants.entries()) await other.tenants.create({ slug: `t${i}`, name: `T${i}`, id });
  }
  const admin = db.dangerouslyCrossTenant();
  for (const target of [db, explicitDb, uncachedDb, limitsDb]) {
    const a = target.dangerouslyCrossTenant();
    await a.query(`INSERT INTO invoices (tenant_id, customer, amount_cents)
      SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, ${PER_TENANT}) g`);
    await a.query('INSERT INTO invoices_plain SELECT * FROM invoices');
    await a.query('VACUUM ANALYZE invoices');
    await a.query('VACUUM ANALYZE invoices_plain');
  }
  const keys = (await admin.query<{ tenant_id: TenantId; id: string }>('SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT 5000')).rows;
  console.log(`data: ${TENANTS} tenants x ${PER_TENANT} invoices; lookups over 5,000 random keys`);

  const bare = db.dangerouslyRawAppPool();
  const lookup = 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2';
  const key = (i: number) => keys[i % keys.length] as { tenant_id: TenantId; id: string };

  const lookups = await compare('primary-key lookup', [
    { name: 'bare driver, no tenancy (invoices_plain)', op: (i) => bare.query('SELECT * FROM invoices_plain WHERE tenant_id = $1 AND id = $2', [key(i).tenant_id, key(i).id]) },
    { name: 'forTenant(id).query, default (guard, plan auto)', op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
    { name: "forTenant(id).query, plan: 'custom'", op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id], { plan: 'custom' }) },
    { name: 'forTenant(id).query, no statement cache', op: (i) => uncachedDb.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
    { name: 'forTenant(id).query, explicit BEGIN/SET LOCAL', op: (i) => explicitDb.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
    {
      // What wiring it by hand usually looks like: four round trips.
      name: 'by hand: BEGIN; set_config; query; COMMIT (4 RTs)',
      op: async (i) => {
        const c = await bare.connect();
        try {
          await c.query('BEGIN');
          await c.query(`SELECT set_config('tenantwall.tenant_id', $1, true)`, [key(i).tenant_id]);
          await c.query(lookup, [key(i).tenant_id, key(i).id]);
          await c.query('COMMIT');
        } finally {
          c.release();
        }
      },
    },
  ]);
  console.log(`  => scoped lookup (default) / bare lookup = ${fmt(lookups.get('forTenant(id).query, default (guard, plan auto)')?.ratio ?? 0, 2)} (target >= 1.00); forced custom plans ${fmt(lookups.get("forTenant(id).query, plan: 'custom'")?.ratio ?? 0, 2)}`);

  const limited = await compare('per-plan database limits on the primary-key lookup', [
    { name: 'forTenant(id).query, no limits (guard, plan auto)', op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
    { name: 'forTenant(id).query, 4 limits from a provider', op: (i) => limitsDb.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
    { name: 'forTenant(id, { limits }).query, 4 limits', op: (i) => db.forTenant(key(i).tenant_id, { limits: PLAN_LIMITS }).query(lookup, [key(i).tenant_id, key(i).id]) },
  ]);
  const cost = (name: string) => fmt((1 - (limited.get(name)?.ratio ?? 0)) * 100, 1);
  console.log(`  => cost of per-plan limits: provider ${cost('forTenant(id).query, 4 limits from a provider')}%, forTenant option ${cost('forTenant(id, { limits }).query, 4 limits')}% (target < 3%)`);

  let n = 0;
  const insert = 'INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, $2, $3)';
  const inserts = await compare('single-row insert', [
    { name: 'bare driver, no tenancy (invoices_plain)', op: (i) => bare.query('INSERT INTO invoices_plain (tenant_id, customer, amount_cents) VALUES ($1, $2, $3)', [key(i).tenant_id, `n${n++}`, i]) },
    { name: 'forTenant(id).query, default (guard, plan auto)', op: (i) => db.forTenant(key(i).tenant_id).query(insert, [key(i).tenant_id, `n${n++}`, i]) },
    { name: "forTenant(id).query, plan: 'custom'", op: (i) => db.forTenant(key(i).tenant_id).query(insert, [key(i).tenant_id, `n${n++}`, i], { plan: 'custom' }) },
    { name: 'forTenant(id).query, no statement cache', op: (i) => uncachedDb.forTenant(key(i).tenant_id).query(insert, [key(i).tenant_id, `n${n++}`, i]) },
  ]);
  console.log(`  => scoped insert (default) / bare insert = ${fmt(inserts.get('forTenant(id).query, default (guard, plan auto)')?.ratio ?? 0, 2)} (target >= 1.00)`);
}
