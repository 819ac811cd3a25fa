import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { resolveTenant } from '../lifecycle/internal.ts';

/**
 * The tenant a command argument names: an id of the configured key type or a slug (every CLI command accepts
 * both); `tenant_not_found` otherwise. Deleted tenants are found by id only.
 */
export function tenantArg(db: Tenantwall, ref: string): Promise<Tenant> {
  return resolveTenant(db, ref);
}
