import { randomUUID } from 'node:crypto';
import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { resolveTenant } from './internal.ts';
import { TenantId } from '../tenant/tenant-id.ts';

/** Options of `suspendTenant`: the reason written into `tenant.suspended`. */
export interface SuspendOptions {
  /** Why (in the `tenant.suspended` event). Default `suspended`. */
  readonly reason?: string;
}

/**
 * Suspends a tenant (by id or slug): its requests are refused with `tenant_suspended` (403), its data stays.
 * When the metering tables exist, the `tenant.suspended` billing event is written in the same transaction as
 * the status change, once per suspension (suspending a suspended tenant writes nothing). Idempotent;
 * `tenant_not_found` / `tenant_deleted` otherwise.
 */
export async function suspendTenant(db: Tenantwall, ref: string, options: SuspendOptions = {}): Promise<Tenant> {
  const tenant = await resolveTenant(db, ref);
  return db.tenants.suspend(tenant.id, {
    onSuspended: async (client, t) => {
      const { rows } = await client.query<{ ok: boolean }>(`SELECT to_regprocedure('tw_outbox_write(${TenantId.sqlType()}, text, text, jsonb)') IS NOT NULL AS ok`);
      if (!rows[0]?.ok) return; // no metering tables: nothing to bill
      // The outbox's one writer is this SQL function (metering's writeOutboxEvent calls it too).
      const payload = { tenant_id: t.id, reason: options.reason ?? 'suspended', suspended_at: new Date().toISOString() };
      await client.query(`SELECT tw_outbox_write($1, $2, $3, $4::jsonb)`, [t.id, `tenant.suspended:${t.id}:${randomUUID()}`, 'tenant.suspended', JSON.stringify(payload)]);
    },
  });
}
