import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import type { TenantId } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';

for (const scopeMode of ['implicit', 'explicit'] as const) {
  describe(`statement cache (${scopeMode} mode, pool of one)`, () => {
    let t: TestTenantwall;
    let A: TenantId;
    before(async () => {
      t = await createTestTenantwall(seedSchema, seedMigrations, { scopeMode, poolSize: 1, statementCacheSize: 3 });
      A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
      await t.db.forTenant(A).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'a1', 1)`, [A]);
    });
    after(() => t.close());

    // The caller's statements held on the connection; tenantwall's own steps (set_config, BEGIN, COMMIT) excluded.
    const FIXED = new Set([
      'SELECT set_config($1, $2, true)',
      "SELECT set_config($1, $2, true), set_config('plan_cache_mode', 'force_generic_plan', true)",
      'SET LOCAL plan_cache_mode = force_generic_plan',
      'BEGIN',
      'COMMIT',
    ]);
    const prepared = async () =>
      (await t.db.forTenant(A).query<{ statement: string }>(`SELECT statement FROM pg_prepared_statements ORDER BY prepare_time`)).rows
        .map((r) => r.statement)
        .filter((s) => !FIXED.has(s));

    test('a statement is prepared once per connection and planned per execution', async () => {
      const sql = 'SELECT customer FROM invoices WHERE tenant_id = $1';
      for (let i = 0; i < 3; i++) assert.deepEqual((await t.db.forTenant(A).query(sql, [A])).rows, [{ customer: 'a1' }]);
      assert.equal((await prepared()).filter((s) => s === sql).length, 1);
      const mode = await t.db.forTenant(A).query('SELECT current_setting($1) AS m', ['plan_cache_mode']);
      assert.equal(mode.rows[0]?.m, 'force_custom_plan');
    });

    test('at most statementCacheSize statements stay prepared', async () => {
      for (let i = 0; i < 10; i++) await t.db.forTenant(A).query(`SELECT ${i} AS n FROM invoices WHERE tenant_id = $1`, [A]);
      const names = await prepared();
      // The 3 most recent, plus the observing statement itself (its eviction of the oldest happens after it ran).
      assert.deepEqual(names.slice(0, 3), [7, 8, 9].map((i) => `SELECT ${i} AS n FROM invoices WHERE tenant_id = $1`));
      assert.equal(names.length, 4, `prepared: ${names.join(' | ')}`);
    });

    test('a statement that failed to parse or run leaves nothing behind and the next one works', async () => {
      await assert.rejects(t.db.forTenant(A).query('SELEC nonsense'));
      await assert.rejects(t.db.forTenant(A).query('SELECT 1/0 AS x FROM invoices WHERE tenant_id = $1', [A]));
      await assert.rejects(t.db.forTenant(A).query('SELECT amount_cents FROM invoices WHERE amount_cents = $1', ['nope']));
      assert.equal((await t.db.forTenant(A).query('SELECT customer FROM invoices WHERE tenant_id = $1', [A])).rowCount, 1);
      assert.ok((await prepared()).length <= 4);
    });

    test("plan: 'generic' reuses one plan across tenants, keeps them apart, and leaves the connection on custom plans", async () => {
      const B = (await t.db.tenants.create({ slug: `b-generic`, name: 'B' })).id;
      await t.db.forTenant(B).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'b1', 2)`, [B]);
      const sql = 'SELECT customer FROM invoices WHERE tenant_id = $1 AND customer = $2';
      const plans = async () =>
        (await t.db.forTenant(A).query<{ g: string; c: string }>('SELECT generic_plans::text AS g, custom_plans::text AS c FROM pg_prepared_statements WHERE statement = $1', [sql])).rows[0];
      for (let i = 0; i < 3; i++) {
        assert.deepEqual((await t.db.forTenant(A).query(sql, [A, 'a1'], { plan: 'generic' })).rows, [{ customer: 'a1' }]);
        // B asks for A's row through the same cached plan: RLS and the parameter still hold.
        assert.deepEqual((await t.db.forTenant(B).query(sql, [B, 'a1'], { plan: 'generic' })).rows, []);
        assert.deepEqual((await t.db.forTenant(B).query(sql, [B, 'b1'], { plan: 'generic' })).rows, [{ customer: 'b1' }]);
      }
      assert.deepEqual(await plans(), { g: '9', c: '0' });
      // The setting was local to each statement's transaction: the default path plans per execution again.
      assert.deepEqual((await t.db.forTenant(A).query(sql, [A, 'a1'])).rows, [{ customer: 'a1' }]);
      assert.deepEqual(await plans(), { g: '9', c: '1' });
      const mode = await t.db.forTenant(A).query('SELECT current_setting($1) AS m', ['plan_cache_mode']);
      assert.equal(mode.rows[0]?.m, 'force_custom_plan');
    });

    test('an unknown plan option is refused before anything is sent', async () => {
      await assert.rejects(
        t.db.forTenant(A).query('SELECT 1 FROM invoices WHERE tenant_id = $1', [A], { plan: 'fast' as 'generic' }),
        (err: Error & { code?: string }) => err.code === 'config_invalid' && /'custom' or 'generic'/.test(err.message),
      );
    });

    test('after a migration changes a table, a cached SELECT * is prepared afresh instead of failing', async () => {
      const sql = 'SELECT * FROM invoices WHERE tenant_id = $1';
      await t.db.forTenant(A).query(sql, [A]);
      await superQuery(t.database.name, `ALTER TABLE invoices ADD COLUMN note_${scopeMode} text`);
      const r = await t.db.forTenant(A).query(sql, [A]);
      assert.ok(r.fields.some((f) => f.name === `note_${scopeMode}`));
      assert.equal(r.rowCount, 1);
    });

    test('rowMode and types shape the result of a cached statement, of a repeated one and inside a transaction', async () => {
      // int8 (oid 20) as a bigint instead of pg's default string: only this statement's parser says so.
      const types = { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === 20 ? (v: string) => BigInt(v) : pg.types.getTypeParser(oid, format))) as pg.CustomTypesConfig['getTypeParser'] };
      const sql = 'SELECT customer, amount_cents FROM invoices WHERE tenant_id = $1 AND customer = $2';
      for (let i = 0; i < 2; i++) {
        const shaped = await t.db.forTenant(A).query(sql, [A, 'a1'], { rowMode: 'array', types });
        assert.deepEqual(shaped.rows, [['a1', 1n]], `run ${i}`);
        // The same statement without options: objects and the global parsers.
        assert.deepEqual((await t.db.forTenant(A).query(sql, [A, 'a1'])).rows, [{ customer: 'a1', amount_cents: '1' }]);
      }
      const inTx = await t.db.forTenant(A).transaction((tx) => tx.query(sql, [A, 'a1'], { rowMode: 'array', types }));
      assert.deepEqual(inTx.rows, [['a1', 1n]]);
    });
  });
}
