import pg from 'pg';
import { quoteLiteral } from '../schema/ddl.ts';
import { make } from './citus-rules.ts';
import type { Finding } from './types.ts';

/**
 * verify on Citus, directly against each worker: the attacks through the coordinator only reach the shards the
 * way Citus routes them; an application role that can log in to a worker reaches every shard table there by name.
 * For every shard of every tenant table, on its worker, as the application role, in one transaction that is
 * rolled back: with no tenant set a read must return nothing; with tenant A set, reading, updating or deleting
 * tenant B's rows must touch nothing.
 */
export interface WorkerAttackOptions {
  readonly ownerUrl: string;
  readonly appUrl: string;
  readonly tenantColumn: string;
  readonly settingName: string;
  readonly statementTimeoutMs: number;
}

/** What the worker attacks did: findings, statements tried, notes. */
export interface WorkerAttackResult {
  readonly findings: Finding[];
  readonly attempts: number;
  readonly notes: string[];
}

interface ShardRow {
  table_name: string;
  shard_name: string;
  nodename: string;
  nodeport: number;
}

/** Runs the worker attacks; returns no finding (and does nothing) on a database without the citus extension. */
export async function citusWorkerAttacks(opts: WorkerAttackOptions, A: string, B: string): Promise<WorkerAttackResult> {
  const owner = new pg.Client({ connectionString: opts.ownerUrl, application_name: 'tenantwall-verify' });
  await owner.connect();
  let shards: ShardRow[];
  try {
    if ((await owner.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`)).rowCount === 0) return { findings: [], attempts: 0, notes: [] };
    shards = (
      await owner.query<ShardRow>(
        `SELECT s.table_name::text AS table_name, s.shard_name, s.nodename, s.nodeport
           FROM citus_shards s
          WHERE s.citus_table_type = 'distributed'
            AND EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = s.table_name AND a.attname = $1 AND NOT a.attisdropped)
          ORDER BY s.nodeport, s.nodename, s.shard_name`,
        [opts.tenantColumn],
      )
    ).rows;
  } finally {
    await owner.end().catch(() => undefined);
  }
  const findings: Finding[] = [];
  const notes: string[] = [];
  let attempts = 0;
  const col = `"${opts.tenantColumn.replace(/"/g, '""')}"`;
  const byNode = new Map<string, ShardRow[]>();
  for (const s of shards) byNode.set(`${s.nodename}:${s.nodeport}`, [...(byNode.get(`${s.nodename}:${s.nodeport}`) ?? []), s]);
  for (const [node, list] of byNode) {
    const first = list[0] as ShardRow;
    const url = new URL(opts.appUrl);
    url.hostname = first.nodename;
    url.port = String(first.nodeport);
    const app = new pg.Client({ connectionString: url.toString(), application_name: 'tenantwall-verify' });
    app.on('error', () => undefined);
    try {
      await app.connect();
    } catch (err) {
      notes.push(`worker ${node}: the application role cannot log in directly (${(err as Error).message}); its shards were attacked through the coordinator only`);
      continue;
    }
    const found = (s: ShardRow, what: string) =>
      findings.push(
        make('citus-worker-attack', 'table', s.table_name, `On worker ${node}, shard ${s.shard_name} of ${s.table_name}: ${what}.`,
          `-- restore the shard's row-level security like its table's (see citus-shard-policy-mismatch), e.g.:\nSELECT * FROM run_command_on_placements(${quoteLiteral(s.table_name)}, 'ALTER TABLE %s FORCE ROW LEVEL SECURITY');`, opts.tenantColumn),
      );
    try {
      await app.query('BEGIN');
      await app.query(`SET LOCAL statement_timeout = ${Math.max(0, Math.floor(opts.statementTimeoutMs))}`);
      // One savepoint per attack: a refused statement (the expected outcome) must not end the transaction.
      const attempt = async (sql: string): Promise<pg.QueryResult | undefined> => {
        attempts++;
        await app.query('SAVEPOINT tw_attack');
        try {
          const r = await app.query(sql);
          await app.query('RELEASE SAVEPOINT tw_attack');
          return r;
        } catch {
          await app.query('ROLLBACK TO SAVEPOINT tw_attack');
          return undefined;
        }
      };
      for (const s of list) {
        const none = await attempt(`SELECT count(*)::int AS n FROM ${s.shard_name}`);
        if ((none?.rows[0]?.n ?? 0) > 0) found(s, `with no tenant set, the application role read ${none?.rows[0]?.n} row(s)`);
      }
      await app.query(`SELECT set_config($1, $2, true)`, [opts.settingName, A]);
      for (const s of list) {
        const read = await attempt(`SELECT count(*)::int AS n FROM ${s.shard_name} WHERE ${col} IS DISTINCT FROM ${quoteLiteral(A)}`);
        if ((read?.rows[0]?.n ?? 0) > 0) found(s, `with tenant ${A} set, the application role read ${read?.rows[0]?.n} row(s) of other tenants`);
        const upd = await attempt(`UPDATE ${s.shard_name} SET ${col} = ${col} WHERE ${col} = ${quoteLiteral(B)}`);
        if ((upd?.rowCount ?? 0) > 0) found(s, `with tenant ${A} set, the application role updated ${upd?.rowCount} row(s) of tenant ${B}`);
        const del = await attempt(`DELETE FROM ${s.shard_name} WHERE ${col} = ${quoteLiteral(B)}`);
        if ((del?.rowCount ?? 0) > 0) found(s, `with tenant ${A} set, the application role deleted ${del?.rowCount} row(s) of tenant ${B}`);
      }
    } finally {
      await app.query('ROLLBACK').catch(() => undefined);
      await app.end().catch(() => undefined);
    }
    notes.push(`worker ${node}: ${list.length} shard(s) attacked directly as the application role`);
  }
  return { findings, attempts, notes };
}
