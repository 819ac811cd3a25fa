/**
 * Application guard: cost of verifying a statement (uncached = parse + analysis, cached = the per-call check),
 * and the end-to-end throughput of a guarded tenant point lookup against the unguarded scoped lookup
 * (`db.forTenant(id).query`) on the same database, rounds alternating between variants.
 */
import type { ColumnType } from 'kysely';
import { Tenantwall, createGuard, createTenantKysely, defineSchema, tenantTable, type Migration, type TenantId } from '../src/index.ts';
import { type BenchHarness, measure } from './harness.ts';

const schema = defineSchema({
  tables: [
    tenantTable({ name: 'customers', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, email: { type: 'text' } } }),
    tenantTable({
      name: 'invoices',
      columns: {
        id: { type: 'uuid', default: 'gen_random_uuid()' },
        customer: { type: 'text' },
        amount_cents: { type: 'bigint' },
        customer_id: { type: 'uuid', nullable: true },
      },
    }),
  ],
});
const migrations: Migration[] = [{ version: 1, name: 'init', sql: (ctx) => ctx.createSchema() }];

interface DB {
  invoices: { tenant_id: ColumnType<string, never, never>; id: string; customer: string; amount_cents: string; customer_id: string | null };
}

const TENANTS = 50;
const PER_TENANT = 1000;
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const CONCURRENCY = 16;
const POOL = 8;

const STATEMENTS: Record<string, string> = {
  'point lookup': 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2',
  'join + sub-query': `SELECT i.id, c.email FROM invoices i JOIN customers c ON c.tenant_id = i.tenant_id AND c.id = i.customer_id
    WHERE i.tenant_id = $1 AND i.amount_cents > (SELECT avg(amount_cents) FROM invoices x WHERE x.tenant_id = $1)`,
  'kysely-style quoted insert': 'insert into "invoices" ("tenant_id", "customer", "amount_cents") values ($1, $2, $3) returning *',
};

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function verificationCost(): void {
  console.log('\nverification cost per statement (single thread)');
  const tenant = '00000000-0000-4000-8000-000000000001' as TenantId;
  for (const [name, text] of Object.entries(STATEMENTS)) {
    const params = [tenant, 'x', 1];
    // Uncached: a new text each time (a trailing comment changes the text, not the parse tree).
    const cold = createGuard(schema, { cacheSize: 100_000 });
    const n = 2000;
    for (let i = 0; i < 300; i++) cold.check(`${text} -- warm ${i}`, params, tenant); // JIT warm-up
    let t0 = performance.now();
    for (let i = 0; i < n; i++) cold.check(`${text} -- ${i}`, params, tenant);
    const uncached = ((performance.now() - t0) * 1000) / n;
    const hot = createGuard(schema);
    hot.check(text, params, tenant);
    const m = 1_000_000;
    t0 = performance.now();
    for (let i = 0; i < m; i++) hot.check(text, params, tenant);
    const cached = ((performance.now() - t0) * 1000) / m;
    console.log(`  ${name.padEnd(28)} uncached ${fmt(uncached, 1).padStart(7)} us   cached ${fmt(cached, 3).padStart(7)} us`);
  }
}

export default async function run(h: BenchHarness): Promise<void> {
  verificationCost();

  const db = await h.createTenantwall(schema, migrations, { poolSize: POOL });
  const guard = createGuard(schema);
  // The same database and roles, with the guard configured: what an application gets from connect({ guard }).
  const guarded = await Tenantwall.connect({
    schema,
    databaseUrl: db.options.databaseUrl as string,
    manageRoles: false,
    appPassword: db.options.appPassword,
    poolSize: POOL,
    guard,
  });
  try {
    const tenants: TenantId[] = [];
    for (let i = 0; i < TENANTS; i++) tenants.push((await db.tenants.create({ slug: `t${i}`, name: `T${i}` })).id);
    const admin = db.dangerouslyCrossTenant();
    await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, ${PER_TENANT}) g`);
    await admin.query('VACUUM ANALYZE invoices');
    const keys = (await admin.query<{ tenant_id: TenantId; id: string }>('SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT 5000')).rows;
    const key = (i: number) => keys[i % keys.length] as { tenant_id: TenantId; id: string };
    const lookup = STATEMENTS['point lookup'] as string;
    const kysely = createTenantKysely<DB>(guarded);

    const variants: Array<{ name: string; op: (i: number) => Promise<unknown> }> = [
      { name: 'unguarded forTenant(id).query', op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      { name: 'guarded forTenant(id).query (cached check)', op: (i) => guarded.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      {
        // The implicit tenant, as in a request handler; the plugin adds the predicate.
        name: 'guarded Kysely + plugin (implicit tenant)',
        op: (i) => guarded.forTenant(key(i).tenant_id).run(() => kysely.selectFrom('invoices').selectAll().where('id', '=', key(i).id).execute()),
      },
    ];

    const samples = new Map<string, number[]>();
    for (const v of variants) await measure(v.op, { durationMs: 500, concurrency: CONCURRENCY });
    for (let r = 0; r < ROUNDS; r++) {
      for (const v of variants) {
        const m = await measure(v.op, { durationMs: DURATION_MS, concurrency: CONCURRENCY });
        samples.set(v.name, [...(samples.get(v.name) ?? []), m.opsPerSec]);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    console.log(`\npoint lookup, ${TENANTS} tenants x ${PER_TENANT} invoices (median of ${ROUNDS} rounds x ${DURATION_MS} ms, ${CONCURRENCY} workers, pool ${POOL})`);
    const base = median(samples.get(variants[0]?.name as string) ?? []);
    for (const v of variants) {
      const ops = median(samples.get(v.name) ?? []);
      console.log(`  ${v.name.padEnd(44)} ${fmt(ops).padStart(8)} ops/s  ratio ${fmt(ops / base, 3)}`);
    }
    const ratio = median(samples.get(variants[1]?.name as string) ?? []) / base;
    console.log(`  => guarded / unguarded scoped lookup = ${fmt(ratio, 3)} (target: cached check adds < 2%, i.e. >= 0.98)`);
  } finally {
    await guarded.close();
  }
}
