import assert from 'node:assert/strict';
import { test } from 'node:test';
import { VERIFY_ATTACKS, formatSarif, formatText, type Finding, type Report } from '../../src/index.ts';

const finding = (ruleId: string, severity: Finding['severity'], object: string): Finding => ({
  ruleId,
  severity,
  category: 'isolation',
  docUrl: `https://example.test/docs/audit.md#${ruleId}`,
  confirm: 'SELECT true AS fixed',
  details: {},
  source: ruleId.startsWith('attack-') ? 'verify' : 'audit',
  objectKind: 'table',
  object,
  message: `${ruleId} on ${object}`,
  why: 'because',
  fix: 'SELECT 1;\nSELECT 2;',
});

const report = (kind: 'audit' | 'verify', findings: Finding[]): Report => ({
  kind,
  database: 'app',
  serverVersion: '18.0',
  findings,
  suppressed: [],
  unusedExceptions: [],
  stats: { tenantTables: 2 },
  notes: ['a note'],
  durationMs: 5,
});

test('text output: grouped by rule with a count, colour only when asked (a terminal)', () => {
  const r = report('audit', [finding('rls-disabled', 'error', 'public.a'), finding('rls-disabled', 'error', 'public.b'), finding('no-tenant-index', 'warn', 'public.a')]);
  const plain = formatText(r);
  assert.match(plain, /^ERROR rls-disabled \(2\)$/m);
  assert.match(plain, /^WARN {2}no-tenant-index \(1\)$/m);
  assert.match(plain, /2 error\(s\), 1 warning\(s\), 0 info; checked 2 tenant tables/);
  assert.match(plain, /note: a note/);
  assert.ok(!plain.includes(String.fromCharCode(27)));
  assert.ok(formatText(r, { color: true }).includes(`${String.fromCharCode(27)}[31m`));
});

test('SARIF for a verify report carries the attack catalogue and levels', () => {
  const sarif = JSON.parse(formatSarif(report('verify', [finding('attack-read-cross-tenant', 'error', 'public.a')])));
  assert.equal(sarif.version, '2.1.0');
  const run = sarif.runs[0];
  assert.equal(run.tool.driver.name, 'tenantwall verify');
  assert.equal(run.tool.driver.rules.length, VERIFY_ATTACKS.length);
  assert.equal(run.results[0].level, 'error');
  assert.equal(run.tool.driver.rules[run.results[0].ruleIndex].id, 'attack-read-cross-tenant');
  assert.match(run.results[0].message.text, /Fix: SELECT 1;/);
});
