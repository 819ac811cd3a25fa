import { AsyncLocalStorage } from 'node:async_hooks';
import { TenantwallError } from '../errors.ts';
import { TenantId } from './tenant-id.ts';

/** The tenant of the current async context (`runWithTenant`). */
export interface TenantContext {
  readonly tenantId: TenantId;
  /** Free-form facts about who is calling (request id, API key id, ...), for logs and metering. */
  readonly attributes: Readonly<Record<string, unknown>>;
}

const storage = new AsyncLocalStorage<TenantContext>();

/** Runs `fn` with `tenantId` as the implicit current tenant of everything it awaits. */
export function runWithTenant<T>(tenantId: TenantId, fn: () => T, attributes: Record<string, unknown> = {}): T {
  return storage.run(Object.freeze({ tenantId: TenantId.parse(tenantId), attributes: Object.freeze({ ...attributes }) }), fn);
}

/** The implicit tenant context, or undefined outside of one. */
export function currentTenantContext(): TenantContext | undefined {
  return storage.getStore();
}

/** The implicit tenant; throws `tenant_context_missing` outside of a tenant context (fail closed). */
export function requireTenantId(): TenantId {
  const ctx = storage.getStore();
  if (!ctx) {
    throw new TenantwallError('tenant_context_missing', 'No tenant context is active for this tenant-scoped operation.');
  }
  return ctx.tenantId;
}
