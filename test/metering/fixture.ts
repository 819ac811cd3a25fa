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
    // Tenants send these over HTTP; invoices.created (a quota's meter) is the server's own.
    { name: 'tokens', aggregation: 'sum', source: 'client' },
    { name: 'calls', aggregation: 'count', source: 'client' },
    { name: 'storage_gb', aggregation: 'max', source: 'client' },
    { name: 'active_users', aggregation: 'unique_count', uniqueBy: 'user_id', source: 'client' },
    { name: 'seats', aggregation: 'latest', source: 'client' },
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

/**
 * Waits until at least `ms` are left in the current minute, so a per-minute rate-limit window (aligned to the
 * epoch minute) does not end in the middle of a short sequence of requests that expects a refusal. A condition
 * on the clock, not a fixed delay: it returns at once most of the time.
 */
export async function untilMinuteHasLeft(ms = 10_000): Promise<void> {
  while (60_000 - (Date.now() % 60_000) < ms) await new Promise((r) => setTimeout(r, 50));
}
