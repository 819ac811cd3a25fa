/**
 * Partitioned placement and lifecycle, scaled for a 2-core machine (env knobs below; the defaults finish in a few
 * minutes). Tenant tables use the hybrid layout (hash buckets, each LIST with a shared DEFAULT partition).
 *
 * 1. Scale series: a small tenant's list and point queries (guarded, through forTenant) as tenants and rows grow,
 *    Zipf-sized tenants (tenant of rank i gets rows ~ 1/i), a database per point, the points measured alternately
 *    over rounds (growth per round against the first point, median and range).
 * 2. Plan cache: a prepared statement with `tenant_id = $1` run for the largest and a small tenant, in both
 *    orders, after the plan cache has switched to a generic plan.
 * 3. Delete of a large dedicated tenant (detach + drop).
 * 4. Move shared -> dedicated -> shared of a large tenant under a concurrent reader and writer of that tenant:
 *    rows/s, the write-block window and what the reader/writer observed.
 * 5. Export (NDJSON and CSV): rows/s and peak RSS of this process.
 *
 * Env: BENCH_PART_SERIES="tenants:rows,..." (default 100:100000,1000:300000,5000:1000000),
 *      BENCH_PART_ROUNDS (5: rounds of the series, points alternating), BENCH_PART_BUCKETS (16), BENCH_DURATION_MS (1500), BENCH_PART_BIG_ROWS (300000, used by 3-5),
 *      BENCH_PART_PARTS (series,delete,move: which sections run; series includes the plan cache check).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import {
  type Migration,
  type Tenantwall,
  createTenant,
  defineSchema,
  deleteTenant,
  exportTenant,
  moveTenant,
  tenantTable,
} from '../src/index.ts';
import { type BenchHarness, measure } from './harness.ts';

const BUCKETS = Number(process.env.BENCH_PART_BUCKETS ?? 16);
const DURATION_MS = Number(process.env.BENCH_DURATION_MS ?? 1500);
const ROUNDS = Number(process.env.BENCH_PART_ROUNDS ?? 5);
const BIG_ROWS = Number(process.env.BENCH_PART_BIG_ROWS ?? 300_000);
const SERIES = (process.env.BENCH_PART_SERIES ?? '100:100000,1000:300000,5000:1000000').split(',').map((s) => {
  const [tenants, rows] = s.split(':').map(Number);
  return { tenants: tenants as number, rows: rows as number };
});

const schema = defineSchema({
  tables: [
    tenantTable({
      name: 'invoices',
      columns: {
        id: { type: 'bigint' },
        customer: { type: 'text' },
        amount_cents: { type: 'bigint' },
        created_at: { type: 'timestamptz', default: 'now()' },
      },
      indexes: [{ columns: ['created_at'] }],
      partition: { hashPartitions: BUCKETS },
    }),
  ],
});
const migrations: Migration[] = [{ version: 1, name: 'init', sql: (ctx) => ctx.createSchema() }];

const f = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

/**
 * A distribution-free 95% confidence interval of the median of `values`: the order statistics x(k) and x(n-k+1)
 * with the largest k such that P(Binomial(n, 1/2) <= k - 1) <= 2.5%. Undefined below 6 values (no such k).
 */
export function medianCi(values: readonly number[]): [number, number] | undefined {
  const x = [...values].sort((a, b) => a - b);
  const n = x.length;
  let cdf = 0;
  let term = 0.5 ** n; // P(B = 0)
  let k = 0;
  for (let j = 0; j < n; j++) {
    cdf += term;
    if (cdf > 0.025) break;
    k = j + 1; // P(B <= j) <= 2.5%: x(j + 1) is a lower bound
    term = (term * (n - j)) / (j + 1);
  }
  return k === 0 ? undefined : [x[k - 1] as number, x[n - k] as number];
}

/** Registry rows t1..tN and Zipf-sized invoices: rank i gets max(1, round(rows / (i * H_N))). */
async function seedZipf(db: Tenantwall, tenants: number, rows: number, offset = 0): Promise<void> {
  const a = db.dangerouslyCrossTenant();
  await a.query(`INSERT INTO tenants (slug, name) SELECT 't' || g, 'T' || g FROM generate_series($1::int + 1, $1::int + $2::int) g`, [offset, tenants]);
  let h = 0;
  for (let i = 1; i <= tenants; i++) h += 1 / i;
  await a.query(
    `INSERT INTO invoices (tenant_id, id, customer, amount_cents, created_at)
     SELECT t.id, g, 'customer ' || g, g * 13 % 100000, now() - g * interval '1 minute'
       FROM (SELECT id, substr(slug, 2)::int - $3::int AS rank FROM tenants WHERE substr(slug, 1, 1) = 't' AND substr(slug, 2)::int > $3::int) t,
            generate_series(1, greatest(1, round($1::float8 / (t.rank * $2::float8)))::int) g`,
    [rows, h, offset],
  );
  await a.query('VACUUM ANALYZE invoices');
}

async function tenantBySlug(db: Tenantwall, slug: string): Promise<{ id: string; n: number }> {
  const t = await db.tenants.getBySlug(slug);
  if (!t) throw new Error(`no tenant ${slug}`);
  const { rows } = await db.dangerouslyCrossTenant().query(`SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1`, [t.id]);
  return { id: t.id, n: rows[0]?.n as number };
}

/**
 * Every point of the series gets its own database, all seeded first; then BENCH_PART_ROUNDS rounds measure the
 * points alternately (list, then point lookup, each DURATION_MS), so machine noise hits every point alike. Growth
 * is taken per round against the first point of the same round and reported as the median and range; the range
 * says whether the run separates the growth it shows from its own noise.
 */
async function scaleSeries(h: BenchHarness): Promise<Tenantwall> {
  console.log(`\nScale series: small tenant (median rank), guarded queries via forTenant, ${BUCKETS} hash buckets, 4 workers, ${ROUNDS} rounds x ${DURATION_MS} ms per query, points alternating`);
  const points: Array<{ tenants: number; rows: number; db: Tenantwall; small: { id: string; n: number }; loadS: number }> = [];
  for (const { tenants, rows } of SERIES) {
    const db = await h.createTenantwall(schema, migrations, { poolSize: 4 });
    const t0 = performance.now();
    await seedZipf(db, tenants, rows);
    points.push({ tenants, rows, db, small: await tenantBySlug(db, `t${Math.ceil(tenants / 2)}`), loadS: (performance.now() - t0) / 1000 });
  }
  const queries = points.map(({ db, small }) => {
    const scope = db.forTenant(small.id);
    return {
      list: () => scope.query('SELECT id, amount_cents, created_at FROM invoices WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 20', [small.id]),
      point: (i: number) => scope.query('SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2', [small.id, (i % small.n) + 1]),
    };
  });
  // First touch of each database (cold caches) is a warm-up, not counted.
  for (const q of queries) {
    await measure(q.list, { durationMs: 300, concurrency: 4 });
    await measure(q.point, { durationMs: 300, concurrency: 4 });
  }
  type Figures = { p50: number; p99: number; ops: number };
  const byPoint = points.map(() => ({ list: [] as Figures[], point: [] as Figures[] }));
  for (let round = 0; round < ROUNDS; round++) {
    for (const [i, q] of queries.entries()) {
      const acc = byPoint[i] as (typeof byPoint)[number];
      const l = await measure(q.list, { durationMs: DURATION_MS, concurrency: 4 });
      const p = await measure(q.point, { durationMs: DURATION_MS, concurrency: 4 });
      acc.list.push({ p50: l.p50, p99: l.p99, ops: l.opsPerSec });
      acc.point.push({ p50: p.p50, p99: p.p99, ops: p.opsPerSec });
    }
  }
  const med = (xs: number[]) => {
    const a = [...xs].sort((x, y) => x - y);
    const m = Math.floor(a.length / 2);
    return a.length % 2 ? (a[m] as number) : ((a[m - 1] as number) + (a[m] as number)) / 2;
  };
  const growth = (i: number, kind: 'list' | 'point', stat: 'p50' | 'p99') => {
    const per = (byPoint[i] as (typeof byPoint)[number])[kind].map((r, k) => r[stat] / ((byPoint[0] as (typeof byPoint)[number])[kind][k] as Figures)[stat]);
    return { median: med(per), min: Math.min(...per), max: Math.max(...per), ci: medianCi(per) };
  };
  const g = (x: { median: number; min: number; max: number }) => `x${f(x.median, 2)} (${f(x.min, 2)}-${f(x.max, 2)})`;
  console.log('  tenants   rows         small rows  list p50/p99 ms    point p50/p99 ms   growth vs first point, median (per-round range): list p50, list p99, point p50, point p99');
  for (const [i, pt] of points.entries()) {
    const b = byPoint[i] as (typeof byPoint)[number];
    const m = (xs: Figures[], k: 'p50' | 'p99') => med(xs.map((x) => x[k]));
    console.log(
      `  ${String(pt.tenants).padEnd(9)} ${f(pt.rows).padEnd(12)} ${String(pt.small.n).padEnd(11)} ${`${f(m(b.list, 'p50'), 3)}/${f(m(b.list, 'p99'), 3)}`.padEnd(18)} ${`${f(m(b.point, 'p50'), 3)}/${f(m(b.point, 'p99'), 3)}`.padEnd(18)} ` +
        (i === 0 ? `(base; seeded in ${f(pt.loadS, 1)} s)` : `${g(growth(i, 'list', 'p50'))}  ${g(growth(i, 'list', 'p99'))}  ${g(growth(i, 'point', 'p50'))}  ${g(growth(i, 'point', 'p99'))}  (seeded in ${f(pt.loadS, 1)} s)`),
    );
  }
  // The verdict on the target (<= 1.2x growth), from the 95% confidence interval of the median per-round growth
  // at the largest point: single rounds spread more than the growth, and more rounds narrow the interval.
  const last = points.length - 1;
  if (last > 0) {
    for (const [kind, stat] of [['list', 'p50'], ['list', 'p99'], ['point', 'p50'], ['point', 'p99']] as const) {
      const x = growth(last, kind, stat);
      const ci = x.ci === undefined ? 'too few rounds for a 95% interval (at least 6)' : `median's 95% interval ${f(x.ci[0], 2)}-${f(x.ci[1], 2)}`;
      const verdict =
        x.ci === undefined ? 'not decided: use more rounds (BENCH_PART_ROUNDS)' : x.ci[1] <= 1.2 ? 'within 1.2x' : x.ci[0] > 1.2 ? 'above 1.2x' : 'the interval straddles 1.2x: not separated from noise, use more rounds (BENCH_PART_ROUNDS)';
      console.log(`  ${kind} ${stat} at ${f(points[last]?.tenants ?? 0)} tenants / ${f(points[last]?.rows ?? 0)} rows: ${g(x)}, ${ci}: ${verdict}`);
    }
  }
  for (const pt of points.slice(0, -1)) await pt.db.close();
  return (points[last] as (typeof points)[number]).db;
}

async function planCache(db: Tenantwall): Promise<void> {
  const big = await tenantBySlug(db, 't1');
  const { rows } = await db.dangerouslyCrossTenant().query(`SELECT count(*)::int AS n FROM tenants WHERE slug LIKE 't%'`);
  const small = await tenantBySlug(db, `t${Math.ceil((rows[0]?.n as number) / 2)}`);
  console.log(`\nPlan cache: PREPAREd point lookup (tenant_id = $1 AND id = $2) as the app role, 2,000 executions per tenant after 10 warm-up runs (largest: ${f(big.n)} rows, small: ${small.n} rows)`);
  const variants = [
    { order: [small, big], mode: 'auto' },
    { order: [big, small], mode: 'auto' },
    { order: [big, small], mode: 'force_generic_plan' },
  ] as const;
  for (const [k, { order, mode }] of variants.entries()) {
    const c = await db.dangerouslyRawAppPool().connect();
    if (mode !== 'auto') await c.query(`SET plan_cache_mode = ${mode}`);
    // A protocol-level named statement: the server's plan cache decides custom vs generic, as for any driver.
    const name = `tw_point_${k}`;
    const exec = (t: { id: string }, id: number) => c.query({ name, text: 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2', values: [t.id, id] });
    try {
      const timings: number[] = [];
      const generic: boolean[] = [];
      for (const t of order) {
        await c.query(`SELECT set_config('tenantwall.tenant_id', $1, false)`, [t.id]);
        for (let i = 0; i < 10; i++) await exec(t, (i % t.n) + 1);
        const t0 = performance.now();
        for (let i = 0; i < 2000; i++) await exec(t, (i % t.n) + 1);
        timings.push((performance.now() - t0) / 2000);
        const { rows: cnt } = await c.query(`SELECT generic_plans > 0 AS g FROM pg_prepared_statements WHERE name = $1`, [name]);
        generic.push(cnt[0]?.g === true);
      }
      const [first, second] = order;
      console.log(
        `  ${mode === 'auto' ? '' : `${mode}, `}warmed on ${first === big ? 'largest' : 'small  '}: ${first === big ? 'largest' : 'small'} ${f((timings[0] as number) * 1000, 0)} us/exec, then ${second === big ? 'largest' : 'small'} ${f((timings[1] as number) * 1000, 0)} us/exec` +
          `  (generic plan in use: ${generic.join('/')}; largest/small = ${f((first === big ? (timings[0] as number) / (timings[1] as number) : (timings[1] as number) / (timings[0] as number)), 2)}x)`,
      );
    } finally {
      // Destroyed, not returned: it carries a session-level tenant setting and named statements.
      c.release(true);
    }
  }
}

async function fillTenant(db: Tenantwall, id: string, rows: number): Promise<void> {
  await db.dangerouslyCrossTenant().query(
    `INSERT INTO invoices (tenant_id, id, customer, amount_cents, created_at)
     SELECT $1, g, 'customer ' || g, g * 13 % 100000, now() - g * interval '1 second' FROM generate_series(1, $2::int) g`,
    [id, rows],
  );
  await db.dangerouslyCrossTenant().query('VACUUM ANALYZE invoices');
}

async function deleteBig(h: BenchHarness): Promise<void> {
  const db = await h.createTenantwall(schema, migrations, { poolSize: 4 });
  await seedZipf(db, 200, 100_000);
  const big = await createTenant(db, { slug: 'big', name: 'Big', placement: 'dedicated' });
  await fillTenant(db, big.tenant.id, BIG_ROWS);
  const r = await deleteTenant(db, 'big', { confirm: 'big' });
  console.log(`\nDelete of a dedicated tenant with ${f(BIG_ROWS)} rows (among 200 shared tenants, 100k rows): detach + drop ${f(r.dropMs, 1)} ms, whole delete incl. checks and tombstone ${f(r.ms, 1)} ms`);
}

async function moveAndExport(h: BenchHarness): Promise<void> {
  const db = await h.createTenantwall(schema, migrations, { poolSize: 6 });
  await seedZipf(db, 200, 100_000);
  const m = (await db.tenants.create({ slug: 'mover', name: 'Mover' })).id;
  await fillTenant(db, m, BIG_ROWS);
  const scope = db.forTenant(m);
  let stop = false;
  const obs = { reads: 0, writes: 0, maxRead: 0, maxWrite: 0, errors: 0 };
  const loop = async (kind: 'read' | 'write') => {
    let id = 10_000_000;
    while (!stop) {
      const t0 = performance.now();
      try {
        if (kind === 'read') await scope.query('SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2', [m, 1 + (id++ % BIG_ROWS)]);
        else await scope.query('INSERT INTO invoices (tenant_id, id, customer, amount_cents) VALUES ($1, $2, $3, 1)', [m, id++, 'w']);
      } catch (err) {
        if (obs.errors++ === 0) console.log(`  (first ${kind} error during the move: ${(err as Error).message.slice(0, 160)})`);
      }
      const ms = performance.now() - t0;
      if (kind === 'read') {
        obs.reads++;
        obs.maxRead = Math.max(obs.maxRead, ms);
      } else {
        obs.writes++;
        obs.maxWrite = Math.max(obs.maxWrite, ms);
      }
      await new Promise((r) => setTimeout(r, 2));
    }
  };
  const loops = [loop('read'), loop('write')];
  let r1: Awaited<ReturnType<typeof moveTenant>>;
  let r2: typeof r1;
  try {
    r1 = await moveTenant(db, 'mover', 'dedicated');
    const o1 = { ...obs };
    Object.assign(obs, { reads: 0, writes: 0, maxRead: 0, maxWrite: 0 });
    r2 = await moveTenant(db, 'mover', 'shared');
    console.log(`\nMove of a tenant with ${f(BIG_ROWS)} rows among 200 shared tenants, with a concurrent reader and writer of that tenant:`);
    console.log(
      `  shared -> dedicated: copy ${f(r1.rowsCopied)} rows in ${f(r1.copyMs)} ms (${f(r1.rowsCopied / (r1.copyMs / 1000))} rows/s), write-block window ${f(r1.writeBlockedMs, 1)} ms ` +
        `(of which reads of its bucket wait ${f(r1.readBlockedMs, 1)} ms), reconciled ${r1.reconciledRows} rows, total ${f(r1.totalMs)} ms; ` +
        `observed: ${o1.reads} reads (max ${f(o1.maxRead, 1)} ms), ${o1.writes} writes (max ${f(o1.maxWrite, 1)} ms), ${o1.errors} errors`,
    );
    console.log(
      `  dedicated -> shared: ${f(r2.rowsCopied)} rows inside the switch, write-block window ${f(r2.writeBlockedMs, 1)} ms (reads of its bucket wait ${f(r2.readBlockedMs, 1)} ms), total ${f(r2.totalMs)} ms; ` +
        `observed: ${obs.reads} reads (max ${f(obs.maxRead, 1)} ms), ${obs.writes} writes (max ${f(obs.maxWrite, 1)} ms), ${obs.errors} errors`,
    );
  } finally {
    stop = true;
    await Promise.all(loops);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-bench-export-'));
  try {
    // Live memory, not RSS: a forced full GC every 100 ms shows what the export really holds on to (RSS
    // mostly shows how lazily V8 collects garbage strings).
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const live = () => {
      const m = process.memoryUsage();
      return m.heapUsed + m.external;
    };
    for (const format of ['ndjson', 'csv'] as const) {
      // Two runs: one timed (no forced GC, which would slow it down), one sampled for memory.
      const timed = await exportTenant(db, 'mover', { dir: path.join(dir, `${format}-timed`), format });
      gc();
      const baseline = live();
      let peak = baseline;
      const timer = setInterval(() => {
        gc();
        peak = Math.max(peak, live());
      }, 100);
      await exportTenant(db, 'mover', { dir: path.join(dir, format), format });
      clearInterval(timer);
      const bytes = timed.manifest.tables.reduce((a, t) => a + t.bytes, 0);
      console.log(
        `  export ${format}: ${f(timed.rows)} rows, ${f(bytes / 1e6, 1)} MB in ${f(timed.ms)} ms (${f(timed.rows / (timed.ms / 1000))} rows/s); ` +
          `live memory (heap + external, forced GC every 100 ms in a second run) peak +${f((peak - baseline) / 1e6, 1)} MB over ${f(baseline / 1e6)} MB`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

export default async function run(h: BenchHarness): Promise<void> {
  console.log(`PostgreSQL ${h.serverVersion}; ${os.cpus().length} CPUs; the machine may be shared with other test runs, so figures are noisy.`);
  const parts = new Set((process.env.BENCH_PART_PARTS ?? 'series,delete,move').split(','));
  if (parts.has('series')) await planCache(await scaleSeries(h));
  if (parts.has('delete')) await deleteBig(h);
  if (parts.has('move')) await moveAndExport(h);
}

