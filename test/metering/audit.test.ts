import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runAudit, runVerify } from '../../src/index.ts';
import { startMetering } from './fixture.ts';

test('the metering tables pass the isolation audit and the active verify attacks', async () => {
  const f = await startMetering();
  try {
    const a = (await f.t.db.tenants.create({ slug: 'audit-a', name: 'A' })).id;
    const b = (await f.t.db.tenants.create({ slug: 'audit-b', name: 'B' })).id;
    // Rows of both tenants in every metering tenant table, so every row-based attack has something to attack.
    for (const t of [a, b]) {
      await f.metering.record(t, { event_id: 'e1', meter: 'calls' });
      await f.metering.setPlan(t, 'pro');
      await f.metering.consume(t, 'invoices', 50);
      await f.metering.limiter.take(t, 'k', 10, 60_000);
    }
    const report = await runAudit({ databaseUrl: f.t.database.url, appRole: f.t.db.options.appRole });
    const lines = report.findings.map((x) => `${x.severity} ${x.ruleId} ${x.object}: ${x.message}`);
    assert.deepEqual(lines, []);
    const url = new URL(f.t.database.url);
    url.username = f.t.db.options.appRole;
    url.password = f.t.db.options.appPassword ?? '';
    const verify = await runVerify({ databaseUrl: f.t.database.url, appDatabaseUrl: url.toString(), appRole: f.t.db.options.appRole, checksum: true });
    assert.deepEqual(verify.findings.map((x) => `${x.ruleId} ${x.object}: ${x.message}`), []);
    assert.deepEqual(verify.notes, []);
  } finally {
    await f.close();
  }
});
