/**
 * Layer independence (issue 4): the service's own test files again, in a child test run with TW_TEST_RLS=off.
 * Their setup (setup.ts) then disables row-level security on every table after migrating, so every isolation
 * assertion of those files (404 for B's ids, B unchanged, lists without B's rows, forged cursors) must hold with
 * the application guard as the only layer.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const FILES = ['api.test.ts', 'isolation.test.ts', 'input.test.ts'].map((f) => path.join(here, f));

test('the service suite passes with row-level security off and the guard on', async () => {
  // NODE_TEST_CONTEXT marks a process that the test runner started; a nested run would then refuse to run files.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-reporter=tap', ...FILES], {
    env: { ...env, TW_TEST_RLS: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(out)?.[1] ?? NaN);
  assert.equal(code, 0, `child test run failed with RLS off:\n${out}`);
  assert.equal(count('fail'), 0, out);
  assert.ok(count('pass') >= 16, `expected the service tests to run, saw:\n${out}`);
});
