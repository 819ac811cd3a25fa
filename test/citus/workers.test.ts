/**
 * Audit and verify against the workers of a real Citus cluster (CITUS_URL): the application role with more
 * rights on a worker than on the coordinator is found by the audit, and verify attacks every worker's shards
 * directly as the application role: a shard whose row-level security was switched off on its worker is found;
 * a correct cluster has no error.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Finding, runAudit, runVerify } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { type CitusTenantwall, createCitusTenantwall, queryAt, skipWithoutCitus } from './cluster.ts';

describe('Citus: audit and verify on the workers', { skip: skipWithoutCitus }, () => {
  let t: CitusTenantwall;
  const ids: string[] = [];
  const errors = (fs: readonly Finding[]) => fs.filter((f) => f.severity === 'error').map((f) => `${f.ruleId} ${f.object}`);
  const verify = async () => {
    const app = t.database.nodeUrl(t.database.coordinator, 'tenantwall_app');
    return runVerify({ databaseUrl: t.database.url, appDatabaseUrl: app, appRole: 'tenantwall_app', tenants: [ids[0] as string, ids[1] as string] });
  };

  before(async () => {
    t = await createCitusTenantwall(seedSchema, seedMigrations, {}, { shardCount: 4 });
    for (const slug of ['a', 'b', 'c', 'd']) ids.push((await t.db.tenants.create({ slug, name: slug })).id);
    for (const id of ids) {
      await t.db.dangerouslyCrossTenant().query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT $1, 'c' || g, g FROM generate_series(1, 5) g`, [id]);
    }
  });
  after(() => t?.close());

  test('a correct cluster: verify attacks every worker directly and finds nothing', async () => {
    const report = await verify();
    assert.deepEqual(errors(report.findings), []);
    for (const w of t.database.workers) {
      assert.ok(report.notes.some((n) => n.startsWith(`worker ${w.host}:${w.port}: `) && /shard\(s\) attacked directly/.test(n)), `worker ${w.port} attacked: ${report.notes.join('; ')}`);
    }
  });

  test("a shard whose row-level security is off on its worker: verify's direct worker attack finds it", async () => {
    // The shard of invoices holding tenant b (the one attacked), broken on its worker only.
    const { rows } = await t.db.dangerouslyCrossTenant().query<{ shard_name: string; nodename: string; nodeport: number }>(
      `SELECT shard_name, nodename, nodeport FROM citus_shards WHERE shardid = get_shard_id_for_distribution_column('invoices', $1::uuid)`,
      [ids[1]],
    );
    const s = rows[0] as { shard_name: string; nodename: string; nodeport: number };
    const worker = t.database.nodeUrl({ host: s.nodename, port: Number(s.nodeport) });
    await queryAt(worker, `ALTER TABLE "${s.shard_name}" DISABLE ROW LEVEL SECURITY`);
    try {
      const found = (await verify()).findings.filter((f) => f.ruleId === 'citus-worker-attack');
      assert.ok(found.length > 0, 'found');
      for (const f of found) assert.match(f.message, new RegExp(`^On worker ${s.nodename}:${s.nodeport}, shard ${s.shard_name} of invoices: `));
      assert.ok(found.some((f) => /read \d+ row\(s\) of other tenants/.test(f.message)));
      assert.ok(found.some((f) => /updated \d+ row\(s\) of tenant/.test(f.message)));
    } finally {
      await queryAt(worker, `ALTER TABLE "${s.shard_name}" ENABLE ROW LEVEL SECURITY`);
    }
    assert.deepEqual((await verify()).findings.filter((f) => f.ruleId === 'citus-worker-attack'), []);
  });

  test('the application role with more rights on a worker than on the coordinator: the audit finds it', async () => {
    const w = t.database.workers[0] as { host: string; port: number };
    const worker = t.database.nodeUrl(w);
    const audit = async () => (await runAudit({ databaseUrl: t.database.url, appRole: 'tenantwall_app' })).findings.filter((f) => f.ruleId === 'citus-worker-role-rights');
    assert.deepEqual(await audit(), []);
    // Local to that worker (not propagated): a role attribute and a membership the coordinator does not grant.
    await queryAt(worker, 'SET citus.enable_ddl_propagation TO off', 'ALTER ROLE tenantwall_app CREATEDB', 'GRANT pg_read_all_data TO tenantwall_app');
    try {
      const found = await audit();
      assert.equal(found.length, 1, JSON.stringify(found.map((f) => f.message)));
      assert.equal(found[0]?.severity, 'error');
      assert.match(found[0]?.message ?? '', new RegExp(`^On worker ${w.host}:${w.port} the application role tenantwall_app has more rights than on the coordinator: CREATEDB, membership in pg_read_all_data `));
    } finally {
      await queryAt(worker, 'SET citus.enable_ddl_propagation TO off', 'ALTER ROLE tenantwall_app NOCREATEDB', 'REVOKE pg_read_all_data FROM tenantwall_app');
    }
    assert.deepEqual(await audit(), []);
  });
});
