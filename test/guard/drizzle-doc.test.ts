/** docs/drizzle.md's runnable example runs as written (imports pointed at src/) and prints what it says. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
let database: TestDatabase;

before(async () => {
  database = await createTestDatabase();
});
after(async () => {
  await database?.drop();
});

test('the docs/drizzle.md example runs and each tenant sees only its projects', async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/drizzle.md'), 'utf8');
  const code = /## Runnable example[\s\S]*?```ts\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(code, 'docs/drizzle.md has a ts block under "Runnable example"');
  const dir = fs.mkdtempSync(path.join(ROOT, 'node_modules', '.tw-doc-'));
  const file = path.join(dir, 'drizzle-example.mts');
  fs.writeFileSync(
    file,
    code.replace("from 'tenantwall/drizzle'", `from '${path.join(ROOT, 'src/drizzle/index.ts')}'`).replace("from 'tenantwall'", `from '${path.join(ROOT, 'src/index.ts')}'`),
  );
  try {
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', file], {
      env: { ...process.env, DATABASE_URL: database.url, TENANTWALL_MANAGE_ROLES: 'false' },
    });
    assert.match(stdout, /acme sees \[ 'Roadrunner' \]/);
    assert.match(stdout, /globex sees \[ 'Hammock' \]/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
