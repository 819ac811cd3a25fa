import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runAudit, runVerify } from '../../src/index.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { createTestTenantwall } from '../helpers/db.ts';

/**
 * Warnings and infos the reference service is allowed to have, each with the reason (docs/audit.md, "The
 * reference service"). Anything else, and any error, fails the test.
 */
// Currently none: the service has no warning or info either.
const EXPLAINED: Record<string, string> = {};

test('the reference service database: no error-level finding, every warn/info explained, verify finds nothing', async () => {
  const t = await createTestTenantwall(schema, migrations);
  try {
    await t.db.tenants.create({ slug: 'audit-a', name: 'A' });
    await t.db.tenants.create({ slug: 'audit-b', name: 'B' });
    const report = await runAudit({ databaseUrl: t.database.url, appRole: t.db.options.appRole });
    const lines = report.findings.map((f) => `${f.severity} ${f.ruleId} ${f.object}: ${f.message}`);
    assert.deepEqual(report.findings.filter((f) => f.severity === 'error').map((f) => `${f.ruleId} ${f.object}`), [], lines.join('\n'));
    assert.deepEqual(report.findings.filter((f) => EXPLAINED[f.ruleId] === undefined).map((f) => `${f.ruleId} ${f.object}`), [], lines.join('\n'));
    assert.ok((report.stats.tenantTables ?? 0) >= 3);

    const url = new URL(t.database.url);
    url.username = t.db.options.appRole;
    url.password = t.db.options.appPassword ?? '';
    const verify = await runVerify({ databaseUrl: t.database.url, appDatabaseUrl: url.toString(), appRole: t.db.options.appRole, checksum: true });
    assert.deepEqual(verify.findings.map((f) => `${f.ruleId} ${f.object}: ${f.message}`), []);
    assert.deepEqual(verify.notes, [], 'every table got rows for both tenants, so every row-based attack ran');
    assert.equal(verify.checksums?.before, verify.checksums?.after);
  } finally {
    await t.close();
  }
});
