import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CamelCasePlugin, type KyselyPlugin, type PluginTransformQueryArgs, type PluginTransformResultArgs, type QueryResult, type RootOperationNode, type UnknownRow } from 'kysely';
import { createGuard, isTenantwallError, runWithTenant } from '../../src/index.ts';
import { type TenantColumn, createTenantKysely } from '../../src/kysely/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { TENANTS, invoiceId, seedTenants } from './fixture.ts';

// createTenantKysely runs a statement outside a transaction straight through the tenant's scoped query (its own
// executor, not a connection handle per statement): what Kysely does around a statement must still happen,
// the other plugins' result transforms, withPlugin/withoutPlugins, connection(), transactions.

interface CamelDB {
  invoices: { tenantId: TenantColumn; id: string; customer: string; amountCents: string | number; customerId: string | null };
}

let t: TestTenantwall;

before(async () => {
  t = await createTestTenantwall(seedSchema, seedMigrations, { guard: createGuard(seedSchema) });
  await seedTenants(t.db, t.database.name);
});

after(async () => {
  await t?.close();
});

/** Counts the results it sees and tags every row, to show where transformResult ran. */
class TaggingPlugin implements KyselyPlugin {
  results = 0;
  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return args.node;
  }
  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    this.results++;
    return { ...args.result, rows: args.result.rows.map((r) => ({ ...r, tagged: true })) };
  }
}

test("the other plugins' query and result transforms run, in order, on statements and in transactions", async () => {
  const tag = new TaggingPlugin();
  const k = createTenantKysely<CamelDB>(t.db, { plugins: [new CamelCasePlugin(), tag] });
  const q = (db: typeof k) => db.selectFrom('invoices').select(['id', 'amountCents']).where('id', '=', invoiceId('a', 2));
  const want = [{ id: invoiceId('a', 2), amountCents: '201', tagged: true }];
  assert.deepEqual(await runWithTenant(TENANTS.a, () => q(k).execute()), want);
  assert.deepEqual(await runWithTenant(TENANTS.b, () => q(k).execute()), [], "A's id under B");
  assert.deepEqual(await runWithTenant(TENANTS.a, () => k.transaction().execute((tx) => q(tx).execute())), want);
  assert.deepEqual(await runWithTenant(TENANTS.a, () => k.connection().execute((c) => q(c).execute())), want);
  assert.equal(tag.results, 4);
});

test('withPlugin keeps the tenant plugin and adds a result transform; withoutPlugins drops it and the guard refuses', async () => {
  const k = createTenantKysely<CamelDB>(t.db, { tenantId: TENANTS.c });
  const tag = new TaggingPlugin();
  const rows = await k.withPlugin(tag).withPlugin(new CamelCasePlugin()).selectFrom('invoices').select('amountCents').where('id', '=', invoiceId('c', 3)).execute();
  assert.deepEqual(rows, [{ amountCents: '303', tagged: true }], 'the tag first, then camel case');
  assert.equal(tag.results, 1);
  assert.deepEqual(await k.withPlugin(new CamelCasePlugin()).selectFrom('invoices').select('id').where('id', '=', invoiceId('a', 3)).execute(), [], "A's id for tenant C");
  await assert.rejects(
    k.withoutPlugins().selectFrom('invoices').select('id').execute(),
    (err) => isTenantwallError(err) && err.code === 'unscoped_query',
  );
});

test('outside a tenant context the implicit-tenant instance fails closed', async () => {
  const k = createTenantKysely<CamelDB>(t.db, { plugins: [new CamelCasePlugin()] });
  await assert.rejects(k.selectFrom('invoices').select('id').execute(), (err) => isTenantwallError(err) && err.code === 'tenant_context_missing');
});
