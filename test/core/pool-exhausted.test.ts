/**
 * A statement that waits for a connection while every connection of the pool is checked out fails with
 * `pool_exhausted` (503, nothing sent), not `database_unreachable`: the database answers, the process is short of
 * connections. Pools of ONE connection, held by an open transaction until the waiting statement has given up.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { isTenantwallError, type TenantId } from '../../src/index.ts';
import { tenantwallErrorHandler } from '../../src/fastify/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

/**
 * Runs `fn` while `open` holds a connection: `open` starts a transaction that calls `hold()` once it holds its
 * connection and returns the promise `hold` gives, which settles after `fn`; the transaction then commits.
 */
async function whileHeld<T>(open: (hold: () => Promise<void>) => Promise<unknown>, fn: () => Promise<T>): Promise<T> {
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let holding!: () => void;
  const held = new Promise<void>((resolve) => (holding = resolve));
  const tx = open(() => {
    holding();
    return gate;
  });
  await held;
  try {
    return await fn();
  } finally {
    release();
    await tx;
  }
}

/** A transaction of `tenant` holding its connection (after a first statement). */
const tenantTx = (t: TestTenantwall, tenant: TenantId) => (hold: () => Promise<void>) =>
  t.db.forTenant(tenant).transaction(async (q) => {
    await q.query('SELECT 1 FROM invoices LIMIT 1');
    await hold();
  });

const exhausted = (poolSize: number) => (e: unknown) => isTenantwallError(e, 'pool_exhausted') && e.status === 503 && (e.details as { poolSize?: number }).poolSize === poolSize && /nothing was sent/.test(e.message);

for (const scopeMode of ['implicit', 'explicit'] as const) {
  describe(`pool exhausted (${scopeMode} mode)`, () => {
    let t: TestTenantwall;
    let a: TenantId;
    let b: TenantId;
    before(async () => {
      t = await createTestTenantwall(seedSchema, seedMigrations, { scopeMode, poolSize: 1, connectTimeoutMs: 300 });
      a = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
      b = (await t.db.tenants.create({ slug: 'b', name: 'B' })).id;
    });
    after(() => t.close());

    test('a statement that waited for the only busy connection fails with pool_exhausted; the next one runs', async () => {
      await whileHeld(tenantTx(t, a), async () => {
        await assert.rejects(t.db.forTenant(b).query('SELECT count(*) FROM invoices'), exhausted(1));
        await assert.rejects(t.db.forTenant(b).transaction((tx) => tx.query('SELECT 1')), exhausted(1));
        assert.equal(t.db.poolStats().app.total, 1);
      });
      const { rows } = await t.db.forTenant(b).query<{ n: number }>('SELECT count(*)::int AS n FROM invoices');
      assert.equal(rows[0]?.n, 0);
    });

    test('the Fastify error handler answers 503 pool_exhausted with Retry-After', async () => {
      const app = Fastify({ logger: false });
      app.setErrorHandler(tenantwallErrorHandler);
      app.get('/count', async () => (await t.db.forTenant(b).query('SELECT count(*)::int AS n FROM invoices')).rows[0]);
      try {
        const r = await whileHeld(tenantTx(t, a), () => app.inject({ url: '/count' }));
        assert.equal(r.statusCode, 503);
        assert.equal(r.json().error.code, 'pool_exhausted');
        assert.equal(r.headers['retry-after'], '1');
        assert.equal((await app.inject({ url: '/count' })).statusCode, 200);
      } finally {
        await app.close();
      }
    });
  });
}

describe('pool exhausted: the owner pool', () => {
  let t: TestTenantwall;
  before(async () => {
    t = await createTestTenantwall(seedSchema, seedMigrations, { adminPoolSize: 1, connectTimeoutMs: 300 });
  });
  after(() => t.close());

  test('a cross-tenant query that waited for the owner pool names its size', async () => {
    const owner = t.db.dangerouslyCrossTenant();
    await whileHeld((hold) => owner.transaction(hold), () => assert.rejects(owner.query('SELECT 1'), exhausted(1)));
    assert.equal((await owner.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1);
  });
});
