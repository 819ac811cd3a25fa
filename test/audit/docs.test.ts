import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { AUDIT_RULES, VERIFY_ATTACKS } from '../../src/index.ts';

test('docs/audit.md has exactly one entry per rule and per attack, with severity, why, example and fix', () => {
  const doc = fs.readFileSync('docs/audit.md', 'utf8');
  const entries = [...doc.matchAll(/^### `([a-z-]+)`\n\n\*\*(error|warn|info)\*\* - [^\n]+\n\n- Why: [^\n]+\n- Example: [^\n]+\n- Fix: [^\n]+$/gm)];
  const documented = entries.map((m) => m[1]);
  const ids = [...AUDIT_RULES, ...VERIFY_ATTACKS].map((r) => r.id);
  assert.deepEqual([...documented].sort(), [...ids].sort());
  for (const m of entries) {
    const rule = [...AUDIT_RULES, ...VERIFY_ATTACKS].find((r) => r.id === m[1]);
    assert.equal(m[2], rule?.severity, `severity of ${m[1]}`);
  }
});
