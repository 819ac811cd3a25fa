/**
 * Where the database time of metering ingestion goes (issue 16): the bare ingestion statement of
 * bench/metering.ts on copies of `tw_usage_events` with parts removed or swapped, as the owner, 8 writers,
 * batches of 1,000 with 10% retried ids. Per variant: events/s, CPU of THIS PostgreSQL server's processes per
 * event (postmaster and its children, from /proc: other servers on the machine are not counted), Node CPU per
 * event, and WAL bytes / records / full-page images per event (pg_stat_wal). Rounds alternate the variants;
 * medians are printed. `npm run bench -- metering-split` (BENCH_SPLIT_MS per variant and round, BENCH_SPLIT_ROUNDS).
 */
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import copyStreams from 'pg-copy-streams';
import { migrations, schema } from '../examples/invoicing-service/src/schema.ts';
import type { BenchHarness } from './harness.ts';

export default async function meteringSplit(harness: BenchHarness): Promise<void> {
const db = await harness.createTenantwall(schema, migrations, { poolSize: 4 });
const name = (await db.dangerouslyCrossTenant().query<{ d: string }>('SELECT current_database() AS d')).rows[0]?.d as string;
const pool = new pg.Pool({ connectionString: harness.urlOf(name), max: 9 });
pool.on('error', () => undefined);
pool.on('connect', (c) => c.on('error', () => undefined));
const dataDir = (await pool.query<{ d: string }>(`SELECT current_setting('data_directory') AS d`)).rows[0]?.d as string;
const postmaster = Number(fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
function stat(pid: number): string[] | undefined {
  try {
    return (fs.readFileSync(`/proc/${pid}/stat`, 'latin1').split(') ')[1] as string).split(' ');
  } catch {
    return undefined;
  }
}
function serverCpu(): Map<number, number> {
  const out = new Map<number, number>();
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const pid = Number(p);
    const f = stat(pid);
    if (!f) continue;
    if (pid !== postmaster && Number(f[1]) !== postmaster) continue;
    out.set(pid, (Number(f[11]) + Number(f[12])) * 10_000);
  }
  return out;
}
function since(before: Map<number, number>): number {
  let us = 0;
  for (const [pid, v] of serverCpu()) us += v - (before.get(pid) ?? 0);
  return us;
}

const tenants: string[] = [];
for (let i = 0; i < 50; i++) tenants.push((await db.tenants.create({ slug: `p${i}`, name: `P${i}` })).id);

await pool.query(`CREATE TABLE ev_full (LIKE tw_usage_events INCLUDING ALL)`);
await pool.query(`CREATE TABLE ev_nometer (LIKE tw_usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
await pool.query(`ALTER TABLE ev_nometer ADD PRIMARY KEY (tenant_id, event_id)`);
await pool.query(`CREATE TABLE ev_c (LIKE tw_usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
await pool.query(`ALTER TABLE ev_c ALTER COLUMN event_id TYPE text COLLATE "C", ALTER COLUMN meter TYPE text COLLATE "C"`);
await pool.query(`ALTER TABLE ev_c ADD PRIMARY KEY (tenant_id, event_id)`);
await pool.query(`CREATE INDEX ON ev_c (tenant_id, meter, occurred_at)`);
await pool.query(`CREATE TABLE ev_c_nometer (LIKE ev_c INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
await pool.query(`ALTER TABLE ev_c_nometer ADD PRIMARY KEY (tenant_id, event_id)`);
await pool.query(`CREATE TABLE ev_heap (LIKE tw_usage_events INCLUDING DEFAULTS)`);
// indexes: ::regclass AS i, indexdef FROM pg_index JOIN pg_indexes ON indexname = indexrelid::regclass::text WHERE indrelid IN ('tw_usage_events'::regclass, 'ev_c'::regclass)`)).rows);
// collation: , datlocprovider FROM pg_database WHERE datname = current_database()`)).rows);

const BATCH = 1000;
const next = new Map<string, number>();
const now = Date.now();
const runTag = { n: 0 };
function batchFor(tid: string) {
  const start = next.get(tid) ?? 0;
  next.set(tid, start + BATCH - BATCH / 10);
  return Array.from({ length: BATCH }, (_, i) => ({
    event_id: `ev-${runTag.n}-${start - BATCH / 10 + i}`,
    meter: 'tokens',
    quantity: (i % 7) + 1,
    timestamp: new Date(now - ((start + i) % 86_400) * 1000).toISOString(),
    properties: JSON.stringify({ model: i % 2 === 0 ? 'small' : 'large' }),
  }));
}
type Batch = ReturnType<typeof batchFor>;

const UNNEST = (t: string) => `INSERT INTO ${t} (tenant_id, event_id, meter, quantity, occurred_at, properties)
  SELECT $1, u.e, u.m, u.q, u.t, u.p FROM unnest($2::text[], $3::text[], $4::numeric[], $5::timestamptz[], $6::jsonb[]) AS u(e, m, q, t, p)
  ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING event_id`;

async function unnest(c: pg.PoolClient, t: string, tid: string, b: Batch) {
  await c.query(UNNEST(t), [tid, b.map((e) => e.event_id), b.map((e) => e.meter), b.map((e) => String(e.quantity)), b.map((e) => e.timestamp), b.map((e) => e.properties)]);
}
function esc(s: string) {
  return s.replace(/\\/g, '\\\\').replace(/\t/g, '\\t').replace(/\n/g, '\\n').replace(/\r/g, '\\r');
}
function copyText(b: Batch, tid?: string): string {
  let s = '';
  for (const e of b) s += `${tid ? tid + '\t' : ''}${esc(e.event_id)}\t${e.meter}\t${e.quantity}\t${e.timestamp}\t${esc(e.properties)}\n`;
  return s;
}
async function copyInto(c: pg.PoolClient, sql: string, data: string) {
  await new Promise<void>((resolve, reject) => {
    const s = c.query(copyStreams.from(sql));
    s.on('error', reject);
    s.on('finish', resolve);
    s.end(data);
  });
}
const staged = new WeakSet<object>();
async function staging(c: pg.PoolClient, t: string, tid: string, b: Batch) {
  if (!staged.has(c)) {
    await c.query(`CREATE TEMP TABLE stage (event_id text, meter text, quantity numeric, occurred_at timestamptz, properties jsonb) ON COMMIT DELETE ROWS`);
    staged.add(c);
  }
  await c.query('BEGIN');
  await copyInto(c, 'COPY stage FROM STDIN', copyText(b));
  await c.query(`INSERT INTO ${t} (tenant_id, event_id, meter, quantity, occurred_at, properties) SELECT $1, event_id, meter, quantity, occurred_at, properties FROM stage ON CONFLICT (tenant_id, event_id) DO NOTHING RETURNING event_id`, [tid]);
  await c.query('COMMIT');
}
async function copyDirect(c: pg.PoolClient, t: string, tid: string, b: Batch) {
  // no dedup: unique ids only (drop the 10% retried ones)
  await copyInto(c, `COPY ${t} (tenant_id, event_id, meter, quantity, occurred_at, properties) FROM STDIN`, copyText(b.slice(BATCH / 10), tid));
}

type Op = (c: pg.PoolClient, t: string, tid: string, b: Batch) => Promise<void>;
async function run(label: string, table: string, op: Op, ms: number): Promise<void> {
  runTag.n++;
  next.clear();
  const clients = await Promise.all(Array.from({ length: 8 }, () => pool.connect()));
  await clients[0]!.query('CHECKPOINT');
  const w0 = (await clients[0]!.query(`SELECT wal_records::bigint AS r, wal_fpi::bigint AS f, wal_bytes::bigint AS b FROM pg_stat_wal`)).rows[0];
  const cpu0 = serverCpu();
  const node0 = process.cpuUsage();
  const t0 = performance.now();
  let events = 0;
  let i = 0;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() - t0 < ms) {
        const tid = tenants[i++ % tenants.length] as string;
        const b = batchFor(tid);
        await op(c, table, tid, b);
        events += op === copyDirect ? BATCH - BATCH / 10 : BATCH;
      }
    }),
  );
  const el = (performance.now() - t0) / 1000;
  const pgUs = since(cpu0);
  const nu = process.cpuUsage(node0);
  const w1 = (await clients[0]!.query(`SELECT wal_records::bigint AS r, wal_fpi::bigint AS f, wal_bytes::bigint AS b FROM pg_stat_wal`)).rows[0];
  for (const c of clients) c.release();
  let r = results.get(label);
  if (!r) results.set(label, (r = { pg: [], node: [], evs: [], wal: [], rec: [] }));
  r.evs.push(events / el);
  r.pg.push(pgUs / events);
  r.node.push((nu.user + nu.system) / events);
  r.wal.push(Number(w1.b - w0.b) / events);
  r.rec.push(Number(w1.r - w0.r) / events);
}

const PLAIN = (t: string) => `INSERT INTO ${t} (tenant_id, event_id, meter, quantity, occurred_at, properties)
  SELECT $1, u.e, u.m, u.q, u.t, u.p FROM unnest($2::text[], $3::text[], $4::numeric[], $5::timestamptz[], $6::jsonb[]) AS u(e, m, q, t, p)
  WHERE NOT EXISTS (SELECT 1 FROM ${t} x WHERE x.tenant_id = $1 AND x.event_id = u.e) RETURNING event_id`;
let retries = 0;
async function plain(c: pg.PoolClient, t: string, tid: string, b: Batch) {
  const p = [tid, b.map((e) => e.event_id), b.map((e) => e.meter), b.map((e) => String(e.quantity)), b.map((e) => e.timestamp), b.map((e) => e.properties)];
  try {
    await c.query(PLAIN(t), p);
  } catch (e) {
    // A concurrent writer stored one of the ids after our snapshot: the unique key refuses, redo with ON CONFLICT.
    if ((e as { code?: string }).code !== '23505') throw e;
    retries++;
    await c.query(UNNEST(t), p);
  }
}
async function heapOnly(c: pg.PoolClient, t: string, tid: string, b: Batch) {
  await c.query(`INSERT INTO ${t} (tenant_id, event_id, meter, quantity, occurred_at, properties) SELECT $1, u.e, u.m, u.q, u.t, u.p FROM unnest($2::text[], $3::text[], $4::numeric[], $5::timestamptz[], $6::jsonb[]) AS u(e, m, q, t, p)`, [tid, b.map((e) => e.event_id), b.map((e) => e.meter), b.map((e) => String(e.quantity)), b.map((e) => e.timestamp), b.map((e) => e.properties)]);
}
const results = new Map<string, { pg: number[]; node: number[]; evs: number[]; wal: number[]; rec: number[] }>();
const ROUNDS = Number(process.env.BENCH_SPLIT_ROUNDS ?? 3);
const variants: Array<[string, string, Op]> = [
  ['heap only, plain INSERT (no index, no dedup)', 'ev_heap', heapOnly],
  ['+ dedup key (tenant_id, event_id), ON CONFLICT', 'ev_nometer', unnest],
  ['+ (tenant_id, meter, occurred_at): today, ON CONFLICT', 'ev_full', unnest],
  ['today, NOT EXISTS + plain INSERT (no speculative)', 'ev_full', plain],
  ['dedup key only, NOT EXISTS + plain INSERT', 'ev_nometer', plain],
  ['today, event_id/meter COLLATE "C", ON CONFLICT', 'ev_c', unnest],
  ['today, COPY to temp staging + INSERT ON CONFLICT', 'ev_full', staging],
  ['today, COPY straight in (no dedup possible)', 'ev_full', copyDirect],
  ['heap only, COPY straight in', 'ev_heap', copyDirect],
];
for (let round = 0; round < ROUNDS; round++) for (const [label, table, op] of variants) await run(label, table, op, Number(process.env.BENCH_SPLIT_MS ?? 2500));
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
console.log(`ingestion statement variants, 8 writers, batches of ${BATCH} (10% retried ids), ${ROUNDS} alternating rounds, medians:`);
console.log('  variant'.padEnd(58) + 'events/s   pg µs/ev  node µs/ev  WAL B/ev  WAL rec/ev');
for (const [label, r] of results) {
  console.log(`  ${label.padEnd(56)}${String(Math.round(med(r.evs))).padStart(8)}  ${med(r.pg).toFixed(2).padStart(9)}  ${med(r.node).toFixed(2).padStart(10)}  ${med(r.wal).toFixed(0).padStart(8)}  ${med(r.rec).toFixed(2).padStart(10)}`);
}
console.log(`  (NOT EXISTS variants: ${retries} batches hit a concurrent duplicate and were redone with ON CONFLICT)`);
await pool.end();
}
