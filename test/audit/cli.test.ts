import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { SQL_RULES } from '../../src/audit/emit-sql.ts';
import { main } from '../../src/cli/main.ts';
import { runAudit } from '../../src/index.ts';
import { type Baseline, createBaseline } from './baseline.ts';

let base: Baseline;
let clean: { url: string; appUrl: string };
let truncate: { url: string; appUrl: string };
let references: { url: string; appUrl: string };
let unknown: { url: string; appUrl: string };
before(async () => {
  base = await createBaseline();
  [clean, truncate, references, unknown] = await Promise.all([
    base.fixture(),
    base.fixture('GRANT TRUNCATE ON customers TO :app'),
    base.fixture('GRANT REFERENCES ON customers TO :app'),
    // Readable by the application role, write-only data it cannot read: verify skips it.
    base.fixture('CREATE TABLE inbox (body text); GRANT INSERT ON inbox TO :app'),
  ]);
});
after(async () => {
  await base?.close();
});

/** Runs the CLI in-process and captures what it prints. */
async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => out.push(a.join(' '));
  console.error = (...a: unknown[]) => err.push(a.join(' '));
  try {
    const code = await main(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('audit: clean database exits 0; --json is the report', async () => {
  const r = await cli('audit', '--database-url', clean.url, '--app-role', base.app, '--global-tables', 'currencies', '--json');
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out);
  assert.equal(report.kind, 'audit');
  assert.deepEqual(report.findings, []);
});

test('audit: an error-level hole exits 1, --fail-on none exits 0, text output groups by rule without colour off a TTY', async () => {
  const r = await cli('audit', '--database-url', truncate.url, '--app-role', base.app, '--global-tables', 'currencies');
  assert.equal(r.code, 1);
  assert.match(r.out, /^ERROR {1,2}grant-truncate \(1\)$/m);
  assert.match(r.out, /fix: REVOKE TRUNCATE ON "public"\."customers"/);
  assert.ok(!r.out.includes(String.fromCharCode(27)), "no ANSI escapes");
  assert.equal((await cli('audit', '--database-url', truncate.url, '--app-role', base.app, '--global-tables', 'currencies', '--fail-on', 'none')).code, 0);
});

test('audit: a warning passes the default threshold and fails --fail-on warn', async () => {
  assert.equal((await cli('audit', '--database-url', references.url, '--app-role', base.app, '--global-tables', 'currencies')).code, 0);
  assert.equal((await cli('audit', '--database-url', references.url, '--app-role', base.app, '--global-tables', 'currencies', '--fail-on', 'warn')).code, 1);
});

test('audit: SARIF 2.1.0 with the rule catalogue and one result per finding', async () => {
  const r = await cli('audit', '--database-url', truncate.url, '--app-role', base.app, '--global-tables', 'currencies', '--sarif');
  const sarif = JSON.parse(r.out);
  assert.equal(sarif.version, '2.1.0');
  const run = sarif.runs[0];
  assert.ok(run.tool.driver.rules.length >= 30);
  assert.equal(run.results.length, 1);
  const res = run.results[0];
  assert.equal(res.ruleId, 'grant-truncate');
  assert.equal(res.level, 'error');
  assert.equal(run.tool.driver.rules[res.ruleIndex].id, 'grant-truncate');
  assert.equal(res.locations[0].logicalLocations[0].fullyQualifiedName, 'public.customers');
});

test('audit: a reasoned exception suppresses the finding; an exception without reason is refused (exit 2, one line)', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-audit-'));
  const good = path.join(dir, 'good.json');
  fs.writeFileSync(good, JSON.stringify({ exceptions: [{ rule: 'grant-truncate', object: 'public.customers', reason: 'nightly purge job runs as the app role (ticket 42)' }] }));
  const r = await cli('audit', '--database-url', truncate.url, '--app-role', base.app, '--global-tables', 'currencies', '--exceptions', good, '--json');
  assert.equal(r.code, 0);
  const report = JSON.parse(r.out);
  assert.equal(report.suppressed.length, 1);
  assert.equal(report.suppressed[0].reason, 'nightly purge job runs as the app role (ticket 42)');
  const bad = path.join(dir, 'bad.json');
  fs.writeFileSync(bad, JSON.stringify({ exceptions: [{ rule: 'grant-truncate', object: 'public.customers', reason: '' }] }));
  const r2 = await cli('audit', '--database-url', truncate.url, '--exceptions', bad);
  assert.equal(r2.code, 2);
  assert.equal(r2.err.split('\n').length, 1);
  assert.match(r2.err, /config_invalid.*reason/);
  fs.rmSync(dir, { recursive: true });
});

test('audit: unreachable database is one line on stderr and exit 2', async () => {
  const r = await cli('audit', '--database-url', 'postgres://nobody@127.0.0.1:1/nothing');
  assert.equal(r.code, 2);
  assert.equal(r.err.split('\n').length, 1);
  assert.doesNotMatch(r.err, /\n\s+at /);
});

test('verify: clean database exits 0 with an unchanged checksum; a hole exits 1', async () => {
  const ok = await cli('verify', '--database-url', clean.url, '--app-database-url', clean.appUrl, '--app-role', base.app, '--global-tables', 'currencies', '--checksum', '--json');
  assert.equal(ok.code, 0, ok.err);
  const report = JSON.parse(ok.out);
  assert.equal(report.checksums.before, report.checksums.after);
  const bad = await cli('verify', '--database-url', truncate.url, '--app-database-url', truncate.appUrl, '--app-role', base.app, '--global-tables', 'currencies');
  assert.equal(bad.code, 1);
  assert.match(bad.out, /attack-truncate/);
});

test('an unknown flag names the nearest known one and the doc of the flags (exit 2, one line)', async () => {
  const r = await cli('audit', '--database-url', clean.url, '--app-rol', base.app);
  assert.equal(r.code, 2);
  assert.equal(r.err.split('\n').length, 1);
  assert.match(r.err, /Unknown option --app-rol\. Did you mean --app-role\? \(docs\/audit\.md documents every flag\)/);
  assert.match((await cli('verify', '--alow-skips')).err, /Did you mean --allow-skips\?/);
});

test('configuration errors of audit and verify name docs/audit.md, never docs/configuration.md (which does not document their flags)', async () => {
  const errs = [
    (await cli('audit', '--database-url', clean.url, '--app-rol', base.app)).err,
    (await cli('audit', '--database-url', clean.url, '--app-role', base.app, '--fail-on', 'sometimes')).err,
    (await cli('audit', '--database-url', clean.url, '--app-role', base.app, '--setting', 'nodot')).err,
    (await cli('audit', '--database-url', clean.url, '--app-role', base.app, '--access-log-days', 'soon')).err,
    (await cli('audit', '--database-url', clean.url, '--app-role', base.app, '--source', '/nonexistent/tw-src')).err,
    (await cli('verify', '--database-url', clean.url, '--app-database-url', clean.appUrl, '--tenants', 'onlyone')).err,
  ];
  for (const e of errs) {
    assert.match(e, /config_invalid|docs\/audit\.md/, e);
    assert.match(e, /docs\/audit\.md/, e);
    assert.doesNotMatch(e, /configuration\.md/, e);
  }
});

test('verify: a skipped relation fails unless --allow-skips; the text output prints the coverage', async () => {
  const args = ['verify', '--database-url', unknown.url, '--app-database-url', unknown.appUrl, '--global-tables', 'currencies'];
  const r = await cli(...args);
  assert.equal(r.code, 1, r.err);
  assert.match(r.out, /coverage: 3 relation\(s\) attacked, 1 skipped, 2 not applicable/);
  assert.match(r.out, /skipped public\.inbox: the application role may insert it but cannot read it/);
  assert.match(r.err, /--allow-skips/);
  assert.equal((await cli(...args, '--allow-skips')).code, 0);
});

test('verify --format pgtap: a plan, one test per check of the attacked relations, a failing test per finding', async () => {
  const r = await cli('verify', '--database-url', truncate.url, '--app-database-url', truncate.appUrl, '--global-tables', 'currencies', '--format', 'pgtap');
  assert.equal(r.code, 1);
  assert.match(r.out, /^BEGIN;$/m);
  assert.match(r.out, /^SELECT plan\(5\);$/m);
  assert.match(r.out, /SELECT is\(\(SELECT count\(\*\) FROM "public"\."customers" WHERE "tenant_id"::text IS DISTINCT FROM '[0-9a-f-]+'\), 0::bigint, 'public\.customers: tenant A sees no row of another tenant'\);/);
  assert.match(r.out, /SELECT fail\('attack-truncate public\.customers: /);
  assert.match(r.out, /^SELECT \* FROM finish\(\);\nROLLBACK;$/m);
});

test('audit --emit-sql: the SQL views report what the audit reports, for the rules they cover', async () => {
  const holes = base.fixture(
    "GRANT TRUNCATE ON customers TO :app; ALTER TABLE customers NO FORCE ROW LEVEL SECURITY; ALTER TABLE invoices_p0 DISABLE ROW LEVEL SECURITY; CREATE UNIQUE INDEX ON customers (email); ALTER TABLE customers ADD CONSTRAINT customers_email_uniq UNIQUE (email); " +
      "CREATE FUNCTION leaky(x text) RETURNS boolean LANGUAGE sql LEAKPROOF AS 'SELECT true'; GRANT CREATE ON SCHEMA public TO :app; ALTER ROLE :app CREATEROLE; CREATE MATERIALIZED VIEW s AS SELECT tenant_id FROM invoices",
  );
  const db = await holes;
  const r = await cli('audit', '--database-url', db.url, '--app-role', base.app, '--emit-sql');
  assert.equal(r.code, 0, r.err);
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  try {
    await c.query(r.out);
    const { rows } = await c.query<{ rule_id: string; object: string; severity: string }>('SELECT rule_id, object, severity FROM tenantwall_audit.findings ORDER BY 1, 2');
    const audit = await runAudit({ databaseUrl: db.url, appRole: base.app, globalTables: ['currencies'] });
    const expected = audit.findings.filter((f) => SQL_RULES.includes(f.ruleId)).map((f) => `${f.ruleId} ${f.object}`).sort();
    assert.deepEqual(rows.map((x) => `${x.rule_id} ${x.object}`).sort(), expected);
    assert.ok(expected.length >= 7, expected.join('\n'));
    assert.ok(rows.every((x) => ['error', 'warn', 'info'].includes(x.severity)));
  } finally {
    await c.end();
  }
});
