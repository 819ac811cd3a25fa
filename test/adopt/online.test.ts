/**
 * Online migrations (`-- tenantwall:online`, docs/schema.md): a failed run keeps its finished steps and resumes
 * after them; an invalid index left by a failed CREATE INDEX CONCURRENTLY is rebuilt; batches repeat until
 * nothing changes; an edited file is refused; ordinary migrations after it apply in the same run.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Migration, Tenantwall, TenantwallError, defineSchema, tenantTable } from '../../src/index.ts';
import { createTestDatabase, superQuery, type TestDatabase } from '../helpers/db.ts';

const schema = defineSchema({ tables: [tenantTable({ name: 'unused', columns: { id: { type: 'uuid' } } })] });
let database: TestDatabase;
let db: Tenantwall;

before(async () => {
  database = await createTestDatabase();
  db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false });
  await superQuery(database.name, `CREATE TABLE items (id serial PRIMARY KEY, code int, done boolean NOT NULL DEFAULT false);
    INSERT INTO items (code) SELECT g FROM generate_series(1, 250) g; INSERT INTO items (code) VALUES (7);
    CREATE TABLE runs (step text NOT NULL);`);
});
after(async () => {
  await db.close();
  await database.drop();
});

const ONLINE = `-- tenantwall:online
-- tenantwall:step transaction
INSERT INTO runs VALUES ('first');
-- tenantwall:step concurrently
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS items_code_key ON items (code);
-- tenantwall:step batch
UPDATE items SET done = true WHERE id IN (SELECT id FROM items WHERE NOT done ORDER BY id LIMIT 100);
`;
const migrations: Migration[] = [
  { version: 1, name: 'online', sql: ONLINE },
  { version: 2, name: 'after', sql: `INSERT INTO runs VALUES ('after');` },
];

test('a failed concurrently step keeps the finished steps; the rerun rebuilds the invalid index and finishes', async () => {
  // A duplicate code: the unique index build fails and leaves an INVALID index behind.
  await assert.rejects(db.migrate(migrations), (e: unknown) => e instanceof TenantwallError && e.code === 'migration_failed' && /step 1 \(concurrently\)/.test(e.message));
  const invalid = await superQuery(database.name, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'items_code_key'`);
  assert.deepEqual(invalid.rows, [{ indisvalid: false }]);
  // Editing the file of a started online migration is refused.
  await assert.rejects(db.migrate([{ ...migrations[0] as Migration, sql: `${ONLINE}\n-- edited` }, migrations[1] as Migration]), (e: unknown) => e instanceof TenantwallError && e.code === 'migration_checksum_mismatch');

  await superQuery(database.name, `DELETE FROM items WHERE id = 251`);
  const progress: string[] = [];
  const result = await db.migrate(migrations, { onProgress: (p) => progress.push(`${p.step}:${p.kind}:${p.rows}:${p.done}`) });
  assert.deepEqual(result.applied.map((m) => m.name), ['online', 'after']);
  // Step 0 ran once (kept from the failed run); the batch step ran 3 batches of at most 100.
  assert.deepEqual((await superQuery(database.name, `SELECT step FROM runs ORDER BY step`)).rows, [{ step: 'after' }, { step: 'first' }]);
  assert.deepEqual(progress, ['1:concurrently:0:true', '2:batch:100:false', '2:batch:200:false', '2:batch:250:false', '2:batch:250:true']);
  const valid = await superQuery(database.name, `SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'items_code_key'`);
  assert.deepEqual(valid.rows, [{ indisvalid: true }]);
  assert.equal((await superQuery(database.name, `SELECT count(*)::int AS n FROM items WHERE NOT done`)).rows[0].n, 0);
  const steps = await superQuery(database.name, `SELECT step, rows_done::int AS rows, done FROM tenantwall_migration_steps ORDER BY step`);
  assert.deepEqual(steps.rows, [{ step: 0, rows: 0, done: true }, { step: 1, rows: 0, done: true }, { step: 2, rows: 250, done: true }]);
  assert.deepEqual((await db.migrate(migrations)).applied, []);
});
