import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Tenant, Tenantwall } from '../../src/index.ts';
import { ApiKeyStore, type CreatedApiKey } from '../../src/fastify/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginApp, pluginMigrations, pluginSchema } from './app.ts';

// A cold cache under load: many requests with the same uncached API key (or tenant) at once share one database
// lookup instead of sending one each; a revocation or tenant change is never hidden by a lookup that was in
// flight when it happened.

let t: TestTenantwall;
let a: Tenant;
before(async () => {
  t = await createTestTenantwall(pluginSchema, pluginMigrations);
  a = await t.db.tenants.create({ slug: 'alpha', name: 'Alpha' });
});
after(() => t?.close());

/** The real Tenantwall, with the scoped statements and registry reads it runs counted. */
function counting(db: Tenantwall): { db: Tenantwall; scoped: () => number; registry: () => number } {
  let scoped = 0;
  let registry = 0;
  const tenants = new Proxy(db.tenants, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (prop === 'get' && typeof v === 'function') return (...args: unknown[]) => (registry++, (v as (...a: unknown[]) => unknown).apply(target, args));
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  const proxy = new Proxy(db, {
    get(target, prop) {
      if (prop === 'tenants') return tenants;
      if (prop === 'forTenant') {
        return (...args: Parameters<Tenantwall['forTenant']>) => {
          const scope = target.forTenant(...args);
          return { tenantId: scope.tenantId, query: (...q: Parameters<typeof scope.query>) => (scoped++, scope.query(...q)) };
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { db: proxy, scoped: () => scoped, registry: () => registry };
}

test('concurrent verifications of one uncached key share one lookup; different keys do not', async () => {
  const c = counting(t.db);
  const store = new ApiKeyStore(c.db);
  const k1 = await store.create(a.id, { name: 'one' });
  const k2 = await store.create(a.id, { name: 'two' });
  const before = c.scoped();
  const results = await Promise.all([...Array.from({ length: 20 }, () => store.verify(k1.key)), ...Array.from({ length: 5 }, () => store.verify(k2.key))]);
  assert.equal(c.scoped() - before, 2, 'one lookup per distinct key');
  assert.deepEqual(new Set(results.map((r) => r.keyId)), new Set([k1.id, k2.id]));
  // A wrong secret shares nothing with the right one (the in-flight map is keyed by the whole key).
  const wrong = `${k1.key.slice(0, -4)}AAAA`;
  const [good, bad] = await Promise.allSettled([store.verify(k1.key), store.verify(wrong)]);
  assert.equal(good.status, 'fulfilled');
  assert.equal(bad.status, 'rejected');
});

test('a key revoked while its lookup is in flight is not cached, and the next request is refused', async () => {
  const store = new ApiKeyStore(t.db);
  const k: CreatedApiKey = await store.create(a.id, { name: 'racing' });
  const inFlight = store.verify(k.key).then(
    () => 'ok',
    () => 'refused',
  );
  await store.revoke(a.id, k.id);
  await inFlight; // either answer is right for a request that started before the revocation
  assert.equal(store.cached(k.key), undefined);
  await assert.rejects(store.verify(k.key), (err: Error & { details?: { reason?: string } }) => err.details?.reason === 'revoked_api_key');
});

test('the plugin resolves a burst of requests of one uncached tenant with one registry read', async () => {
  const c = counting(t.db);
  const { app } = await pluginApp(c.db);
  try {
    const store = new ApiKeyStore(t.db);
    const k = await store.create(a.id, { name: 'burst' });
    const before = c.registry();
    const answers = await Promise.all(Array.from({ length: 15 }, () => app.inject({ url: '/whoami', headers: { authorization: `Bearer ${k.key}` } })));
    assert.deepEqual(new Set(answers.map((r) => r.statusCode)), new Set([200]));
    assert.equal(c.registry() - before, 1, 'one registry read for the burst');
  } finally {
    await app.close();
  }
});
