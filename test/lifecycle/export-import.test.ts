import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { TenantwallError, deleteTenant, exportTenant, importTenant, moveTenant, tenantChecksums, type ExportManifest, type TenantId } from '../../src/index.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { waitUntil } from '../helpers/wait.ts';
import { runCli, runCliAndKill } from './cli.ts';
import { allChecksums, lifecycleMigrations, lifecycleSchema, seedTenant } from './fixture.ts';

let t: TestTenantwall;
let A: TenantId; // dedicated
let S: TenantId; // shared
let tmp: string;

before(async () => {
  t = await createTestTenantwall(lifecycleSchema, lifecycleMigrations);
  A = (await t.db.tenants.create({ slug: 'a', name: 'Alpha' })).id;
  S = (await t.db.tenants.create({ slug: 's', name: 'Sigma' })).id;
  for (let i = 0; i < 3; i++) await seedTenant(t.db, (await t.db.tenants.create({ slug: `o${i}`, name: 'O' })).id, 40);
  await seedTenant(t.db, A, 120);
  await seedTenant(t.db, S, 700);
  await moveTenant(t.db, 'a', 'dedicated');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-export-'));
});
after(async () => {
  await t.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function code(c: string) {
  return (err: unknown) => err instanceof TenantwallError && err.code === c;
}

function sha(file: string): string {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

for (const format of ['ndjson', 'csv'] as const) {
  test(`export (${format}) from one snapshot with a manifest, then import into a new tenant: same rows, others untouched`, async () => {
    const before = await allChecksums(t.database.url);
    const dir = path.join(tmp, `a-${format}`);
    const r = await exportTenant(t.db, 'a', { dir, format, batchSize: 7 });
    assert.deepEqual(await allChecksums(t.database.url), before);
    const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as ExportManifest;
    assert.equal(manifest.tenant.id, A);
    assert.deepEqual(manifest.tables.map((x) => [x.table, x.rows]), [['customers', 120], ['invoices', 360], ['notes', 120]]);
    for (const x of manifest.tables) {
      assert.equal(sha(path.join(dir, x.file)), x.sha256);
      const lines = fs.readFileSync(path.join(dir, x.file), 'utf8').split('\n').filter((l) => l !== '').length;
      if (format === 'ndjson') assert.equal(lines, x.rows);
      assert.ok(!x.columns.some((c) => c.name === 'tenant_id'), 'tenant_id is not exported');
    }
    assert.equal(r.rows, 600);
    const imported = await importTenant(t.db, { dir, slug: `a-copy-${format}`, batchSize: 50 });
    assert.equal(imported.tenant.name, 'Alpha');
    assert.notEqual(imported.tenant.id, A);
    // Tenant-independent checksums: every value survived (NULL vs '', quotes, commas, newlines, jsonb, timestamptz).
    assert.deepEqual(await tenantChecksums(t.db, imported.tenant.id), await tenantChecksums(t.db, A));
    const after = await allChecksums(t.database.url);
    for (const [k, v] of Object.entries(before)) assert.equal(after[k], v, k);
    const nulls = await t.db.forTenant(imported.tenant.id).query(
      `SELECT count(*) FILTER (WHERE note IS NULL)::int AS n, count(*) FILTER (WHERE note = '')::int AS e FROM invoices WHERE tenant_id = $1`,
      [imported.tenant.id],
    );
    assert.deepEqual(nulls.rows[0], { n: 72, e: 41 }); // ids divisible by 5 are NULL, by 7 (not 5) empty
  });
}

test('import verifies the manifest first: a changed file is refused and nothing is created', async () => {
  const dir = path.join(tmp, 'tampered');
  await exportTenant(t.db, 's', { dir });
  const before = await allChecksums(t.database.url);
  const file = path.join(dir, 'invoices.ndjson');
  const text = fs.readFileSync(file, 'utf8');
  fs.writeFileSync(file, text.replace('"amount_cents":"7"', '"amount_cents":"8"'));
  await assert.rejects(importTenant(t.db, { dir, slug: 'tampered' }), code('import_checksum_mismatch'));
  assert.equal(await t.db.tenants.getBySlug('tampered'), undefined);
  fs.rmSync(path.join(dir, 'manifest.json'));
  await assert.rejects(importTenant(t.db, { dir, slug: 'tampered' }), code('import_invalid'));
  await assert.rejects(importTenant(t.db, { dir: path.join(tmp, 'nope'), slug: 'tampered' }), code('import_invalid'));
  assert.deepEqual(await allChecksums(t.database.url), before);
});

test('bad input: unwritable export path, unknown tenant, taken slug -> clear errors, nothing written', async () => {
  const before = await allChecksums(t.database.url);
  const file = path.join(tmp, 'a-file');
  fs.writeFileSync(file, 'x');
  await assert.rejects(exportTenant(t.db, 'a', { dir: path.join(file, 'sub') }), code('export_path_unwritable'));
  await assert.rejects(exportTenant(t.db, 'nobody', { dir: path.join(tmp, 'x') }), code('tenant_not_found'));
  assert.equal(fs.existsSync(path.join(tmp, 'x')), false);
  await assert.rejects(importTenant(t.db, { dir: path.join(tmp, 'a-ndjson'), slug: 's' }), code('tenant_exists'));
  const cli = await runCli(['export', 'a', '--out', path.join(file, 'sub')], t.database.url);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /^tenantwall tenants: \[export_path_unwritable\] Cannot write to /);
  assert.deepEqual(await allChecksums(t.database.url), before);
});

test('an import killed mid-way leaves nothing (one transaction); run again, it completes', async () => {
  const dir = path.join(tmp, 's-export');
  const exp = await runCli(['export', 's', '--out', dir, '--format', 'csv', '--json'], t.database.url);
  assert.equal(exp.code, 0, exp.stderr);
  assert.ok(exp.stderr.split('\n').some((l) => l.includes('"event":"progress"') && l.includes('"operation":"export"')));
  const before = await allChecksums(t.database.url);
  const killed = await runCliAndKill(['import', dir, '--slug', 's-copy', '--batch-size', '5'], t.database.url, (e) => e.phase === 'rows' && (e.done as number) >= 10);
  assert.equal(killed.signal, 'SIGKILL');
  assert.equal(await t.db.tenants.getBySlug('s-copy'), undefined);
  assert.deepEqual(await allChecksums(t.database.url), before);
  const again = await runCli(['import', dir, '--slug', 's-copy', '--json'], t.database.url);
  assert.equal(again.code, 0, again.stderr);
  const copy = JSON.parse(again.stdout) as { tenant: { id: string }; rows: number };
  assert.equal(copy.rows, 700 * 5);
  assert.deepEqual(await tenantChecksums(t.db, copy.tenant.id), await tenantChecksums(t.db, S));
});

test('the export reads one snapshot: rows committed while it runs are not in any file', async () => {
  const before = await tenantChecksums(t.db, S);
  const dir = path.join(tmp, 'snapshot');
  let write: Promise<unknown> | undefined;
  const r = await exportTenant(t.db, 's', {
    dir,
    batchSize: 50,
    onProgress: (p) => {
      // While customers are being written out, commit rows into customers and into notes (exported last).
      if (p.table === 'customers' && p.done === 50 && !write) {
        write = (async () => {
          await t.db.forTenant(S).query(`INSERT INTO customers (tenant_id, id, email) VALUES ($1, 99001, 'late@example.com')`, [S]);
          await t.db.forTenant(S).query(`INSERT INTO notes (tenant_id, id, body) VALUES ($1, 99001, 'late')`, [S]);
        })();
      }
    },
  });
  await write;
  assert.ok(write, 'the concurrent write ran');
  assert.equal((await tenantChecksums(t.db, S)).notes?.rows, 701, 'the late rows are committed');
  assert.deepEqual(Object.fromEntries(r.manifest.tables.map((x) => [x.table, { rows: x.rows, checksum: x.dataChecksum }])), before);
  assert.equal(fs.readFileSync(path.join(dir, 'notes.ndjson'), 'utf8').includes('"late"'), false);
  await t.db.forTenant(S).query(`DELETE FROM notes WHERE tenant_id = $1 AND id = 99001`, [S]);
  await t.db.forTenant(S).query(`DELETE FROM customers WHERE tenant_id = $1 AND id = 99001`, [S]);
});

test('an export killed mid-way leaves no manifest, so it cannot be imported by mistake', async () => {
  const dir = path.join(tmp, 'killed-export');
  const killed = await runCliAndKill(['export', 's', '--out', dir, '--batch-size', '5'], t.database.url, (e) => e.phase === 'rows' && (e.done as number) >= 20);
  assert.equal(killed.signal, 'SIGKILL');
  assert.equal(fs.existsSync(path.join(dir, 'manifest.json')), false);
  await assert.rejects(importTenant(t.db, { dir, slug: 'from-killed' }), code('import_invalid'));
  assert.equal(await t.db.tenants.getBySlug('from-killed'), undefined);
});

test('a move or delete of a tenant whose export is running answers tenant_busy (one snapshot cannot survive a switch)', async () => {
  // Partition membership is not MVCC: a move that committed after the export's snapshot would route its reads to
  // the new partition, where that snapshot sees the staging copy or nothing. The export holds the tenant's
  // lifecycle lock (shared) from before its snapshot to its end; hold it there by a FIFO nobody reads yet.
  const dir = path.join(tmp, 'held-export');
  fs.mkdirSync(dir, { recursive: true });
  const fifo = path.join(dir, 'customers.ndjson');
  execFileSync('mkfifo', [fifo]);
  const before = await tenantChecksums(t.db, S);
  const running = exportTenant(t.db, 's', { dir, batchSize: 50 });
  await waitUntil(async () => (await superQuery(t.database.name, `SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND mode = 'ShareLock' AND granted`)).rowCount === 1, 'the export holds the lock');
  await assert.rejects(moveTenant(t.db, 's', 'dedicated'), code('tenant_busy'));
  await assert.rejects(deleteTenant(t.db, 's', { confirm: 's' }), code('tenant_busy'));
  // Readers share it: checksums (one snapshot too) run beside the export.
  assert.deepEqual(await tenantChecksums(t.db, S), before);
  const drained = new Promise<void>((resolve) => fs.createReadStream(fifo).on('end', () => resolve()).resume());
  const r = await running;
  await drained;
  assert.deepEqual(Object.fromEntries(r.manifest.tables.map((x) => [x.table, { rows: x.rows, checksum: x.dataChecksum }])), before);
  const moved = await moveTenant(t.db, 's', 'dedicated');
  assert.equal(moved.to, 'dedicated', 'the lock went with the export');
  await moveTenant(t.db, 's', 'shared');
});
