import pg from 'pg';
import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { mapPgError } from '../db/pg-errors.ts';
import { withTransaction } from '../db/transaction.ts';
import type { TenantTable } from '../schema/declare.ts';
import { bucketPartitionName, dedicatedPartitionName, quoteIdent, quoteLiteral, sharedPartitionName } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';

export const q = quoteIdent;
export const JOURNAL = 'tenantwall_lifecycle';

/** A tenant by id or slug; deleted tenants are found by id only (their slug may be reused). */
export async function resolveTenant(db: Tenantwall, ref: string): Promise<Tenant> {
  const tenant = await db.tenants.resolve(ref);
  if (!tenant) throw new TenantwallError('tenant_not_found', `Tenant ${JSON.stringify(ref.slice(0, 80))} does not exist.`, { details: { tenant: ref } });
  return tenant;
}

/** A dedicated owner session (lifecycle work needs session locks, its own transactions and cursors). */
export async function openSession(db: Tenantwall): Promise<pg.Client> {
  const client = await db.dangerouslyCrossTenant().session('tenantwall-lifecycle');
  try {
    const { rows } = await client.query<{ ok: boolean }>(
      'SELECT rolsuper OR rolbypassrls AS ok FROM pg_roles WHERE rolname = current_user',
    );
    if (!rows[0]?.ok) {
      throw new TenantwallError('admin_role_insufficient', 'Lifecycle operations read and write every tenant: the owner connection must be superuser or BYPASSRLS.');
    }
    await ensureJournal(client);
  } catch (err) {
    await client.end().catch(() => undefined);
    throw err;
  }
  return client;
}

async function ensureJournal(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query(`SELECT to_regclass($1) AS r`, [JOURNAL]);
  if (rows[0]?.r) return;
  await withTransaction(client, async () => {
    // Two first-time operations at once must not race on CREATE TABLE IF NOT EXISTS.
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('tenantwall.lifecycle.journal'))`);
    // One unfinished operation per tenant. A row here means: staging tables may exist, the operation can be
    // resumed or rolled back; the final switch deletes it in the same transaction that makes the change visible.
    // Not named tenant_id: it is an owner-only admin table, not a tenant-owned one (the audit keys on the name).
    await client.query(`CREATE TABLE IF NOT EXISTS ${JOURNAL} (
      subject_tenant text PRIMARY KEY,
      operation text NOT NULL CHECK (operation IN ('move', 'delete')),
      target text,
      phase text NOT NULL,
      since_xid bigint,
      started_at timestamptz NOT NULL DEFAULT now(),
      updated_at timestamptz NOT NULL DEFAULT now()
    )`);
  });
}

export interface JournalRow {
  operation: 'move' | 'delete';
  target: string | null;
  phase: string;
  /** Move: every row version written after the copy started has an xid at or above this (xid8 as text). */
  since_xid: string | null;
}

export async function readJournal(client: pg.ClientBase, tenantId: string): Promise<JournalRow | undefined> {
  const { rows } = await client.query<JournalRow>(`SELECT operation, target, phase, since_xid::text FROM ${JOURNAL} WHERE subject_tenant = $1`, [tenantId]);
  return rows[0];
}

/**
 * Session-level advisory lock for one tenant's lifecycle work. A killed process loses its session and with it
 * the lock, so a rerun can take over; a live one makes the second caller fail fast instead of interleaving.
 *
 * `shared`: readers that need ONE snapshot of the tenant (export, checksums) take it before their snapshot, so
 * no move commits in between. Partition membership is not MVCC: a REPEATABLE READ snapshot taken before a
 * move's switch commits, reading after it, is routed to the new partition and sees the tenant's rows as the
 * staging copy had them (or none at all), not as they were (docs/architecture.md). Readers share the lock
 * with each other; moves, deletes and imports take it exclusively.
 */
export async function lockTenant(client: pg.ClientBase, tenantId: string, waitMs = 2000, mode: 'exclusive' | 'shared' = 'exclusive'): Promise<void> {
  // A short wait rather than a try: the backend of a just-killed process may still be noticing its dead socket.
  await client.query(`SELECT set_config('lock_timeout', $1, false)`, [String(waitMs)]);
  try {
    await client.query(`SELECT ${mode === 'shared' ? 'pg_advisory_lock_shared' : 'pg_advisory_lock'}(hashtext('tenantwall.lifecycle'), hashtext($1))`, [tenantId]);
  } catch (err) {
    if ((err as { code?: string }).code !== '55P03') throw err;
    const other = mode === 'shared' ? 'moving, deleting or importing' : 'moving, deleting, importing or exporting';
    throw new TenantwallError('tenant_busy', `Another process is ${other} tenant ${tenantId}; retry when it has finished.`, { details: { tenant: tenantId } });
  } finally {
    await client.query(`SELECT set_config('lock_timeout', '0', false)`);
  }
}

/** Runs a lifecycle operation; PostgreSQL errors it ends with are mapped to TenantwallErrors (mapPgError). */
export async function mapLifecycleErrors<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw mapPgError(err);
  }
}

/**
 * Takes the table locks of a switch (`LOCK TABLE ...` statements, in order) all or nothing, inside the caller's
 * transaction, within `budgetMs`; throws PostgreSQL's 55P03 when they could not all be had in time.
 *
 * Each attempt waits at most half of the server's deadlock_timeout per lock, inside a savepoint: when a request
 * that holds one table we need waits for another one we already hold, our attempt gives up (ROLLBACK TO SAVEPOINT
 * releases the locks it took) before PostgreSQL's deadlock check runs, so the request goes on instead of being
 * rolled back as the victim of a deadlock, and the next attempt queues again. No order of the tables avoids such
 * cycles for every writer: a writer that locks a parent row and then writes a child (FOR UPDATE, then INSERT) holds
 * the tables in the opposite order of one that inserts a child and then checks its foreign key on the parent.
 * Afterwards lock_timeout is `budgetMs` again for the rest of the transaction.
 */
export async function lockAll(client: pg.ClientBase, statements: readonly string[], budgetMs: number): Promise<void> {
  const budget = Math.max(1, Math.floor(budgetMs));
  const { rows } = await client.query<{ ms: number }>(`SELECT (extract(epoch FROM current_setting('deadlock_timeout')::interval) * 1000)::int AS ms`);
  const attemptMs = Math.max(1, Math.min(budget, Math.floor((rows[0]?.ms ?? 1000) / 2)));
  const until = performance.now() + budget;
  for (;;) {
    await client.query('SAVEPOINT tenantwall_lock_all');
    try {
      await client.query(`SET LOCAL lock_timeout = ${attemptMs}`);
      for (const sql of statements) await client.query(sql);
      await client.query('RELEASE SAVEPOINT tenantwall_lock_all');
      await client.query(`SET LOCAL lock_timeout = ${budget}`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '55P03' || performance.now() >= until) throw err;
      await client.query('ROLLBACK TO SAVEPOINT tenantwall_lock_all');
    }
  }
}

/** Tenant tables that can hold a dedicated partition (hybrid layout), in declaration (= dependency) order. */
export function dedicatedCapable(db: Tenantwall): TenantTable[] {
  // On Citus the shards are the partitions (src/lifecycle/citus.ts): no table is partitioned by tenantwall there.
  if (db.citusVersion) return [];
  return db.schema.tenantTables.filter((t) => t.partition !== undefined && t.partition.dedicated !== false);
}

/** Which hash bucket holds `tenantId`, computed by PostgreSQL's own partition hash. */
export async function bucketOf(client: pg.ClientBase, t: TenantTable, tenantId: string): Promise<number> {
  const n = t.partition?.hashPartitions ?? 1;
  const { rows } = await client.query<{ r: number }>(
    `SELECT r FROM generate_series(0, $2::int - 1) r WHERE satisfies_hash_partition($1::regclass::oid, $2::int, r, $3::${TenantId.sqlType()})`,
    [t.name, n, tenantId],
  );
  if (rows[0] === undefined) throw new TenantwallError('schema_invalid', `Table ${t.name} is not hash partitioned as declared; run migrate.`);
  return rows[0].r;
}

export interface TablePlace {
  readonly table: TenantTable;
  readonly bucket: number;
  readonly bucketRel: string;
  readonly sharedRel: string;
  readonly dedicatedRel: string;
  /** The dedicated relation is attached as a partition. */
  readonly dedicated: boolean;
  /** The dedicated relation exists but is not attached: a journaled move's staging copy. */
  readonly staging: boolean;
}

export type Placement = 'shared' | 'dedicated';

/** Where each dedicated-capable table keeps `tenantId`'s rows, read from the catalog (the only truth). */
export async function placesOf(client: pg.ClientBase, db: Tenantwall, tenantId: string): Promise<TablePlace[]> {
  const out: TablePlace[] = [];
  for (const t of dedicatedCapable(db)) {
    const bucket = await bucketOf(client, t, tenantId);
    const dedicatedRel = dedicatedPartitionName(t.name, tenantId);
    const { rows } = await client.query<{ relispartition: boolean }>(
      `SELECT c.relispartition FROM pg_class c WHERE c.oid = to_regclass($1)`,
      [q(dedicatedRel)],
    );
    out.push({
      table: t,
      bucket,
      bucketRel: bucketPartitionName(t.name, bucket),
      sharedRel: sharedPartitionName(t.name, bucket),
      dedicatedRel,
      dedicated: rows[0]?.relispartition === true,
      staging: rows[0] !== undefined && !rows[0].relispartition,
    });
  }
  return out;
}

export function placementOf(places: readonly TablePlace[]): Placement | 'mixed' {
  const n = places.filter((p) => p.dedicated).length;
  if (n === 0) return 'shared';
  return n === places.length ? 'dedicated' : 'mixed';
}

/** Row count and an order-independent checksum of one tenant's rows in `relation`, tenant_id left out. */
export interface TableSum {
  readonly rows: number;
  readonly checksum: string;
}

/*
 * Sum of the first 64 bits of md5 per row: order-independent and constant memory, and it leaves tenant_id
 * out so an imported copy under a new id has the same checksum as its source.
 */
export async function tableSum(client: pg.ClientBase, relation: string, tenantId: string, tenantColumn: string): Promise<TableSum> {
  const cols = (await columnsOf(client, relation)).filter((c) => c !== tenantColumn).map((c) => `x.${q(c)}`).join(', ');
  const { rows } = await client.query<{ n: string; s: string }>(
    `SELECT count(*)::text AS n, coalesce(sum(('x' || left(md5(ROW(${cols})::text), 16))::bit(64)::bigint), 0)::text AS s
       FROM ${q(relation)} x WHERE x.${q(tenantColumn)} = ${quoteLiteral(tenantId)}`,
  );
  return { rows: Number(rows[0]?.n ?? 0), checksum: rows[0]?.s ?? '0' };
}

/** The live columns of a relation in physical order (the catalog, not the declaration: a migration may differ). */
export async function columnsOf(client: pg.ClientBase, relation: string): Promise<string[]> {
  const { rows } = await client.query<{ attname: string }>(
    `SELECT attname FROM pg_attribute WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [q(relation)],
  );
  if (rows.length === 0) throw new TenantwallError('schema_invalid', `Relation ${relation} does not exist; run migrate.`);
  return rows.map((r) => r.attname);
}

/** Row counts and checksums of one tenant in every tenant table (through the parents: wherever the rows are). */
export async function tenantChecksums(db: Tenantwall, tenantId: TenantId | string): Promise<Record<string, TableSum>> {
  const id = TenantId.parse(tenantId);
  const client = await openSession(db);
  try {
    await lockTenant(client, id, 2000, 'shared');
    return await withTransaction(
      client,
      async () => {
        const out: Record<string, TableSum> = {};
        for (const t of db.schema.tenantTables) out[t.name] = await tableSum(client, t.name, id, db.schema.tenantColumn);
        return out;
      },
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}

export function primaryKeyOf(t: TenantTable, tenantColumn: string): string[] {
  return [tenantColumn, ...t.primaryKey];
}

/** Drops every foreign key on a (detached) relation so that moving rows between relations can be ordered freely. */
export async function dropForeignKeys(client: pg.ClientBase, relation: string): Promise<void> {
  // A foreign key to a partitioned table has derived rows (one per referenced partition) that go away with
  // their top constraint: drop top-level ones only, re-reading after each.
  for (;;) {
    const { rows } = await client.query<{ conname: string }>(
      `SELECT conname FROM pg_constraint WHERE conrelid = to_regclass($1) AND contype = 'f' AND conparentid = 0 LIMIT 1`,
      [q(relation)],
    );
    if (!rows[0]) return;
    await client.query(`ALTER TABLE ${q(relation)} DROP CONSTRAINT ${q(rows[0].conname)}`);
  }
}
