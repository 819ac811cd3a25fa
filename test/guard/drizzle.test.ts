import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { and, eq, gt, inArray, like, lt, or, sql, count, sum, exists } from 'drizzle-orm';
import { alias, bigint, pgTable, text, uuid } from 'drizzle-orm/pg-core';
import { drizzle } from 'drizzle-orm/node-postgres';
import { type Guard, createGuard, isTenantwallError, runWithTenant } from '../../src/index.ts';
import { createTenantDrizzle, tenantIs, tenantPlaceholder } from '../../src/drizzle/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { TENANTS, customerId, leakedTokens, seedTenants, sortRows } from './fixture.ts';

// The seed model as Drizzle tables: the tenant column defaults to the scope's tenant.
const currencies = pgTable('currencies', { code: text('code').primaryKey() });
const customers = pgTable('customers', {
  tenantId: uuid('tenant_id').notNull().$defaultFn(tenantPlaceholder),
  id: uuid('id').notNull().defaultRandom(),
  email: text('email').notNull(),
});
const invoices = pgTable('invoices', {
  tenantId: uuid('tenant_id').notNull().$defaultFn(tenantPlaceholder),
  id: uuid('id').notNull().defaultRandom(),
  customer: text('customer').notNull(),
  amountCents: bigint('amount_cents', { mode: 'number' }).notNull(),
  customerId: uuid('customer_id'),
});

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

type Db = ReturnType<typeof createTenantDrizzle>;

/** The queries an application writes with Drizzle, naming the tenant with `tenantIs` (the guard requires it). */
function queries(d: Db, scoped: boolean) {
  const t = (table: Parameters<typeof tenantIs>[0]) => (scoped ? tenantIs(table) : sql`true`);
  const i = alias(invoices, 'i');
  const c = alias(customers, 'c');
  const b = alias(invoices, 'b');
  return {
    all: () => d.select().from(invoices).where(t(invoices)).orderBy(invoices.id),
    filtered: () =>
      d
        .select({ id: invoices.id, amount: invoices.amountCents })
        .from(invoices)
        .where(and(t(invoices), gt(invoices.amountCents, 100), or(like(invoices.customer, '%-inv-%'), lt(invoices.amountCents, 0)))),
    innerJoin: () => d.select({ id: i.id, email: c.email }).from(i).innerJoin(c, and(eq(c.id, i.customerId), t(c))).where(t(i)),
    leftJoin: () => d.select({ id: i.id, email: c.email }).from(i).leftJoin(c, and(eq(c.id, i.customerId), t(c))).where(t(i)),
    // Two tables with a column of the same name: rows come back by position, nothing collapses.
    sameNames: () => d.select().from(i).innerJoin(c, and(eq(c.id, i.customerId), t(c))).where(t(i)),
    crossJoin: () => d.select({ id: invoices.id, code: currencies.code }).from(invoices).crossJoin(currencies).where(t(invoices)),
    selfJoin: () => d.select({ a: i.id, b: b.id }).from(i).innerJoin(b, and(eq(b.customerId, i.customerId), t(b))).where(t(i)),
    subquery: () =>
      d
        .select({ id: invoices.id })
        .from(invoices)
        .where(and(t(invoices), inArray(invoices.customerId, d.select({ id: customers.id }).from(customers).where(and(t(customers), like(customers.email, '%1@%')))))),
    exists: () =>
      d
        .select({ email: c.email })
        .from(c)
        .where(and(t(c), exists(d.select({ id: i.id }).from(i).where(and(t(i), eq(i.customerId, c.id)))))),
    aggregate: () => d.select({ n: count(), total: sum(invoices.amountCents) }).from(invoices).where(t(invoices)),
    union: () => d.select({ id: invoices.id }).from(invoices).where(t(invoices)).union(d.select({ id: customers.id }).from(customers).where(t(customers))),
  };
}

test('every query written with tenantIs passes the verifier, with the tenant in a parameter', () => {
  const d = drizzle.mock();
  for (const [name, q] of Object.entries(queries(d as unknown as Db, true))) {
    const c = q().toSQL();
    const a = guard.analyze(c.sql);
    assert.ok(a.ok, `${name}: ${c.sql}\n${a.ok ? '' : a.reason}`);
    for (const n of a.tenantParams) assert.equal(typeof c.params[n - 1], 'object', `${name}: $${n} is the tenant placeholder`);
  }
});

test('the same queries without the tenant predicate are refused by the verifier and when executed', async () => {
  for (const [name, q] of Object.entries(queries(drizzle.mock() as unknown as Db, false))) {
    assert.equal(guard.analyze(q().toSQL().sql).ok, false, name);
  }
  const d = createTenantDrizzle(withRls.db, { tenantId: A });
  await assert.rejects(d.select().from(invoices), (err) => isTenantwallError(err, 'unscoped_query'));
});

test('with RLS disabled, reads never return another tenant\'s rows and equal the RLS reference', async () => {
  const off = createTenantDrizzle(withoutRls.db);
  const on = createTenantDrizzle(withRls.db);
  await runWithTenant(A, async () => {
    const qOff = queries(off, true);
    const qOn = queries(on, true);
    for (const name of Object.keys(qOff) as Array<keyof typeof qOff>) {
      const rowsOff = (await qOff[name]()) as Record<string, unknown>[];
      const rowsOn = (await qOn[name]()) as Record<string, unknown>[];
      assert.deepEqual(leakedTokens(rowsOff), [], `${name} leaked`);
      assert.deepEqual(sortRows(rowsOff), sortRows(rowsOn), `${name} differs from the RLS reference`);
    }
    assert.equal((await qOff.all()).length, 4, 'the tenant has data, so "no leak" is not "no rows"');
    const joined = await qOff.sameNames();
    assert.equal(joined.length, 3);
    for (const r of joined) assert.equal(r.i.customerId, r.c.id, 'columns of the same name keep their own values');
  });
});

test('inserts get tenant_id from the column default; updates and deletes stay in the tenant', async () => {
  const d = createTenantDrizzle(withoutRls.db, { tenantId: A });
  const id = 'aaaaaaaa-2000-4000-8000-000000000001';
  const [inserted] = await d.insert(invoices).values({ id, customer: 'drizzle', amountCents: 42 }).returning({ tenantId: invoices.tenantId, id: invoices.id });
  assert.equal(inserted?.tenantId, A);
  const upd = await d.update(invoices).set({ amountCents: 43 }).where(and(tenantIs(invoices), eq(invoices.customer, 'drizzle')));
  assert.equal(upd.rowCount, 1);
  const all = await d.update(invoices).set({ amountCents: sql`${invoices.amountCents} + 0` }).where(tenantIs(invoices));
  assert.equal(all.rowCount, 5);
  await d
    .insert(customers)
    .values({ id: 'aaaaaaaa-2000-4000-8000-000000000002', email: 'a1@a.test' })
    .onConflictDoUpdate({ target: [customers.tenantId, customers.email], set: { email: 'a1@a.test' }, where: tenantIs(customers) });
  const del = await d.delete(invoices).where(and(tenantIs(invoices), eq(invoices.customer, 'drizzle')));
  assert.equal(del.rowCount, 1);
  const counts = await superQuery(withoutRls.database.name, 'SELECT tenant_id::text AS t, count(*)::int AS n FROM invoices GROUP BY 1 ORDER BY 1');
  assert.deepEqual(counts.rows, [
    { t: TENANTS.a, n: 4 },
    { t: TENANTS.b, n: 4 },
    { t: TENANTS.c, n: 4 },
  ]);
  // Writing another tenant's id, or changing rows without the predicate, is refused.
  await assert.rejects(d.insert(invoices).values({ tenantId: TENANTS.b, customer: 'x', amountCents: 1 }), (err) => isTenantwallError(err));
  await assert.rejects(d.update(invoices).set({ amountCents: 1 }), (err) => isTenantwallError(err, 'unscoped_query'));
  await assert.rejects(d.delete(invoices), (err) => isTenantwallError(err, 'unscoped_query'));
  const still = await superQuery(withoutRls.database.name, `SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1 AND amount_cents = 1`, [TENANTS.b]);
  assert.deepEqual(still.rows, [{ n: 0 }]);
});

test('Drizzle transactions run as tenantwall transactions: commit, rollback, savepoints', async () => {
  const d = createTenantDrizzle(withRls.db);
  const id1 = 'aaaaaaaa-3000-4000-8000-000000000001';
  const id2 = 'aaaaaaaa-3000-4000-8000-000000000002';
  const id3 = 'aaaaaaaa-3000-4000-8000-000000000003';
  await runWithTenant(A, async () => {
    await d.transaction(async (tx) => {
      await tx.insert(invoices).values({ id: id1, customer: 'tx', amountCents: 1 });
      const seen = await tx.select({ id: invoices.id }).from(invoices).where(and(tenantIs(invoices), eq(invoices.id, id1)));
      assert.equal(seen.length, 1);
    });
    await assert.rejects(
      d.transaction(async (tx) => {
        await tx.insert(invoices).values({ id: id2, customer: 'tx', amountCents: 1 });
        throw new Error('boom');
      }),
      /boom/,
    );
    await d.transaction(async (tx) => {
      await tx.insert(invoices).values({ id: id3, customer: 'sp', amountCents: 1 });
      await assert.rejects(
        tx.transaction(async (sp) => {
          await sp.delete(invoices).where(and(tenantIs(invoices), eq(invoices.id, id1)));
          throw new Error('undo');
        }),
        /undo/,
      );
    });
    const rows = await d.select({ id: invoices.id, customer: invoices.customer }).from(invoices).where(and(tenantIs(invoices), inArray(invoices.id, [id1, id2, id3]))).orderBy(invoices.id);
    assert.deepEqual(rows, [
      { id: id1, customer: 'tx' },
      { id: id3, customer: 'sp' },
    ]);
  });
  // Isolation levels are refused rather than silently ignored.
  await assert.rejects(
    createTenantDrizzle(withRls.db, { tenantId: A }).transaction(async () => undefined, { isolationLevel: 'serializable' }),
    (err) => isTenantwallError(err, 'config_invalid'),
  );
});

test('a Drizzle transaction whose connection dies before COMMIT fails with the connection error, and nothing is written', async () => {
  const d = createTenantDrizzle(withRls.db, { tenantId: A });
  const err = await d
    .transaction(async (tx) => {
      await tx.insert(invoices).values({ customer: 'lost', amountCents: 1 });
      // The guard refuses pg_backend_pid(): find the session by its state (this file runs one test at a time).
      const killed = await superQuery(
        withRls.database.name,
        `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`,
      );
      assert.equal(killed.rowCount, 1);
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  assert.ok(isTenantwallError(err, 'database_unreachable'), `not the connection error: ${String(err)}`);
  const n = await d.select({ n: count() }).from(invoices).where(and(tenantIs(invoices), eq(invoices.customer, 'lost')));
  assert.deepEqual(n, [{ n: 0 }]);
});

test('outside a tenant context the implicit Drizzle database fails closed; an explicit tenant works', async () => {
  const d = createTenantDrizzle(withRls.db);
  await assert.rejects(d.select().from(invoices).where(tenantIs(invoices)), (err) => isTenantwallError(err, 'tenant_context_missing'));
  await assert.rejects(d.transaction(async () => undefined), (err) => isTenantwallError(err, 'tenant_context_missing'));
  const forB = createTenantDrizzle(withRls.db, { tenantId: TENANTS.b });
  const rows = await forB.select({ email: customers.email }).from(customers).where(tenantIs(customers)).orderBy(customers.email);
  assert.deepEqual(rows.map((r) => r.email), ['b1@b.test', 'b2@b.test', 'b3@b.test']);
  assert.equal(customerId('b', 1).startsWith('bbbbbbbb'), true);
});

test('the tenant placeholder refuses to reach another driver', () => {
  const p = tenantPlaceholder<{ toPostgres: () => unknown }>();
  assert.throws(() => p.toPostgres(), (err) => isTenantwallError(err, 'tenant_context_missing'));
});
