import type pg from 'pg';
import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { withTransaction } from '../db/transaction.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { JOURNAL, type TableSum, lockTenant, openSession, readJournal, resolveTenant, tableSum } from './internal.ts';
import type { ProgressListener } from './progress.ts';

/**
 * Placement and lifecycle on a Citus cluster (docs/scale-out.md, "Placement tiers"). The tiers:
 * - `shared`: the tenant's rows are in the hash shard its id falls into, with other tenants;
 * - `dedicated`: the tenant is isolated to a shard group of its own (`isolate_tenant_to_new_shard`, CASCADE:
 *   every colocated tenant table), on the worker that held it;
 * - `dedicated-node`: that shard group moved to a chosen worker (`citus_move_shard_placement`) and pinned there:
 *   `rebalanceCluster` keeps it on that worker and keeps the other shards off it.
 * Both steps run online on Citus' logical replication: reads continue, writes wait only for the final switch.
 * The catalog (`pg_dist_shard`, `pg_dist_placement`) is the truth about where a tenant is; the lifecycle
 * journal and the pin table only record the intent, so a killed move is finished by running it again.
 */

/** A worker of the cluster, as `pg_dist_node` names it. */
export interface CitusNode {
  readonly host: string;
  readonly port: number;
}

/** A placement tier on Citus: the single-server tiers plus `dedicated-node`. */
export type CitusPlacement = 'shared' | 'dedicated' | 'dedicated-node';

/** Where a tenant's shard group is on the cluster. */
export interface CitusTenantPlace {
  readonly placement: CitusPlacement;
  /** The tenant's shard in the first tenant table (its colocated shards in the other tables move with it). */
  readonly shardId: string;
  readonly node: CitusNode;
  /** The worker the tenant is pinned to (dedicated-node), when recorded. */
  readonly pinnedTo?: CitusNode | undefined;
}

/** The pin table (coordinator-local bookkeeping, like the lifecycle journal). */
export const PINS = 'tenantwall_citus_pins';
const STRATEGY = 'tenantwall';
const ALLOWED_FN = 'tenantwall_shard_allowed_on_node';

function nodeText(n: CitusNode): string {
  return `${n.host}:${n.port}`;
}

/** Parses `host:port` (a worker as given on the command line). */
export function parseNode(value: string): CitusNode {
  const m = /^(.+):(\d{1,5})$/.exec(value.trim());
  if (!m) throw new TenantwallError('config_invalid', `A node is host:port, not ${JSON.stringify(value.slice(0, 80))}.`);
  return { host: m[1] as string, port: Number(m[2]) };
}

/** The first tenant table: isolating or moving its shard (CASCADE) takes every colocated tenant table along. */
function anchorTable(db: Tenantwall): string {
  const t = db.schema.tenantTables[0];
  if (!t) throw new TenantwallError('placement_unsupported', 'The schema declares no tenant table.');
  return t.name;
}

async function ensurePins(client: pg.ClientBase): Promise<void> {
  const { rows } = await client.query(`SELECT to_regclass($1) AS r`, [PINS]);
  if (rows[0]?.r) return;
  await withTransaction(client, async () => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('tenantwall.citus.pins'))`);
    // Local to the coordinator (read by the rebalance strategy, which runs there). Not named tenant_id: owner-only.
    await client.query(`CREATE TABLE IF NOT EXISTS ${PINS} (
      subject_tenant uuid PRIMARY KEY,
      node_name text NOT NULL,
      node_port int NOT NULL,
      pinned_at timestamptz NOT NULL DEFAULT now()
    )`);
  });
}

/** The worker (primary, active) named `node`, or an error listing the workers. */
async function workerOf(client: pg.ClientBase, node: CitusNode): Promise<CitusNode> {
  const { rows } = await client.query<{ host: string; port: number }>(
    `SELECT nodename AS host, nodeport AS port FROM pg_dist_node WHERE noderole = 'primary' AND isactive AND groupid <> 0 ORDER BY nodeid`,
  );
  const found = rows.find((r) => r.host === node.host && Number(r.port) === node.port);
  if (!found) {
    throw new TenantwallError('config_invalid', `${nodeText(node)} is not an active worker of this cluster (workers: ${rows.map((r) => `${r.host}:${r.port}`).join(', ') || 'none'}).`, {
      details: { node: nodeText(node) },
    });
  }
  return { host: found.host, port: Number(found.port) };
}

/** Reads from the catalog where the tenant's shard group is and whether it is isolated. */
export async function citusPlaceOf(client: pg.ClientBase, db: Tenantwall, tenantId: string): Promise<CitusTenantPlace> {
  const { rows } = await client.query<{ shardid: string; isolated: boolean; host: string; port: number }>(
    `SELECT s.shardid::text AS shardid, s.shardminvalue = s.shardmaxvalue AS isolated, n.nodename AS host, n.nodeport AS port
       FROM pg_dist_shard s JOIN pg_dist_placement p ON p.shardid = s.shardid JOIN pg_dist_node n ON n.groupid = p.groupid
      WHERE s.shardid = get_shard_id_for_distribution_column($1::regclass, $2::uuid) AND n.noderole = 'primary'
      ORDER BY p.placementid LIMIT 1`,
    [quoteIdent(anchorTable(db)), tenantId],
  );
  const r = rows[0];
  if (!r) throw new TenantwallError('schema_invalid', `Table ${anchorTable(db)} is not a distributed table; run migrate.`);
  const pins = (await client.query(`SELECT to_regclass($1) AS r`, [PINS])).rows[0]?.r
    ? await client.query<{ host: string; port: number }>(`SELECT node_name AS host, node_port AS port FROM ${PINS} WHERE subject_tenant = $1`, [tenantId])
    : { rows: [] };
  const pin = pins.rows[0] ? { host: pins.rows[0].host, port: Number(pins.rows[0].port) } : undefined;
  const node = { host: r.host, port: Number(r.port) };
  const placement: CitusPlacement = !r.isolated ? 'shared' : pin ? 'dedicated-node' : 'dedicated';
  return { placement, shardId: r.shardid, node, pinnedTo: pin };
}

/** Placement of every listed tenant in one catalog query. */
export async function citusPlacements(db: Tenantwall, tenantIds: readonly string[]): Promise<Map<string, CitusPlacement>> {
  const admin = db.dangerouslyCrossTenant();
  const pinned = (await admin.query(`SELECT to_regclass($1) AS r`, [PINS])).rows[0]?.r !== null;
  const { rows } = await admin.query<{ id: string; isolated: boolean; pinned: boolean }>(
    `SELECT t.id::text AS id, s.shardminvalue = s.shardmaxvalue AS isolated,
            ${pinned ? `EXISTS (SELECT 1 FROM ${PINS} p WHERE p.subject_tenant = t.id)` : 'false'} AS pinned
       FROM unnest($2::uuid[]) AS t(id) JOIN pg_dist_shard s ON s.shardid = get_shard_id_for_distribution_column($1::regclass, t.id)`,
    [quoteIdent(anchorTable(db)), tenantIds],
  );
  return new Map(rows.map((r) => [r.id, !r.isolated ? 'shared' : r.pinned ? 'dedicated-node' : 'dedicated']));
}

/** Options of a move on Citus. */
export interface CitusMoveOptions {
  /** The worker for `dedicated-node`. */
  readonly node?: CitusNode | undefined;
  /**
   * How long to wait for another process's lifecycle lock on this tenant (e.g. a just-killed move), and for another
   * Citus shard operation holding the shards (a rebalance: then `transaction_conflict`). Default 30000.
   */
  readonly lockWaitMs?: number | undefined;
  readonly onProgress?: ProgressListener | undefined;
}

/** What a move on Citus did (shape shared with the single-server `MoveResult`). */
export interface CitusMoveResult {
  readonly tenant: Tenant;
  readonly from: CitusPlacement;
  readonly to: CitusPlacement;
  readonly resumed: boolean;
  readonly tables: ReadonlyArray<{ readonly table: string; readonly rows: number; readonly checksum: string }>;
  readonly rowsCopied: number;
  readonly copyMs: number;
  /**
   * Not measured inside a Citus move (the final switch runs inside Citus): NaN. `npm run bench -- citus` measures
   * it from outside with a writer probe.
   */
  readonly writeBlockedMs: number;
  readonly readBlockedMs: number;
  readonly reconciledRows: number;
  readonly totalMs: number;
  /** The tenant's shard (first tenant table) and its worker after the move. */
  readonly shardId: string;
  readonly node: CitusNode;
  /** Time in `isolate_tenant_to_new_shard` and in `citus_move_shard_placement` (0 when not needed). */
  readonly isolateMs: number;
  readonly shardMoveMs: number;
}

function same(a: readonly TableSum[], b: readonly TableSum[]): boolean {
  return a.length === b.length && a.every((x, i) => x.rows === b[i]?.rows && x.checksum === b[i]?.checksum);
}

/**
 * Moves a tenant between the Citus tiers, online. shared -> dedicated isolates the tenant's hash value into a
 * shard group of its own; -> dedicated-node also moves that group to `options.node` and pins it there;
 * dedicated-node -> dedicated unpins it (the shard stays where it is). Citus cannot merge shards back, so
 * -> shared is refused once a tenant is isolated (`placement_unsupported`).
 *
 * Crash safety: a journal row records the target before any step; the steps are Citus operations, each atomic
 * (a killed one is rolled back by Citus and its leftovers cleaned by `citus_cleanup_orphaned_resources`), and
 * the session sets `client_connection_check_interval` so a killed caller's backend stops. Running the same move
 * again reads where the tenant is now and does the steps still missing.
 */
export async function moveTenantOnCitus(db: Tenantwall, ref: string, to: CitusPlacement, options: CitusMoveOptions = {}): Promise<CitusMoveResult> {
  const started = performance.now();
  if (to !== 'shared' && to !== 'dedicated' && to !== 'dedicated-node') {
    throw new TenantwallError('config_invalid', `Unknown placement ${JSON.stringify(to)}: shared, dedicated or dedicated-node.`);
  }
  if (to === 'dedicated-node' && !options.node) throw new TenantwallError('config_invalid', 'A move to dedicated-node needs the target worker (--node host:port).');
  if (to !== 'dedicated-node' && options.node) throw new TenantwallError('config_invalid', '--node is only for --to dedicated-node.');
  const tenant = await resolveTenant(db, ref);
  if (tenant.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${tenant.slug} was deleted.`);
  const client = await openSession(db);
  try {
    await lockTenant(client, tenant.id, options.lockWaitMs ?? SHARD_WAIT_MS);
    await ensurePins(client);
    const target = to === 'dedicated-node' ? await workerOf(client, options.node as CitusNode) : undefined;
    const journalTarget = target ? `dedicated-node@${nodeText(target)}` : to;
    const journal = await readJournal(client, tenant.id);
    if (journal?.operation === 'delete') throw new TenantwallError('tenant_busy', `A delete of tenant ${tenant.slug} is unfinished; run tenants delete again to complete it.`);
    if (journal && journal.target !== journalTarget) {
      throw new TenantwallError('move_in_progress', `A move of tenant ${tenant.slug} to ${journal.target} is unfinished; run it again to finish it.`, { details: { target: journal.target } });
    }
    const resumed = journal !== undefined;
    // Leftovers of a killed split or move (shards, subscriptions, slots) go before a new attempt.
    await client.query('CALL citus_cleanup_orphaned_resources()');
    const before = await citusPlaceOf(client, db, tenant.id);
    const from = before.placement;
    const done = before.placement === to && (to !== 'dedicated-node' || (sameNode(before.node, target) && sameNode(before.pinnedTo, target)));
    if (done && !resumed) throw new TenantwallError('placement_unchanged', `Tenant ${tenant.slug} already has ${to} placement.`, { details: { placement: to } });
    if (to === 'shared' && before.placement !== 'shared') {
      throw new TenantwallError('placement_unsupported', `Tenant ${tenant.slug} has its own shard; Citus cannot merge shards back, so it stays isolated (move it to dedicated to unpin it from its node).`);
    }
    const sums = async () => {
      const out: TableSum[] = [];
      for (const t of db.schema.tenantTables) out.push(await tableSum(client, t.name, tenant.id, db.schema.tenantColumn));
      return out;
    };
    const sumsBefore = await sums();
    if (!resumed) await client.query(`INSERT INTO ${JOURNAL} (subject_tenant, operation, target, phase) VALUES ($1, 'move', $2, 'isolating')`, [tenant.id, journalTarget]);
    const progress = (phase: string, n: number) => options.onProgress?.({ operation: 'move', phase, done: n, total: 2 });
    let isolateMs = 0;
    let shardMoveMs = 0;
    let place = before;
    if (!place.shardId || place.placement === 'shared') {
      progress('isolate', 0);
      const t0 = performance.now();
      place = await isolateOnCitus(client, db, tenant.id, options.lockWaitMs);
      isolateMs = performance.now() - t0;
      progress('isolate', 1);
    }
    await client.query(`UPDATE ${JOURNAL} SET phase = 'moving', updated_at = now() WHERE subject_tenant = $1`, [tenant.id]);
    if (target) {
      if (!sameNode(place.node, target)) {
        progress('move-shard', 1);
        const t0 = performance.now();
        const shardId = place.shardId;
        const from = place.node;
        await withSourceCommitsFlushed(client, await shardGroupNames(client, shardId), () =>
          withReplicationRlsBypass(db, () =>
            retryCatalogRace(client, () => client.query(`SELECT citus_move_shard_placement($1::bigint, $2, $3, $4, $5, shard_transfer_mode => 'force_logical')`, [shardId, from.host, from.port, target.host, target.port]), options.lockWaitMs),
          ),
          options.lockWaitMs,
        );
        shardMoveMs = performance.now() - t0;
        place = await citusPlaceOf(client, db, tenant.id);
      }
      await client.query(
        `INSERT INTO ${PINS} (subject_tenant, node_name, node_port) VALUES ($1, $2, $3)
         ON CONFLICT (subject_tenant) DO UPDATE SET node_name = EXCLUDED.node_name, node_port = EXCLUDED.node_port, pinned_at = now()`,
        [tenant.id, target.host, target.port],
      );
    } else if (to === 'dedicated') {
      await client.query(`DELETE FROM ${PINS} WHERE subject_tenant = $1`, [tenant.id]);
    }
    progress('verify', 2);
    const sumsAfter = await sums();
    // Writes continue during the move, so the sums may differ legitimately; what must hold is that the tenant is
    // where it should be and nothing was lost: compared when nothing wrote meanwhile, reported otherwise.
    place = await citusPlaceOf(client, db, tenant.id);
    if (place.placement !== to || (target && !sameNode(place.node, target))) {
      throw new TenantwallError('move_verification_failed', `After the move tenant ${tenant.slug} is ${place.placement} on ${nodeText(place.node)}, not ${journalTarget}.`);
    }
    await client.query(`DELETE FROM ${JOURNAL} WHERE subject_tenant = $1`, [tenant.id]);
    const tables = db.schema.tenantTables.map((t, i) => ({ table: t.name, rows: sumsAfter[i]?.rows ?? 0, checksum: sumsAfter[i]?.checksum ?? '0' }));
    return {
      tenant,
      from,
      to,
      resumed,
      tables,
      rowsCopied: isolateMs + shardMoveMs > 0 ? tables.reduce((a, t) => a + t.rows, 0) : 0,
      copyMs: isolateMs + shardMoveMs,
      writeBlockedMs: Number.NaN,
      readBlockedMs: 0,
      reconciledRows: same(sumsBefore, sumsAfter) ? 0 : -1,
      totalMs: performance.now() - started,
      shardId: place.shardId,
      node: place.node,
      isolateMs,
      shardMoveMs,
    };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/**
 * Gives `tenantId`'s hash value a shard group of its own (`isolate_tenant_to_new_shard`, online), on an owner
 * session the caller holds the tenant's lifecycle lock on. The value needs no rows: an import isolates its new
 * tenant before writing any (isolateNewTenant).
 */
async function isolateOnCitus(client: pg.ClientBase, db: Tenantwall, tenantId: string, waitMs?: number): Promise<CitusTenantPlace> {
  // A killed caller's backend notices its closed socket and aborts the running Citus step (then rolled back).
  await client.query(`SET client_connection_check_interval = '250ms'`);
  const place = await citusPlaceOf(client, db, tenantId);
  if (place.placement !== 'shared') return place;
  await withSourceCommitsFlushed(client, await shardGroupNames(client, place.shardId), () =>
    withReplicationRlsBypass(db, () =>
      retryCatalogRace(client, () => client.query(`SELECT isolate_tenant_to_new_shard($1::regclass, $2::uuid, 'CASCADE', shard_transfer_mode => 'force_logical')`, [quoteIdent(anchorTable(db)), tenantId]), waitMs),
    ),
    waitMs,
  );
  return citusPlaceOf(client, db, tenantId);
}

/**
 * Isolates the hash value of a tenant about to be created or imported with dedicated placement, before any row of
 * it exists: a failed isolation (a rebalance holding the shards: `transaction_conflict`) leaves nothing of the
 * tenant behind. `client` holds the tenant's lifecycle lock. A tenant with that id or slug is refused first
 * (`tenant_exists`): another tenant's shard is never split on its behalf.
 */
export async function isolateNewTenant(client: pg.ClientBase, db: Tenantwall, id: string, slug: string, waitMs?: number): Promise<void> {
  const { rows } = await client.query(`SELECT 1 FROM ${quoteIdent(db.schema.registryTable)} WHERE id = $1 OR slug = $2`, [id, slug]);
  if (rows.length > 0) throw new TenantwallError('tenant_exists', `A tenant with id ${id} or slug ${slug} already exists.`);
  await isolateOnCitus(client, db, id, waitMs);
}

/**
 * Citus' logical replication (shard split and shard move) applies the changes made during the copy as a
 * transient role it creates on the target worker (`citus_shard_{split,move}_subscription_role_*`, created
 * SUPERUSER, then made NOSUPERUSER). On PostgreSQL 15+ the apply worker refuses tables whose row-level security
 * applies to that role ("cannot replicate into relation with row-level security enabled"), which is every
 * tenantwall table (FORCE ROW LEVEL SECURITY): the operation then waits forever for a catch-up that never comes
 * as soon as anything writes during it. While `fn` runs, a second owner session gives those transient roles
 * BYPASSRLS on every node (they were superusers a moment earlier, and Citus drops them at the end).
 */
async function withReplicationRlsBypass<T>(db: Tenantwall, fn: () => Promise<T>): Promise<T> {
  const helper = await openSession(db);
  let running = true;
  let failure: unknown;
  // Each role is altered once, and only after Citus's own ALTER ROLE ... NOSUPERUSER (until then it is a superuser
  // and needs nothing): two ALTER ROLEs of one role at the same moment fail one of them with "tuple concurrently
  // updated", which must not be Citus's. A role Citus dropped meanwhile (its step ended) is skipped.
  const grant = `DO $do$ DECLARE r text; BEGIN
      PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
      FOR r IN SELECT rolname FROM pg_roles WHERE rolname ~ '^citus_shard_(split|move)_subscription_role_' AND NOT rolbypassrls AND NOT rolsuper LOOP
        BEGIN
          EXECUTE format('ALTER ROLE %I BYPASSRLS', r);
        EXCEPTION WHEN undefined_object THEN NULL;
        END;
      END LOOP; END $do$`;
  const loop = (async () => {
    while (running) {
      try {
        const { rows } = await helper.query<{ success: boolean; result: string }>(`SELECT success, result FROM run_command_on_all_nodes($1)`, [grant]);
        const bad = rows.find((r) => !r.success);
        if (bad) failure = new Error(bad.result);
      } catch (err) {
        failure = err;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  })();
  try {
    return await fn();
  } catch (err) {
    if (failure) throw new TenantwallError('admin_role_insufficient', `A Citus shard operation failed; granting BYPASSRLS to its replication role also failed (${(failure as Error).message}).`, { cause: err });
    throw err;
  } finally {
    running = false;
    await loop;
    await helper.end().catch(() => undefined);
  }
}

/**
 * The tables of the shard group holding `shardId` (one shard per colocated table, same hash range), by the
 * schema-qualified names they have on their worker.
 */
async function shardGroupNames(client: pg.ClientBase, shardId: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT shard_name(s.logicalrelid, s.shardid) AS name
       FROM pg_dist_shard a JOIN pg_dist_partition ap ON ap.logicalrelid = a.logicalrelid
       JOIN pg_dist_partition d ON d.colocationid = ap.colocationid
       JOIN pg_dist_shard s ON s.logicalrelid = d.logicalrelid AND s.shardminvalue = a.shardminvalue AND s.shardmaxvalue = a.shardmaxvalue
      WHERE a.shardid = $1::bigint ORDER BY s.shardid`,
    [shardId],
  );
  return rows.map((r) => r.name);
}

const SYNC_GUARD_FN = 'tenantwall_flush_commit';
const SYNC_GUARD_TRIGGER = 'tenantwall_flush_commit';

/**
 * Runs a Citus shard transfer (split, move, rebalance) so that no write acknowledged before its final switch is
 * lost. Citus's logical-replication transfer blocks writes, then waits until the subscription has reached the
 * source worker's `pg_current_wal_lsn()` and switches. That function returns the WAL *write* position. With
 * `synchronous_commit = off` on a worker, a commit is acknowledged once its record is in the WAL buffers, before
 * it is written: the writes acknowledged in the last moments before the block can lie beyond the position Citus
 * waits for, the switch happens without them and they stay behind in the old shard, which is then dropped
 * (reproduced without tenantwall by test/citus/repro/split-async-commit.ts; docs/scale-out.md). With a commit that
 * waits for its WAL to be flushed it cannot happen (flushed <= written).
 *
 * So while `fn` runs, a statement trigger on each source shard (on its worker, not on the distributed table: the
 * new shards Citus creates do not get it) raises `synchronous_commit` from `off` to `local` in every transaction
 * that writes to it: only the writes to the shards being transferred, only during the transfer, and never lowered
 * (a worker with `on`, `remote_write` or `remote_apply` keeps its setting). Shards still in use afterwards (a
 * failed step, a rebalance that left a shard where it was) lose the trigger again; transferred ones are dropped
 * by Citus with it. A killed process may leave triggers behind: they only make those commits durable, and running
 * that move again or a rebalance removes them.
 */
async function withSourceCommitsFlushed<T>(client: pg.ClientBase, shardNames: readonly string[], fn: () => Promise<T>, waitMs = SHARD_WAIT_MS): Promise<T> {
  const until = performance.now() + waitMs;
  const literal = (v: string) => `'${v.replaceAll("'", "''")}'`;
  const names = `ARRAY[${shardNames.map(literal).join(', ')}]::text[]`;
  // Per node: the trigger function in the shards' schemas, then the trigger on the shards that are on this node.
  // Per node: the trigger function in the shards' schemas (no table lock), then the trigger on each shard that is on
  // that node, one shard per transaction: several shard locks in one transaction could deadlock with an application
  // transaction that writes to two of them in the other order.
  const functions = `DO $do$ DECLARE ns text; BEGIN
      PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
      FOR ns IN SELECT DISTINCT n.nspname FROM unnest(${names}) AS x(name) JOIN pg_class c ON c.oid = to_regclass(x.name) JOIN pg_namespace n ON n.oid = c.relnamespace LOOP
        EXECUTE format($f$CREATE OR REPLACE FUNCTION %I.${SYNC_GUARD_FN}() RETURNS trigger LANGUAGE plpgsql AS $b$
          BEGIN
            IF pg_catalog.current_setting('synchronous_commit') = 'off' THEN
              PERFORM pg_catalog.set_config('synchronous_commit', 'local', true);
            END IF;
            RETURN NULL;
          END $b$$f$, ns);
        EXECUTE format('GRANT EXECUTE ON FUNCTION %I.${SYNC_GUARD_FN}() TO PUBLIC', ns);
      END LOOP; END $do$`;
  // The trigger needs the shard's lock: a shard operation holding it (a move of that shard) is waited for at most
  // until the deadline, then the step fails like one Citus refused (transaction_conflict, nothing changed).
  const install = (name: string) => `DO $do$ DECLARE r regclass := to_regclass(${literal(name)}); BEGIN
      IF r IS NULL THEN RETURN; END IF;
      PERFORM set_config('lock_timeout', '${Math.max(1, Math.round(until - performance.now()))}', true);
      PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
      PERFORM set_config('citus.enable_manual_changes_to_shards', 'on', true);
      EXECUTE format('CREATE OR REPLACE TRIGGER ${SYNC_GUARD_TRIGGER} AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION %I.${SYNC_GUARD_FN}()',
                     r, (SELECT n.nspname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = r));
    END $do$`;
  // Afterwards: off every shard of this list still there (other operations' triggers are left alone); the shards
  // Citus replaced are dropped by Citus with theirs.
  const remove = (name: string) => `DO $do$ DECLARE r regclass := to_regclass(${literal(name)}); BEGIN
      IF r IS NULL OR NOT EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = r AND t.tgname = '${SYNC_GUARD_TRIGGER}') THEN RETURN; END IF;
      PERFORM set_config('lock_timeout', '${Math.max(1, Math.round(waitMs))}', true);
      PERFORM set_config('citus.enable_ddl_propagation', 'off', true);
      PERFORM set_config('citus.enable_manual_changes_to_shards', 'on', true);
      EXECUTE format('DROP TRIGGER IF EXISTS ${SYNC_GUARD_TRIGGER} ON %s', r);
    EXCEPTION WHEN undefined_table THEN NULL;
    END $do$`;
  const onAllNodes = async (sql: string) => {
    const { rows } = await client.query<{ node: string; success: boolean; result: string }>(
      `SELECT coalesce(n.nodename || ':' || n.nodeport, r.nodeid::text) AS node, r.success, r.result FROM run_command_on_all_nodes($1) r LEFT JOIN pg_dist_node n USING (nodeid)`,
      [sql],
    );
    const bad = rows.find((r) => !r.success);
    if (bad && /lock timeout/.test(bad.result)) {
      throw shardsHeld(`a shard to be transferred (${bad.node})`, waitMs, bad.result);
    }
    if (bad) throw new TenantwallError('admin_role_insufficient', `Could not make the commits of the shards being moved durable on ${bad.node} (${bad.result}); the owner connection must be a superuser.`);
  };
  if (shardNames.length === 0) return fn();
  await onAllNodes(functions);
  try {
    // Inside the try: the triggers already installed when a later one times out are removed again.
    for (const name of shardNames) await onAllNodes(install(name));
    return await fn();
  } finally {
    for (const name of shardNames) await onAllNodes(remove(name)).catch(() => undefined);
  }
}

/**
 * A Citus shard step that failed only because of a concurrent operation, rolled back whole by Citus: a catalog row
 * it updates was updated by another session at the same moment ("tuple concurrently updated"/"deleted", e.g. a
 * role or a `pg_dist_*` row), or another shard operation on the same colocation group holds its lock ("could not
 * acquire the lock required to move/split ...": a rebalance, a tenant isolated, a shard moved meanwhile; Citus
 * does not queue for it), or a shard the step planned for was replaced meanwhile ("could not find valid entry for
 * shard N": a tenant isolated to a new shard while a rebalance planned its moves). Its leftovers are cleaned and
 * it runs again after a growing pause (0.5 s, 1 s, ... at most 5 s) until `waitMs` has passed; then
 * `transaction_conflict`: each step is atomic, so nothing was changed, and a rebalance plans only the moves still
 * missing.
 */
async function retryCatalogRace<T>(client: pg.ClientBase, step: () => Promise<T>, waitMs = SHARD_WAIT_MS): Promise<T> {
  const started = performance.now();
  for (let attempt = 1; ; attempt++) {
    try {
      return await step();
    } catch (err) {
      const message = (err as Error).message ?? '';
      if (!/tuple concurrently (updated|deleted)|could not acquire the lock required to|could not find valid entry for shard/.test(message)) throw err;
      const left = waitMs - (performance.now() - started);
      if (left <= 0) {
        // A long operation (a rebalance of the cluster, another tenant's shard move) still holds the shards.
        throw shardsHeld('the shards', waitMs, message, err);
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(500 * attempt, 5000, left)));
      await client.query('CALL citus_cleanup_orphaned_resources()');
    }
  }
}

/** Default of how long a Citus shard step waits for a concurrent one (`lockWaitMs`). */
const SHARD_WAIT_MS = 30_000;

/** A Citus shard step still refused after `waitMs` because another shard operation held `what`: nothing changed. */
function shardsHeld(what: string, waitMs: number, citus: string, cause?: unknown): TenantwallError {
  return new TenantwallError(
    'transaction_conflict',
    `Another Citus shard operation (a rebalance, or a move or isolation in the same colocation group) held ${what} for ${Math.round(waitMs / 1000)} s; nothing was changed. Run it again once that operation has finished.`,
    { cause, details: { citus } },
  );
}

function sameNode(a: CitusNode | undefined, b: CitusNode | undefined): boolean {
  return a !== undefined && b !== undefined && a.host === b.host && a.port === b.port;
}

/** One shard move of a rebalance. */
export interface RebalanceMove {
  readonly shardId: string;
  readonly from: string;
  readonly to: string;
}

/** What `rebalanceCluster` did. */
export interface RebalanceResult {
  /** Active workers after the rebalance with their number of shard placements. */
  readonly workers: ReadonlyArray<{ readonly node: string; readonly shards: number }>;
  /** The moves planned (and done unless `dryRun`). */
  readonly moves: readonly RebalanceMove[];
  readonly ms: number;
}

/**
 * Spreads the shards over the workers after `citus_add_node`, online (`force_logical`), with the
 * `tenantwall` rebalance strategy: a pinned tenant's (dedicated-node) shards may only be on its node, and no
 * other shard may be on a node a tenant is pinned to. `dryRun` only lists the moves.
 */
export async function rebalanceCluster(db: Tenantwall, options: { dryRun?: boolean; onProgress?: ProgressListener } = {}): Promise<RebalanceResult> {
  if (!db.citusVersion) throw new TenantwallError('placement_unsupported', 'cluster rebalance needs a Citus coordinator.');
  const started = performance.now();
  const client = await openSession(db);
  try {
    await client.query(`SET client_connection_check_interval = '250ms'`);
    await ensurePins(client);
    await ensureStrategy(client, db);
    await client.query('CALL citus_cleanup_orphaned_resources()');
    const plan = await client.query<{ shardid: string; sourcename: string; sourceport: number; targetname: string; targetport: number }>(
      `SELECT shardid::text AS shardid, sourcename, sourceport, targetname, targetport FROM get_rebalance_table_shards_plan(rebalance_strategy => $1)`,
      [STRATEGY],
    );
    const moves = plan.rows.map((r) => ({ shardId: r.shardid, from: `${r.sourcename}:${r.sourceport}`, to: `${r.targetname}:${r.targetport}` }));
    options.onProgress?.({ operation: 'move', phase: 'rebalance', done: 0, total: moves.length });
    if (!options.dryRun && moves.length > 0) {
      // Every shard may move: all of them flush their commits while the rebalance runs.
      const all = await client.query<{ name: string }>(
        `SELECT shard_name(s.logicalrelid, s.shardid) AS name FROM pg_dist_shard s JOIN pg_dist_partition d USING (logicalrelid) WHERE d.partmethod = 'h' ORDER BY s.shardid`,
      );
      await withSourceCommitsFlushed(client, all.rows.map((r) => r.name), () =>
        withReplicationRlsBypass(db, () =>
          // Restartable: a failed round is rolled back by Citus; the next one plans only the moves still missing.
          retryCatalogRace(client, () => client.query(`SELECT rebalance_table_shards(rebalance_strategy => $1, shard_transfer_mode => 'force_logical')`, [STRATEGY])),
        ),
      );
    }
    options.onProgress?.({ operation: 'move', phase: 'rebalance', done: moves.length, total: moves.length });
    const { rows } = await client.query<{ node: string; shards: number }>(
      `SELECT n.nodename || ':' || n.nodeport AS node, count(p.shardid)::int AS shards
         FROM pg_dist_node n LEFT JOIN pg_dist_placement p ON p.groupid = n.groupid
        WHERE n.noderole = 'primary' AND n.isactive AND n.groupid <> 0 GROUP BY 1 ORDER BY 1`,
    );
    return { workers: rows, moves, ms: performance.now() - started };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The `tenantwall` rebalance strategy and its shard-allowed function (idempotent). */
async function ensureStrategy(client: pg.ClientBase, db: Tenantwall): Promise<void> {
  void db;
  await withTransaction(client, async () => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('tenantwall.citus.strategy'))`);
    // The rebalancer calls it on the coordinator only, where the pin table is: not propagated to the workers.
    await client.query(`SET LOCAL citus.enable_ddl_propagation TO off`);
    // A shard group is a pinned tenant's when it is isolated (min = max) on that tenant's hash value.
    await client.query(`CREATE OR REPLACE FUNCTION ${ALLOWED_FN}(shard bigint, node int) RETURNS boolean
      LANGUAGE sql STABLE AS $fn$
        WITH s AS (SELECT shardminvalue, shardmaxvalue FROM pg_dist_shard WHERE shardid = shard),
             pin AS (SELECT p.node_name, p.node_port FROM ${PINS} p, s
                      WHERE s.shardminvalue = s.shardmaxvalue AND s.shardminvalue = worker_hash(p.subject_tenant)::text),
             n AS (SELECT nodename, nodeport FROM pg_dist_node WHERE nodeid = node)
        SELECT CASE WHEN EXISTS (SELECT 1 FROM pin)
                    THEN EXISTS (SELECT 1 FROM pin, n WHERE pin.node_name = n.nodename AND pin.node_port = n.nodeport)
                    ELSE NOT EXISTS (SELECT 1 FROM ${PINS} p, n WHERE p.node_name = n.nodename AND p.node_port = n.nodeport) END
      $fn$`);
    await client.query(`REVOKE ALL ON FUNCTION ${ALLOWED_FN}(bigint, int) FROM PUBLIC`);
    const exists = await client.query(`SELECT 1 FROM pg_dist_rebalance_strategy WHERE name = $1`, [STRATEGY]);
    if (exists.rowCount === 0) {
      await client.query(`SELECT citus_add_rebalance_strategy($1, 'citus_shard_cost_1'::regproc, 'citus_node_capacity_1'::regproc, $2::regproc, 0)`, [STRATEGY, ALLOWED_FN]);
    }
  });
}
