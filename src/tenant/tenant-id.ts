import { TenantwallError } from '../errors.ts';

declare const tenantIdBrand: unique symbol;

/**
 * A tenant id: a UUID in canonical lowercase form. Only `TenantId.parse` (or `TenantId.generate`) produce one,
 * so a value of this type has always been validated. UUIDs rather than serial integers so that ids are not
 * guessable across tenants and can be generated without a round trip (docs/architecture.md).
 */
export type TenantId = string & { readonly [tenantIdBrand]: true };

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

function isTenantId(value: unknown): value is TenantId {
  return typeof value === 'string' && UUID_RE.test(value);
}

export const TenantId = {
  /** Validates and normalises (lowercases) a tenant id; throws `invalid_tenant_id`. */
  parse(value: unknown): TenantId {
    if (typeof value === 'string') {
      const lower = value.trim().toLowerCase();
      if (UUID_RE.test(lower) && lower.length === value.length) return lower as TenantId;
    }
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : typeof value;
    throw new TenantwallError('invalid_tenant_id', `Invalid tenant id ${shown}.`, { details: { field: 'tenant_id' } });
  },
  /** True when `value` already is a canonical tenant id. */
  is: isTenantId,
  generate(): TenantId {
    return crypto.randomUUID() as TenantId;
  },
} as const;
