import { type Tenant, assertActive, parseSlug } from '../db/tenant-registry.ts';
import type { TenantScope, Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { withTransaction } from '../db/transaction.ts';
import { dedicatedPartitionName as dedicatedName, dedicatedPartitionSql, quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { type CitusPlacement, citusPlaceOf, citusPlacements, isolateNewTenant } from './citus.ts';
import { type Placement, bucketOf, dedicatedCapable, lockTenant, openSession, placementOf, placesOf, resolveTenant } from './internal.ts';

/** Options of `createTenant` (lifecycle): placement and progress. */
export interface CreateTenantOptions {
  readonly slug: string;
  readonly name: string;
  readonly id?: TenantId | string;
  /** `shared` (default): rows go to the hash buckets. `dedicated`: empty dedicated partitions are created now. */
  readonly placement?: Placement;
  /**
   * Citus, dedicated placement: how long isolating the new tenant's shard waits for another shard operation that
   * holds the shards (a rebalance) before giving up with `transaction_conflict`, nothing created. Default 30000.
   */
  readonly lockWaitMs?: number;
}

/** A tenant with its placement and row counts (`tenantInfo`). */
export interface TenantInfo {
  readonly tenant: Tenant;
  readonly placement: Placement | CitusPlacement | 'mixed';
}

/**
 * A scoped handle only for an ACTIVE tenant: suspended and deleted tenants are refused by the library with
 * `tenant_suspended` / `tenant_deleted` (the HTTP layer maps them to 403 / 410). Data stays intact.
 */
export async function scopeForActiveTenant(db: Tenantwall, ref: string): Promise<TenantScope> {
  const tenant = await resolveTenant(db, ref);
  assertActive(tenant, ref);
  return db.forTenant(tenant.id);
}

/** Registry row plus whatever the placement needs, in one transaction: a failed create leaves nothing. */
export async function createTenant(db: Tenantwall, options: CreateTenantOptions): Promise<TenantInfo> {
  const placement = options.placement ?? 'shared';
  if (placement === 'shared') {
    const tenant = await db.tenants.create({ slug: options.slug, name: options.name, ...(options.id ? { id: options.id } : {}) });
    return { tenant, placement: 'shared' };
  }
  if (placement !== 'dedicated') throw new TenantwallError('config_invalid', `Unknown placement ${JSON.stringify(placement)}: shared or dedicated.`);
  const slug = parseSlug(options.slug);
  const id = options.id === undefined ? TenantId.generate() : TenantId.parse(options.id);
  if (typeof options.name !== 'string' || options.name.trim() === '' || options.name.length > 200) {
    throw new TenantwallError('config_invalid', 'Tenant name must be 1-200 characters.', { status: 400, details: { field: 'name' } });
  }
  const tables = dedicatedCapable(db); // none on Citus, where the shards are the partitions
  if (!db.citusVersion && tables.length === 0) throw new TenantwallError('placement_unsupported', 'No tenant table of this schema is partitioned for dedicated placement.');
  const client = await openSession(db);
  try {
    await lockTenant(client, id);
    // Citus: the tenant's own shard group is split off before the tenant exists (seconds, no data to copy).
    if (db.citusVersion) await isolateNewTenant(client, db, id, slug, options.lockWaitMs);
    try {
      await withTransaction(client, async () => {
        await client.query(`INSERT INTO ${quoteIdent(db.schema.registryTable)} (id, slug, name) VALUES ($1, $2, $3)`, [id, slug, options.name.trim()]);
        for (const t of tables) {
          for (const sql of dedicatedPartitionSql(t, db.ddlContext, id, await bucketOf(client, t, id))) await client.query(sql);
        }
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw new TenantwallError('tenant_exists', `A tenant with id ${id} or slug ${slug} already exists.`, { cause: err });
      }
      throw err;
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  const tenant = await db.tenants.get(id);
  return { tenant: tenant as Tenant, placement: 'dedicated' };
}

/** The tenant (by id or slug) and where its rows live. */
export async function tenantInfo(db: Tenantwall, ref: string): Promise<TenantInfo> {
  const tenant = await resolveTenant(db, ref);
  if (db.citusVersion && tenant.status !== 'deleted') {
    const client = await openSession(db);
    try {
      return { tenant, placement: (await citusPlaceOf(client, db, tenant.id)).placement };
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  if (dedicatedCapable(db).length === 0 || tenant.status === 'deleted') return { tenant, placement: 'shared' };
  const client = await openSession(db);
  try {
    return { tenant, placement: placementOf(await placesOf(client, db, tenant.id)) };
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** Every tenant with its placement (one catalog query: dedicated partitions carry the tenant id in their name). */
export async function listTenants(db: Tenantwall, options: { status?: Tenant['status']; limit?: number; after?: string } = {}): Promise<TenantInfo[]> {
  const tenants = await db.tenants.list(options);
  if (db.citusVersion && db.schema.tenantTables.length > 0) {
    const placements = await citusPlacements(db, tenants.map((t) => t.id));
    return tenants.map((tenant) => ({ tenant, placement: placements.get(tenant.id) ?? 'shared' }));
  }
  const tables = dedicatedCapable(db);
  if (tables.length === 0) return tenants.map((tenant) => ({ tenant, placement: 'shared' as const }));
  const { rows } = await db.dangerouslyCrossTenant().query<{ relname: string }>(
    `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
      WHERE c.relname LIKE '%\\_t\\_%' AND p.relname = ANY($1)`,
    [tables.flatMap((t) => Array.from({ length: t.partition?.hashPartitions ?? 0 }, (_, i) => `${t.name}_p${i}`))],
  );
  const attached = new Set(rows.map((r) => r.relname));
  return tenants.map((tenant) => {
    const n = tables.filter((t) => attached.has(dedicatedName(t.name, tenant.id))).length;
    return { tenant, placement: n === 0 ? 'shared' : n === tables.length ? 'dedicated' : 'mixed' };
  });
}

/** Changes the slug (subdomains, URLs); the id and every row stay as they are. */
export async function renameTenant(db: Tenantwall, ref: string, slug: string): Promise<Tenant> {
  const tenant = await resolveTenant(db, ref);
  return db.tenants.rename(tenant.id, slug);
}
