/**
 * Minimal reproduction, without tenantwall and without row-level security, of acknowledged writes lost by
 * Citus 13.2's online tenant isolation (`isolate_tenant_to_new_shard`, logical replication) when the source
 * worker runs with `synchronous_commit = off`.
 *
 *   CITUS_URL=postgres://postgres@127.0.0.1:9700/postgres npx tsx test/citus/repro/split-async-commit.ts [off|on|guard] [runs] [pause ms]
 *
 * It sets `synchronous_commit` on the workers with ALTER SYSTEM + reload, so run it on a throwaway cluster only;
 * it resets the setting at the end.
 * One writer inserts rows of one tenant through the coordinator, one autocommit INSERT at a time, counting
 * a row as acknowledged when its INSERT returned; meanwhile the tenant is isolated online. Afterwards it lists
 * the acknowledged rows missing from the table and looks for them in the old (split, now orphaned) shard on
 * the worker.
 *
 * Why (Citus source, src/backend/distributed/replication/multi_logical_replication.c): after blocking writes,
 * `WaitForAllSubscriptionsToCatchUp` reads the source position with `SELECT pg_current_wal_lsn()`, which is
 * the WAL *write* position, and waits until the subscription's `latest_end_lsn` reaches it. With asynchronous
 * commit a transaction is acknowledged once its commit record is inserted, before it is written; the writes
 * acknowledged in the last moments before the block can be beyond that position, so the catch-up is declared
 * complete without them, and the split switches to the new shards and drops the subscription: those rows stay
 * in the old shard only (deferred drop) and are lost. With `synchronous_commit = on` a commit returns only after
 * its WAL is flushed (flushed <= written <= current position), so this cannot happen.
 */
import pg from 'pg';

const url = process.env.CITUS_URL;
if (!url) throw new Error('CITUS_URL is not set');
// off: the workers commit asynchronously; on: synchronously; guard: asynchronously, but the source shard carries the
// statement trigger tenantwall installs during its moves (src/lifecycle/citus.ts, withSourceCommitsFlushed), which
// makes the transactions writing to it commit with synchronous_commit = local.
const mode = (process.argv[2] ?? 'off') as 'off' | 'on' | 'guard';
const runs = Number(process.argv[3] ?? 1);
// A pause between writes: at a low write rate the WAL writer flushes partial pages, so the write position the
// catch-up compares against sits just behind the last commits (at a high rate it sits on a page boundary, which
// the subscription only passes once a later flush has taken the last commits along).
const pauseMs = Number(process.argv[4] ?? 10);

async function q<R extends pg.QueryResultRow = pg.QueryResultRow>(c: pg.Client, sql: string, values: unknown[] = []): Promise<R[]> {
  return (await c.query<R>(sql, values)).rows;
}

const coord = new pg.Client({ connectionString: url });
await coord.connect();
const workers = await q<{ host: string; port: number }>(coord, `SELECT nodename AS host, nodeport AS port FROM pg_dist_node WHERE groupid <> 0 AND isactive ORDER BY nodeport`);
async function onWorkers(sqls: string[]): Promise<void> {
  for (const w of workers) {
    const u = new URL(url as string);
    u.hostname = w.host;
    u.port = String(w.port);
    const c = new pg.Client({ connectionString: u.toString() });
    await c.connect();
    for (const s of sqls) await c.query(s);
    await c.end();
  }
}
async function workerQuery<R extends pg.QueryResultRow>(host: string, port: number, sql: string, values: unknown[]): Promise<R[]> {
  const u = new URL(url as string);
  u.hostname = host;
  u.port = String(port);
  const c = new pg.Client({ connectionString: u.toString() });
  await c.connect();
  try {
    return await q<R>(c, sql, values);
  } finally {
    await c.end();
  }
}

await onWorkers([`ALTER SYSTEM SET synchronous_commit = ${mode === 'on' ? 'on' : 'off'}`, 'SELECT pg_reload_conf()']);
const results: string[] = [];
try {
  for (let run = 0; run < runs; run++) {
    const table = `repro_split_${process.pid}_${run}`;
    await q(coord, `SET citus.shard_count = 4`);
    await q(coord, `CREATE TABLE ${table} (tenant_id int NOT NULL, id bigint NOT NULL, note text, PRIMARY KEY (tenant_id, id))`);
    await q(coord, `SELECT create_distributed_table('${table}', 'tenant_id', colocate_with => 'none')`);
    await q(coord, `INSERT INTO ${table} SELECT t, g, 'seed' FROM generate_series(1, 20) t, generate_series(1, 200) g`);
    const tenant = 7;
    const [old] = await q<{ shardid: string; host: string; port: number }>(
      coord,
      `SELECT s.shardid::text AS shardid, n.nodename AS host, n.nodeport AS port FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
        WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2::int)`,
      [table, tenant],
    );
    if (!old) throw new Error('no shard');
    if (mode === 'guard') {
      await workerQuery(old.host, Number(old.port), `SET citus.enable_manual_changes_to_shards = on; SET citus.enable_ddl_propagation = off; CREATE OR REPLACE FUNCTION repro_flush_commit() RETURNS trigger LANGUAGE plpgsql AS $b$
        BEGIN
          IF pg_catalog.current_setting('synchronous_commit') = 'off' THEN PERFORM pg_catalog.set_config('synchronous_commit', 'local', true); END IF;
          RETURN NULL;
        END $b$; CREATE TRIGGER repro_flush_commit AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON ${table}_${old.shardid} FOR EACH STATEMENT EXECUTE FUNCTION repro_flush_commit()`, []);
    }
    const writer = new pg.Client({ connectionString: url });
    await writer.connect();
    let stop = false;
    const acked: number[] = [];
    const errors: string[] = [];
    const writing = (async () => {
      for (let id = 100_000; !stop; id++) {
        try {
          await writer.query(`INSERT INTO ${table} (tenant_id, id, note) VALUES ($1, $2, 'during')`, [tenant, id]);
          acked.push(id);
          if (pauseMs > 0) await new Promise((r) => setTimeout(r, pauseMs));
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    await q(coord, `SELECT isolate_tenant_to_new_shard($1::regclass, $2::int, shard_transfer_mode => 'force_logical')`, [table, tenant]);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await writing;
    await writer.end();
    const present = new Set((await q<{ id: string }>(coord, `SELECT id::text FROM ${table} WHERE tenant_id = $1 AND id >= 100000`, [tenant])).map((r) => Number(r.id)));
    const missing = acked.filter((id) => !present.has(id));
    // The old shard is dropped later (deferred drop): the lost rows are still in it.
    let detail = '';
    if (missing.length) {
      // Were they written before the switch? Compare their transaction ids on the worker with the id of the split's
      // transaction there (which wrote the new shard's metadata row): smaller = committed before the switch.
      const [lost] = await workerQuery<{ n: number; max: string }>(old.host, Number(old.port), `SELECT count(*)::int AS n, max(xmin::text::bigint)::text AS max FROM ${table}_${old.shardid} WHERE tenant_id = $1 AND id = ANY($2::bigint[])`, [tenant, missing]);
      const [split] = await workerQuery<{ xid: string }>(old.host, Number(old.port), `SELECT xmin::text AS xid FROM pg_dist_shard WHERE shardid = (SELECT shardid FROM pg_dist_shard WHERE logicalrelid = $1::regclass AND shardminvalue = shardmaxvalue)`, [table]);
      detail = ` (ids ${missing.slice(0, 5).join(',')}${missing.length > 5 ? ',...' : ''}; ${lost?.n} of them still in the orphaned old shard ${table}_${old.shardid}, their newest xid ${lost?.max} vs the split's xid ${split?.xid} on that worker)`;
    }
    const line = `run ${run + 1}: synchronous_commit=${mode} acknowledged ${acked.length}, write errors ${errors.length}, missing after the split ${missing.length}${detail}`;
    console.log(line);
    results.push(line);
    await q(coord, `DROP TABLE ${table}`);
  }
} finally {
  await onWorkers([`ALTER SYSTEM RESET synchronous_commit`, 'SELECT pg_reload_conf()']);
  await coord.end();
}
