import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Compilable, Generated } from 'kysely';
import { type TenantId, createGuard, runWithTenant } from '../../src/index.ts';
import { type TenantColumn, createTenantKysely } from '../../src/kysely/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { TENANTS, customerId, invoiceId, seedTenants } from './fixture.ts';

// plan: 'auto' (the default with a guard) for ad-hoc Kysely queries: the plugin's statements get the plan mode
// the guard proves for them, exactly like the raw statement of the same shape. Proof from the server:
// pg_prepared_statements (per session, hence a pool of one) counts the generic and custom plans of every text.

interface DB {
  customers: { tenant_id: TenantColumn; id: string; email: string };
  invoices: { tenant_id: TenantColumn; id: Generated<string>; customer: string; amount_cents: string | number; customer_id: string | null };
}

let t: TestTenantwall;

before(async () => {
  t = await createTestTenantwall(seedSchema, seedMigrations, { guard: createGuard(seedSchema, { allowRelations: ['pg_prepared_statements'] }), poolSize: 1 });
  await seedTenants(t.db, t.database.name);
});

after(async () => {
  await t?.close();
});

const plans = async (sql: string) =>
  (await t.db.forTenant(TENANTS.a).query<{ g: string; c: string }>('SELECT generic_plans::text AS g, custom_plans::text AS c FROM pg_prepared_statements WHERE statement = $1', [sql])).rows[0];

const tenants = [['a', TENANTS.a], ['b', TENANTS.b], ['c', TENANTS.c]] as const;

test('an ad-hoc Kysely point lookup runs a generic plan, like the raw lookup, and answers each tenant only its own row', async () => {
  const raw = 'SELECT id, customer FROM invoices WHERE tenant_id = $1 AND id = $2';
  const implicit = createTenantKysely<DB>(t.db);
  const lookup = (k: typeof implicit, id: string) => k.selectFrom('invoices').select(['id', 'customer']).where('id', '=', id);
  for (const [own, tenant] of tenants) {
    const fixed = createTenantKysely<DB>(t.db, { tenantId: tenant });
    const other = own === 'a' ? 'b' : 'a';
    assert.deepEqual(await lookup(fixed, invoiceId(own, 2)).execute(), [{ id: invoiceId(own, 2), customer: `${own.toUpperCase()}-inv-2` }]);
    assert.deepEqual(await lookup(fixed, invoiceId(other, 2)).execute(), [], 'another tenant\'s id');
    assert.deepEqual(await runWithTenant(tenant, () => lookup(implicit, invoiceId(own, 3)).executeTakeFirst()), { id: invoiceId(own, 3), customer: `${own.toUpperCase()}-inv-3` });
    assert.deepEqual((await t.db.forTenant(tenant).query(raw, [tenant, invoiceId(own, 2)])).rows, [{ id: invoiceId(own, 2), customer: `${own.toUpperCase()}-inv-2` }]);
  }
  assert.deepEqual(await plans(raw), { g: '3', c: '0' }, 'the raw lookup');
  assert.deepEqual(await plans(lookup(implicit, 'x').compile().sql), { g: '9', c: '0' }, 'the Kysely lookup, explicit and implicit tenant');
});

/** Runs `q` `n` times as each tenant (implicit tenant), returns its text. */
async function runAsEach(q: (k: ReturnType<typeof createTenantKysely<DB>>, own: 'a' | 'b' | 'c', i: number) => Compilable<unknown>, n: number): Promise<string> {
  const k = createTenantKysely<DB>(t.db);
  for (let i = 0; i < n; i++) {
    for (const [own, tenant] of tenants) await runWithTenant(tenant as TenantId, () => k.executeQuery(q(k, own, i).compile()));
  }
  return q(k, 'a', 0).compile().sql;
}

test('Kysely writes by key and inserts of VALUES run a generic plan', async () => {
  const update = await runAsEach((k, own) => k.updateTable('invoices').set({ customer: `${own.toUpperCase()}-inv-4` }).where('id', '=', invoiceId(own, 4)), 2);
  assert.deepEqual(await plans(update), { g: '6', c: '0' }, update);
  const insert = await runAsEach((k, own, i) => k.insertInto('invoices').values({ customer: `${own}-new-${i}`, amount_cents: 1 }), 2);
  assert.deepEqual(await plans(insert), { g: '6', c: '0' }, insert);
  const byUnique = await runAsEach((k, own) => k.selectFrom('customers').select('id').where('email', '=', `${own}1@${own}.test`), 2);
  assert.deepEqual(await plans(byUnique), { g: '6', c: '0' }, `a unique key other than the primary key: ${byUnique}`);
});

test('Kysely statements whose plan depends on the tenant keep a custom plan for every execution', async () => {
  const shapes = [
    await runAsEach((k) => k.selectFrom('invoices').select('id').where('amount_cents', '>', 100).orderBy('id'), 3), // a range: many rows
    await runAsEach((k, own) => k.selectFrom('invoices').select('id').where('customer_id', '=', customerId(own, 1)), 3), // not a unique key
    await runAsEach((k, own) => k.selectFrom('invoices').select('id').where('id', '=', invoiceId(own, 1)).orderBy('id').limit(1), 3), // sorted: the guard proves no sort is free
    await runAsEach((k, own) => k.selectFrom('invoices as i').innerJoin('customers as c', 'c.id', 'i.customer_id').select(['i.id', 'c.email']).where('i.id', '=', invoiceId(own, 1)), 3),
    await runAsEach((k, own) => k.deleteFrom('invoices').where('customer', '=', `${own}-none`), 3),
  ];
  for (const sql of shapes) assert.deepEqual(await plans(sql), { g: '0', c: '9' }, sql);
});
