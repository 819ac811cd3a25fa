/**
 * The core isolation guarantees on a real Citus cluster (CITUS_URL): detection, the library's scoped
 * statements and transactions, row-level security enforced by the workers (checked by querying a shard
 * directly on its worker as the application role), and the start-up refusal of a wrong
 * citus.propagate_set_commands.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { Tenantwall, TenantwallError } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { type CitusTenantwall, createCitusTenantwall, queryAt, skipWithoutCitus } from './cluster.ts';

describe('Citus: isolation on a real cluster', { skip: skipWithoutCitus }, () => {
  let t: CitusTenantwall;
  let A: string;
  let B: string; // shares A's shard of invoices: only row-level security tells them apart on the worker
  let C: string;

  before(async () => {
    t = await createCitusTenantwall(seedSchema, seedMigrations);
    const admin = t.db.dangerouslyCrossTenant();
    A = (await t.db.tenants.create({ slug: 'acme', name: 'Acme' })).id;
    const sameShard = await admin.query<{ id: string }>(
      `SELECT id::text FROM (SELECT gen_random_uuid() AS id FROM generate_series(1, 5000)) x
        WHERE get_shard_id_for_distribution_column('invoices', id) = get_shard_id_for_distribution_column('invoices', $1::uuid) LIMIT 1`,
      [A],
    );
    B = (await t.db.tenants.create({ slug: 'bravo', name: 'Bravo', id: sameShard.rows[0]?.id as string })).id;
    C = (await t.db.tenants.create({ slug: 'charlie', name: 'Charlie' })).id;
    for (const [tenant, n] of [[A, 3], [B, 4], [C, 5]] as const) {
      for (let i = 0; i < n; i++) {
        await t.db.forTenant(tenant).query('INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, $2, $3)', [tenant, `c${i}`, 100 * (i + 1)]);
      }
    }
  });
  after(() => t?.close());

  test('connect detects Citus: explicit scope mode; the DDL distributed every tenant table by tenant_id, colocated, with plain policies', async () => {
    assert.ok(t.db.citusVersion, 'citusVersion is set');
    assert.equal(t.db.options.scopeMode, 'explicit');
    const { rows } = await t.db.dangerouslyCrossTenant().query(
      `SELECT table_name::text AS name, citus_table_type AS type, distribution_column AS col, colocation_id AS coloc FROM citus_tables ORDER BY 1`,
    );
    const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
    assert.equal(byName.tenants?.type, 'reference');
    assert.equal(byName.currencies?.type, 'reference');
    for (const name of ['customers', 'invoices']) {
      assert.equal(byName[name]?.type, 'distributed', name);
      assert.equal(byName[name]?.col, 'tenant_id', name);
    }
    assert.equal(byName.customers.coloc, byName.invoices.coloc, 'tenant tables are colocated');
    const policies = await t.db.dangerouslyCrossTenant().query(`SELECT tablename, qual FROM pg_policies WHERE schemaname = 'public'`);
    assert.equal(policies.rowCount, 2);
    for (const p of policies.rows) assert.doesNotMatch(p.qual, /SELECT/i, `${p.tablename}: plain policy form`);
  });

  test('scoped statements see and change only their own tenant, with or without a tenant predicate', async () => {
    for (const [tenant, n] of [[A, 3], [B, 4], [C, 5]] as const) {
      const all = await t.db.forTenant(tenant).query('SELECT tenant_id FROM invoices');
      assert.equal(all.rowCount, n, 'policy alone (fan-out to every shard)');
      assert.ok(all.rows.every((r) => r.tenant_id === tenant));
      const routed = await t.db.forTenant(tenant).query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [tenant]);
      assert.equal(routed.rows[0]?.n, n, 'routed to one worker');
    }
    const other = await t.db.forTenant(A).query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [B]);
    assert.equal(other.rows[0]?.n, 0);
    const upd = await t.db.forTenant(A).query(`UPDATE invoices SET customer = 'x' WHERE tenant_id = $1`, [B]);
    assert.equal(upd.rowCount, 0);
    const del = await t.db.forTenant(A).query('DELETE FROM invoices WHERE tenant_id = $1', [C]);
    assert.equal(del.rowCount, 0);
    const counts = await t.db.dangerouslyCrossTenant().query('SELECT tenant_id, count(*)::int AS n FROM invoices GROUP BY 1');
    assert.deepEqual(Object.fromEntries(counts.rows.map((r) => [r.tenant_id, r.n])), { [A]: 3, [B]: 4, [C]: 5 });
  });

  test("writing another tenant's tenant_id is refused by the worker's row-level security", async () => {
    await assert.rejects(
      t.db.forTenant(A).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'evil', 1)`, [B]),
      (err: TenantwallError) => err.code === 'row_security_violation',
    );
    await assert.rejects(
      t.db.forTenant(A).query(`UPDATE invoices SET tenant_id = $2 WHERE tenant_id = $1`, [A, C]),
      // Citus refuses any change of the distribution column before the worker's policy is asked.
      (err: Error) => /row-level security|partition value of rows is not allowed/i.test(err.message),
    );
  });

  test('transactions: the tenant reaches the workers for every statement; a failure rolls back everything', async () => {
    const n = await t.db.forTenant(A).transaction(async (tx) => {
      await tx.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'tx', 7)`, [A]);
      const mine = await tx.query('SELECT count(*)::int AS n FROM invoices');
      const theirs = await tx.query('SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1', [B]);
      assert.equal(theirs.rows[0]?.n, 0);
      return mine.rows[0]?.n as number;
    });
    assert.equal(n, 4);
    await assert.rejects(
      t.db.forTenant(A).transaction(async (tx) => {
        await tx.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'rolled back', 8)`, [A]);
        await tx.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'evil', 8)`, [C]);
      }),
    );
    const left = await t.db.forTenant(A).query(`SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1 AND customer = 'rolled back'`, [A]);
    assert.equal(left.rows[0]?.n, 0);
    await t.db.forTenant(A).query(`DELETE FROM invoices WHERE tenant_id = $1 AND customer = 'tx'`, [A]);
  });

  test('no tenant context: refused by the library; the bare application role with nothing set sees nothing', async () => {
    await assert.rejects(t.db.query('SELECT 1'), (err: TenantwallError) => err.code === 'tenant_context_missing');
    const c = await t.db.dangerouslyRawAppPool().connect();
    try {
      await c.query('BEGIN');
      const r = await c.query('SELECT count(*)::int AS n FROM invoices');
      assert.equal(r.rows[0]?.n, 0);
    } finally {
      await c.query('ROLLBACK');
      c.release();
    }
  });

  test("straight to the worker holding A's shard, as the application role: A set -> only A's rows, nothing set -> none", async () => {
    const placement = await t.db.dangerouslyCrossTenant().query(
      `SELECT shard_name, nodename, nodeport FROM citus_shards
        WHERE table_name = 'invoices'::regclass AND shardid = get_shard_id_for_distribution_column('invoices', $1::uuid)`,
      [A],
    );
    const p = placement.rows[0];
    assert.ok(p, "A's shard placement");
    const shard = `"${p.shard_name}"`;
    const url = t.database.nodeUrl({ host: p.nodename, port: Number(p.nodeport) }, 'tenantwall_app');
    const asOwner = await queryAt(t.database.nodeUrl({ host: p.nodename, port: Number(p.nodeport) }), `SELECT tenant_id, count(*)::int AS n FROM ${shard} GROUP BY 1`);
    assert.deepEqual(Object.fromEntries(asOwner.rows.map((r) => [r.tenant_id, r.n])), { [A]: 3, [B]: 4 }, 'A and B share this shard');

    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      const who = await c.query('SELECT current_user AS u, inet_server_port() AS port');
      assert.equal(who.rows[0]?.u, 'tenantwall_app');
      assert.equal(Number(who.rows[0]?.port), Number(p.nodeport));
      await c.query('BEGIN');
      await c.query(`SET LOCAL tenantwall.tenant_id = '${A}'`);
      const asA = await c.query(`SELECT tenant_id FROM ${shard}`);
      assert.equal(asA.rowCount, 3);
      assert.ok(asA.rows.every((r) => r.tenant_id === A));
      await assert.rejects(c.query(`INSERT INTO ${shard} (tenant_id, customer, amount_cents) VALUES ('${B}', 'evil', 1)`), /row-level security/);
      await c.query('ROLLBACK');
      await c.query('BEGIN');
      const none = await c.query(`SELECT tenant_id FROM ${shard}`);
      assert.equal(none.rowCount, 0, 'nothing set: nothing visible');
      await c.query('ROLLBACK');
    } finally {
      await c.end();
    }
  });

  test('citus.propagate_set_commands other than local: connect refuses with citus_propagation_invalid', async () => {
    const coordinator = t.database.nodeUrl(t.database.coordinator);
    await queryAt(coordinator, `ALTER ROLE tenantwall_app IN DATABASE ${t.database.name} SET citus.propagate_set_commands = 'none'`);
    try {
      await assert.rejects(
        Tenantwall.connect({ schema: seedSchema, databaseUrl: t.database.url, manageRoles: false }),
        (err: TenantwallError) => err.code === 'citus_propagation_invalid' && /propagate_set_commands/.test(err.message) && err.details?.value === 'none',
      );
    } finally {
      await queryAt(coordinator, `ALTER ROLE tenantwall_app IN DATABASE ${t.database.name} RESET citus.propagate_set_commands`);
    }
    const again = await Tenantwall.connect({ schema: seedSchema, databaseUrl: t.database.url, manageRoles: false });
    await again.close();
  });
});
