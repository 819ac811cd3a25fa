import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import {
  TenantwallError,
  dedicatedPartitionName,
  moveTenant,
  tenantChecksums,
  tenantInfo,
  type TenantId,
} from '../../src/index.ts';
import { adminUrl, createTestTenantwall, superQuery, withDatabase, type TestTenantwall } from '../helpers/db.ts';
import { runCli, runCliAndKill } from './cli.ts';
import { allChecksums, lifecycleMigrations, lifecycleSchema, seedTenant, without } from './fixture.ts';

let t: TestTenantwall;
let A: TenantId;
let K: TenantId; // the one killed mid-move
const others: TenantId[] = [];

before(async () => {
  t = await createTestTenantwall(lifecycleSchema, lifecycleMigrations);
  A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
  K = (await t.db.tenants.create({ slug: 'k', name: 'K' })).id;
  for (let i = 0; i < 6; i++) others.push((await t.db.tenants.create({ slug: `o${i}`, name: `O${i}` })).id);
  await seedTenant(t.db, A, 400);
  await seedTenant(t.db, K, 1500);
  for (const o of others) await seedTenant(t.db, o, 50);
});
after(() => t.close());

function code(c: string) {
  return (err: unknown) => err instanceof TenantwallError && err.code === c;
}

test('move shared -> dedicated -> shared online: reads never fail, writes during the move land, others untouched', async () => {
  const before = await allChecksums(t.database.url);
  const scope = t.db.forTenant(A);
  let stop = false;
  let reads = 0;
  let writes = 0;
  const readErrors: unknown[] = [];
  const readers = (async () => {
    while (!stop) {
      try {
        const { rows } = await scope.query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [A]);
        assert.ok((rows[0]?.n as number) >= 1200);
        reads++;
      } catch (err) {
        readErrors.push(err);
      }
    }
  })();
  const writers = (async () => {
    let id = 100000;
    while (!stop) {
      await scope.query(`INSERT INTO invoices (tenant_id, id, customer_id, amount_cents) VALUES ($1, $2, 1, 1)`, [A, id++]);
      await scope.query(`UPDATE customers SET email = email || '+' WHERE tenant_id = $1 AND id = 2`, [A]);
      writes++;
    }
  })();
  let r: Awaited<ReturnType<typeof moveTenant>>;
  let r2: typeof r;
  try {
    r = await moveTenant(t.db, 'a', 'dedicated', { batchSize: 50 });
    r2 = await moveTenant(t.db, A, 'shared', { batchSize: 50 });
  } finally {
    stop = true;
    await Promise.all([readers, writers]);
  }
  assert.deepEqual(readErrors, []);
  assert.ok(reads > 0 && writes > 0, `${reads} reads, ${writes} writes`);
  console.log(`# move under load: ${reads} reads, ${writes} writes; to dedicated ${JSON.stringify({ ...r, tenant: undefined })}; back ${JSON.stringify({ ...r2, tenant: undefined, tables: undefined })}`);
  assert.equal(r.from, 'shared');
  assert.equal(r.to, 'dedicated');
  assert.equal(r2.to, 'shared');
  assert.ok(r.writeBlockedMs >= 0 && r.writeBlockedMs < r.totalMs);
  assert.equal(r.tables.find((x) => x.table === 'customers')?.rows, 400);
  // Every write acknowledged before the move is there after it; nobody else changed.
  const invoices = await t.db.forTenant(A).query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [A]);
  assert.equal(invoices.rows[0]?.n, 1200 + writes);
  const after = await allChecksums(t.database.url);
  for (const o of others) assert.deepEqual(without(after, A), without(before, A), `other tenants (e.g. ${o}) untouched`);
  assert.equal((await tenantInfo(t.db, 'a')).placement, 'shared');
});

test('bad input: unknown tenant, the placement it already has, an unknown placement -> clear errors, nothing changed', async () => {
  const before = await allChecksums(t.database.url);
  await assert.rejects(moveTenant(t.db, 'nobody', 'dedicated'), code('tenant_not_found'));
  await assert.rejects(moveTenant(t.db, '00000000-0000-4000-8000-000000000000', 'dedicated'), code('tenant_not_found'));
  await assert.rejects(moveTenant(t.db, 'a', 'shared'), code('placement_unchanged'));
  await assert.rejects(moveTenant(t.db, 'a', 'elsewhere' as 'shared'), code('config_invalid'));
  await moveTenant(t.db, 'o0', 'dedicated');
  await assert.rejects(moveTenant(t.db, 'o0', 'dedicated'), code('placement_unchanged'));
  await moveTenant(t.db, 'o0', 'shared');
  // A tenant without rows moves too (nothing to copy, the switch only attaches empty partitions).
  await t.db.tenants.create({ slug: 'empty', name: 'Empty' });
  assert.equal((await moveTenant(t.db, 'empty', 'dedicated')).rowsCopied, 0);
  assert.equal((await tenantInfo(t.db, 'empty')).placement, 'dedicated');
  await moveTenant(t.db, 'empty', 'shared');
  assert.deepEqual(await allChecksums(t.database.url), before);
  // Through the CLI: one line with the code, non-zero exit.
  const cli = await runCli(['move', 'a', '--to', 'shared'], t.database.url);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /^tenantwall tenants: \[placement_unchanged\] Tenant a already has shared placement/);
  assert.equal(cli.stderr.trim().split('\n').length, 1);
});

test('a switch that cannot take its locks in time fails with transaction_conflict, nothing changed; run again after, it moves', async () => {
  const before = await allChecksums(t.database.url);
  const blocker = new pg.Client({ connectionString: withDatabase(adminUrl(), t.database.name) });
  await blocker.connect();
  try {
    await blocker.query('BEGIN');
    // A reader in an open transaction: the copy reads alongside it, the switch (ACCESS EXCLUSIVE) must wait for it.
    await blocker.query('SELECT count(*) FROM invoices');
    await assert.rejects(moveTenant(t.db, 'o1', 'dedicated', { lockTimeoutMs: 200 }), (err) => {
      assert.ok(err instanceof TenantwallError && err.code === 'transaction_conflict', String(err));
      assert.equal(err.details['sqlstate'], '55P03');
      return true;
    });
  } finally {
    await blocker.query('ROLLBACK').catch(() => undefined);
    await blocker.end();
  }
  assert.equal((await tenantInfo(t.db, 'o1')).placement, 'shared');
  assert.deepEqual(await allChecksums(t.database.url), before);
  await moveTenant(t.db, 'o1', 'dedicated');
  assert.equal((await tenantInfo(t.db, 'o1')).placement, 'dedicated');
  await moveTenant(t.db, 'o1', 'shared');
  assert.deepEqual(await allChecksums(t.database.url), before);
});

test('a move killed mid-copy is journaled, changes nothing visible, and is resumed by running it again', async () => {
  const before = await allChecksums(t.database.url);
  const killed = await runCliAndKill(['move', 'k', '--to', 'dedicated', '--batch-size', '10'], t.database.url, (e) => e.phase === 'copy' && (e.done as number) > 0);
  assert.equal(killed.signal, 'SIGKILL');
  // Half-way: the journal row and an unattached staging copy exist; the tenant still reads from shared.
  const journal = await superQuery(t.database.name, `SELECT operation, target, phase FROM tenantwall_lifecycle WHERE subject_tenant = $1`, [K]);
  assert.deepEqual(journal.rows, [{ operation: 'move', target: 'dedicated', phase: 'copying' }]);
  const staging = await superQuery(t.database.name, `SELECT relispartition FROM pg_class WHERE relname = $1`, [dedicatedPartitionName('customers', K)]);
  assert.deepEqual(staging.rows, [{ relispartition: false }]);
  assert.equal((await tenantInfo(t.db, 'k')).placement, 'shared');
  assert.deepEqual(await allChecksums(t.database.url), before);
  // The other direction is refused while this one is unfinished.
  await assert.rejects(moveTenant(t.db, 'k', 'shared'), code('move_in_progress'));
  // A write after the crash must survive the resumed move (the switch reconciles it).
  await t.db.forTenant(K).query(`UPDATE customers SET email = 'changed@example.com' WHERE tenant_id = $1 AND id = 1`, [K]);
  const expected = await tenantChecksums(t.db, K);
  const othersBefore = without(await allChecksums(t.database.url), K);
  const resumed = await runCli(['move', 'k', '--to', 'dedicated', '--json'], t.database.url);
  assert.equal(resumed.code, 0, resumed.stderr);
  const result = JSON.parse(resumed.stdout) as { resumed: boolean; reconciledRows: number; to: string };
  assert.deepEqual([result.resumed, result.reconciledRows >= 1], [true, true], resumed.stdout);
  assert.equal((await tenantInfo(t.db, 'k')).placement, 'dedicated');
  assert.deepEqual(await tenantChecksums(t.db, K), expected);
  assert.deepEqual(without(await allChecksums(t.database.url), K), othersBefore);
  assert.equal((await superQuery(t.database.name, `SELECT count(*)::int AS n FROM tenantwall_lifecycle`)).rows[0]?.n, 0);
  // And back, so the next test starts from shared.
  await moveTenant(t.db, 'k', 'shared');
});

test('a move killed mid-copy can be rolled back with --abort: staging dropped, journal cleared, data as before', async () => {
  const before = await allChecksums(t.database.url);
  const killed = await runCliAndKill(['move', 'k', '--to', 'dedicated', '--batch-size', '10'], t.database.url, (e) => e.phase === 'copy' && (e.done as number) > 0);
  assert.equal(killed.signal, 'SIGKILL');
  await assert.rejects(moveTenant(t.db, 'k', 'shared'), code('move_in_progress'));
  const aborted = await runCli(['move', 'k', '--abort', '--json'], t.database.url);
  assert.equal(aborted.code, 0, aborted.stderr);
  assert.equal((JSON.parse(aborted.stdout) as { dropped: string[] }).dropped.length, 2);
  const left = await superQuery(t.database.name, `SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE '%\\_t\\_${K.replace(/-/g, '')}'`);
  assert.equal(left.rows[0]?.n, 0);
  assert.equal((await superQuery(t.database.name, `SELECT count(*)::int AS n FROM tenantwall_lifecycle`)).rows[0]?.n, 0);
  assert.deepEqual(await allChecksums(t.database.url), before);
});
