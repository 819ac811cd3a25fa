import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { runAudit } from '../../src/index.ts';
import { type Baseline, GLOBALS, createBaseline } from './baseline.ts';

let base: Baseline;
let dir: string;
before(async () => {
  base = await createBaseline();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-audit-src-'));
  const put = (rel: string, text: string) => {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  };
  put('src/routes/admin.ts', `import { db } from '../db';\n\nexport async function all() {\n  return db.dangerouslyCrossTenant().query('SELECT * FROM invoices');\n}\n`);
  put('src/support.js', `const h = db.dangerouslyCrossTenant ( );\n`);
  put('migrations/0002_backfill.ts', `await db.dangerouslyCrossTenant().query('UPDATE invoices SET x = 1');\n`);
  put('src/lifecycle/purge.ts', `db.dangerouslyCrossTenant();\n`);
  put('src/jobs/report.ts', `// tenantwall-audit-allow: nightly cross-tenant report, reviewed in SEC-12\nconst h = db.dangerouslyCrossTenant();\n`);
  put('node_modules/lib/index.js', `db.dangerouslyCrossTenant();\n`);
  put('README.md', `db.dangerouslyCrossTenant()\n`);
  put('src/comment.ts', `// dangerouslyCrossTenant is not called here\n`);
});
after(async () => {
  await base?.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('--source: the plain cross-tenant handle outside migrations and lifecycle code is reported, file:line; allowed paths and marked uses are not', async () => {
  const report = await base.inTransaction('', (client) => runAudit({ client, appRole: base.app, globalTables: GLOBALS, source: dir }));
  const found = report.findings.filter((f) => f.ruleId === 'cross-tenant-handle-in-source').map((f) => f.object).sort();
  assert.deepEqual(found, ['src/routes/admin.ts:4', 'src/support.js:1']);
  const f = report.findings.find((x) => x.object === 'src/routes/admin.ts:4');
  assert.equal(f?.severity, 'warn');
  assert.equal(f?.objectKind, 'source');
  assert.equal(f?.details.line, 4);
  assert.match(f?.fix ?? '', /dangerouslyBreakGlass/);
  assert.equal(report.stats.sourceAllowedUses, 3, JSON.stringify(report.stats));
  assert.ok(report.notes.some((n) => n.includes('file(s) scanned')));
  // Without --source nothing is scanned.
  const none = await base.inTransaction('', (client) => runAudit({ client, appRole: base.app, globalTables: GLOBALS }));
  assert.equal(none.findings.filter((x) => x.ruleId === 'cross-tenant-handle-in-source').length, 0);
});

test('--source-allow replaces the default allow-list', async () => {
  const report = await base.inTransaction('', (client) => runAudit({ client, appRole: base.app, globalTables: GLOBALS, source: dir, sourceAllow: ['src/routes/**'] }));
  const found = report.findings.filter((f) => f.ruleId === 'cross-tenant-handle-in-source').map((f) => f.object).sort();
  assert.deepEqual(found, ['migrations/0002_backfill.ts:1', 'src/lifecycle/purge.ts:1', 'src/support.js:1']);
});

test('a --source that is not a directory is a configuration error naming docs/audit.md', async () => {
  await assert.rejects(
    () => runAudit({ databaseUrl: 'postgres://x@127.0.0.1:1/x', appRole: base.app, source: path.join(dir, 'missing') }),
    (err: Error & { code?: string }) => err.code === 'config_invalid' && /docs\/audit\.md/.test(err.message) && !/configuration\.md/.test(err.message),
  );
});

test('the access log: all-tenant break-glass grants that ran statements in the window are reported, older ones and grants without statements are not', async () => {
  const sql = `CREATE TABLE tw_access_log_all (id uuid DEFAULT gen_random_uuid(), grant_id uuid, actor text, reason text, kind text, at timestamptz DEFAULT clock_timestamp(), expires_at timestamptz, fingerprint text, statement text, rows bigint, error_code text);
    INSERT INTO tw_access_log_all (grant_id, actor, reason, kind, at) VALUES
      ('00000000-0000-4000-8000-000000000001', 'ann@support', 'INC-7 billing mismatch', 'open', now() - interval '1 day'),
      ('00000000-0000-4000-8000-000000000001', 'ann@support', 'INC-7 billing mismatch', 'statement', now() - interval '1 day'),
      ('00000000-0000-4000-8000-000000000001', 'ann@support', 'INC-7 billing mismatch', 'statement', now() - interval '1 day'),
      ('00000000-0000-4000-8000-000000000002', 'bob@support', 'old', 'statement', now() - interval '90 days'),
      ('00000000-0000-4000-8000-000000000003', 'cy@support', 'opened, never used', 'open', now() - interval '1 hour')`;
  const report = await base.inTransaction(sql, (client) => runAudit({ client, appRole: base.app, globalTables: [...GLOBALS, 'tw_access_log_all'] }));
  const found = report.findings.filter((f) => f.ruleId === 'break-glass-all-tenants');
  assert.equal(found.length, 1, JSON.stringify(report.findings.map((f) => f.object)));
  assert.equal(found[0]?.details.actor, 'ann@support');
  assert.equal(found[0]?.details.statements, 2);
  assert.match(found[0]?.message ?? '', /INC-7/);
  const wide = await base.inTransaction(sql, (client) => runAudit({ client, appRole: base.app, globalTables: [...GLOBALS, 'tw_access_log_all'], accessLogDays: 365 }));
  assert.equal(wide.findings.filter((f) => f.ruleId === 'break-glass-all-tenants').length, 2);
});
