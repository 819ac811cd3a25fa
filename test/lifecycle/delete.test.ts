import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TenantwallError, createTenant, deleteTenant, dedicatedPartitionName, type TenantId } from '../../src/index.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { runCli, runCliAndKill } from './cli.ts';
import { allChecksums, lifecycleMigrations, lifecycleSchema, seedTenant, without } from './fixture.ts';

let t: TestTenantwall;
let D: TenantId; // dedicated
let S: TenantId; // shared
let K: TenantId; // shared, killed mid-delete

before(async () => {
  t = await createTestTenantwall(lifecycleSchema, lifecycleMigrations);
  D = (await createTenant(t.db, { slug: 'd', name: 'D', placement: 'dedicated' })).tenant.id;
  S = (await t.db.tenants.create({ slug: 's', name: 'S' })).id;
  K = (await t.db.tenants.create({ slug: 'k', name: 'K' })).id;
  for (let i = 0; i < 4; i++) await seedTenant(t.db, (await t.db.tenants.create({ slug: `o${i}`, name: 'O' })).id, 40);
  await seedTenant(t.db, D, 300);
  await seedTenant(t.db, S, 200);
  await seedTenant(t.db, K, 1000);
});
after(() => t.close());

function code(c: string) {
  return (err: unknown) => err instanceof TenantwallError && err.code === c;
}

/** Rows of `id` in every tenant table, counted by the superuser through the parents. */
async function rowsOf(id: string): Promise<number> {
  const { rows } = await superQuery(
    t.database.name,
    `SELECT (SELECT count(*) FROM customers WHERE tenant_id = $1) + (SELECT count(*) FROM invoices WHERE tenant_id = $1) + (SELECT count(*) FROM notes WHERE tenant_id = $1) AS n`,
    [id],
  );
  return Number(rows[0]?.n);
}

test('without the right confirmation nothing is deleted', async () => {
  const before = await allChecksums(t.database.url);
  await assert.rejects(deleteTenant(t.db, 'd', { confirm: undefined }), code('confirmation_required'));
  await assert.rejects(deleteTenant(t.db, 'd', { confirm: 's' }), code('confirmation_required'));
  await assert.rejects(deleteTenant(t.db, 'nobody', { confirm: 'nobody' }), code('tenant_not_found'));
  const cli = await runCli(['delete', 'd'], t.database.url);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /\[confirmation_required\].*--confirm d/);
  assert.deepEqual(await allChecksums(t.database.url), before);
  assert.equal((await t.db.tenants.get(D))?.status, 'active');
});

test('deleting a dedicated tenant detaches and drops its partitions; a tombstone remains, nobody else changes', async () => {
  const before = await allChecksums(t.database.url);
  const r = await deleteTenant(t.db, 'd', { confirm: 'd' });
  assert.deepEqual([...r.droppedPartitions].sort(), [dedicatedPartitionName('customers', D), dedicatedPartitionName('invoices', D)].sort());
  assert.equal(r.rowsDeleted, 300, 'only the unpartitioned notes table needed row deletes');
  assert.equal(await rowsOf(D), 0);
  const left = await superQuery(t.database.name, `SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE $1`, [`%${D.replace(/-/g, '')}`]);
  assert.equal(left.rows[0]?.n, 0);
  const tomb = await t.db.tenants.get(D);
  assert.equal(tomb?.status, 'deleted');
  const deletedAt = await superQuery(t.database.name, `SELECT deleted_at FROM tenants WHERE id = $1`, [D]);
  assert.ok(deletedAt.rows[0]?.deleted_at instanceof Date);
  assert.deepEqual(await allChecksums(t.database.url), without(before, D));
  await assert.rejects(deleteTenant(t.db, D, { confirm: 'd' }), code('tenant_deleted'));
  // The slug is free again.
  await t.db.tenants.create({ slug: 'd', name: 'New D' });
});

test('deleting a shared tenant deletes its rows in batches', async () => {
  const before = await allChecksums(t.database.url);
  const batches: number[] = [];
  const r = await deleteTenant(t.db, 's', { confirm: 's', batchSize: 150, onProgress: (p) => batches.push(p.done) });
  assert.equal(r.rowsDeleted, 1000);
  assert.deepEqual(r.droppedPartitions, []);
  assert.ok(batches.length >= 7, `${batches.length} batches`);
  assert.equal(await rowsOf(S), 0);
  assert.equal((await t.db.tenants.get(S))?.status, 'deleted');
  assert.deepEqual(await allChecksums(t.database.url), without(before, S));
});

test('a delete killed mid-way leaves the tenant suspended and journaled; running it again finishes it', async () => {
  const before = await allChecksums(t.database.url);
  const killed = await runCliAndKill(['delete', 'k', '--confirm', 'k', '--batch-size', '5'], t.database.url, (e) => e.phase === 'rows' && (e.done as number) >= 20);
  assert.equal(killed.signal, 'SIGKILL');
  const remaining = await rowsOf(K);
  assert.ok(remaining > 0 && remaining < 5000, `${remaining} rows left`);
  assert.equal((await t.db.tenants.get(K))?.status, 'suspended');
  assert.deepEqual(without(await allChecksums(t.database.url), K), without(before, K));
  const again = await runCli(['delete', 'k', '--confirm', 'k', '--json'], t.database.url);
  assert.equal(again.code, 0, again.stderr);
  assert.equal((JSON.parse(again.stdout) as { resumed: boolean }).resumed, true);
  assert.equal(await rowsOf(K), 0);
  assert.equal((await t.db.tenants.get(K))?.status, 'deleted');
  assert.equal((await superQuery(t.database.name, `SELECT count(*)::int AS n FROM tenantwall_lifecycle`)).rows[0]?.n, 0);
  assert.deepEqual(await allChecksums(t.database.url), without(before, K));
});
