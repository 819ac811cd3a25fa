/**
 * Application guard: cost of verifying a statement (uncached = parse + analysis, cached = the per-call check),
 * and the end-to-end throughput of a guarded tenant point lookup against the unguarded scoped lookup
 * (`db.forTenant(id).query`) on the same database, rounds alternating between variants. The Kysely rows are
 * read against the guarded raw lookup, the like-for-like baseline: with the guard, `plan: 'auto'` runs a
 * proven key lookup with a generic plan, raw or from Kysely, which the unguarded instance cannot. A Kysely row
 * with the implicit tenant is also read against the raw lookup with the implicit tenant (`current().query`
 * inside `forTenant(id).run`): both pay for entering the AsyncLocalStorage scope, which a request handler pays
 * once per request whatever it queries with. Plain Kysely (its own PostgresDialect on the bare pool) is read against
 * the bare driver on a copy of the table without RLS: what Kysely costs with no tenancy at all.
 */
import { type ColumnType, Kysely, PostgresDialect } from 'kysely';
import { Tenantwall, createGuard, defineSchema, tenantTable, type Migration, type TenantId } from '../src/index.ts';
import { type Param, createTenantKysely, prepareQuery } from '../src/kysely/index.ts';
import { type BenchHarness, measure, measureWithCpu } from './harness.ts';

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
const migrations: Migration[] = [
  { version: 1, name: 'init', sql: (ctx) => ctx.createSchema() },
  {
    version: 2,
    name: 'baseline copy without RLS',
    // For plain Kysely on the bare driver: same shape and keys as invoices, no row-level security, no scoping.
    sql: (ctx) => `CREATE TABLE invoices_plain (LIKE invoices INCLUDING ALL);
GRANT SELECT ON invoices_plain TO ${ctx.appRole};`,
  },
];

interface DB {
  invoices: { tenant_id: ColumnType<string, never, never>; id: string; customer: string; amount_cents: string; customer_id: string | null };
}
interface PlainDB {
  invoices_plain: { tenant_id: string; id: string; customer: string; amount_cents: string; customer_id: string | null };
}

const TENANTS = 50;
const PER_TENANT = 1000;
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 3000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
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

/** Returns the cached check cost of the point lookup (µs), for the end-to-end comparison. */
function verificationCost(): number {
  console.log('\nverification cost per statement (single thread)');
  const tenant = '00000000-0000-4000-8000-000000000001' as TenantId;
  const params = [tenant, 'x', 1];
  // JIT warm-up over every shape, so the first row is not charged for it.
  const warm = createGuard(schema, { cacheSize: 100_000 });
  for (let i = 0; i < 500; i++) for (const text of Object.values(STATEMENTS)) warm.check(`${text} -- warm ${i}`, params, tenant);
  let lookupCached = 0;
  for (const [name, text] of Object.entries(STATEMENTS)) {
    // Uncached: a new text each time (a trailing comment changes the text, not the parse tree).
    const cold = createGuard(schema, { cacheSize: 100_000 });
    const n = 2000;
    let t0 = performance.now();
    for (let i = 0; i < n; i++) cold.check(`${text} -- ${i}`, params, tenant);
    const uncached = ((performance.now() - t0) * 1000) / n;
    const hot = createGuard(schema);
    hot.check(text, params, tenant);
    const m = 1_000_000;
    t0 = performance.now();
    for (let i = 0; i < m; i++) hot.check(text, params, tenant);
    const cached = ((performance.now() - t0) * 1000) / m;
    if (name === 'point lookup') lookupCached = cached;
    console.log(`  ${name.padEnd(28)} uncached ${fmt(uncached, 1).padStart(7)} us   cached ${fmt(cached, 3).padStart(7)} us`);
  }
  return lookupCached;
}

export default async function run(h: BenchHarness): Promise<void> {
  await createGuard(schema).ready(); // the parser loads once per process
  const cachedUs = verificationCost();

  const seeded = await h.createTenantwall(schema, migrations, { poolSize: POOL });
  // Two fresh instances on the same database and roles, created alike, one with the guard: the seeding
  // instance's warm pool must not favour either side.
  const connect = (guard?: ReturnType<typeof createGuard>) =>
    Tenantwall.connect({
      schema,
      databaseUrl: seeded.options.databaseUrl as string,
      manageRoles: false,
      appPassword: seeded.options.appPassword,
      poolSize: POOL,
      ...(guard ? { guard } : {}),
    });
  const db = await connect();
  const guarded = await connect(createGuard(schema));
  // A second unguarded instance: its ratio to the first shows how much of any difference is noise.
  const control = await connect();
  try {
    const tenants: TenantId[] = [];
    for (let i = 0; i < TENANTS; i++) tenants.push((await seeded.tenants.create({ slug: `t${i}`, name: `T${i}` })).id);
    const admin = seeded.dangerouslyCrossTenant();
    await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, ${PER_TENANT}) g`);
    await admin.query('INSERT INTO invoices_plain SELECT * FROM invoices');
    await admin.query('VACUUM ANALYZE invoices');
    await admin.query('VACUUM ANALYZE invoices_plain');
    const keys = (await admin.query<{ tenant_id: TenantId; id: string }>('SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT 5000')).rows;
    const key = (i: number) => keys[i % keys.length] as { tenant_id: TenantId; id: string };
    const lookup = STATEMENTS['point lookup'] as string;
    const kysely = createTenantKysely<DB>(guarded);
    const kyselyFixed = new Map(tenants.map((t) => [t, createTenantKysely<DB>(guarded, { tenantId: t })]));
    const byId = prepareQuery(kysely, (k, param: Param<{ id: string }>) => k.selectFrom('invoices').selectAll().where('id', '=', param('id')));

    // Each Kysely variant names its like-for-like raw query (`vs`): the same tenant context (explicit handle or
    // the implicit AsyncLocalStorage scope, which a request handler has whether it uses Kysely or SQL) and the same
    // statement through the guard. The issue's own baseline, the explicit raw query, is printed for every one too.
    // Kysely's own cost, without tenantwall: plain Kysely (its PostgresDialect) on the bare driver's pool, per call,
    // against the same lookup sent by the bare driver (a table without RLS). What tenantwall's Kysely rows lose
    // to their raw query beyond this is tenantwall's.
    const bare = db.dangerouslyRawAppPool();
    const plainKysely = new Kysely<PlainDB>({ dialect: new PostgresDialect({ pool: bare }) });
    const BARE = 'bare driver, no tenancy (invoices_plain)';
    const RAW = 'guarded forTenant(id).query (cached check)';
    const RAW_IMPLICIT = 'guarded current().query, implicit tenant';
    const variants: Array<{ name: string; op: (i: number) => Promise<unknown>; vs?: string }> = [
      { name: 'unguarded forTenant(id).query', op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      { name: RAW, op: (i) => guarded.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      { name: 'control: unguarded, second instance', op: (i) => control.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      { name: RAW_IMPLICIT, op: (i) => guarded.forTenant(key(i).tenant_id).run(() => guarded.current().query(lookup, [key(i).tenant_id, key(i).id])) },
      { name: BARE, op: (i) => bare.query('SELECT * FROM invoices_plain WHERE tenant_id = $1 AND id = $2', [key(i).tenant_id, key(i).id]) },
      {
        name: 'plain Kysely, no tenancy (invoices_plain)',
        vs: BARE,
        op: (i) => plainKysely.selectFrom('invoices_plain').selectAll().where('tenant_id', '=', key(i).tenant_id).where('id', '=', key(i).id).execute(),
      },
      {
        name: 'guarded Kysely + plugin, explicit tenant',
        vs: RAW,
        op: (i) => (kyselyFixed.get(key(i).tenant_id) as typeof kysely).selectFrom('invoices').selectAll().where('id', '=', key(i).id).execute(),
      },
      {
        // The implicit tenant, as in a request handler: AsyncLocalStorage on every promise Kysely creates.
        name: 'guarded Kysely + plugin, implicit tenant',
        vs: RAW_IMPLICIT,
        op: (i) => guarded.forTenant(key(i).tenant_id).run(() => kysely.selectFrom('invoices').selectAll().where('id', '=', key(i).id).execute()),
      },
      {
        // Built, scoped and compiled once (prepareQuery, docs/guard.md), run on the tenant's own Kysely instance.
        name: 'guarded Kysely prepareQuery, explicit tenant',
        vs: RAW,
        op: (i) => byId.execute({ id: key(i).id }, kyselyFixed.get(key(i).tenant_id)),
      },
      {
        name: 'guarded Kysely prepareQuery, implicit tenant',
        vs: RAW_IMPLICIT,
        op: (i) => guarded.forTenant(key(i).tenant_id).run(() => byId.execute({ id: key(i).id })),
      },
    ];

    // CPU per operation besides throughput: on a machine shared with other work, throughput follows whatever
    // else runs, while the CPU this process (Node.js) and this database's backends spend per lookup does not as much.
    const database = new URL(seeded.options.databaseUrl as string).pathname.slice(1);
    const samples = new Map<string, Array<{ ops: number; p50: number; nodeUs: number; pgUs: number }>>();
    for (const v of variants) await measure(v.op, { durationMs: 500, concurrency: CONCURRENCY });
    for (let r = 0; r < ROUNDS; r++) {
      // Rotate the order each round so that drift on a shared machine does not favour one variant.
      for (let j = 0; j < variants.length; j++) {
        const v = variants[(r + j) % variants.length] as (typeof variants)[number];
        const m = await measureWithCpu(v.op, { durationMs: DURATION_MS, concurrency: CONCURRENCY }, database);
        samples.set(v.name, [...(samples.get(v.name) ?? []), { ops: m.opsPerSec, p50: m.p50, nodeUs: m.nodeUs / m.ops, pgUs: m.pgUs / m.ops }]);
      }
    }
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
    console.log(`\npoint lookup, ${TENANTS} tenants x ${PER_TENANT} invoices (median of ${ROUNDS} rounds x ${DURATION_MS} ms, ${CONCURRENCY} workers, pool ${POOL})`);
    const opsOf = (name: string) => median((samples.get(name) ?? []).map((x) => x.ops));
    const base = opsOf(variants[0]?.name as string);
    for (const v of variants) {
      const s = samples.get(v.name) ?? [];
      const ops = median(s.map((x) => x.ops));
      const cpu = `  CPU/op node ${fmt(median(s.map((x) => x.nodeUs)), 1)} us + postgres ${fmt(median(s.map((x) => x.pgUs)), 1)} us`;
      console.log(`  ${v.name.padEnd(46)} ${fmt(ops).padStart(8)} ops/s  p50 ${fmt(median(s.map((x) => x.p50)), 3)} ms  ratio ${fmt(ops / base, 3)}${cpu}`);
    }
    // Per round (same round, adjacent in time), each Kysely row over its like-for-like raw query and over the
    // explicit raw query; and the CPU-bound ratio (the raw query's CPU per op over this one's: what throughput
    // would follow where CPU is the limit).
    const cpuOf = (name: string) => median((samples.get(name) ?? []).map((x) => x.nodeUs + x.pgUs));
    const perRound = (name: string, over: string) => (samples.get(name) ?? []).map((x, r) => x.ops / ((samples.get(over) ?? [])[r]?.ops ?? NaN));
    const range = (xs: number[]) => `${fmt(median(xs), 3)} (rounds ${fmt(Math.min(...xs), 2)}-${fmt(Math.max(...xs), 2)})`;
    console.log(`  => ${RAW_IMPLICIT} / ${RAW}: ${range(perRound(RAW_IMPLICIT, RAW))}, CPU-bound ${fmt(cpuOf(RAW) / cpuOf(RAW_IMPLICIT), 3)}`);
    for (const v of variants.filter((x) => x.vs !== undefined)) {
      const vs = v.vs as string;
      const likeForLike = `; / ${RAW}: ${range(perRound(v.name, RAW))}`;
      const over = vs === RAW ? 'guarded raw, explicit tenant (target >= 0.95)' : vs === RAW_IMPLICIT ? 'guarded raw, implicit tenant (target >= 0.95)' : 'bare driver (Kysely itself)';
      console.log(`  => ${v.name} / ${over}: ${range(perRound(v.name, vs))}, CPU-bound ${fmt(cpuOf(vs) / cpuOf(v.name), 3)}${vs === RAW_IMPLICIT ? likeForLike : ''}`);
    }
    const guardedOps = opsOf(RAW);
    const p50 = median((samples.get(variants[0]?.name as string) ?? []).map((x) => x.p50));
    console.log(`  => guarded / unguarded scoped lookup = ${fmt(guardedOps / base, 3)} (target: cached check adds < 2%)`);
    const controlOps = opsOf(variants[2]?.name as string);
    console.log(`  => control / unguarded = ${fmt(controlOps / base, 3)}: identical set-ups differ this much on this machine (noise)`);
    console.log(`  => cached check ${fmt(cachedUs, 3)} us = ${fmt((cachedUs / (p50 * 1000)) * 100, 4)}% of the unguarded p50 latency`);
  } finally {
    await guarded.close();
    await db.close();
    await control.close();
  }
}
