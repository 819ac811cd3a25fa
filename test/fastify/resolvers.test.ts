import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SignJWT, exportJWK, exportSPKI, generateKeyPair } from 'jose';
import type { FastifyInstance } from 'fastify';
import type { Tenant } from '../../src/index.ts';
import { ApiKeyStore, type CreatedApiKey } from '../../src/fastify/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginApp, pluginMigrations, pluginSchema } from './app.ts';

const SECRET = 'a-test-hs256-secret-that-is-long-enough-0123456789';
const ISS = 'https://issuer.test';
const AUD = 'tenantwall-test';

let t: TestTenantwall;
let a: Tenant;
let b: Tenant;
let keyA: CreatedApiKey;
let keys: ApiKeyStore;

before(async () => {
  t = await createTestTenantwall(pluginSchema, pluginMigrations);
  a = await t.db.tenants.create({ slug: 'alpha', name: 'Alpha' });
  b = await t.db.tenants.create({ slug: 'beta', name: 'Beta' });
  await t.db.forTenant(a.id).query(`INSERT INTO notes (tenant_id, body) VALUES ($1, 'a-note')`, [a.id]);
  await t.db.forTenant(b.id).query(`INSERT INTO notes (tenant_id, body) VALUES ($1, 'b-note')`, [b.id]);
  keys = new ApiKeyStore(t.db);
  keyA = await keys.create(a.id, { name: 'k' });
});
after(async () => {
  await t.close();
});

function hs(claims: Record<string, unknown>, opts: { exp?: string | number; nbf?: string | number; aud?: string; iss?: string; secret?: string } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt().setIssuer(opts.iss ?? ISS).setAudience(opts.aud ?? AUD).setExpirationTime(opts.exp ?? '5m');
  if (opts.nbf !== undefined) jwt.setNotBefore(opts.nbf);
  return jwt.sign(new TextEncoder().encode(opts.secret ?? SECRET));
}

function b64(o: unknown): string {
  return Buffer.from(JSON.stringify(o)).toString('base64url');
}

async function get(app: FastifyInstance, headers: Record<string, string>, url = '/whoami') {
  const r = await app.inject({ method: 'GET', url, headers });
  return { status: r.statusCode, body: r.json() as Record<string, any> };
}

describe('API key resolver', () => {
  let app: FastifyInstance;
  before(async () => ({ app } = await pluginApp(t.db)));
  after(() => app.close());

  test('a valid key runs the handler in its tenant: setting, RLS and explicit predicate all say A', async () => {
    const r = await get(app, { authorization: `Bearer ${keyA.key}` });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, { tenant: a.id, slug: 'alpha', sources: ['apiKey'], setting: a.id, notes: ['a-note'] });
  });

  test('no credentials, malformed header, malformed key, wrong secret, unknown key id -> 401 unauthenticated', async () => {
    const secretTampered = keyA.key.slice(0, -4) + (keyA.key.endsWith('AAAA') ? 'BBBB' : 'AAAA');
    const otherTenantPrefix = keyA.key.replace(a.id.replaceAll('-', ''), b.id.replaceAll('-', ''));
    const unknownId = keyA.key.replace(/_([0-9a-f]{32})_/, (_m, _id) => `_${'0'.repeat(32)}_`);
    const cases: Array<[Record<string, string>, string]> = [
      [{}, 'no_credentials'],
      [{ authorization: 'Basic dXNlcjpwYXNz' }, 'malformed_authorization'],
      [{ authorization: 'Bearer' }, 'malformed_authorization'],
      [{ authorization: 'Bearer tw_nonsense' }, 'malformed_api_key'],
      [{ authorization: `Bearer ${secretTampered}` }, 'invalid_api_key'],
      // The right secret under another tenant's prefix: the lookup runs in B's scope and finds nothing.
      [{ authorization: `Bearer ${otherTenantPrefix}` }, 'invalid_api_key'],
      [{ authorization: `Bearer ${unknownId}` }, 'invalid_api_key'],
      [{ authorization: 'Bearer not-a-key-nor-jwt' }, 'unsupported_token'],
    ];
    for (const [headers, reason] of cases) {
      const r = await get(app, headers);
      assert.equal(r.status, 401, JSON.stringify(headers));
      assert.equal(r.body.error.code, 'unauthenticated');
      assert.equal(r.body.error.details.reason, reason, JSON.stringify(headers));
    }
  });

  test('a revoked key is refused at once, even though it was cached', async () => {
    const k = await keys.create(a.id, { name: 'to-revoke' });
    const store = app.tenantwall.apiKeys;
    // Create through the app's store as well so its cache is the one under test.
    const k2 = await store.create(a.id, { name: 'cached' });
    assert.equal((await get(app, { authorization: `Bearer ${k2.key}` })).status, 200);
    assert.equal(await store.revoke(a.id, k2.id), true);
    const r = await get(app, { authorization: `Bearer ${k2.key}` });
    assert.equal(r.status, 401);
    assert.equal(r.body.error.details.reason, 'revoked_api_key');
    // Revoked through another store (another process): refused once the app has not cached it.
    assert.equal(await keys.revoke(a.id, k.id), true);
    assert.equal((await get(app, { authorization: `Bearer ${k.key}` })).status, 401);
    assert.equal(await store.revoke(b.id, k.id), false, 'B cannot revoke (or see) A key');
  });

  test('routes with config.tenant=false need no credentials; unknown routes answer 404 not_found', async () => {
    assert.deepEqual(await get(app, {}, '/public'), { status: 200, body: { tenant: null } });
    const r = await get(app, {}, '/nope');
    assert.equal(r.status, 404);
    assert.equal(r.body.error.code, 'not_found');
  });

  test('errors: TenantwallError -> its status; unexpected -> 500 internal_error without leaking; validation -> 400 naming the field; oversized -> 413', async () => {
    const auth = { authorization: `Bearer ${keyA.key}` };
    const teapot = await get(app, auth, '/teapot');
    assert.equal(teapot.status, 409);
    assert.equal(teapot.body.error.code, 'tenant_exists');
    const boom = await get(app, auth, '/boom');
    assert.equal(boom.status, 500);
    assert.equal(boom.body.error.code, 'internal_error');
    assert.doesNotMatch(JSON.stringify(boom.body), /secret internal detail/);
    const bad = await app.inject({ method: 'POST', url: '/echo', headers: auth, payload: { n: 1, extra: true } });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'validation_failed');
    assert.equal(bad.json().error.details.field, 'extra');
    const missing = await app.inject({ method: 'POST', url: '/echo', headers: auth, payload: {} });
    assert.equal(missing.json().error.details.field, 'n');
    const big = await app.inject({ method: 'POST', url: '/echo', headers: { ...auth, 'content-type': 'application/json' }, payload: JSON.stringify({ n: 1, pad: 'x'.repeat(5000) }) });
    assert.equal(big.statusCode, 413);
    assert.equal(big.json().error.code, 'payload_too_large');
    const badJson = await app.inject({ method: 'POST', url: '/echo', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"n":' });
    assert.equal(badJson.statusCode, 400);
    assert.equal(badJson.json().error.code, 'invalid_json');
    const media = await app.inject({ method: 'POST', url: '/echo', headers: { ...auth, 'content-type': 'text/xml' }, payload: '<n/>' });
    assert.equal(media.statusCode, 415);
    assert.equal(media.json().error.code, 'unsupported_media_type');
  });
});

describe('JWT resolver (HS256)', () => {
  let app: FastifyInstance;
  before(async () => ({ app } = await pluginApp(t.db, { jwtSecret: SECRET, jwtIssuer: ISS, jwtAudience: AUD })));
  after(() => app.close());

  test('valid token -> its tenant', async () => {
    const r = await get(app, { authorization: `Bearer ${await hs({ tenant_id: b.id, sub: 'user-1' })}` });
    assert.equal(r.status, 200);
    assert.equal(r.body.tenant, b.id);
    assert.deepEqual(r.body.notes, ['b-note']);
  });

  test('expired, not yet valid, wrong signature, wrong audience, wrong issuer, alg none, malformed, bad claim -> 401', async () => {
    const now = Math.floor(Date.now() / 1000);
    const valid = await hs({ tenant_id: a.id });
    const [h, p] = valid.split('.') as [string, string, string];
    const cases: Array<[string, string, string]> = [
      ['expired', await hs({ tenant_id: a.id }, { exp: now - 60 }), 'token_expired'],
      ['nbf in the future', await hs({ tenant_id: a.id }, { nbf: now + 3600 }), 'claim_nbf_invalid'],
      ['wrong signature', await hs({ tenant_id: a.id }, { secret: 'another-secret-that-is-also-long-enough-123456' }), 'signature_invalid'],
      ['wrong audience', await hs({ tenant_id: a.id }, { aud: 'someone-else' }), 'claim_aud_invalid'],
      ['wrong issuer', await hs({ tenant_id: a.id }, { iss: 'https://evil.test' }), 'claim_iss_invalid'],
      ['alg none', `${b64({ alg: 'none', typ: 'JWT' })}.${p}.`, 'algorithm_not_allowed'],
      ['alg none, signature kept', `${b64({ alg: 'none' })}.${p}.${valid.split('.')[2]}`, 'algorithm_not_allowed'],
      ['payload swapped to tenant B', `${h}.${b64({ tenant_id: b.id, iss: ISS, aud: AUD, exp: now + 60 })}.${valid.split('.')[2]}`, 'signature_invalid'],
      ['malformed', 'abc.def.ghi', 'malformed_token'],
      ['no tenant claim', await hs({ sub: 'x' }), 'claim_tenant_id_invalid'],
      ['tenant claim not a uuid', await hs({ tenant_id: 'alpha' }), 'invalid_tenant_claim'],
      ['unknown tenant', await hs({ tenant_id: '00000000-0000-4000-8000-000000000000' }), 'unknown_tenant'],
    ];
    for (const [name, token, reason] of cases) {
      const r = await get(app, { authorization: `Bearer ${token}` });
      assert.equal(r.status, 401, name);
      assert.equal(r.body.error.code, 'unauthenticated', name);
      assert.equal(r.body.error.details.reason, reason, name);
    }
  });
});

describe('JWT resolver (RS256 public key, ES256 JWKS file)', () => {
  test('RS256: valid; HS256 signed with the public key as secret (algorithm confusion) is refused', async () => {
    const { publicKey, privateKey } = await generateKeyPair('RS256');
    const pem = await exportSPKI(publicKey);
    const { app } = await pluginApp(t.db, { jwtPublicKey: pem, jwtIssuer: ISS, jwtAudience: AUD });
    try {
      const ok = await new SignJWT({ tenant_id: a.id }).setProtectedHeader({ alg: 'RS256' }).setIssuer(ISS).setAudience(AUD).setExpirationTime('5m').sign(privateKey);
      assert.equal((await get(app, { authorization: `Bearer ${ok}` })).body.tenant, a.id);
      const confused = await hs({ tenant_id: a.id }, { secret: pem });
      const r = await get(app, { authorization: `Bearer ${confused}` });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.details.reason, 'algorithm_not_allowed');
    } finally {
      await app.close();
    }
  });

  test('ES256 JWKS file: key from the set passes, a key outside the set does not', async () => {
    const { publicKey, privateKey } = await generateKeyPair('ES256');
    const other = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tw-jwks-')), 'jwks.json');
    fs.writeFileSync(file, JSON.stringify({ keys: [jwk] }));
    const { app } = await pluginApp(t.db, { jwtJwksFile: file, jwtIssuer: ISS, jwtAudience: AUD, jwtTenantClaim: 'https://example.test/tenant' });
    try {
      const sign = (key: typeof privateKey) =>
        new SignJWT({ 'https://example.test/tenant': b.id }).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(ISS).setAudience(AUD).setExpirationTime('5m').sign(key);
      assert.equal((await get(app, { authorization: `Bearer ${await sign(privateKey)}` })).body.tenant, b.id);
      const r = await get(app, { authorization: `Bearer ${await sign(other.privateKey)}` });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.details.reason, 'signature_invalid');
    } finally {
      await app.close();
    }
  });
});

describe('subdomain and gateway header resolvers, conflicts', () => {
  test('subdomain identifies the tenant; alone it needs requireCredential=false', async () => {
    const { app } = await pluginApp(t.db, { baseDomain: 'example.test', requireCredential: false });
    try {
      const r = await get(app, { host: 'beta.example.test:8080' });
      assert.equal(r.status, 200);
      assert.equal(r.body.tenant, b.id);
      assert.equal((await get(app, { host: 'nobody.example.test' })).body.error.details.reason, 'unknown_subdomain');
      assert.equal((await get(app, { host: 'a.beta.example.test' })).body.error.details.reason, 'no_credentials');
      assert.equal((await get(app, { host: 'example.test' })).status, 401);
    } finally {
      await app.close();
    }
    const strict = await pluginApp(t.db, { baseDomain: 'example.test' });
    try {
      const r = await get(strict.app, { host: 'beta.example.test' });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.details.reason, 'credential_required');
      // Agreeing sources pass; disagreeing ones are refused with 403.
      assert.equal((await get(strict.app, { host: 'alpha.example.test', authorization: `Bearer ${keyA.key}` })).body.sources.join(), 'apiKey,subdomain');
      const conflict = await get(strict.app, { host: 'beta.example.test', authorization: `Bearer ${keyA.key}` });
      assert.equal(conflict.status, 403);
      assert.equal(conflict.body.error.code, 'tenant_conflict');
    } finally {
      await strict.app.close();
    }
  });

  test('X-Tenant-ID is ignored unless trusted; trusted: valid, malformed, and conflicting with a JWT', async () => {
    const untrusted = await pluginApp(t.db);
    try {
      const r = await get(untrusted.app, { 'x-tenant-id': a.id });
      assert.equal(r.status, 401);
      assert.equal(r.body.error.details.reason, 'no_credentials');
    } finally {
      await untrusted.app.close();
    }
    const { app } = await pluginApp(t.db, { trustTenantHeader: true, jwtSecret: SECRET, jwtIssuer: ISS, jwtAudience: AUD });
    try {
      assert.equal((await get(app, { 'x-tenant-id': a.id })).body.tenant, a.id);
      assert.equal((await get(app, { 'x-tenant-id': 'alpha' })).body.error.details.reason, 'malformed_tenant_header');
      const conflict = await get(app, { 'x-tenant-id': a.id, authorization: `Bearer ${await hs({ tenant_id: b.id })}` });
      assert.equal(conflict.status, 403);
      assert.equal(conflict.body.error.code, 'tenant_conflict');
    } finally {
      await app.close();
    }
  });
});

describe('tenant status, cache and logs', () => {
  test('a suspended tenant gets 403 tenant_suspended at once although it was cached; resumed it works again', async () => {
    const c = await t.db.tenants.create({ slug: 'gamma', name: 'Gamma' });
    const keyC = await keys.create(c.id, { name: 'k' });
    const { app } = await pluginApp(t.db);
    try {
      const auth = { authorization: `Bearer ${keyC.key}` };
      assert.equal((await get(app, auth)).status, 200);
      await t.db.tenants.suspend(c.id);
      const r = await get(app, auth);
      assert.equal(r.status, 403);
      assert.equal(r.body.error.code, 'tenant_suspended');
      await t.db.tenants.resume(c.id);
      assert.equal((await get(app, auth)).status, 200);
    } finally {
      await app.close();
    }
  });

  test('every log line of a tenant request carries the request id and the tenant id', async () => {
    const { app, logs } = await pluginApp(t.db);
    try {
      const r = await app.inject({ method: 'GET', url: '/whoami', headers: { authorization: `Bearer ${keyA.key}` } });
      assert.equal(r.statusCode, 200);
      const lines = logs.filter((l) => l.reqId !== undefined);
      assert.ok(lines.some((l) => l.msg === 'handler ran'));
      assert.ok(lines.some((l) => l.msg === 'request completed'));
      for (const l of lines) {
        assert.ok(typeof l.reqId === 'string', JSON.stringify(l));
        assert.equal(l.tenantId, a.id, JSON.stringify(l));
      }
    } finally {
      await app.close();
    }
  });
});
