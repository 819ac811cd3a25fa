import { TenantId, defineSchema, tenantTable, type Migration } from '../../src/index.ts';
import { jobTables, jobsMigrationSql } from '../../src/jobs/index.ts';

/** A tenant table with recognisable rows per tenant, and the jobs table. */
export const jobsSchema = defineSchema({
  tables: [
    tenantTable({
      name: 'notes',
      columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, body: { type: 'text' } },
    }),
    ...jobTables,
  ],
});

export const jobsMigrations: Migration[] = [
  { version: 1, name: 'init', sql: (ctx) => ctx.createSchema() },
  { version: 2, name: 'jobs', sql: jobsMigrationSql({ perTenantConcurrency: 1 }) },
];

export const TENANTS = {
  a: TenantId.parse('aaaaaaaa-0000-4000-8000-00000000000a'),
  b: TenantId.parse('bbbbbbbb-0000-4000-8000-00000000000b'),
  c: TenantId.parse('cccccccc-0000-4000-8000-00000000000c'),
} as const;
