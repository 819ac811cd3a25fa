/**
 * Layer independence (issue 4): the service's own test files again, in a child test run with TW_TEST_RLS=off.
 * Their setup (setup.ts) then disables row-level security on every table after migrating, so every isolation
 * assertion of those files (404 for B's ids, B unchanged, lists without B's rows, forged cursors) must hold with
 * the application guard as the only layer.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runServiceFiles } from './setup.ts';

test('the service suite passes with row-level security off and the guard on', async () => {
  const r = await runServiceFiles(['api.test.ts', 'isolation.test.ts', 'input.test.ts'], { TW_TEST_RLS: 'off' });
  assert.equal(r.code, 0, `child test run failed with RLS off:\n${r.out}`);
  assert.equal(r.fail, 0, r.out);
  assert.ok(r.pass >= 16, `expected the service tests to run, saw:\n${r.out}`);
});
