import { defineSchema, tenantTable, type Migration } from '../../src/index.ts';
import { apiKeysTable } from '../../src/fastify/index.ts';
import { Metering, meteringMigrationSql, type MeteringOptions, type MeteringSpec } from '../../src/metering/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

export const schema = defineSchema({
  tables: [
    apiKeysTable(),
    tenantTable({ name: 'invoices', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, customer: { type: 'text' } } }),
  ],
});

export const migrations: Migration[] = [
  { version: 1, name: 'app', sql: (ctx) => ctx.createSchema() },
  { version: 2, name: 'metering', sql: (ctx) => meteringMigrationSql(ctx) },
];

export const spec: MeteringSpec = {
  meters: [
    { name: 'tokens', aggregation: 'sum' },
    { name: 'calls', aggregation: 'count' },
    { name: 'storage_gb', aggregation: 'max' },
    { name: 'active_users', aggregation: 'unique_count', uniqueBy: 'user_id' },
    { name: 'seats', aggregation: 'latest' },
    { name: 'invoices.created', aggregation: 'count' },
  ],
  plans: {
    free: {
      rateLimits: [{ scope: 'tenant', per: 'minute', limit: 1000 }],
      quotas: { invoices: { meter: 'invoices.created', limit: 5, period: 'month', enforcement: 'hard' } },
    },
    pro: {
      rateLimits: [{ scope: 'tenant', per: 'minute', limit: 100_000 }],
      quotas: { invoices: { meter: 'invoices.created', limit: 50, period: 'month', enforcement: 'hard' } },
    },
    soft: { quotas: { invoices: { meter: 'invoices.created', limit: 10, period: 'month', enforcement: 'soft' } } },
  },
  defaultPlan: 'free',
};

/** The suite's webhook receivers listen on 127.0.0.1, which endpoints may not reach without this allow-list. */
export const LOOPBACK_RECEIVERS = { allowNetworks: ['127.0.0.1'] };

export interface MeteringFixture {
  t: TestTenantwall;
  metering: Metering;
  close(): Promise<void>;
}

export async function startMetering(options: Partial<MeteringOptions> = {}, twOptions: Parameters<typeof createTestTenantwall>[2] = {}): Promise<MeteringFixture> {
  const t = await createTestTenantwall(schema, migrations, twOptions);
  const metering = new Metering(t.db, { spec, webhooks: LOOPBACK_RECEIVERS, ...options });
  return {
    t,
    metering,
    async close() {
      await metering.close();
      await t.close();
    },
  };
}
