import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runAudit, runVerify } from '../../src/index.ts';
import { installJobQueue } from '../../src/jobs/index.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { createTestTenantwall } from '../helpers/db.ts';
import { RELAY_TABLES } from '../../examples/invoicing-service/src/operator.ts';

/**
 * Warnings and infos the reference service is allowed to have, each with the reason (docs/audit.md, "The
 * reference service"). Anything else, and any error, fails the test.
 */
// Currently none: the service has no warning or info either.
const EXPLAINED: Record<string, string> = {};

test('the reference service database: no error-level finding, every warn/info explained, verify finds nothing', async () => {
  const t = await createTestTenantwall(schema, migrations);
  try {
    // As the service's start does (buildApp): tw_jobs rows enqueue into graphile-worker's schema.
    await installJobQueue(t.db);
    await t.db.tenants.create({ slug: 'audit-a', name: 'A' });
    await t.db.tenants.create({ slug: 'audit-b', name: 'B' });
    // The admin relay's tables are declared global, as the service's console declares them (operator.ts).
    const report = await runAudit({ databaseUrl: t.database.url, appRole: t.db.options.appRole, globalTables: RELAY_TABLES });
    const lines = report.findings.map((f) => `${f.severity} ${f.ruleId} ${f.object}: ${f.message}`);
    assert.deepEqual(report.findings.filter((f) => f.severity === 'error').map((f) => `${f.ruleId} ${f.object}`), [], lines.join('\n'));
    assert.deepEqual(report.findings.filter((f) => EXPLAINED[f.ruleId] === undefined).map((f) => `${f.ruleId} ${f.object}`), [], lines.join('\n'));
    assert.ok((report.stats.tenantTables ?? 0) >= 3);

    const url = new URL(t.database.url);
    url.username = t.db.options.appRole;
    url.password = t.db.options.appPassword ?? '';
    const verify = await runVerify({ databaseUrl: t.database.url, appDatabaseUrl: url.toString(), appRole: t.db.options.appRole, checksum: true });
    assert.deepEqual(verify.findings.map((f) => `${f.ruleId} ${f.object}: ${f.message}`), []);
    // Every table got rows for both tenants, so every row-based attack ran, except on tw_jobs: its trigger enqueues
    // into graphile-worker's queue, whose inserts take sequence values a rollback does not give back, so verify
    // neither writes there nor calls add_job(s) (they would change the content checksum).
    const unexplained = verify.notes.filter((n) => !/^(trigger tw_jobs_enqueue on public\.tw_jobs|public\.tw_jobs: no row of tenant|graphile_worker\.add_jobs?\()/.test(n));
    assert.deepEqual(unexplained, []);
    assert.ok(verify.notes.some((n) => n.startsWith('trigger tw_jobs_enqueue on public.tw_jobs') && n.includes('graphile_worker._private_jobs')), verify.notes.join('\n'));
    assert.equal(verify.checksums?.before, verify.checksums?.after);
  } finally {
    await t.close();
  }
});
