import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES, TenantwallError } from '../src/index.ts';

test('docs/errors.md lists exactly the codes of src/errors.ts, with their HTTP status', () => {
  const doc = fs.readFileSync('docs/errors.md', 'utf8');
  const documented = new Map([...doc.matchAll(/^### `([a-z_]+)` \((\d{3})\)/gm)].map((m) => [m[1], Number(m[2])]));
  const codes = Object.keys(ERROR_CODES);
  assert.deepEqual([...documented.keys()].sort(), [...codes].sort());
  for (const [code, spec] of Object.entries(ERROR_CODES)) assert.equal(documented.get(code), spec.status, `status of ${code}`);
});

test('a TenantwallError carries code, status, a fix hint and serialises without its stack', () => {
  const err = new TenantwallError('invalid_tenant_id', 'Invalid tenant id "x".', { details: { field: 'tenant_id' } });
  assert.equal(err.code, 'invalid_tenant_id');
  assert.equal(err.status, 400);
  assert.match(err.message, /lowercase UUIDs/);
  assert.deepEqual(JSON.parse(JSON.stringify(err)), { code: 'invalid_tenant_id', message: err.message, details: { field: 'tenant_id' } });
});
