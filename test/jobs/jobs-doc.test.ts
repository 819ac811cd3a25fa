/** docs/jobs.md's setup example runs as written (imports pointed at src/). */
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

test('the docs/jobs.md setup example runs', async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/jobs.md'), 'utf8');
  const code = /## Setup[\s\S]*?```ts\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(code, 'docs/jobs.md has a ts block under "Setup"');
  const dir = fs.mkdtempSync(path.join(ROOT, 'node_modules', '.tw-doc-'));
  const file = path.join(dir, 'jobs-example.mts');
  fs.writeFileSync(file, code.replace("from 'tenantwall/jobs'", `from '${path.join(ROOT, 'src/jobs/index.ts')}'`).replace("from 'tenantwall'", `from '${path.join(ROOT, 'src/index.ts')}'`));
  try {
    await promisify(execFile)(process.execPath, ['--import', 'tsx', file], { env: { ...process.env, DATABASE_URL: database.url, TENANTWALL_MANAGE_ROLES: 'false' } });
    const c = await import('pg');
    const client = new c.default.Client({ connectionString: database.url });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT task, payload ? 'invoiceId' AS has_id FROM tw_jobs`);
      assert.deepEqual(rows, [{ task: 'render-invoice-pdf', has_id: true }]);
    } finally {
      await client.end();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
