import { type Guard, METERING_FUNCTION_NAMES, createGuard } from 'tenantwall';
import { schema } from './schema.ts';

/**
 * The service's statement guard: every statement sent in tenant scope is verified against the declared tables
 * before it reaches PostgreSQL (docs/guard.md). `schema` holds the service's tables and the metering tables
 * (created by migration 2 as tenant tables: forced RLS, tenant_id first in every key), so both get the same
 * proof obligation.
 *
 * Two allowances, both for the metering part's statements:
 * - the tenant registry (`tenants`) may be read without a tenant predicate. It is not tenant data in the RLS
 *   sense: the application role already holds a plain SELECT grant on it, with no row-level security.
 * - the metering functions (METERING_FUNCTION_NAMES: the outbox writer and the quota functions) are declared
 *   safe. They are SECURITY INVOKER and touch only the rows of the tenant they are given (`p_tenant`), which
 *   metering always passes as the tenant of the scope.
 */
export function serviceGuard(): Guard {
  return createGuard(schema, {
    allowRelations: [schema.registryTable],
    allowFunctions: [...METERING_FUNCTION_NAMES],
  });
}
