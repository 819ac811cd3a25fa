import { AsyncLocalStorage } from 'node:async_hooks';
import type { DbLimits, LimitsProvider } from '../db/limits.ts';
import type { TenantId } from '../tenant/tenant-id.ts';
import type { Metering } from './metering.ts';

// Set while a plan is being looked up: the lookup's own statement runs without limits instead of asking again.
const lookingUp = new AsyncLocalStorage<true>();

/**
 * The database limits of each tenant's plan (`PlanSpec.database`), for `Tenantwall.connect({ limits })` or
 * `db.forTenant(id, { limits })`. The plan comes from `metering.planOf` (cached for `planCacheTtlMs`), so a
 * plan change applies to the tenant's next statements once the cache entry expires.
 */
export function planLimits(metering: () => Pick<Metering, 'planOf'> | undefined): LimitsProvider {
  return async (tenantId: TenantId): Promise<DbLimits | undefined> => {
    const m = metering();
    if (m === undefined || lookingUp.getStore()) return undefined;
    return (await lookingUp.run(true, () => m.planOf(tenantId))).database;
  };
}
