import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { withTransaction } from '../db/transaction.ts';
import { quoteLiteral } from '../schema/ddl.ts';
import { JOURNAL, lockAll, lockTenant, openSession, placesOf, primaryKeyOf, q, readJournal, resolveTenant, mapLifecycleErrors } from './internal.ts';
import { dropStaging, fkLinkedTables } from './move.ts';
import type { ProgressListener } from './progress.ts';

/** Options of `deleteTenant`: confirmation, batch size, progress. */
export interface DeleteOptions {
  /** Must equal the tenant's slug (or id): deleting is irreversible. */
  readonly confirm: string | undefined;
  /** Rows per DELETE batch for shared placement. Default 5000. */
  readonly batchSize?: number;
  readonly onProgress?: ProgressListener;
}

/** What `deleteTenant` removed: rows per table and dropped partitions. */
export interface DeleteResult {
  readonly tenant: Tenant;
  /** Dedicated partitions detached and dropped. */
  readonly droppedPartitions: readonly string[];
  /** Rows deleted in batches from shared partitions and unpartitioned tables. */
  readonly rowsDeleted: number;
  /** A killed earlier delete was completed. */
  readonly resumed: boolean;
  readonly dropMs: number;
  readonly ms: number;
}

/**
 * Deletes every row of a tenant and leaves a tombstone (status `deleted`) in the registry. Dedicated
 * partitions are detached and dropped in one transaction (O(1) in rows); shared rows go in batches of short
 * transactions so no lock is held long. The tenant is suspended and journaled first, so a killed delete is
 * finished by running it again; the tombstone is written only once no row is left anywhere.
 */
export async function deleteTenant(db: Tenantwall, ref: string, options: DeleteOptions): Promise<DeleteResult> {
  // PostgreSQL's lock waits, deadlocks and lost connections reach the caller as TenantwallErrors
  // (transaction_conflict, database_unreachable): nothing of the operation was applied, and it can be run again.
  return mapLifecycleErrors(() => deleteTenantImpl(db, ref, options));
}

async function deleteTenantImpl(db: Tenantwall, ref: string, options: DeleteOptions): Promise<DeleteResult> {
  const started = performance.now();
  const tenant = await resolveTenant(db, ref);
  if (options.confirm === undefined || (options.confirm !== tenant.slug && options.confirm !== tenant.id)) {
    throw new TenantwallError('confirmation_required', `Refusing to delete tenant ${tenant.slug} without --confirm ${tenant.slug}.`, {
      details: { tenant: tenant.slug },
    });
  }
  const batchSize = options.batchSize ?? 5000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new TenantwallError('config_invalid', 'batchSize must be a positive integer.');
  const client = await openSession(db);
  const tc = db.schema.tenantColumn;
  const lit = quoteLiteral(tenant.id);
  try {
    await lockTenant(client, tenant.id);
    const journal = await readJournal(client, tenant.id);
    const resumed = journal?.operation === 'delete';
    if (tenant.status === 'deleted' && !resumed) throw new TenantwallError('tenant_deleted', `Tenant ${tenant.slug} was already deleted.`);
    if (!resumed) {
      // Refused by the data path from here on (suspended), and resumable if this process dies.
      if (tenant.status === 'active') await db.tenants.suspend(tenant.id);
      await client.query(
        `INSERT INTO ${JOURNAL} (subject_tenant, operation, phase) VALUES ($1, 'delete', 'deleting')
         ON CONFLICT (subject_tenant) DO UPDATE SET operation = 'delete', target = NULL, phase = 'deleting', updated_at = now()`,
        [tenant.id],
      );
    }
    // A journaled move's staging copies hold rows of this tenant too.
    await dropStaging(client, db, tenant.id);

    const dropStart = performance.now();
    const dedicated = (await placesOf(client, db, tenant.id)).filter((p) => p.dedicated);
    const droppedPartitions: string[] = [];
    if (dedicated.length > 0) {
      await withTransaction(client, async () => {
        // Same lock order as a move (see lockForSwitch): parents of foreign-key-linked tables, then buckets;
        // detaching takes ACCESS EXCLUSIVE on both anyway, for the catalog-only instant this transaction lasts.
        // All or nothing (lockAll): a request holding one of these tables while it waits for another we hold
        // would otherwise be a deadlock, with the request as likely the victim as this delete.
        const linked = fkLinkedTables(db);
        const locks = [...db.schema.tenantTables].reverse().filter((t) => linked.has(t.name)).map((t) => `LOCK TABLE ONLY ${q(t.name)} IN ACCESS EXCLUSIVE MODE`);
        for (const p of dedicated) locks.push(`LOCK TABLE ONLY ${q(p.bucketRel)} IN ACCESS EXCLUSIVE MODE`);
        await lockAll(client, locks, 5000);
        // Referencing tables first: detaching a referenced partition checks that nothing points into it.
        for (const p of [...dedicated].reverse()) {
          await client.query(`ALTER TABLE ${q(p.bucketRel)} DETACH PARTITION ${q(p.dedicatedRel)}`);
          await client.query(`DROP TABLE ${q(p.dedicatedRel)}`);
          droppedPartitions.push(p.dedicatedRel);
        }
      });
      options.onProgress?.({ operation: 'delete', phase: 'drop', done: droppedPartitions.length, total: droppedPartitions.length });
    }
    const dropMs = performance.now() - dropStart;

    let rowsDeleted = 0;
    for (const t of [...db.schema.tenantTables].reverse()) {
      const pk = primaryKeyOf(t, tc).map(q).join(', ');
      const total = Number((await client.query(`SELECT count(*)::text AS n FROM ${q(t.name)} WHERE ${q(tc)} = ${lit}`)).rows[0]?.n ?? 0);
      let done = 0;
      for (;;) {
        const res = await client.query(
          `DELETE FROM ${q(t.name)} WHERE (${pk}) IN (SELECT ${pk} FROM ${q(t.name)} WHERE ${q(tc)} = ${lit} LIMIT ${batchSize})`,
        );
        const n = res.rowCount ?? 0;
        if (n === 0) break;
        done += n;
        rowsDeleted += n;
        options.onProgress?.({ operation: 'delete', phase: 'rows', table: t.name, done, total: Math.max(total, done) });
      }
    }

    // The tombstone only once nothing is left (rows written by a straggler transaction are caught here).
    for (const t of db.schema.tenantTables) {
      const left = Number((await client.query(`SELECT count(*)::text AS n FROM ${q(t.name)} WHERE ${q(tc)} = ${lit}`)).rows[0]?.n ?? 0);
      if (left > 0) throw new TenantwallError('tenant_busy', `Table ${t.name} still has ${left} rows of tenant ${tenant.slug} (written during the delete); run delete again.`);
    }
    const tombstone = await db.tenants.tombstone(tenant.id);
    await client.query(`DELETE FROM ${JOURNAL} WHERE subject_tenant = $1`, [tenant.id]);
    return { tenant: tombstone, droppedPartitions, rowsDeleted, resumed, dropMs, ms: performance.now() - started };
  } finally {
    await client.end().catch(() => undefined);
  }
}
