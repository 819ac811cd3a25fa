import type pg from 'pg';
import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { withTransaction } from '../db/transaction.ts';
import { quoteLiteral, rlsSql } from '../schema/ddl.ts';
import {
  JOURNAL,
  type Placement,
  type TablePlace,
  type TableSum,
  columnsOf,
  dedicatedCapable,
  dropForeignKeys,
  lockAll,
  lockTenant,
  openSession,
  placementOf,
  placesOf,
  primaryKeyOf,
  q,
  readJournal,
  resolveTenant,
  tableSum,
  mapLifecycleErrors,
} from './internal.ts';
import type { ProgressListener } from './progress.ts';
import { type CitusNode, type CitusPlacement, moveTenantOnCitus } from './citus.ts';

/** Options of `moveTenant`: target placement, batch size, progress. */
export interface MoveOptions {
  /** Rows per copy batch (each batch is its own short transaction). Default 5000. */
  readonly batchSize?: number;
  /** How long the switch waits for a table lock before giving up (the move stays resumable). Default 5000. */
  readonly lockTimeoutMs?: number;
  readonly onProgress?: ProgressListener;
  /** Citus, `dedicated-node` only: the worker the tenant's shard group moves to and is pinned on. */
  readonly node?: CitusNode;
}

/** One table of a tenant move: rows copied and where they went. */
export interface MovedTable {
  readonly table: string;
  readonly rows: number;
  readonly checksum: string;
}

/** What `moveTenant` did: the tables moved and the new placement. */
export interface MoveResult {
  readonly tenant: Tenant;
  readonly from: Placement | CitusPlacement | 'mixed';
  readonly to: Placement | CitusPlacement;
  /** A journaled, unfinished move was picked up. */
  readonly resumed: boolean;
  readonly tables: readonly MovedTable[];
  /** Rows copied while the tenant stayed fully online (shared -> dedicated only). */
  readonly rowsCopied: number;
  readonly copyMs: number;
  /** From taking the write lock to COMMIT: writes of the tenant (and of its hash bucket's tenants) wait this long. */
  readonly writeBlockedMs: number;
  /** Part of that window under ACCESS EXCLUSIVE on the bucket, when reads of the bucket's tenants queue too. */
  readonly readBlockedMs: number;
  /** Rows that changed during the copy and were fixed up in the staging copy inside the switch. */
  readonly reconciledRows: number;
  readonly totalMs: number;
}

/**
 * Moves a tenant between the shared hash buckets and a dedicated partition of every partitioned tenant table,
 * online. Shared -> dedicated: staging tables (the future partitions, not yet attached) are filled in small
 * batches while the tenant keeps reading and writing; then ONE transaction locks the bucket's shared partition
 * against writes, reconciles what changed meanwhile, verifies counts and checksums, deletes the shared rows
 * and attaches the staging tables. Dedicated -> shared is one transaction (detach, copy back, verify, drop).
 *
 * Crash safety: a row in `tenantwall_lifecycle` records an unfinished move; running the same move again
 * resumes the copy, `abortMove` drops the staging tables. Nothing is visible to the tenant before the switch
 * commits, and the switch is one transaction, so a move is never half-applied.
 */
export async function moveTenant(db: Tenantwall, ref: string, to: Placement | CitusPlacement, options: MoveOptions = {}): Promise<MoveResult> {
  // PostgreSQL's lock waits, deadlocks and lost connections reach the caller as TenantwallErrors
  // (transaction_conflict, database_unreachable): nothing of the operation was applied, and it can be run again.
  return mapLifecycleErrors(() => moveTenantImpl(db, ref, to, options));
}

async function moveTenantImpl(db: Tenantwall, ref: string, to: Placement | CitusPlacement, options: MoveOptions): Promise<MoveResult> {
  // On Citus the tiers are shards and nodes, moved by Citus itself (src/lifecycle/citus.ts, docs/scale-out.md).
  if (db.citusVersion) return moveTenantOnCitus(db, ref, to, { node: options.node, onProgress: options.onProgress });
  if (to === 'dedicated-node') throw new TenantwallError('placement_unsupported', 'The dedicated-node placement needs a Citus cluster (docs/scale-out.md).');
  if (to !== 'shared' && to !== 'dedicated') throw new TenantwallError('config_invalid', `Unknown placement ${JSON.stringify(to)}: shared or dedicated.`);
  const started = performance.now();
  const tenant = await resolveTenant(db, ref);
  if (tenant.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${tenant.slug} was deleted.`);
  if (dedicatedCapable(db).length === 0) throw new TenantwallError('placement_unsupported', 'No tenant table of this schema is partitioned for dedicated placement.');
  const batchSize = options.batchSize ?? 5000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new TenantwallError('config_invalid', 'batchSize must be a positive integer.');
  const client = await openSession(db);
  try {
    await lockTenant(client, tenant.id);
    const journal = await readJournal(client, tenant.id);
    if (journal?.operation === 'delete') {
      throw new TenantwallError('tenant_busy', `A delete of tenant ${tenant.slug} is unfinished; run tenants delete again to complete it.`);
    }
    if (journal && journal.target !== to) {
      throw new TenantwallError('move_in_progress', `A move of tenant ${tenant.slug} to ${journal.target} is unfinished.`, { details: { target: journal.target } });
    }
    const places = await placesOf(client, db, tenant.id);
    const from = placementOf(places);
    const todo = places.filter((p) => (to === 'dedicated' ? !p.dedicated : p.dedicated));
    if (todo.length === 0) {
      throw new TenantwallError('placement_unchanged', `Tenant ${tenant.slug} already has ${to} placement.`, { details: { placement: to } });
    }
    const ctx = { db, client, tenantId: tenant.id, lockTimeoutMs: options.lockTimeoutMs ?? 5000, onProgress: options.onProgress };
    const r = to === 'dedicated' ? await toDedicated(ctx, todo, batchSize, journal !== undefined) : await toShared(ctx, todo);
    return { tenant, from, to, resumed: journal !== undefined, ...r, totalMs: performance.now() - started };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** What `abortMove` did: the tables whose half-done move was rolled back. */
export interface AbortMoveResult {
  readonly tenant: Tenant;
  /** Staging tables that were dropped; empty when no move was journaled. */
  readonly dropped: readonly string[];
}

/** Rolls back an unfinished (journaled) move: drops its staging tables and the journal row. Live rows were never touched. */
export async function abortMove(db: Tenantwall, ref: string): Promise<AbortMoveResult> {
  const tenant = await resolveTenant(db, ref);
  const client = await openSession(db);
  try {
    await lockTenant(client, tenant.id);
    const journal = await readJournal(client, tenant.id);
    if (journal?.operation === 'delete') throw new TenantwallError('tenant_busy', `A delete of tenant ${tenant.slug} is unfinished; it cannot be aborted, only completed.`);
    if (db.citusVersion) {
      // Each Citus step is atomic: what a killed one left behind is orphaned shards, cleaned up here.
      await client.query('CALL citus_cleanup_orphaned_resources()');
      const r = await client.query(`DELETE FROM ${JOURNAL} WHERE subject_tenant = $1 AND operation = 'move'`, [tenant.id]);
      return { tenant, dropped: r.rowCount ? [`journal of the move to ${journal?.target ?? '?'}`] : [] };
    }
    const dropped = await dropStaging(client, db, tenant.id);
    return { tenant, dropped };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** @internal also used by delete: staging copies of a journaled move hold the tenant's rows too. */
export async function dropStaging(client: pg.ClientBase, db: Tenantwall, tenantId: string): Promise<string[]> {
  const places = await placesOf(client, db, tenantId);
  const dropped: string[] = [];
  await withTransaction(client, async () => {
    for (const p of places.filter((x) => x.staging)) {
      await client.query(`DROP TABLE ${q(p.dedicatedRel)}`);
      dropped.push(p.dedicatedRel);
    }
    await client.query(`DELETE FROM ${JOURNAL} WHERE subject_tenant = $1 AND operation = 'move'`, [tenantId]);
  });
  return dropped;
}

interface MoveCtx {
  readonly db: Tenantwall;
  readonly client: pg.Client;
  readonly tenantId: string;
  readonly lockTimeoutMs: number;
  readonly onProgress: ProgressListener | undefined;
}

type Phases = Omit<MoveResult, 'tenant' | 'from' | 'to' | 'resumed' | 'totalMs'>;

function same(a: TableSum, b: TableSum): boolean {
  return a.rows === b.rows && a.checksum === b.checksum;
}

async function toDedicated(ctx: MoveCtx, todo: TablePlace[], batchSize: number, resumed: boolean): Promise<Phases> {
  const { client, db, tenantId } = ctx;
  const tc = db.schema.tenantColumn;
  const lit = quoteLiteral(tenantId);
  // 1. Journal row and staging tables together: either both exist (resumable) or neither.
  await withTransaction(client, async () => {
    if (!resumed) {
      // The oldest xid still invisible to us: any row written after the copy starts has an xid >= it.
      await client.query(
        `INSERT INTO ${JOURNAL} (subject_tenant, operation, target, phase, since_xid)
         VALUES ($1, 'move', 'dedicated', 'copying', pg_snapshot_xmin(pg_current_snapshot())::text::bigint)`,
        [tenantId],
      );
    }
    for (const p of todo) {
      if (p.staging) continue;
      // LIKE copies columns, defaults, CHECKs and indexes, so ATTACH later adopts the indexes instead of building
      // them inside the write-blocking switch. Foreign keys are cloned and validated by ATTACH itself.
      await client.query(`CREATE TABLE ${q(p.dedicatedRel)} (LIKE ${q(p.table.name)} INCLUDING ALL)`);
      for (const sql of rlsSql(p.dedicatedRel, db.ddlContext)) await client.query(sql);
    }
  });

  // 2. Online copy in keyset batches; a resumed move continues after the last copied key.
  const copyStart = performance.now();
  let rowsCopied = 0;
  for (const p of todo) {
    const pk = primaryKeyOf(p.table, tc);
    const cols = (await columnsOf(client, p.table.name)).map(q).join(', ');
    const pkCols = pk.map(q).join(', ');
    const total = Number((await client.query(`SELECT count(*)::text AS n FROM ${q(p.sharedRel)} WHERE ${q(tc)} = ${lit}`)).rows[0]?.n ?? 0);
    const lastRow = await client.query(`SELECT json_build_array(${pk.map((c) => `${q(c)}::text`).join(', ')}) AS k FROM ${q(p.dedicatedRel)} ORDER BY ${pkCols} DESC LIMIT 1`);
    let last = lastRow.rows[0]?.k as string[] | undefined;
    let done = Number((await client.query(`SELECT count(*)::text AS n FROM ${q(p.dedicatedRel)}`)).rows[0]?.n ?? 0);
    ctx.onProgress?.({ operation: 'move', phase: 'copy', table: p.table.name, done, total });
    const pkTypes = await columnTypes(client, p.table.name, pk);
    for (;;) {
      const after = last ? `AND (${pkCols}) > (${pk.map((_, i) => `$${i + 1}::${pkTypes[i]}`).join(', ')})` : '';
      const { rows } = await client.query<{ n: number; k: string[] | null }>(
        `WITH b AS (SELECT ${cols} FROM ${q(p.sharedRel)} WHERE ${q(tc)} = ${lit} ${after} ORDER BY ${pkCols} LIMIT ${batchSize}),
              i AS (INSERT INTO ${q(p.dedicatedRel)} (${cols}) SELECT ${cols} FROM b ON CONFLICT DO NOTHING)
         SELECT (SELECT count(*)::int FROM b) AS n,
                (SELECT json_build_array(${pk.map((c) => `${q(c)}::text`).join(', ')}) FROM b ORDER BY ${pkCols} DESC LIMIT 1) AS k`,
        last ?? [],
      );
      const n = rows[0]?.n ?? 0;
      if (n === 0 || !rows[0]?.k) break;
      last = rows[0].k;
      done += n;
      rowsCopied += n;
      ctx.onProgress?.({ operation: 'move', phase: 'copy', table: p.table.name, done, total: Math.max(total, done) });
      if (n < batchSize) break;
    }
  }
  const copyMs = performance.now() - copyStart;

  // 3. The switch: one transaction. Until COMMIT the tenant reads its shared rows as before.
  ctx.onProgress?.({ operation: 'move', phase: 'switch', done: 0, total: todo.length });
  let lockedAt = 0;
  let readBlockFrom = 0;
  let reconciledRows = 0;
  const tables: MovedTable[] = [];
  await withTransaction(client, async () => {
    await lockForSwitch(client, db, todo, 'dedicated', ctx.lockTimeoutMs);
    lockedAt = performance.now();
    // Fast path: only row versions written since the copy started (by xmin age), plus deleted rows. The
    // checksums decide; if they still differ (e.g. an xid wrapped), a full reconcile runs, then they must match.
    const since = (await client.query<{ s: string | null }>(`SELECT since_xid::text AS s FROM ${JOURNAL} WHERE subject_tenant = $1`, [tenantId])).rows[0]?.s;
    const cutoff = since
      ? Number((await client.query<{ c: string }>(`SELECT (pg_snapshot_xmax(pg_current_snapshot())::text::bigint - $1::bigint + 16)::text AS c`, [since])).rows[0]?.c)
      : undefined;
    for (const p of todo) {
      if (cutoff !== undefined && cutoff < 2_000_000_000) reconciledRows += await reconcile(client, p, tc, lit, cutoff);
      const source = await tableSum(client, p.sharedRel, tenantId, tc);
      let copy = await tableSum(client, p.dedicatedRel, tenantId, tc);
      if (!same(source, copy)) {
        reconciledRows += await reconcile(client, p, tc, lit, undefined);
        copy = await tableSum(client, p.dedicatedRel, tenantId, tc);
      }
      if (!same(source, copy)) {
        throw new TenantwallError('move_verification_failed', `Table ${p.table.name}: ${copy.rows} rows copied for ${source.rows} (checksums differ).`);
      }
      tables.push({ table: p.table.name, ...source });
    }
    // Children before parents, so composite foreign keys between tenant tables stay satisfied throughout.
    for (const p of [...todo].reverse()) await client.query(`DELETE FROM ${q(p.sharedRel)} WHERE ${q(tc)} = ${lit}`);
    // A reader that built its partition list before the ATTACH but takes its snapshot after our COMMIT would
    // see neither the deleted shared rows nor the new partition. Readers lock the bucket before planning its
    // partitions, so holding it ACCESS EXCLUSIVE makes every reader plan either before (old rows, old snapshot)
    // or after the switch. This is the part of the window in which reads of the bucket's tenants wait.
    readBlockFrom = performance.now();
    for (const p of todo) await client.query(`LOCK TABLE ONLY ${q(p.bucketRel)} IN ACCESS EXCLUSIVE MODE`);
    for (const p of todo) {
      await client.query(`ALTER TABLE ${q(p.bucketRel)} ATTACH PARTITION ${q(p.dedicatedRel)} FOR VALUES IN (${lit})`);
    }
    await verifyPlaced(client, todo, tables, 'dedicatedRel', tenantId, tc);
    await client.query(`DELETE FROM ${JOURNAL} WHERE subject_tenant = $1`, [tenantId]);
  });
  const committed = performance.now();
  ctx.onProgress?.({ operation: 'move', phase: 'switch', done: todo.length, total: todo.length });
  return { tables, rowsCopied, copyMs, writeBlockedMs: committed - lockedAt, readBlockedMs: committed - readBlockFrom, reconciledRows };
}

/**
 * Makes the staging copy equal to the live rows: drop rows deleted meanwhile, upsert rows written meanwhile
 * (all of them, or with `maxAge` only row versions whose xmin is at most that many transactions old).
 * Returns the number of rows changed in the copy.
 */
async function reconcile(client: pg.ClientBase, p: TablePlace, tc: string, lit: string, maxAge: number | undefined): Promise<number> {
  const pk = primaryKeyOf(p.table, tc);
  const all = await columnsOf(client, p.table.name);
  const rest = all.filter((c) => !pk.includes(c));
  const cols = all.map(q).join(', ');
  const pkCols = pk.map(q).join(', ');
  const d = q(p.dedicatedRel);
  const deleted = await client.query(
    `DELETE FROM ${d} s WHERE NOT EXISTS (SELECT 1 FROM ${q(p.sharedRel)} x WHERE x.${q(tc)} = ${lit} AND (${pk.map((c) => `x.${q(c)}`).join(', ')}) = (${pk.map((c) => `s.${q(c)}`).join(', ')}))`,
  );
  // Compared as text: json and some other types have no equality operator.
  const onConflict =
    rest.length === 0
      ? 'DO NOTHING'
      : `DO UPDATE SET ${rest.map((c) => `${q(c)} = EXCLUDED.${q(c)}`).join(', ')}
         WHERE ROW(${rest.map((c) => `${d}.${q(c)}`).join(', ')})::text IS DISTINCT FROM ROW(${rest.map((c) => `EXCLUDED.${q(c)}`).join(', ')})::text`;
  const recent = maxAge === undefined ? '' : `AND age(x.xmin) <= ${Math.floor(maxAge)}`;
  const upserted = await client.query(
    `INSERT INTO ${d} (${cols}) SELECT ${all.map((c) => `x.${q(c)}`).join(', ')} FROM ${q(p.sharedRel)} x WHERE x.${q(tc)} = ${lit} ${recent} ON CONFLICT (${pkCols}) ${onConflict}`,
  );
  return (deleted.rowCount ?? 0) + (upserted.rowCount ?? 0);
}

async function toShared(ctx: MoveCtx, todo: TablePlace[]): Promise<Phases> {
  const { client, db, tenantId } = ctx;
  const tc = db.schema.tenantColumn;
  let lockedAt = 0;
  let readBlockFrom = 0;
  const tables: MovedTable[] = [];
  ctx.onProgress?.({ operation: 'move', phase: 'switch', done: 0, total: todo.length });
  await withTransaction(client, async () => {
    const blocksReads = await lockForSwitch(client, db, todo, 'shared', ctx.lockTimeoutMs);
    lockedAt = performance.now();
    for (const p of todo) tables.push({ table: p.table.name, ...(await tableSum(client, p.dedicatedRel, tenantId, tc)) });
    // DETACH takes ACCESS EXCLUSIVE on the bucket: from here until COMMIT reads of the bucket's tenants queue.
    // Taken for all buckets first, in one order, so two readers of different tables cannot interleave with us.
    readBlockFrom = blocksReads ? lockedAt : performance.now();
    for (const p of todo) await client.query(`LOCK TABLE ONLY ${q(p.bucketRel)} IN ACCESS EXCLUSIVE MODE`);
    for (const p of [...todo].reverse()) {
      await client.query(`ALTER TABLE ${q(p.bucketRel)} DETACH PARTITION ${q(p.dedicatedRel)}`);
      // The detached copy keeps its foreign keys; without them the next (parent) table can be detached.
      await dropForeignKeys(client, p.dedicatedRel);
    }
    for (const [i, p] of todo.entries()) {
      const cols = (await columnsOf(client, p.table.name)).map(q).join(', ');
      await client.query(`INSERT INTO ${q(p.sharedRel)} (${cols}) SELECT ${cols} FROM ${q(p.dedicatedRel)}`);
      const after = await tableSum(client, p.sharedRel, tenantId, tc);
      if (!same(after, tables[i] as MovedTable)) {
        throw new TenantwallError('move_verification_failed', `Table ${p.table.name}: ${after.rows} rows in the shared partition for ${tables[i]?.rows}.`);
      }
      ctx.onProgress?.({ operation: 'move', phase: 'switch', table: p.table.name, done: i + 1, total: todo.length });
    }
    for (const p of todo) await client.query(`DROP TABLE ${q(p.dedicatedRel)}`);
    await verifyPlaced(client, todo, tables, 'sharedRel', tenantId, tc);
    await client.query(`DELETE FROM ${JOURNAL} WHERE subject_tenant = $1`, [tenantId]);
  });
  const committed = performance.now();
  return { tables, rowsCopied: tables.reduce((a, t) => a + t.rows, 0), copyMs: 0, writeBlockedMs: committed - lockedAt, readBlockedMs: committed - readBlockFrom, reconciledRows: 0 };
}

/**
 * Last check before COMMIT (writers are locked out, so nothing else can change these rows): through the parent
 * and in the target partition, every moved table has exactly the rows and checksum it had before.
 */
async function verifyPlaced(client: pg.ClientBase, todo: readonly TablePlace[], tables: readonly MovedTable[], rel: 'sharedRel' | 'dedicatedRel', tenantId: string, tc: string): Promise<void> {
  for (const [i, p] of todo.entries()) {
    const expected = tables[i] as MovedTable;
    // Through the parent with the literal, i.e. pruned to where the catalog now routes this tenant: p[rel].
    const viaParent = await tableSum(client, p.table.name, tenantId, tc);
    if (!same(viaParent, expected)) {
      throw new TenantwallError('move_verification_failed', `After the switch, ${p.table.name} has ${viaParent.rows} rows in ${p[rel]} for ${expected.rows}.`);
    }
  }
}

/** Tenant tables joined to another tenant table by a foreign key (either side). */
export function fkLinkedTables(db: Tenantwall): Set<string> {
  const tenantTables = new Set(db.schema.tenantTables.map((t) => t.name));
  const linked = new Set<string>();
  for (const t of db.schema.tenantTables) {
    for (const fk of t.foreignKeys ?? []) {
      if (tenantTables.has(fk.references) && fk.references !== t.name) {
        linked.add(t.name);
        linked.add(fk.references);
      }
    }
  }
  return linked;
}

/**
 * Takes the switch's locks up front, all or nothing (`lockAll`), so that the switch never waits for a lock while
 * a request waits for one the switch holds: such a cycle is a deadlock, and PostgreSQL rolls one of the two back
 * (the request, as often as not). Measured in PostgreSQL 15-18: ATTACH of a partition of a table in a foreign
 * key between tenant tables takes SHARE ROW EXCLUSIVE on the other table; DETACH (and dropping the detached
 * copy's foreign keys) takes ACCESS EXCLUSIVE on the other table. Shared -> dedicated takes EXCLUSIVE on such
 * tables (writes and row locks of all tenants wait, plain reads go on): stronger than what ATTACH needs, so that
 * no request holds a row lock (SELECT ... FOR UPDATE, a foreign key check) on them while the switch deletes the
 * tenant's shared rows; with SHARE ROW EXCLUSIVE a request that had locked an invoice row and then waited to
 * write its line items deadlocked with that DELETE. Dedicated -> shared blocks reads and writes of the whole
 * table. A table outside such foreign keys only has the tenant's hash bucket locked: against writes (shared ->
 * dedicated), or against reads and writes (dedicated -> shared).
 */
async function lockForSwitch(client: pg.ClientBase, db: Tenantwall, todo: readonly TablePlace[], direction: Placement, lockTimeoutMs: number): Promise<boolean> {
  const linked = fkLinkedTables(db);
  const moved = new Set(todo.map((p) => p.table.name));
  const locks: string[] = [];
  // Referencing tables first: a writer inserting a child row holds the child table, then locks the parent
  // for its foreign key check (a writer that locks the parent row first is the other order: lockAll handles both).
  const whole = db.schema.tenantTables.filter((t) => linked.has(t.name) && [...moved].some((m) => m === t.name || linked.has(m))).reverse();
  for (const t of whole) locks.push(direction === 'dedicated' ? `LOCK TABLE ${q(t.name)} IN EXCLUSIVE MODE` : `LOCK TABLE ONLY ${q(t.name)} IN ACCESS EXCLUSIVE MODE`);
  for (const p of todo) {
    if (linked.has(p.table.name)) continue;
    // Writers lock parent, bucket, then partition. Locking the bucket first (writers queue there holding nothing
    // we need later) and only then the partition keeps our order the same as theirs. Shared -> dedicated
    // upgrades the bucket to ACCESS EXCLUSIVE later, dedicated -> shared needs it for DETACH anyway.
    locks.push(`LOCK TABLE ONLY ${q(p.bucketRel)} IN ${direction === 'dedicated' ? 'EXCLUSIVE' : 'ACCESS EXCLUSIVE'} MODE`);
    locks.push(`LOCK TABLE ${q(direction === 'dedicated' ? p.sharedRel : p.dedicatedRel)} IN EXCLUSIVE MODE`);
  }
  await lockAll(client, locks, lockTimeoutMs);
  return whole.length > 0 || direction === 'shared';
}

async function columnTypes(client: pg.ClientBase, relation: string, cols: readonly string[]): Promise<string[]> {
  const { rows } = await client.query<{ attname: string; t: string }>(
    `SELECT attname, format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = ANY($2)`,
    [q(relation), cols],
  );
  const byName = new Map(rows.map((r) => [r.attname, r.t]));
  return cols.map((c) => byName.get(c) ?? 'text');
}
