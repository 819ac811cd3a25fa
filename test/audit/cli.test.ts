import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { main } from '../../src/cli/main.ts';
import { type Baseline, createBaseline } from './baseline.ts';

let base: Baseline;
let clean: { url: string; appUrl: string };
let truncate: { url: string; appUrl: string };
let references: { url: string; appUrl: string };
before(async () => {
  base = await createBaseline();
  [clean, truncate, references] = await Promise.all([
    base.fixture(),
    base.fixture('GRANT TRUNCATE ON customers TO :app'),
    base.fixture('GRANT REFERENCES ON customers TO :app'),
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
