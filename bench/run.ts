/**
 * `npm run bench [part ...]`: runs the benchmark modules (bench/<part>.ts, each default-exporting
 * `async (harness) => void` that prints its figures) against one server: DATABASE_URL or an embedded one.
 */
import fs from 'node:fs';
import { openHarness, type BenchHarness } from './harness.ts';

// citus runs only when asked for (npm run bench -- citus): it needs CITUS_URL.
const ORDER = ['import', 'core', 'poolers', 'guard', 'http', 'partitioning', 'audit', 'metering', 'webhooks', 'observability'];
const requested = process.argv.slice(2);
const parts = (requested.length > 0 ? requested : ORDER).filter((p) => {
  const exists = fs.existsSync(new URL(`./${p}.ts`, import.meta.url));
  if (!exists && requested.length > 0) throw new Error(`No bench module bench/${p}.ts`);
  return exists;
});
const { harness, close } = await openHarness();
console.log(`# tenantwall bench on PostgreSQL ${harness.serverVersion}, node ${process.version}, ${new Date().toISOString()}`);
try {
  for (const part of parts) {
    console.log(`\n## ${part}`);
    const mod = (await import(`./${part}.ts`)) as { default: (h: BenchHarness) => Promise<void> };
    await mod.default(harness);
  }
} finally {
  await close();
}
