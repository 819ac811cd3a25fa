// tenantwall/kysely: Kysely integration (peer dependency `kysely`). The plugin writes the tenant predicate, the
// dialect runs every statement through the tenant's scoped query path (one round trip, guard verified).
export { TenantScopePlugin, TenantScopeTransformer, TENANT_PARAMETER, type TenantColumn } from './scope.ts';
export { createTenantKysely, TenantwallDialect, type TenantKyselyOptions } from './dialect.ts';
export { prepareQuery, type Param, type PreparedQuery, type PreparedValue } from './prepared.ts';
export type { InferDatabase, InferTable, InferColumn, SqlSelectType } from './infer.ts';
