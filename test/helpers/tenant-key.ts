import { TenantId, type TenantKeyType } from '../../src/index.ts';

/**
 * The tenant key type of this test run: `TW_TEST_TENANT_KEY` (test/run.ts passes it on as
 * `TENANTWALL_TENANT_KEY`, which every `Tenantwall.connect` of the run resolves). Default `uuid`.
 */
export const TEST_TENANT_KEY = (process.env.TENANTWALL_TENANT_KEY ?? 'uuid') as TenantKeyType;

/** A fixed, valid tenant id of the run's key type, distinct for each `n` (fixtures that name tenants). */
export function testTenantId(n: number, type: TenantKeyType = TEST_TENANT_KEY): TenantId {
  if (type === 'bigint') return TenantId.parse(String(1000 + n), type);
  if (type === 'text') return TenantId.parse(`Tenant-${n}.test`, type);
  return TenantId.parse(`${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`, type);
}

/** Values that are not tenant ids of any key type (the sizes, characters and shapes every type refuses). */
export const NOT_A_TENANT_ID: readonly unknown[] = Object.freeze(["'; DROP TABLE invoices; --", '', ' 1', '1 ', 'x'.repeat(70), null, undefined, {}, 1.5, -1]);

/** How PostgreSQL deparses the setting's read in the policy for the run's key type (`::text` on text is elided). */
export function policySetting(type: TenantKeyType = TEST_TENANT_KEY): string {
  const read = `NULLIF(current_setting('tenantwall.tenant_id'::text, true), ''::text)`;
  return type === 'text' ? read : `(${read})::${type}`;
}
