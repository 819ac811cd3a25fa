import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isTenantwallError } from '../../src/index.ts';
import { TtlCache, parseApiKey, resolveFastifyOptions } from '../../src/fastify/index.ts';

const SECRET = 'x'.repeat(32);

function refuses(fn: () => unknown, field: RegExp): void {
  assert.throws(fn, (err: unknown) => isTenantwallError(err, 'config_invalid') && field.test(String(err.details.field)));
}

test('defaults: apiKey only; JWT, subdomain and header join when configured; env is read', () => {
  assert.deepEqual(resolveFastifyOptions({}, {}).resolvers, ['apiKey']);
  const o = resolveFastifyOptions({}, { TENANTWALL_JWT_SECRET: SECRET, TENANTWALL_JWT_ISSUER: 'i', TENANTWALL_JWT_AUDIENCE: 'a', TENANTWALL_BASE_DOMAIN: 'Example.COM' });
  assert.deepEqual(o.resolvers, ['apiKey', 'jwt', 'subdomain']);
  assert.equal(o.baseDomain, 'example.com');
  assert.equal(o.jwt?.tenantClaim, 'tenant_id');
  assert.equal(o.requireCredential, true);
  assert.equal(o.trustTenantHeader, false);
  assert.ok(Object.isFrozen(o));
  // Explicit beats environment.
  assert.equal(resolveFastifyOptions({ tenantCacheTtlMs: 7 }, { TENANTWALL_TENANT_CACHE_TTL_MS: '9' }).tenantCacheTtlMs, 7);
});

test('unsafe or inconsistent JWT and resolver settings are refused at start-up', () => {
  refuses(() => resolveFastifyOptions({ jwtSecret: 'short', jwtIssuer: 'i', jwtAudience: 'a' }, {}), /jwtSecret/);
  refuses(() => resolveFastifyOptions({ jwtSecret: SECRET, jwtAudience: 'a' }, {}), /jwtIssuer/);
  refuses(() => resolveFastifyOptions({ jwtSecret: SECRET, jwtIssuer: 'i' }, {}), /jwtAudience/);
  refuses(() => resolveFastifyOptions({ jwtSecret: SECRET, jwtPublicKey: 'pem', jwtIssuer: 'i', jwtAudience: 'a' }, {}), /jwtSecret/);
  refuses(() => resolveFastifyOptions({ resolvers: ['header'] }, {}), /resolvers/);
  refuses(() => resolveFastifyOptions({ resolvers: ['jwt'] }, {}), /resolvers/);
  refuses(() => resolveFastifyOptions({}, { TENANTWALL_RESOLVERS: 'apiKey,cookie' }), /resolvers/);
  refuses(() => resolveFastifyOptions({ baseDomain: 'not a domain' }, {}), /baseDomain/);
  refuses(() => resolveFastifyOptions({}, { TENANTWALL_TRUST_TENANT_HEADER: 'yes' }), /TENANTWALL_TRUST_TENANT_HEADER/);
});

test('API keys parse only in the exact shape', () => {
  const k = `tw_${'a'.repeat(32)}_${'b'.repeat(32)}_${'c'.repeat(43)}`;
  assert.deepEqual(parseApiKey(k), {
    tenantId: 'aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa',
    keyId: 'bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb',
    secret: 'c'.repeat(43),
  });
  for (const bad of [k + 'c', k.toUpperCase(), k.replace('tw_', 'tx_'), `tw_${'a'.repeat(32)}_${'b'.repeat(32)}`, '']) assert.equal(parseApiKey(bad), undefined, bad);
});

test('TtlCache is bounded (least recently used goes first) and entries expire', async () => {
  const c = new TtlCache<string, number>(2, 50);
  c.set('a', 1);
  c.set('b', 2);
  assert.equal(c.get('a'), 1); // a is now the most recent
  c.set('c', 3);
  assert.equal(c.get('b'), undefined);
  assert.equal(c.get('a'), 1);
  assert.equal(c.size, 2);
  c.deleteWhere((v) => v === 3);
  assert.equal(c.get('c'), undefined);
  await new Promise((r) => setTimeout(r, 70));
  assert.equal(c.get('a'), undefined);
  const off = new TtlCache<string, number>(10, 0);
  off.set('x', 1);
  assert.equal(off.get('x'), undefined);
});
