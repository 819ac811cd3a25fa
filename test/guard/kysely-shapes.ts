import { type ColumnType, type Compilable, DummyDriver, Kysely, type OperationNodeSource, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler, sql } from 'kysely';
import { type TenantColumn, TenantScopePlugin } from '../../src/kysely/index.ts';
import { seedSchema } from '../fixtures/seed.ts';

/** The seed schema (test/fixtures/seed.ts) as a Kysely database interface. */
export interface SeedDB {
  currencies: { code: string };
  customers: { tenant_id: TenantColumn; id: Defaulted<string>; email: string };
  invoices: { tenant_id: TenantColumn; id: Defaulted<string>; customer: string; amount_cents: string | number; customer_id: string | null };
}

/** Kysely that compiles without a database, with or without the tenant plugin for the seed schema: the plugin alone. */
export function offlineKysely<DB>(plugins: boolean): Kysely<DB> {
  return new Kysely<DB>({
    dialect: {
      createAdapter: () => new PostgresAdapter(),
      createDriver: () => new DummyDriver(),
      createIntrospector: (db) => new PostgresIntrospector(db),
      createQueryCompiler: () => new PostgresQueryCompiler(),
    },
    plugins: plugins ? [new TenantScopePlugin(seedSchema)] : [],
  });
}

/** A column with a database default: optional in inserts. */
type Defaulted<T> = ColumnType<T, T | undefined, T>;

/**
 * Query shapes an application writes without mentioning tenant_id: reads (joins of every kind, sub-queries in
 * every position, CTEs, set operations, raw fragments around builders) and writes (insert, upsert, insert ...
 * select, update, delete, merge). `v` varies the values, never the shape.
 */
export function kyselyShapes(k: Kysely<SeedDB>, v = 0): Record<string, Compilable<unknown> & OperationNodeSource> {
  const id = `aaaaaaaa-9000-4000-8000-${String(v).padStart(12, '0')}`;
  return {
    all: k.selectFrom('invoices').selectAll().orderBy('id'),
    pointLookup: k.selectFrom('invoices').select(['id', 'customer']).where('id', '=', id),
    camelCase: k.selectFrom('invoices as inv').select(['inv.id', 'inv.amount_cents as totalAmount']).orderBy('totalAmount').orderBy('inv.id'),
    filtered: k.selectFrom('invoices').select(['id', 'amount_cents']).where('amount_cents', '>', 100 + v).where((eb) => eb.or([eb('customer', 'like', `%-inv-${v}%`), eb('amount_cents', '<', 0)])),
    global: k.selectFrom('currencies').select('code').where('code', '=', 'EUR'),
    innerJoin: k.selectFrom('invoices as i').innerJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']),
    leftJoin: k.selectFrom('invoices as i').leftJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']).where('i.amount_cents', '>', v),
    rightJoin: k.selectFrom('invoices as i').rightJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']),
    fullJoin: k.selectFrom('invoices as i').fullJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']),
    leftThenRight: k
      .selectFrom('invoices as i')
      .leftJoin('customers as c', 'c.id', 'i.customer_id')
      .rightJoin('invoices as j', 'j.id', 'i.id')
      .select(['i.id', 'c.email', 'j.id as jid']),
    crossJoin: k.selectFrom('invoices').crossJoin('currencies').select(['invoices.id', 'currencies.code']),
    selfJoin: k.selectFrom('invoices as a').innerJoin('invoices as b', 'b.customer_id', 'a.customer_id').select(['a.id as a', 'b.id as b']),
    twoFroms: k.selectFrom(['invoices as i', 'customers as c']).select(['i.id', 'c.email']).whereRef('c.id', '=', 'i.customer_id'),
    subqueryIn: k.selectFrom('invoices').select('id').where('customer_id', 'in', k.selectFrom('customers').select('id').where('email', 'like', `%${v}@%`)),
    subqueryInSelect: k.selectFrom('customers as c').select(['c.id', (eb) => eb.selectFrom('invoices as i').select((e) => e.fn.countAll<number>().as('n')).whereRef('i.customer_id', '=', 'c.id').as('n')]),
    derivedTable: k.selectFrom((eb) => eb.selectFrom('invoices').select(['id', 'amount_cents']).where('amount_cents', '>', v).as('d')).select('d.id'),
    joinSubquery: k
      .selectFrom('customers as c')
      .innerJoin((eb) => eb.selectFrom('invoices').select(['customer_id', (e) => e.fn.sum<number>('amount_cents').as('total')]).groupBy('customer_id').as('t'), (join) => join.onRef('t.customer_id', '=', 'c.id'))
      .select(['c.email', 't.total']),
    nested: k
      .selectFrom('invoices')
      .select('id')
      .where('customer_id', 'in', k.selectFrom('customers').select('id').where('id', 'in', k.selectFrom('invoices as x').select('x.customer_id').where('x.amount_cents', '>', v))),
    exists: k.selectFrom('customers as c').select('c.email').where(({ exists, selectFrom }) => exists(selectFrom('invoices as i').select('i.id').whereRef('i.customer_id', '=', 'c.id'))),
    aggregate: k.selectFrom('invoices').select((eb) => [eb.fn.countAll<number>().as('n'), eb.fn.sum<number>('amount_cents').as('total')]).having((eb) => eb.fn.countAll(), '>', v),
    cte: k.with('big', (db) => db.selectFrom('invoices').selectAll().where('amount_cents', '>', 100 + v)).selectFrom('big').select(['id']),
    cteShadowing: k.with('invoices', (db) => db.selectFrom('customers').select(['id', 'email'])).selectFrom('invoices').select('id'),
    cteInSubquery: k.selectFrom('customers').select('id').where('id', 'in', k.with('x', (db) => db.selectFrom('invoices').select('customer_id')).selectFrom('x').select('customer_id')),
    union: k.selectFrom('invoices').select('id').union(k.selectFrom('customers').select('id')),
    intersectAll: k.selectFrom('invoices').select('customer_id as id').intersectAll(k.selectFrom('customers').select('id')),
    window: k.selectFrom('invoices').select(['id', (eb) => eb.fn.agg<number>('row_number').over((ob) => ob.orderBy('amount_cents').orderBy('id')).as('rn')]),
    lateral: k
      .selectFrom('customers as c')
      .innerJoinLateral((eb) => eb.selectFrom('invoices as i').select('i.amount_cents').whereRef('i.customer_id', '=', 'c.id').as('x'), (join) => join.onTrue())
      .select(['c.email', 'x.amount_cents']),
    rawAroundBuilder: k.selectFrom('customers').select('id').where(sql<boolean>`${sql.ref('id')} in (${k.selectFrom('invoices').select('customer_id')})`),
    limitOffset: k.selectFrom('invoices').select('id').orderBy('id').limit(10 + v).offset(v),
    insert: k.insertInto('invoices').values({ id, customer: `c${v}`, amount_cents: v }).returning(['tenant_id', 'id']),
    insertRows: k.insertInto('invoices').values([
      { customer: `a${v}`, amount_cents: 1 },
      { customer: `b${v}`, amount_cents: 2 },
    ]),
    upsert: k.insertInto('customers').values({ id, email: `e${v}@a.test` }).onConflict((oc) => oc.column('email').doUpdateSet({ email: `e${v}@a.test` })),
    upsertNothing: k.insertInto('customers').values({ email: `f${v}@a.test` }).onConflict((oc) => oc.column('email').doNothing()),
    insertSelect: k
      .insertInto('invoices')
      .columns(['id', 'customer', 'amount_cents'])
      .expression((eb) => eb.selectFrom('customers').select([sql<string>`gen_random_uuid()`.as('id'), 'email', sql<number>`7`.as('amount_cents')]).where('email', 'like', `%${v}%`)),
    update: k.updateTable('invoices').set({ amount_cents: 43 + v }).where('customer', '=', `k${v}`),
    updateAll: k.updateTable('invoices').set((eb) => ({ amount_cents: eb('amount_cents', '+', v) })),
    updateFrom: k.updateTable('invoices as i').from('customers as c').set({ customer: sql`c.email` }).whereRef('c.id', '=', 'i.customer_id'),
    updateSubquery: k.updateTable('invoices').set({ amount_cents: 0 }).where('customer_id', 'in', k.selectFrom('customers').select('id').where('email', '=', `x${v}`)),
    delete: k.deleteFrom('invoices').where('customer', '=', `k${v}`),
    deleteUsing: k.deleteFrom('invoices as i').using('customers as c').whereRef('c.id', '=', 'i.customer_id').where('c.email', '=', `x${v}`),
    deleteReturning: k.deleteFrom('customers').where('id', 'not in', k.selectFrom('invoices').select('customer_id').where('customer_id', 'is not', null)).returning('id'),
    merge: k
      .mergeInto('invoices as t')
      .using('customers as s', 's.id', 't.customer_id')
      .whenMatched()
      .thenUpdateSet({ amount_cents: 8 + v })
      .whenNotMatched()
      .thenInsertValues((eb) => ({ id: sql<string>`gen_random_uuid()`, customer: eb.ref('s.email'), amount_cents: 9 })),
  };
}
