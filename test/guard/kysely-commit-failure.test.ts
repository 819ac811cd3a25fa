import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Generated, sql } from 'kysely';
import { isTenantwallError } from '../../src/index.ts';
import { type TenantColumn, createTenantKysely } from '../../src/kysely/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { TENANTS, seedTenants } from './fixture.ts';

interface DB {
  invoices: { tenant_id: TenantColumn; id: Generated<string>; customer: string; amount_cents: string | number; customer_id: string | null };
}

let t: TestTenantwall;

before(async () => {
  t = await createTestTenantwall(seedSchema, seedMigrations, { poolSize: 2 });
  await seedTenants(t.db, t.database.name);
});

after(async () => {
  await t?.close();
});

test('a Kysely transaction whose connection dies before COMMIT fails with the connection error, and nothing is written', async () => {
  const k = createTenantKysely<DB>(t.db, { tenantId: TENANTS.a });
  const err = await k
    .transaction()
    .execute(async (trx) => {
      await trx.insertInto('invoices').values({ customer: 'lost', amount_cents: 1 }).execute();
      const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(trx);
      await superQuery(t.database.name, 'SELECT pg_terminate_backend($1)', [rows[0]?.pid]);
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  // Kysely rolls back after the failed COMMIT; that must not replace the real error with "no transaction open".
  assert.ok(isTenantwallError(err), `not a tenantwall error: ${String(err)}`);
  assert.notEqual(err.code, 'query_failed', err.message);
  assert.equal(err.code, 'database_unreachable', err.message);
  const { rows } = await t.db.forTenant(TENANTS.a).query(`SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1 AND customer = 'lost'`, [TENANTS.a]);
  assert.deepEqual(rows, [{ n: 0 }]);
  // The pool recovers: the next transaction works.
  const n = await k.transaction().execute(async (trx) => (await trx.selectFrom('invoices').select('id').execute()).length);
  assert.equal(n, 4);
});
