import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Kysely, sql } from 'kysely';
import { type Guard, createGuard, isTenantwallError, runWithTenant } from '../../src/index.ts';
import { type TenantColumn, TenantwallDialect, createTenantKysely } from '../../src/kysely/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { TENANTS, customerId, leakedTokens, seedTenants, sortRows } from './fixture.ts';
import { offlineKysely } from './kysely-shapes.ts';

interface DB {
  currencies: { code: string };
  customers: { tenant_id: TenantColumn; id: string; email: string };
  invoices: { tenant_id: TenantColumn; id: string; customer: string; amount_cents: string | number; customer_id: string | null };
}

const A = TENANTS.a;
let withRls: TestTenantwall;
let withoutRls: TestTenantwall;
let guard: Guard;

before(async () => {
  guard = createGuard(seedSchema);
  await guard.ready();
  [withRls, withoutRls] = await Promise.all([
    createTestTenantwall(seedSchema, seedMigrations, { guard }),
    createTestTenantwall(seedSchema, seedMigrations, { guard }),
  ]);
  await Promise.all([seedTenants(withRls.db, withRls.database.name), seedTenants(withoutRls.db, withoutRls.database.name)]);
  await superQuery(withoutRls.database.name, 'ALTER TABLE invoices DISABLE ROW LEVEL SECURITY; ALTER TABLE customers DISABLE ROW LEVEL SECURITY;');
});

after(async () => {
  await withRls?.close();
  await withoutRls?.close();
});

/** The queries an application writes, without ever mentioning tenant_id. */
function queries(k: Kysely<DB>) {
  return {
    all: k.selectFrom('invoices').selectAll().orderBy('id'),
    camelCase: k.selectFrom('invoices as inv').select(['inv.id', 'inv.amount_cents as totalAmount']).orderBy('totalAmount').orderBy('inv.id'),
    filtered: k.selectFrom('invoices').select(['id', 'amount_cents']).where('amount_cents', '>', 100).where((eb) => eb.or([eb('customer', 'like', '%-inv-%'), eb('amount_cents', '<', 0)])),
    innerJoin: k.selectFrom('invoices as i').innerJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']),
    leftJoin: k.selectFrom('invoices as i').leftJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']),
    rightJoin: k.selectFrom('invoices as i').rightJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']),
    fullJoin: k.selectFrom('invoices as i').fullJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']),
    crossJoin: k.selectFrom('invoices').crossJoin('currencies').select(['invoices.id', 'currencies.code']),
    selfJoin: k.selectFrom('invoices as a').innerJoin('invoices as b', 'b.customer_id', 'a.customer_id').select(['a.id as a', 'b.id as b']),
    subquery: k.selectFrom('invoices').select('id').where('customer_id', 'in', k.selectFrom('customers').select('id').where('email', 'like', '%1@%')),
    exists: k.selectFrom('customers as c').select('c.email').where(({ exists, selectFrom }) => exists(selectFrom('invoices as i').select('i.id').whereRef('i.customer_id', '=', 'c.id'))),
    aggregate: k.selectFrom('invoices').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('amount_cents').as('total')]),
    cte: k.with('big', (db) => db.selectFrom('invoices').selectAll().where('amount_cents', '>', 100)).selectFrom('big').select(['id']),
    union: k.selectFrom('invoices').select('id').union(k.selectFrom('customers').select('id')),
    window: k.selectFrom('invoices').select(['id', (eb) => eb.fn.agg<number>('row_number').over((ob) => ob.orderBy('amount_cents').orderBy('id')).as('rn')]),
    lateral: k
      .selectFrom('customers as c')
      .innerJoinLateral((eb) => eb.selectFrom('invoices as i').select('i.amount_cents').whereRef('i.customer_id', '=', 'c.id').as('x'), (join) => join.onTrue())
      .select(['c.email', 'x.amount_cents']),
  };
}

test('every query the plugin produces passes the verifier, with the tenant in a parameter', () => {
  for (const [name, q] of Object.entries(queries(offlineKysely<DB>(true)))) {
    const c = q.compile();
    const a = guard.analyze(c.sql);
    assert.ok(a.ok, `${name}: ${c.sql}\n${a.ok ? '' : a.reason}`);
    for (const n of a.tenantParams) assert.equal(typeof c.parameters[n - 1], 'object', `${name}: $${n} is the tenant placeholder`);
  }
});

test('the same queries built without the plugin are refused', () => {
  for (const [name, q] of Object.entries(queries(offlineKysely<DB>(false)))) {
    const a = guard.analyze(q.compile().sql);
    assert.equal(a.ok, false, name);
  }
});

test('a query built without the plugin is refused when executed through tenantwall', async () => {
  const bare = new Kysely<DB>({ dialect: new TenantwallDialect(withRls.db, A) });
  await assert.rejects(bare.selectFrom('invoices').selectAll().execute(), (err) => isTenantwallError(err, 'unscoped_query'));
});

test('with RLS disabled, reads through the plugin never return another tenant\'s rows and equal the RLS reference', async () => {
  const off = createTenantKysely<DB>(withoutRls.db);
  const on = createTenantKysely<DB>(withRls.db);
  await runWithTenant(A, async () => {
    const qOff = queries(off);
    const qOn = queries(on);
    for (const name of Object.keys(qOff) as Array<keyof typeof qOff>) {
      const rowsOff = await qOff[name].execute();
      const rowsOn = await qOn[name].execute();
      assert.deepEqual(leakedTokens(rowsOff), [], `${name} leaked`);
      assert.deepEqual(sortRows(rowsOff), sortRows(rowsOn), `${name} differs from the RLS reference`);
    }
    // Sanity: the tenant has data, so "no leak" is not "no rows".
    assert.equal((await qOff.all.execute()).length, 4);
  });
});

test('inserts get tenant_id without the application writing it; updates and deletes stay in the tenant', async () => {
  const k = createTenantKysely<DB>(withoutRls.db, { tenantId: A });
  const id = 'aaaaaaaa-2000-4000-8000-000000000001';
  const inserted = await k.insertInto('invoices').values({ id, customer: 'kysely', amount_cents: 42 }).returning(['tenant_id', 'id']).executeTakeFirstOrThrow();
  assert.equal(inserted.tenant_id, A);
  const upd = await k.updateTable('invoices').set({ amount_cents: 43 }).where('customer', '=', 'kysely').executeTakeFirst();
  assert.equal(upd.numUpdatedRows, 1n);
  // Updating every row touches only the tenant's rows.
  const all = await k.updateTable('invoices').set((eb) => ({ amount_cents: eb('amount_cents', '+', 0) })).executeTakeFirst();
  assert.equal(all.numUpdatedRows, 5n);
  await k.insertInto('customers').values({ id: 'aaaaaaaa-2000-4000-8000-000000000002', email: 'a1@a.test' }).onConflict((oc) => oc.column('email').doUpdateSet({ email: 'a1@a.test' })).execute();
  const del = await k.deleteFrom('invoices').where('customer', '=', 'kysely').executeTakeFirst();
  assert.equal(del.numDeletedRows, 1n);
  const counts = await superQuery(withoutRls.database.name, 'SELECT tenant_id::text AS t, count(*)::int AS n FROM invoices GROUP BY 1 ORDER BY 1');
  assert.deepEqual(counts.rows, [
    { t: TENANTS.a, n: 4 },
    { t: TENANTS.b, n: 4 },
    { t: TENANTS.c, n: 4 },
  ]);
  await assert.rejects(
    // The column type forbids this at compile time; the plugin refuses it at run time too.
    k.updateTable('invoices').set({ tenant_id: TENANTS.b } as never).execute(),
    (err) => isTenantwallError(err, 'unscoped_query'),
  );
});

test('INSERT ... SELECT and MERGE through the plugin', async () => {
  const k = createTenantKysely<DB>(withoutRls.db, { tenantId: A });
  const before = await superQuery(withoutRls.database.name, 'SELECT md5(string_agg(i::text, \'|\' ORDER BY i::text)) AS s FROM invoices i WHERE tenant_id <> $1', [A]);
  await k.transaction().execute(async (trx) => {
    const r = await trx
      .insertInto('invoices')
      .columns(['id', 'customer', 'amount_cents'])
      .expression((eb) => eb.selectFrom('customers').select([sql<string>`gen_random_uuid()`.as('id'), 'email', sql<number>`7`.as('amount_cents')]))
      .returning('tenant_id')
      .execute();
    assert.equal(r.length, 3, 'one row per customer of the tenant');
    assert.ok(r.every((x) => x.tenant_id === A));
    await trx.insertInto('customers').values({ id: 'aaaaaaaa-4000-4000-8000-000000000001', email: 'new@a.test' }).execute();
    await trx
      .mergeInto('invoices as t')
      .using('customers as s', 's.id', 't.customer_id')
      .whenMatched()
      .thenUpdateSet({ amount_cents: 8 })
      .whenNotMatched()
      .thenInsertValues((eb) => ({ id: sql<string>`gen_random_uuid()`, customer: eb.ref('s.email'), amount_cents: 9 }))
      .execute();
    const byAmount = await trx.selectFrom('invoices').select(['amount_cents', (eb) => eb.fn.countAll<number>().as('n')]).where('amount_cents', 'in', [7, 8, 9]).groupBy('amount_cents').orderBy('amount_cents').execute();
    assert.deepEqual(byAmount.map((x) => [Number(x.amount_cents), Number(x.n)]), [[7, 3], [8, 3], [9, 1]]);
  });
  const afterSum = await superQuery(withoutRls.database.name, 'SELECT md5(string_agg(i::text, \'|\' ORDER BY i::text)) AS s FROM invoices i WHERE tenant_id <> $1', [A]);
  assert.equal(afterSum.rows[0]?.s, before.rows[0]?.s, 'other tenants untouched');
  const foreign = await superQuery(withoutRls.database.name, 'SELECT count(*)::int AS n FROM invoices WHERE tenant_id <> $1 AND amount_cents IN (7, 8, 9)', [A]);
  assert.equal(foreign.rows[0]?.n, 0);
});

test('Kysely transactions run as tenantwall transactions: commit, rollback, savepoints', async () => {
  const k = createTenantKysely<DB>(withRls.db);
  const id1 = 'aaaaaaaa-3000-4000-8000-000000000001';
  const id2 = 'aaaaaaaa-3000-4000-8000-000000000002';
  await runWithTenant(A, async () => {
    await k.transaction().execute(async (trx) => {
      await trx.insertInto('invoices').values({ id: id1, customer: 'tx', amount_cents: 1 }).execute();
      const seen = await trx.selectFrom('invoices').select('id').where('id', '=', id1).execute();
      assert.equal(seen.length, 1);
    });
    await assert.rejects(
      k.transaction().execute(async (trx) => {
        await trx.insertInto('invoices').values({ id: id2, customer: 'tx', amount_cents: 1 }).execute();
        throw new Error('boom');
      }),
      /boom/,
    );
    const trx = await k.startTransaction().execute();
    await trx.insertInto('invoices').values({ id: id2, customer: 'sp', amount_cents: 1 }).execute();
    const sp = await trx.savepoint('beforeDelete').execute();
    await sp.deleteFrom('invoices').where('id', '=', id1).execute();
    await sp.rollbackToSavepoint('beforeDelete').execute();
    await trx.commit().execute();
    const rows = await k.selectFrom('invoices').select(['id', 'customer']).where('id', 'in', [id1, id2]).orderBy('id').execute();
    assert.deepEqual(rows, [
      { id: id1, customer: 'tx' },
      { id: id2, customer: 'sp' },
    ]);
  });
});

test('outside a tenant context the implicit Kysely fails closed; an explicit tenant works', async () => {
  const k = createTenantKysely<DB>(withRls.db);
  await assert.rejects(k.selectFrom('invoices').selectAll().execute(), (err) => isTenantwallError(err, 'tenant_context_missing'));
  const forB = createTenantKysely<DB>(withRls.db, { tenantId: TENANTS.b });
  const rows = await forB.selectFrom('customers').select('email').orderBy('email').execute();
  assert.deepEqual(rows.map((r) => r.email), ['b1@b.test', 'b2@b.test', 'b3@b.test']);
  assert.equal(customerId('b', 1).startsWith('bbbbbbbb'), true);
});

test('the tenant placeholder refuses to reach another driver', () => {
  const c = offlineKysely<DB>(true).selectFrom('invoices').selectAll().compile();
  const p = c.parameters[0] as { toPostgres: () => unknown };
  assert.throws(() => p.toPostgres(), (err) => isTenantwallError(err, 'tenant_context_missing'));
});

test('with connection handles reused, statements beside an open Kysely transaction never run in it', async () => {
  const k = createTenantKysely<DB>(withRls.db, { tenantId: A });
  const id = 'aaaaaaaa-5000-4000-8000-000000000001';
  for (let round = 0; round < 3; round++) {
    // Plain statements first, so idle handles exist when the transaction starts.
    await Promise.all(Array.from({ length: 8 }, () => k.selectFrom('invoices').select('id').execute()));
    const trx = await k.startTransaction().execute();
    await trx.insertInto('invoices').values({ id, customer: 'held', amount_cents: 1 }).execute();
    const outside = await Promise.all(Array.from({ length: 8 }, () => k.selectFrom('invoices').select('id').where('id', '=', id).execute()));
    assert.deepEqual(outside.map((r) => r.length), Array(8).fill(0), 'an uncommitted row is invisible outside the transaction');
    assert.equal((await trx.selectFrom('invoices').select('id').where('id', '=', id).execute()).length, 1);
    await trx.rollback().execute();
  }
  assert.equal((await k.selectFrom('invoices').select('id').where('id', '=', id).execute()).length, 0);
});
