/**
 * The schema and metering of the console tests (API keys, a hash-partitioned tenant table so dedicated placement
 * works, metering) and `startConsole`, the app + browser they run against.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import { Metering, createMetrics, defineSchema, meteringMigrationSql, tenantTable, type MeteringOptions, type MeteringSpec, type Migration, type TenantwallMetrics } from '../../src/index.ts';
import { apiKeysTable, consolePlugin, observabilityPlugin } from '../../src/fastify/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginApp } from '../fastify/app.ts';

export const schema = defineSchema({
  tables: [
    apiKeysTable(),
    tenantTable({ name: 'invoices', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, customer: { type: 'text' } }, partition: { hashPartitions: 4 } }),
  ],
});
export const migrations: Migration[] = [
  { version: 1, name: 'app', sql: (ctx) => ctx.createSchema() },
  { version: 2, name: 'metering', sql: (ctx) => meteringMigrationSql(ctx) },
];
export const spec: MeteringSpec = {
  meters: [
    { name: 'tokens', aggregation: 'sum' as const },
    { name: 'invoices.created', aggregation: 'count' as const },
  ],
  plans: {
    free: { quotas: { invoices: { meter: 'invoices.created', limit: 5, period: 'month' as const, enforcement: 'hard' as const } } },
    pro: { quotas: { invoices: { meter: 'invoices.created', limit: 50, period: 'month' as const, enforcement: 'hard' as const } } },
  },
  defaultPlan: 'free',
};

/** A console app on a fresh test database with metrics and metering, listening, and a headless Chromium. */
export interface ConsoleWorld {
  readonly t: TestTenantwall;
  readonly metrics: TenantwallMetrics;
  readonly metering: Metering;
  readonly app: FastifyInstance;
  readonly url: string;
  readonly browser: Browser;
  close(): Promise<void>;
}

export const ADMIN = 'console-admin-token-0123456789';
export const OUT = path.resolve(import.meta.dirname, '../../.test-output/console');

/** `metering`: options beside the spec; `metricsEndpoint`: also mount /metrics (observabilityPlugin). */
export async function startConsole(options: { metering?: Omit<MeteringOptions, 'spec'>; metricsEndpoint?: boolean } = {}): Promise<ConsoleWorld> {
  fs.mkdirSync(OUT, { recursive: true });
  const t = await createTestTenantwall(schema, migrations);
  const metrics = createMetrics({ db: t.db, processMetrics: false });
  const metering = new Metering(t.db, { spec, ...options.metering });
  const { app } = await pluginApp(t.db, {}, async (a) => {
    if (options.metricsEndpoint) await a.register(observabilityPlugin, { metrics, adminToken: ADMIN });
    await a.register(consolePlugin, { db: t.db, adminToken: ADMIN, metrics, metering });
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
  return {
    t,
    metrics,
    metering,
    app,
    url,
    browser,
    async close() {
      await browser.close();
      metrics.close();
      await app.close();
      await metering.close();
      await t.close();
    },
  };
}
