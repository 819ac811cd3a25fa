/**
 * `tenantwall migrate generate` round trip: declare, generate, apply, generate again writes nothing; a change
 * (new column, index, unique, foreign key, partitioned tenant table) the same way, keeping every tenant-table
 * rule; drops and type changes are refused unless named.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { CLI } from '../helpers/cli.ts';
import { createTestDatabase, superQuery, type TestDatabase } from '../helpers/db.ts';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
let database: TestDatabase;
let dir: string;
let env: NodeJS.ProcessEnv;

const V1 = `
  tenantTable({ name: 'notes', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, body: { type: 'text' } } }),
  globalTable({ name: 'kinds', columns: { id: { type: 'integer' }, label: { type: 'varchar(40)' } } }),`;
const V2 = `
  tenantTable({
    name: 'notes',
    columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, body: { type: 'text' }, title: { type: 'varchar(80)', nullable: true }, kind_id: { type: 'integer', nullable: true } },
    foreignKeys: [{ columns: ['kind_id'], references: 'kinds' }],
    indexes: [{ columns: ['title'] }],
  }),
  globalTable({ name: 'kinds', columns: { id: { type: 'integer' }, label: { type: 'varchar(40)' } }, indexes: [{ columns: ['label'], unique: true }] }),
  tenantTable({
    name: 'attachments',
    columns: { id: { type: 'bigint' }, note_id: { type: 'uuid' }, file: { type: 'text' } },
    foreignKeys: [{ columns: ['note_id'], references: 'notes', onDelete: 'cascade' }],
    indexes: [{ columns: ['file'], unique: true }],
    partition: { hashPartitions: 2 },
  }),`;
// V2 without notes.title (and its index), and with body's type changed.
const V3 = V2.replace(", title: { type: 'varchar(80)', nullable: true }", '').replace("indexes: [{ columns: ['title'] }],", '').replace("body: { type: 'text' }", "body: { type: 'varchar(500)' }");

function declare(tables: string): void {
  fs.writeFileSync(path.join(dir, 'schema.ts'), `import { defineSchema, globalTable, tenantTable } from 'tenantwall';\nexport const schema = defineSchema({ tables: [${tables}\n] });\n`);
}

async function tw(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return exec('node', [...CLI, ...args], { env, cwd: ROOT }).then(
    (r) => ({ code: 0, ...r }),
    (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, stdout: e.stdout, stderr: e.stderr }),
  );
}

/** `migrate generate --json`, then (when a file was written) `migrate`. */
async function generate(...flags: string[]): Promise<{ file: string | null; changes: string[]; refused: { change: string; flag: string }[]; code: number }> {
  const r = await tw('migrate', 'generate', '--json', '--config', path.join(dir, 'tenantwall.config.ts'), '--dir', path.join(dir, 'migrations'), ...flags);
  assert.ok(r.code === 0 || r.code === 1, r.stderr);
  return { ...(JSON.parse(r.stdout) as { file: string | null; changes: string[]; refused: { change: string; flag: string }[] }), code: r.code };
}

async function migrate(): Promise<void> {
  const r = await tw('migrate', '--config', path.join(dir, 'tenantwall.config.ts'));
  assert.equal(r.code, 0, r.stderr);
}

before(async () => {
  database = await createTestDatabase();
  dir = path.join(ROOT, '.tmp', `generate-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'tenantwall.config.ts'),
    `import { loadMigrations } from 'tenantwall';\nexport { schema } from './schema.ts';\nexport const migrations = loadMigrations(new URL('./migrations/', import.meta.url));\n`,
  );
  env = { ...process.env, DATABASE_URL: database.url };
});
after(async () => {
  await database.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('an empty database: generate writes 0001 (registry + tables), migrate applies it, generate again writes nothing', async () => {
  declare(V1);
  const first = await generate();
  assert.equal(path.basename(first.file ?? ''), '0001_generated.sql');
  assert.deepEqual(first.changes, ['create the registry tenants', 'create tenant table notes', 'create global table kinds']);
  await migrate();
  const again = await generate();
  assert.deepEqual(again, { file: null, changes: [], refused: [], code: 0 });
});

test('a declared change: new column, index, unique, foreign keys and a partitioned tenant table round-trip with every tenant rule', async () => {
  declare(V2);
  const change = await generate();
  assert.equal(path.basename(change.file ?? ''), '0002_generated.sql');
  assert.deepEqual(change.changes, [
    'add column notes.title',
    'add column notes.kind_id',
    'create index notes_tenant_id_title_idx',
    'add foreign key notes_kind_id_fkey',
    'create unique index kinds_label_key',
    'create tenant table attachments',
  ]);
  await migrate();
  assert.deepEqual(await generate(), { file: null, changes: [], refused: [], code: 0 });
  // Tenant rules on the generated table: tenant-led keys, composite foreign key, forced RLS on every partition.
  const rls = await superQuery(database.name, `SELECT relname, relrowsecurity AND relforcerowsecurity AS forced, (SELECT count(*)::int FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
    FROM pg_class c WHERE relname LIKE 'attachments%' AND relkind IN ('r', 'p') ORDER BY relname`);
  assert.deepEqual(rls.rows.map((r) => r.relname), ['attachments', 'attachments_p0', 'attachments_p0_shared', 'attachments_p1', 'attachments_p1_shared']);
  assert.ok(rls.rows.every((r) => r.forced && r.policies === 1));
  const keys = await superQuery(database.name, `SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint WHERE conrelid = 'attachments'::regclass AND contype IN ('p', 'f') ORDER BY conname`);
  assert.deepEqual(keys.rows.map((r) => r.def as string).sort(), [
    'FOREIGN KEY (tenant_id) REFERENCES tenants(id)',
    'FOREIGN KEY (tenant_id, note_id) REFERENCES notes(tenant_id, id) ON DELETE CASCADE',
    'PRIMARY KEY (tenant_id, id)',
  ]);
  const audit = await tw('audit', '--json', '--global-tables', 'kinds');
  const errors = (JSON.parse(audit.stdout) as { findings: { severity: string }[] }).findings.filter((f) => f.severity === 'error');
  assert.deepEqual(errors, []);
});

test('drops and type changes are refused unless named; named, they are written and applied', async () => {
  declare(V3);
  const refused = await generate();
  assert.equal(refused.code, 1);
  assert.equal(refused.file, null);
  assert.deepEqual(refused.refused.map((r) => r.flag).sort(), ['--allow-drop notes.title', '--allow-drop notes_tenant_id_title_idx', '--allow-type-change notes.body']);
  const partly = await generate('--allow-drop', 'notes.title,notes_tenant_id_title_idx');
  assert.equal(partly.code, 1);
  assert.deepEqual(partly.changes, ['drop column notes.title', 'drop index notes_tenant_id_title_idx on notes']);
  assert.deepEqual(partly.refused.map((r) => r.flag), ['--allow-type-change notes.body']);
  await migrate();
  const typed = await generate('--allow-type-change', 'notes.body');
  assert.deepEqual(typed.changes, ['change the type of notes.body from text to character varying(500)']);
  await migrate();
  assert.deepEqual(await generate(), { file: null, changes: [], refused: [], code: 0 });
  const files = fs.readdirSync(path.join(dir, 'migrations')).sort();
  assert.deepEqual(files, ['0001_generated.sql', '0002_generated.sql', '0003_generated.sql', '0004_generated.sql']);
});
