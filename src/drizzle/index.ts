// tenantwall/drizzle: Drizzle integration (peer dependency `drizzle-orm`). A node-postgres Drizzle database whose
// statements run through the tenant's scoped query path (one round trip, guard verified).
export { createTenantDrizzle, tenantIs, tenantPlaceholder, TENANT_PLACEHOLDER, TenantwallDrizzlePool, type TenantDrizzleOptions } from './client.ts';
