/**
 * The Citus audit rules on a real cluster: a schema migrated by tenantwall has no error finding at all; each
 * Citus-specific hole, planted on its own, is found (the shard one by breaking a shard directly on its worker).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type Finding, runAudit } from '../../src/index.ts';
import { CITUS_RULES } from '../../src/audit/citus-rules.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { type CitusTenantwall, createCitusTenantwall, queryAt, skipWithoutCitus } from './cluster.ts';

test('docs/scale-out.md documents every Citus audit rule with its severity', () => {
  const doc = fs.readFileSync('docs/scale-out.md', 'utf8');
  const entries = [...doc.matchAll(/^### `(citus-[a-z-]+)`\n\n\*\*(error|warn|info)\*\* - [^\n]+\n\n- Why: [^\n]+\n- Fix: [^\n]+$/gm)];
  assert.deepEqual(entries.map((m) => m[1]).sort(), CITUS_RULES.map((r) => r.id).sort());
  for (const m of entries) assert.equal(m[2], CITUS_RULES.find((r) => r.id === m[1])?.severity, m[1]);
});

describe('Citus: audit rules on a real cluster', { skip: skipWithoutCitus }, () => {
  let t: CitusTenantwall;
  const audit = async (): Promise<Finding[]> => (await runAudit({ databaseUrl: t.database.url })).findings as Finding[];
  const citusFindings = (fs: Finding[]) => fs.filter((f) => f.ruleId.startsWith('citus-')).map((f) => `${f.ruleId} ${f.object}`);
  const owner = () => t.db.dangerouslyCrossTenant();

  before(async () => {
    t = await createCitusTenantwall(seedSchema, seedMigrations);
  });
  after(() => t?.close());

  test('a schema migrated by tenantwall on Citus: no Citus finding and no error finding', async () => {
    const findings = await audit();
    assert.deepEqual(citusFindings(findings), []);
    assert.deepEqual(findings.filter((f) => f.severity === 'error').map((f) => `${f.ruleId} ${f.object}`), []);
  });

  test('tenant table not distributed, distributed by another column, not colocated; global table not reference', async () => {
    const rls = (name: string) =>
      `ALTER TABLE ${name} ENABLE ROW LEVEL SECURITY; ALTER TABLE ${name} FORCE ROW LEVEL SECURITY;
       CREATE POLICY tenant_isolation ON ${name} USING (tenant_id = nullif(current_setting('tenantwall.tenant_id', true), '')::uuid) WITH CHECK (tenant_id = nullif(current_setting('tenantwall.tenant_id', true), '')::uuid);`;
    for (const [name, distribute] of [
      ['h_local', ''],
      ['h_by_id', `SELECT create_distributed_table('h_by_id', 'id')`],
      ['h_apart', `SELECT create_distributed_table('h_apart', 'tenant_id', colocate_with => 'none', shard_count => 4)`],
    ] as const) {
      await owner().query(`CREATE TABLE ${name} (tenant_id uuid NOT NULL, id uuid NOT NULL, PRIMARY KEY (tenant_id, id))`);
      for (const sql of rls(name).split(';').map((x) => x.trim()).filter(Boolean)) await owner().query(sql);
      if (distribute) await owner().query(distribute);
    }
    await owner().query(`CREATE TABLE h_global (code text PRIMARY KEY)`);
    try {
      const found = citusFindings(await audit());
      assert.deepEqual(found.sort(), [
        'citus-distributed-by-other-column public.h_by_id',
        'citus-global-table-not-reference public.h_global',
        'citus-tenant-table-not-distributed public.h_local',
        'citus-tenant-tables-not-colocated public.h_apart',
      ]);
    } finally {
      for (const name of ['h_local', 'h_by_id', 'h_apart', 'h_global']) await owner().query(`DROP TABLE ${name}`);
    }
    assert.deepEqual(citusFindings(await audit()), []);
  });

  test('citus.propagate_set_commands overridden for the application role in this database', async () => {
    await owner().query(`ALTER ROLE tenantwall_app IN DATABASE ${t.database.name} SET citus.propagate_set_commands = 'none'`);
    try {
      assert.deepEqual(citusFindings(await audit()), [`citus-propagate-set-commands role tenantwall_app in database ${t.database.name}`]);
    } finally {
      await owner().query(`ALTER ROLE tenantwall_app IN DATABASE ${t.database.name} RESET citus.propagate_set_commands`);
    }
  });

  test('a shard whose policy was dropped on its worker, and a shard with row-level security off', async () => {
    const shards = await owner().query(`SELECT shard_name, nodename, nodeport FROM citus_shards WHERE table_name = 'invoices'::regclass ORDER BY shardid LIMIT 2`);
    const [s1, s2] = shards.rows as [{ shard_name: string; nodename: string; nodeport: number }, { shard_name: string; nodename: string; nodeport: number }];
    const worker = (s: { nodename: string; nodeport: number }) => t.database.nodeUrl({ host: s.nodename, port: Number(s.nodeport) });
    await queryAt(worker(s1), `DROP POLICY tenant_isolation ON "${s1.shard_name}"`);
    await queryAt(worker(s2), `ALTER TABLE "${s2.shard_name}" NO FORCE ROW LEVEL SECURITY`);
    const found = (await audit()).filter((f) => f.ruleId === 'citus-shard-policy-mismatch');
    assert.equal(found.length, 1);
    assert.equal(found[0]?.object, 'public.invoices');
    assert.match(found[0]?.message ?? '', /^2 shard placement\(s\)/);
    // Repaired as the finding's fix says: on the shards, through the coordinator.
    const pred = `tenant_id = nullif(current_setting('tenantwall.tenant_id', true), '')::uuid`;
    await queryAt(worker(s1), `CREATE POLICY tenant_isolation ON "${s1.shard_name}" FOR ALL TO PUBLIC USING (${pred}) WITH CHECK (${pred})`);
    await owner().query(`SELECT * FROM run_command_on_placements('invoices', 'ALTER TABLE %s FORCE ROW LEVEL SECURITY')`);
    assert.deepEqual(citusFindings(await audit()), []);
  });

  test('output_plugin_libraries without citus on a worker', async () => {
    const current = (await owner().query(`SELECT current_setting('output_plugin_libraries', true) AS v`)).rows[0]?.v;
    if (current === null || current === undefined) {
      // PostgreSQL older than 15.19 has no such setting: nothing to plant, and the rule must stay silent.
      assert.deepEqual(citusFindings(await audit()), []);
      return;
    }
    // Citus propagates ALTER DATABASE ... SET from the coordinator to every worker.
    const nodes = (await owner().query(`SELECT nodename || ':' || nodeport AS n FROM pg_dist_node WHERE groupid <> 0 ORDER BY nodeport`)).rows.map((r) => r.n as string);
    await owner().query(`ALTER DATABASE ${t.database.name} SET output_plugin_libraries = 'pgoutput, test_decoding'`);
    try {
      assert.deepEqual(citusFindings(await audit()).sort(), ['coordinator', ...nodes].map((n) => `citus-output-plugin-libraries ${n}`).sort());
    } finally {
      await owner().query(`ALTER DATABASE ${t.database.name} RESET output_plugin_libraries`);
    }
  });
});
