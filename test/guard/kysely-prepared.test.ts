import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import { createGuard, isTenantwallError, runWithTenant } from '../../src/index.ts';
import { type Param, type TenantColumn, createTenantKysely, prepareQuery } from '../../src/kysely/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { TENANTS, invoiceId, seedTenants } from './fixture.ts';

interface DB {
  invoices: { tenant_id: TenantColumn; id: string; customer: string; amount_cents: string | number; customer_id: string | null };
}

// RLS is disabled on this database: only the plugin (through the prepared statement) and the guard stand
// between a tenant and the others' rows, so a prepared query that lost its scoping would leak here.
let t: TestTenantwall;

before(async () => {
  // One connection, so pg_prepared_statements (per session) shows the plans of every execution.
  t = await createTestTenantwall(seedSchema, seedMigrations, { guard: createGuard(seedSchema, { allowRelations: ['pg_prepared_statements'] }), poolSize: 1 });
  await seedTenants(t.db, t.database.name);
  await superQuery(t.database.name, 'ALTER TABLE invoices DISABLE ROW LEVEL SECURITY');
});

after(async () => {
  await t?.close();
});

const byId = (k: ReturnType<typeof createTenantKysely<DB>>) =>
  prepareQuery(k, (db, param: Param<{ id: string }>) => db.selectFrom('invoices').select(['id', 'customer']).where('id', '=', param('id')));

test('a prepared query is compiled once, scoped like the built one, and binds the tenant of each scope', async () => {
  const k = createTenantKysely<DB>(t.db);
  const q = byId(k);
  const built = k.selectFrom('invoices').select(['id', 'customer']).where('id', '=', 'x').compile();
  assert.equal(q.sql, built.sql, 'same SQL text as the query built on each call');
  assert.match(q.sql, /"tenant_id" = \$\d/);

  // Tenant A reads its own invoice; B's id gives nothing under A, then B's row under B.
  const mine = await runWithTenant(TENANTS.a, () => q.executeTakeFirst({ id: invoiceId('a', 1) }));
  assert.deepEqual(mine, { id: invoiceId('a', 1), customer: 'A-inv-1' });
  assert.equal(await runWithTenant(TENANTS.a, () => q.executeTakeFirst({ id: invoiceId('b', 1) })), undefined);
  assert.deepEqual(await runWithTenant(TENANTS.b, () => q.execute({ id: invoiceId('b', 1) })), [{ id: invoiceId('b', 1), customer: 'B-inv-1' }]);

  // Outside any tenant context it fails closed, like every other statement.
  await assert.rejects(q.execute({ id: invoiceId('a', 1) }), (err) => isTenantwallError(err) && err.code === 'tenant_context_missing');
});

test('a prepared query runs inside a transaction of the same instance, and on an explicitly scoped instance', async () => {
  const k = createTenantKysely<DB>(t.db);
  const q = byId(k);
  const inTx = await runWithTenant(TENANTS.c, () => k.transaction().execute((tx) => q.execute({ id: invoiceId('c', 2) }, tx)));
  assert.deepEqual(inTx, [{ id: invoiceId('c', 2), customer: 'C-inv-2' }]);

  const forB = createTenantKysely<DB>(t.db, { tenantId: TENANTS.b });
  const qb = byId(forB);
  assert.deepEqual(await qb.execute({ id: invoiceId('b', 3) }), [{ id: invoiceId('b', 3), customer: 'B-inv-3' }]);
  assert.deepEqual(await qb.execute({ id: invoiceId('a', 3) }), []);
});

test('writes: fixed values stay, parameters change per call, the tenant is set by the plugin', async () => {
  const k = createTenantKysely<DB>(t.db);
  const insert = prepareQuery(k, (db, param: Param<{ id: string; customer: string }>) =>
    db.insertInto('invoices').values({ id: param('id'), customer: param('customer'), amount_cents: 42 }).returning(['id', 'customer', 'amount_cents', 'tenant_id']),
  );
  const id = '0000aaaa-2000-4000-8000-000000000001';
  const r = await runWithTenant(TENANTS.a, () => insert.executeResult({ id, customer: 'prepared' }));
  assert.deepEqual(r.rows, [{ id, customer: 'prepared', amount_cents: '42', tenant_id: TENANTS.a }]);
  assert.equal(r.numAffectedRows, 1n);
  const del = prepareQuery(k, (db, param: Param<{ id: string }>) => db.deleteFrom('invoices').where('id', '=', param('id')));
  // B cannot delete A's new row through the prepared delete; A can.
  assert.equal((await runWithTenant(TENANTS.b, () => del.executeResult({ id }))).numAffectedRows, 0n);
  assert.equal((await runWithTenant(TENANTS.a, () => del.executeResult({ id }))).numAffectedRows, 1n);
});

test('misuse is refused with config_invalid: unused parameter, parameter as SQL text, missing value', async () => {
  const k = createTenantKysely<DB>(t.db);
  const refused = (fn: () => unknown, pattern: RegExp) =>
    assert.throws(fn, (err) => isTenantwallError(err) && err.code === 'config_invalid' && pattern.test(err.message));
  refused(
    () => prepareQuery(k, (db, param: Param<{ id: string; other: string }>) => (param('other'), db.selectFrom('invoices').select('id').where('id', '=', param('id')))),
    /"other" does not appear/,
  );
  refused(() => prepareQuery(k, (db, param: Param<{ col: string }>) => db.selectFrom('invoices').select('id').where(sql.raw(param('col')), '=', 1)), /"col" was used as SQL text/);
  const q = byId(k);
  await assert.rejects(
    runWithTenant(TENANTS.a, () => q.execute({} as { id: string })),
    (err) => isTenantwallError(err) && err.code === 'config_invalid' && /"id" has no value/.test(err.message),
  );
});

test("options reach the scoped query: plan 'generic' runs one generic plan for every tenant", async () => {
  const k = createTenantKysely<DB>(t.db);
  const q = prepareQuery(k, (db, param: Param<{ id: string }>) => db.selectFrom('invoices').select('customer').where('id', '=', param('id')), { plan: 'generic' });
  for (const [tenant, own] of [[TENANTS.a, 'a'], [TENANTS.b, 'b'], [TENANTS.c, 'c']] as const) {
    assert.deepEqual(await runWithTenant(tenant, () => q.execute({ id: invoiceId(own, 2) })), [{ customer: `${own.toUpperCase()}-inv-2` }]);
    assert.deepEqual(await runWithTenant(tenant, () => q.execute({ id: invoiceId(own === 'a' ? 'b' : 'a', 2) })), []);
  }
  const { rows } = await t.db
    .forTenant(TENANTS.a)
    .query<{ g: string; c: string }>('SELECT generic_plans::text AS g, custom_plans::text AS c FROM pg_prepared_statements WHERE statement = $1', [q.sql]);
  assert.deepEqual(rows, [{ g: '6', c: '0' }]);
});
