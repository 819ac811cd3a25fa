/**
 * The reference service serves /metrics by default, behind its admin auth: the per-tenant series of its
 * requests are there, a tenant API key never opens it.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type ServiceFixture, startService } from '../service/setup.ts';

let s: ServiceFixture;
before(async () => {
  s = await startService();
});
after(async () => s.close());

test('the service answers /metrics to the admin token only, with the series of its tenants', async () => {
  for (let i = 0; i < 3; i++) assert.equal((await s.as(s.a, { url: '/invoices' })).statusCode, 200);
  assert.equal((await s.as(s.b, { url: '/invoices' })).statusCode, 200);
  assert.equal((await s.app.inject({ url: '/metrics' })).statusCode, 401);
  assert.equal((await s.as(s.a, { url: '/metrics' })).statusCode, 401);
  assert.equal((await s.as(s.a, { url: '/admin/observability/top' })).statusCode, 401);
  const res = await s.admin({ url: '/metrics' });
  assert.equal(res.statusCode, 200);
  const line = (tenant: string) => new RegExp(`^tenantwall_http_requests_total\\{tenant="${tenant}",method="GET",route="/invoices",status_class="2xx"\\} (\\d+)$`, 'm');
  assert.equal(Number(line(s.a.id).exec(res.body)?.[1]), 3);
  assert.equal(Number(line(s.b.id).exec(res.body)?.[1]), 1);
  assert.match(res.body, /^tenantwall_db_statements_total\{tenant="[0-9a-f-]{36}",outcome="ok"\} \d+$/m);
  assert.match(res.body, /^tenantwall_pool_connections\{pool="app",state="max"\} \d+$/m);
  const top = await s.admin({ url: '/admin/observability/top?by=requests' });
  assert.equal(top.statusCode, 200);
  assert.equal(top.json().tenants[0].tenantId, s.a.id);
});

test('the service mounts the console at /console: admin-token login only', async () => {
  // Its own instance: the console's HTML pages are not operations of the OpenAPI document the fixture checks.
  const { buildApp } = await import('../../examples/invoicing-service/src/app.ts');
  const { ADMIN_TOKEN } = await import('../service/setup.ts');
  const app = await buildApp({ db: s.db, adminToken: ADMIN_TOKEN });
  try {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    assert.equal((await app.inject({ url: '/console/' })).statusCode, 303);
    assert.equal((await app.inject({ method: 'POST', url: '/console/login', headers: form, payload: `token=${encodeURIComponent(s.a.key)}` })).statusCode, 401);
    const login = await app.inject({ method: 'POST', url: '/console/login', headers: form, payload: `token=${ADMIN_TOKEN}` });
    assert.equal(login.statusCode, 303);
    const cookie = (/tw_console=[^;]+/.exec(String(login.headers['set-cookie'])) as RegExpExecArray)[0];
    const page = await app.inject({ url: `/console/tenants/${s.a.id}`, headers: { cookie } });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, new RegExp(s.a.slug));
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
    // The API's answers carry the security headers the service asks the tenantwall plugin for (securityHeaders).
    assert.equal((await app.inject({ url: '/healthz' })).headers['x-content-type-options'], 'nosniff');
  } finally {
    await app.close();
  }
});
