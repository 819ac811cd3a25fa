/**
 * Placement and lifecycle on a real Citus cluster (CITUS_URL): a tenant moved to a dedicated node under load
 * (0 failed reads, every acknowledged write present, other tenants unchanged), a move killed with kill -9 inside
 * a Citus step and finished by running it again, export/import/delete/suspend on the cluster, and
 * `tenantwall cluster rebalance` after adding a worker (dedicated-node tenants stay pinned).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { TenantwallError, runAudit, deleteTenant, exportTenant, importTenant, moveTenant, tenantChecksums, tenantInfo, type TenantId } from '../../src/index.ts';
import { createTenant, listTenants } from '../../src/lifecycle/tenants.ts';
import { suspendTenant } from '../../src/lifecycle/suspend.ts';
import { CLI } from '../helpers/cli.ts';
import { runCli, runCliAndKill } from '../lifecycle/cli.ts';
import { allChecksums, lifecycleMigrations, lifecycleSchema, seedTenant, without } from '../lifecycle/fixture.ts';
import { type CitusTenantwall, createCitusTenantwall, queryAt, skipWithoutCitus } from './cluster.ts';

function code(c: string) {
  return (err: unknown) => err instanceof TenantwallError && err.code === c;
}

/** The worker holding `tenant`'s shard of invoices. */
async function nodeOf(t: CitusTenantwall, tenant: string): Promise<string> {
  const { rows } = await t.db.dangerouslyCrossTenant().query<{ node: string }>(
    `SELECT n.nodename || ':' || n.nodeport AS node FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
      WHERE p.shardid = get_shard_id_for_distribution_column('invoices', $1::uuid)`,
    [tenant],
  );
  assert.equal(rows.length, 1);
  return rows[0]?.node as string;
}

describe('Citus: placement tiers and lifecycle', { skip: skipWithoutCitus }, () => {
  let t: CitusTenantwall;
  let A: TenantId;
  let K: TenantId;
  const others: TenantId[] = [];
  let workers: string[];

  before(async () => {
    t = await createCitusTenantwall(lifecycleSchema, lifecycleMigrations, {}, { shardCount: 4 });
    A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
    K = (await t.db.tenants.create({ slug: 'k', name: 'K' })).id;
    for (let i = 0; i < 4; i++) others.push((await t.db.tenants.create({ slug: `o${i}`, name: `O${i}` })).id);
    await seedTenant(t.db, A, 400);
    await seedTenant(t.db, K, 300);
    for (const o of others) await seedTenant(t.db, o, 40);
    workers = t.database.workers.map((w) => `${w.host}:${w.port}`);
  });
  after(() => t?.close());

  test('a tenant moved to a dedicated node under load: 0 failed reads, every acknowledged write present, others unchanged', async () => {
    const before = await allChecksums(t.database.url);
    const from = await nodeOf(t, A);
    const target = workers.find((w) => w !== from) as string;
    const scope = t.db.forTenant(A);
    let stop = false;
    let reads = 0;
    const readErrors: unknown[] = [];
    const writeErrors: unknown[] = [];
    const acknowledged: number[] = [];
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
    // Two writers, so that commits are in flight around each Citus switch (a write counts as acknowledged once
    // its statement returned: tenantwall's explicit transaction, COMMIT included, succeeded).
    const writer = async (first: number) => {
      let id = first;
      while (!stop) {
        const n = id++;
        try {
          await scope.query(`INSERT INTO invoices (tenant_id, id, customer_id, amount_cents) VALUES ($1, $2, 1, 1)`, [A, n]);
          acknowledged.push(n);
        } catch (err) {
          writeErrors.push(err);
        }
      }
    };
    const writers = Promise.all([writer(100000), writer(500000)]);
    let r;
    try {
      r = await moveTenant(t.db, 'a', 'dedicated-node', { node: { host: target.split(':')[0] as string, port: Number(target.split(':')[1]) } });
    } finally {
      stop = true;
      await Promise.all([readers, writers]);
    }
    assert.deepEqual(readErrors, [], 'no read failed');
    assert.deepEqual(writeErrors, [], 'no write failed');
    assert.ok(reads > 0 && acknowledged.length > 0, `load ran (${reads} reads, ${acknowledged.length} writes)`);
    assert.deepEqual([r.from, r.to, r.resumed], ['shared', 'dedicated-node', false]);
    assert.equal(await nodeOf(t, A), target, 'the tenant shard group is on the chosen worker');
    assert.equal((await tenantInfo(t.db, 'a')).placement, 'dedicated-node');
    // Its own shard group: the shard of invoices covers exactly the tenant's hash value, customers moved with it.
    const own = await t.db.dangerouslyCrossTenant().query<{ iso: boolean; n: number }>(
      `SELECT bool_and(s.shardminvalue = s.shardmaxvalue) AS iso, count(DISTINCT p.groupid)::int AS n FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid)
        WHERE s.shardid IN (get_shard_id_for_distribution_column('invoices', $1::uuid), get_shard_id_for_distribution_column('customers', $1::uuid), get_shard_id_for_distribution_column('notes', $1::uuid))`,
      [A],
    );
    assert.deepEqual(own.rows[0], { iso: true, n: 1 });
    const present = await t.db.dangerouslyCrossTenant().query<{ id: string }>(`SELECT id::text FROM invoices WHERE tenant_id = $1 AND id = ANY($2::bigint[])`, [A, acknowledged]);
    const have = new Set(present.rows.map((r) => Number(r.id)));
    const missing = acknowledged.filter((n) => !have.has(n));
    // Citus with synchronous_commit = off on the workers (as the test cluster runs) lost the writes acknowledged just
    // before a switch until tenantwall made the moving shards' commits flush (docs/scale-out.md, "Moves and writes").
    assert.deepEqual(missing, [], `every acknowledged write is there (${acknowledged.length} acknowledged; move total ${r.totalMs.toFixed(0)} ms)`);
    // The commit-flush triggers of the move are gone from every shard still in use.
    const guards = await t.db.dangerouslyCrossTenant().query<{ result: string }>(
      `SELECT result FROM run_command_on_all_nodes($$SELECT count(*) FROM pg_trigger t JOIN pg_dist_shard s ON t.tgrelid = to_regclass(shard_name(s.logicalrelid, s.shardid)) WHERE t.tgname = 'tenantwall_flush_commit'$$)`,
    );
    assert.deepEqual(guards.rows.map((g) => g.result), guards.rows.map(() => '0'), 'no shard in use keeps the trigger');
    assert.deepEqual(without(await allChecksums(t.database.url), A), without(before, A), 'other tenants unchanged');
    // Same tier again: refused; back to shared: refused (Citus cannot merge shards); dedicated unpins it.
    await assert.rejects(moveTenant(t.db, 'a', 'dedicated-node', { node: { host: target.split(':')[0] as string, port: Number(target.split(':')[1]) } }), code('placement_unchanged'));
    await assert.rejects(moveTenant(t.db, 'a', 'shared'), code('placement_unsupported'));
    await assert.rejects(moveTenant(t.db, 'a', 'dedicated-node', { node: { host: '127.0.0.1', port: 1 } }), code('config_invalid'));
    assert.equal((await moveTenant(t.db, 'a', 'dedicated')).to, 'dedicated');
    assert.equal((await tenantInfo(t.db, 'a')).placement, 'dedicated');
  });

  test('a move killed with kill -9 inside a Citus step is journaled, changes no data, and a re-run finishes it', async () => {
    const before = await allChecksums(t.database.url);
    const target = workers.find((w) => w !== workers[0]) as string;
    const killed = await runCliAndKill(['move', 'k', '--to', 'dedicated-node', '--node', target], t.database.url, (e) => e.phase === 'isolate' && e.done === 0);
    assert.equal(killed.signal, 'SIGKILL');
    const journal = await queryAt(t.database.url, `SELECT operation, target FROM tenantwall_lifecycle WHERE subject_tenant = '${K}'`);
    assert.deepEqual(journal.rows, [{ operation: 'move', target: `dedicated-node@${target}` }]);
    assert.deepEqual(await allChecksums(t.database.url), before, 'no row changed or lost');
    // A different target is refused while this one is unfinished.
    await assert.rejects(moveTenant(t.db, 'k', 'dedicated'), code('move_in_progress'));
    const expected = await tenantChecksums(t.db, K);
    const resumed = await runCli(['move', 'k', '--to', 'dedicated-node', '--node', target, '--json'], t.database.url);
    assert.equal(resumed.code, 0, resumed.stderr);
    const result = JSON.parse(resumed.stdout) as { resumed: boolean; to: string };
    assert.deepEqual([result.resumed, result.to], [true, 'dedicated-node']);
    assert.equal(await nodeOf(t, K), target);
    assert.deepEqual(await tenantChecksums(t.db, K), expected);
    assert.deepEqual(without(await allChecksums(t.database.url), K), without(before, K));
    assert.equal((await queryAt(t.database.url, `SELECT count(*)::int AS n FROM tenantwall_lifecycle`)).rows[0]?.n, 0);
    const listed = new Map((await listTenants(t.db)).map((x) => [x.tenant.slug, x.placement]));
    assert.deepEqual([listed.get('k'), listed.get('a'), listed.get('o0')], ['dedicated-node', 'dedicated', 'shared']);
    // The isolated and moved shards are audited like the others: no error anywhere on the cluster.
    const audit = await runAudit({ databaseUrl: t.database.url, appRole: 'tenantwall_app' });
    assert.deepEqual(audit.findings.filter((f) => f.severity === 'error').map((f) => `${f.ruleId} ${f.object}`), []);
  });

  test('export, import (dedicated), suspend and delete on the cluster', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tw-citus-export-'));
    try {
      const exported = await exportTenant(t.db, 'k', { dir: join(dir, 'k') });
      assert.equal(exported.rows, 300 * 5);
      const imported = await importTenant(t.db, { dir: join(dir, 'k'), slug: 'k2', placement: 'dedicated' });
      assert.equal(imported.rows, exported.rows);
      assert.deepEqual(await tenantChecksums(t.db, imported.tenant.id), await tenantChecksums(t.db, K), 'same rows and checksums under the new id');
      assert.equal((await tenantInfo(t.db, 'k2')).placement, 'dedicated');
      const before = await allChecksums(t.database.url);
      await suspendTenant(t.db, imported.tenant.id);
      assert.equal((await t.db.tenants.get(imported.tenant.id))?.status, 'suspended');
      const del = await deleteTenant(t.db, 'k2', { confirm: 'k2' });
      assert.equal(del.rowsDeleted, exported.rows);
      const left = await allChecksums(t.database.url);
      assert.equal(Object.keys(left).filter((k) => k.endsWith(`/${imported.tenant.id}`)).length, 0, 'no row of the deleted tenant is left');
      assert.deepEqual(left, without(before, imported.tenant.id));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a dedicated create or import while another shard operation holds the shards: transaction_conflict, nothing of the tenant left; afterwards both succeed', async () => {
    // Another shard operation of the colocation group, held mid-way: a move of O3's shard whose copy waits for a
    // lock taken on the shard itself on its worker. Citus refuses a split of the group meanwhile (it does not queue).
    const shard = await t.db.dangerouslyCrossTenant().query<{ id: string; name: string; host: string; port: number }>(
      `SELECT s.shardid::text AS id, shard_name('invoices'::regclass, s.shardid) AS name, n.nodename AS host, n.nodeport AS port
         FROM pg_dist_shard s JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
        WHERE s.shardid = get_shard_id_for_distribution_column('invoices', $1::uuid)`,
      [others[3]],
    );
    const { id: shardId, name, host, port } = shard.rows[0] as { id: string; name: string; host: string; port: number };
    const to = t.database.workers.find((w) => w.host !== host || w.port !== Number(port));
    assert.ok(to, 'a second worker');
    const worker = new pg.Client({ connectionString: t.database.nodeUrl({ host, port: Number(port) }) });
    await worker.connect();
    const dir = await mkdtemp(join(tmpdir(), 'tw-citus-held-'));
    try {
      await exportTenant(t.db, others[0] as TenantId, { dir: join(dir, 'o0') });
      await worker.query('BEGIN');
      await worker.query(`SET LOCAL citus.enable_manual_changes_to_shards = on`);
      await worker.query(`LOCK TABLE ${name} IN ACCESS EXCLUSIVE MODE`);
      const moving = t.db
        .dangerouslyCrossTenant()
        .query(`SELECT citus_move_shard_placement($1::bigint, $2, $3, $4, $5, shard_transfer_mode => 'block_writes')`, [shardId, host, Number(port), to.host, to.port]);
      moving.catch(() => undefined);
      // The move holds the group once its copy waits for the shard's lock on the worker.
      while ((await worker.query(`SELECT 1 FROM pg_locks WHERE relation = $1::regclass AND NOT granted`, [name])).rows.length === 0) await new Promise((r) => setImmediate(r));
      await assert.rejects(createTenant(t.db, { slug: 'held-c', name: 'Held', placement: 'dedicated', lockWaitMs: 1500 }), code('transaction_conflict'));
      await assert.rejects(importTenant(t.db, { dir: join(dir, 'o0'), slug: 'held-i', placement: 'dedicated', lockWaitMs: 1500 }), code('transaction_conflict'));
      const left = await t.db.dangerouslyCrossTenant().query(`SELECT slug FROM tenants WHERE slug IN ('held-c', 'held-i')`);
      assert.deepEqual(left.rows, [], 'no tenant of the refused create or import exists');
      await worker.query('ROLLBACK');
      await moving;
      const created = await createTenant(t.db, { slug: 'held-c', name: 'Held', placement: 'dedicated' });
      const imported = await importTenant(t.db, { dir: join(dir, 'o0'), slug: 'held-i', placement: 'dedicated' });
      assert.deepEqual([(await tenantInfo(t.db, created.tenant.id)).placement, (await tenantInfo(t.db, imported.tenant.id)).placement], ['dedicated', 'dedicated']);
      assert.deepEqual(await tenantChecksums(t.db, imported.tenant.id), await tenantChecksums(t.db, others[0] as TenantId));
    } finally {
      await worker.query('ROLLBACK').catch(() => undefined);
      await worker.end();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Citus: tenantwall cluster rebalance after adding a worker', { skip: skipWithoutCitus }, () => {
  let t: CitusTenantwall;
  const tenants: TenantId[] = [];

  before(async () => {
    t = await createCitusTenantwall(lifecycleSchema, lifecycleMigrations, {}, { shardCount: 4, registerWorkers: 1 });
    for (let i = 0; i < 5; i++) {
      const id = (await t.db.tenants.create({ slug: `r${i}`, name: `R${i}` })).id;
      tenants.push(id);
      await seedTenant(t.db, id, 20);
    }
  });
  after(() => t?.close());

  test('one command spreads the shards to the new worker online (scoped reads meanwhile: 0 errors, 0 foreign rows); a dedicated-node tenant stays on its node', async () => {
    const [w1, w2] = t.database.allWorkers;
    assert.ok(w1 && w2, 'the cluster has two workers');
    const P = tenants[0] as TenantId;
    await moveTenant(t.db, P, 'dedicated-node', { node: w1 });
    const before = await allChecksums(t.database.url);
    await t.db.dangerouslyCrossTenant().query(`SELECT citus_add_node($1, $2)`, [w2.host, w2.port]);
    // Scoped reads of every tenant during the rebalance: each must return exactly its own 60 invoices.
    let stop = false;
    let reads = 0;
    const problems: string[] = [];
    const load = (async () => {
      while (!stop) {
        for (const id of tenants) {
          try {
            const { rows } = await t.db.forTenant(id).query<{ tenant_id: string }>('SELECT tenant_id FROM invoices');
            if (rows.length !== 60 || rows.some((r) => r.tenant_id !== id)) problems.push(`tenant ${id}: ${rows.length} rows, foreign ${rows.filter((r) => r.tenant_id !== id).length}`);
            reads++;
          } catch (err) {
            problems.push(`tenant ${id}: ${(err as Error).message}`);
          }
        }
      }
    })();
    const run = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = spawn(process.execPath, [...CLI, 'cluster', 'rebalance', '--json', '--config', 'test/lifecycle/config.ts'], { env: { ...process.env, DATABASE_URL: t.database.url }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('exit', (c) => resolve({ code: c, stdout, stderr }));
    });
    stop = true;
    await load;
    assert.equal(run.code, 0, run.stderr);
    assert.deepEqual(problems.slice(0, 5), [], 'no failed read and no other tenant\'s row during the rebalance');
    assert.ok(reads > 0);
    const result = JSON.parse(run.stdout) as { moves: unknown[]; workers: Array<{ node: string; shards: number }> };
    assert.ok(result.moves.length > 0, run.stdout);
    // The pinned tenant's shard group stays on w1, and nothing else is left there: w1 is its dedicated node.
    const { rows } = await t.db.dangerouslyCrossTenant().query<{ node: string; pinned: boolean; n: number }>(
      `SELECT n.nodeport::text AS node, s.shardminvalue = s.shardmaxvalue AND s.shardminvalue = worker_hash($1::uuid)::text AS pinned, count(*)::int AS n
         FROM pg_dist_shard s JOIN pg_dist_partition d USING (logicalrelid) JOIN pg_dist_placement p USING (shardid) JOIN pg_dist_node n USING (groupid)
        WHERE d.partmethod = 'h' GROUP BY 1, 2 ORDER BY 1, 2`,
      [P],
    );
    assert.deepEqual(rows, [{ node: String(w1.port), pinned: true, n: 3 }, { node: String(w2.port), pinned: false, n: rows.find((r) => !r.pinned)?.n }]);
    assert.ok((rows.find((r) => !r.pinned)?.n ?? 0) > 0);
    assert.deepEqual(await allChecksums(t.database.url), before, 'no row changed by the rebalance');
    for (const id of tenants) {
      const { rows: n } = await t.db.forTenant(id).query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [id]);
      assert.equal(n[0]?.n, 60, 'scoped reads after the rebalance');
    }
    // A second run has nothing to do.
    const again = JSON.parse((await runCliCluster(t.database.url)).stdout) as { moves: unknown[] };
    assert.equal(again.moves.length, 0);
  });
});

function runCliCluster(url: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...CLI, 'cluster', 'rebalance', '--dry-run', '--json', '--config', 'test/lifecycle/config.ts'], { env: { ...process.env, DATABASE_URL: url }, stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.on('exit', (c) => resolve({ code: c, stdout }));
  });
}
