import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { superQuery } from '../helpers/db.ts';
import { ADMIN_TOKEN, type ServiceFixture, startService } from './setup.ts';

/**
 * Admin API (issue 16): named admin tokens (hashed at rest, revocable), failed admin authentication
 * rate-limited per client address, reserved slugs, tenant deletion with typed confirmation.
 */
let s: ServiceFixture;
before(async () => {
  s = await startService({ adminAuth: { maxFailures: 5, windowMs: 3_600_000 } });
});
after(() => s.close());

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

test('named admin tokens: shown once, stored as a hash, listed in pages, revoked at once', async () => {
  const alice = await s.admin({ method: 'POST', url: '/admin/tokens', payload: { name: 'alice' } });
  assert.equal(alice.statusCode, 201, alice.body);
  const bob = (await s.admin({ method: 'POST', url: '/admin/tokens', payload: { name: 'bob' } })).json();
  const token = alice.json().token as string;
  assert.match(token, /^twadm_[0-9a-f]{32}_/);
  // Only the hash is stored.
  const stored = await superQuery(s.t.database.name, 'SELECT name, token_hash FROM admin_tokens ORDER BY created_at, id');
  assert.deepEqual(stored.rows.map((r) => r.name), ['alice', 'bob']);
  assert.ok(!JSON.stringify(stored.rows).includes(token.slice(-20)));
  // The application role cannot read the table.
  const appRead = await s.db.dangerouslyRawAppPool().query('SELECT 1 FROM admin_tokens').then(() => 'read', (e: { code?: string }) => e.code);
  assert.equal(appRead, '42501', 'permission denied to the application role');

  const asAlice = await s.app.inject({ method: 'GET', url: '/admin/tenants', headers: bearer(token) });
  assert.equal(asAlice.statusCode, 200, asAlice.body);
  const page1 = (await s.app.inject({ method: 'GET', url: '/admin/tokens?limit=1', headers: bearer(token) })).json();
  assert.deepEqual(page1.data.map((t: { name: string }) => t.name), ['alice']);
  assert.equal(page1.data[0].token, undefined, 'never shown again');
  const page2 = (await s.admin({ method: 'GET', url: `/admin/tokens?limit=1&cursor=${page1.next_cursor}` })).json();
  assert.deepEqual([page2.data.map((t: { name: string }) => t.name), page2.next_cursor], [['bob'], null]);

  assert.equal((await s.admin({ method: 'DELETE', url: `/admin/tokens/${alice.json().id}` })).statusCode, 204);
  const revoked = await s.app.inject({ method: 'GET', url: '/admin/tenants', headers: bearer(token) });
  assert.equal(revoked.statusCode, 401);
  assert.equal(revoked.json().error.code, 'admin_unauthorized');
  assert.equal((await s.app.inject({ method: 'GET', url: '/admin/tenants', headers: bearer(bob.token) })).statusCode, 200, 'other tokens unaffected');
  assert.equal((await s.admin({ method: 'DELETE', url: '/admin/tokens/00000000-0000-4000-8000-000000000000' })).statusCode, 404);
  // A tenant key is never an admin credential.
  assert.equal((await s.app.inject({ method: 'GET', url: '/admin/tokens', headers: bearer(s.a.key) })).statusCode, 401);
});

test('reserved slugs are refused with invalid_slug naming slug', async () => {
  for (const slug of ['www', 'admin', 'api', 'docs']) {
    const r = await s.admin({ method: 'POST', url: '/admin/tenants', payload: { slug, name: slug } });
    assert.equal(r.statusCode, 400, `${slug}: ${r.body}`);
    assert.equal(r.json().error.code, 'invalid_slug');
    assert.equal(r.json().error.details.field, 'slug');
  }
  assert.equal((await s.admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'www2', name: 'fine' } })).statusCode, 201);
});

test('tenant delete needs the slug typed as confirm; then the tenant is gone with its rows', async () => {
  const t = (await s.admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'doomed', name: 'Doomed' } })).json();
  const key = (await s.admin({ method: 'POST', url: `/admin/tenants/${t.id}/api-keys`, payload: { name: 'k' } })).json().key as string;
  assert.equal((await s.app.inject({ method: 'POST', url: '/customers', headers: bearer(key), payload: { name: 'c' } })).statusCode, 201);
  const missing = await s.admin({ method: 'DELETE', url: `/admin/tenants/${t.id}` });
  assert.equal(missing.statusCode, 400);
  assert.equal(missing.json().error.details.field, 'confirm');
  const wrong = await s.admin({ method: 'DELETE', url: `/admin/tenants/${t.id}?confirm=tenant-a` });
  assert.equal(wrong.statusCode, 400);
  assert.equal(wrong.json().error.code, 'confirmation_required');
  assert.equal((await s.app.inject({ method: 'GET', url: '/customers', headers: bearer(key) })).statusCode, 200, 'nothing happened');

  const done = await s.admin({ method: 'DELETE', url: `/admin/tenants/${t.id}?confirm=doomed` });
  assert.equal(done.statusCode, 200, done.body);
  assert.equal(done.json().tenant.status, 'deleted');
  assert.ok(done.json().rows_deleted >= 2, done.body);
  assert.equal((await s.app.inject({ method: 'GET', url: '/customers', headers: bearer(key) })).statusCode, 401);
  const left = await superQuery(s.t.database.name, 'SELECT count(*)::int AS n FROM customers WHERE tenant_id = $1', [t.id]);
  assert.equal(left.rows[0]?.n, 0);
  const again = await s.admin({ method: 'DELETE', url: `/admin/tenants/${t.id}?confirm=doomed` });
  assert.equal(again.json().error.code, 'tenant_deleted');
  // Other tenants are untouched.
  assert.equal((await s.as(s.a, { method: 'GET', url: '/customers' })).statusCode, 200);
});

test('failed admin authentication is rate-limited per client address, right token or not', async () => {
  // Runs last: it locks this client address out (window of an hour, 5 failures).
  const from = (ip: string, token: string) => s.app.inject({ method: 'GET', url: '/admin/tenants', headers: bearer(token), remoteAddress: ip });
  for (let i = 0; i < 5; i++) assert.equal((await from('203.0.113.7', `guess-${i}-0123456789abcdef`)).statusCode, 401);
  const locked = await from('203.0.113.7', ADMIN_TOKEN);
  assert.equal(locked.statusCode, 429, locked.body);
  assert.equal(locked.json().error.code, 'rate_limited');
  assert.ok(Number(locked.headers['retry-after']) > 0);
  assert.equal((await from('203.0.113.8', ADMIN_TOKEN)).statusCode, 200, 'another address is not locked out');
});
