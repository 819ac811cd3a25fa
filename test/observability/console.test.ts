/**
 * The operator console in a real browser (Debian's Chromium driven by playwright-core): log in, find a tenant,
 * its activity chart drawn on the canvas, revoke a key and the API answers 401, suspend and requests get 403;
 * a screenshot of each page under .test-output/console/. Security: no page or action without the admin
 * session, a tenant API key never opens it, the CSRF token is required, CSP and security headers are set.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import { createGuard, createMetrics, runAudit, runVerify, type TenantwallMetrics } from '../../src/index.ts';
import { consolePlugin, observabilityPlugin } from '../../src/fastify/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginApp, pluginMigrations, pluginSchema } from '../fastify/app.ts';

const ADMIN = 'console-admin-token-0123456789';
const OUT = path.resolve(import.meta.dirname, '../../.test-output/console');
let t: TestTenantwall;
let metrics: TenantwallMetrics;
let app: FastifyInstance;
let url: string;

before(async () => {
  fs.mkdirSync(OUT, { recursive: true });
  t = await createTestTenantwall(pluginSchema, pluginMigrations, { guard: createGuard(pluginSchema) });
  metrics = createMetrics({ db: t.db, processMetrics: false });
  ({ app } = await pluginApp(t.db, {}, async (a) => {
    await a.register(observabilityPlugin, { metrics, adminToken: ADMIN });
    const databaseUrl = t.db.options.databaseUrl as string;
    const app = new URL(databaseUrl);
    app.username = t.db.options.appRole;
    app.password = t.db.options.appPassword ?? '';
    const isolation = {
      audit: () => runAudit({ databaseUrl, appRole: t.db.options.appRole }),
      verify: (x: string, y: string) => runVerify({ databaseUrl, appDatabaseUrl: t.db.options.appDatabaseUrl ?? app.toString(), appRole: t.db.options.appRole, tenants: [x, y] }),
    };
    await a.register(consolePlugin, { db: t.db, adminToken: ADMIN, metrics, isolation });
    a.get('/obs/notes', async () => {
      const { rows } = await t.db.query<{ body: string }>('SELECT body FROM notes WHERE tenant_id = $1', [t.db.currentTenantId()]);
      return { notes: rows.length };
    });
  }));
  url = await app.listen({ host: '127.0.0.1', port: 0 });
});
after(async () => {
  metrics.close();
  await app.close();
  await t.close();
});

async function tenantWithKeys(prefix: string) {
  const tenant = await t.db.tenants.create({ slug: `${prefix}-${randomUUID().slice(0, 8)}`, name: prefix.toUpperCase() });
  const k1 = await app.tenantwall.apiKeys.create(tenant.id, { name: 'first' });
  const k2 = await app.tenantwall.apiKeys.create(tenant.id, { name: 'second' });
  return { tenant, k1, k2 };
}

const api = (key: string) => fetch(`${url}/obs/notes`, { headers: { authorization: `Bearer ${key}` } }).then((r) => r.status);

test('in Chromium: log in, find a tenant, see its chart drawn, revoke a key (401), suspend (403)', async () => {
  const { tenant, k1, k2 } = await tenantWithKeys('browser');
  await tenantWithKeys('decoy');
  for (let i = 0; i < 5; i++) assert.equal(await api(k1.key), 200);
  const browser: Browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
    await page.goto(`${url}/console/`);
    assert.match(page.url(), /\/console\/login$/);
    await page.screenshot({ path: path.join(OUT, 'login.png') });
    await page.fill('input[name=token]', ADMIN);
    await page.click('button:has-text("Log in")');
    await page.waitForURL(/\/console\/$/);
    await page.fill('input[name=q]', 'browser');
    await page.click('button:has-text("Find")');
    await page.waitForSelector(`a:has-text("${tenant.slug}")`);
    assert.equal(await page.locator('tbody tr').count(), 1, 'the search finds exactly the tenant');
    await page.screenshot({ path: path.join(OUT, 'tenants.png') });
    await page.click(`a:has-text("${tenant.slug}")`);
    await page.waitForSelector('#usage-chart canvas');
    // The requests series is drawn in #2b6cb0: its pixels are on the canvas only when there is data to draw.
    const drawn = await page.evaluate<number>(`(() => {
      const canvas = document.querySelector('#usage-chart canvas');
      const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - 0x2b) < 8 && Math.abs(data[i + 1] - 0x6c) < 8 && Math.abs(data[i + 2] - 0xb0) < 8) n++;
      return n;
    })()`);
    assert.ok(drawn > 0, 'the chart canvas has the requests series drawn');
    await page.screenshot({ path: path.join(OUT, 'tenant.png'), fullPage: true });

    await page.click('button:has-text("Revoke first")');
    await page.waitForSelector('text=revoked');
    assert.equal(await api(k1.key), 401, 'the revoked key is refused');
    assert.equal(await api(k2.key), 200);

    await page.click('button:has-text("Suspend")');
    await page.waitForSelector('#status:has-text("suspended")');
    assert.equal(await api(k2.key), 403, 'a suspended tenant is refused');
    await page.screenshot({ path: path.join(OUT, 'suspended.png'), fullPage: true });
    await page.click('button:has-text("Resume")');
    await page.waitForSelector('#status:has-text("active")');
    assert.equal(await api(k2.key), 200);

    await page.goto(`${url}/console/top`);
    await page.waitForSelector('h1:has-text("Noisy neighbours")');
    assert.ok((await page.content()).includes(tenant.id));
    await page.screenshot({ path: path.join(OUT, 'top.png'), fullPage: true });
    await page.goto(`${url}/console/isolation`);
    await page.click('button:has-text("Run audit")');
    await page.waitForSelector('#audit-report', { timeout: 120_000 });
    await page.click('button:has-text("Run verify")');
    await page.waitForSelector('#verify-report', { timeout: 120_000 });
    assert.match(await page.locator('#verify-report').innerText(), /0 finding\(s\)/);
    await page.screenshot({ path: path.join(OUT, 'isolation.png'), fullPage: true });
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(`${url}/console/tenants/${tenant.id}`);
    await page.screenshot({ path: path.join(OUT, 'tenant-phone.png'), fullPage: true });
    assert.deepEqual(errors, [], 'no script or CSP error in the page');
  } finally {
    await browser.close();
  }
});

test('no console page or action without the admin session; API keys never open it; CSRF required; headers', async () => {
  const { tenant, k1 } = await tenantWithKeys('sec');
  const action = `/console/tenants/${tenant.id}/suspend`;
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  for (const u of ['/console/', `/console/tenants/${tenant.id}`, '/console/top']) {
    const r = await app.inject({ url: u });
    assert.equal(r.statusCode, 303, u);
    assert.equal(r.headers.location, '/console/login');
    const withKey = await app.inject({ url: u, headers: { authorization: `Bearer ${k1.key}`, cookie: `tw_console=${k1.key}` } });
    assert.equal(withKey.statusCode, 303, `${u} with a tenant API key`);
    const withAdminBearer = await app.inject({ url: u, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(withAdminBearer.statusCode, 303, `${u}: the bearer token is not a session`);
  }
  assert.equal((await app.inject({ method: 'POST', url: action, headers: form, payload: '_csrf=x' })).statusCode, 401);
  const badLogin = await app.inject({ method: 'POST', url: '/console/login', headers: form, payload: `token=${encodeURIComponent(k1.key)}` });
  assert.equal(badLogin.statusCode, 401, 'a tenant API key is not the admin token');
  assert.equal(badLogin.headers['set-cookie'], undefined);

  const login = await app.inject({ method: 'POST', url: '/console/login', headers: form, payload: `token=${ADMIN}` });
  assert.equal(login.statusCode, 303);
  const cookie = String(login.headers['set-cookie']);
  assert.match(cookie, /HttpOnly/);
  assert.match(cookie, /SameSite=Strict/);
  const session = (/tw_console=([^;]+)/.exec(cookie) as RegExpExecArray)[1] as string;
  const pageRes = await app.inject({ url: `/console/tenants/${tenant.id}`, headers: { cookie: `tw_console=${session}` } });
  assert.equal(pageRes.statusCode, 200);
  assert.match(String(pageRes.headers['content-security-policy']), /script-src 'self'/);
  assert.equal(pageRes.headers['x-frame-options'], 'SAMEORIGIN');
  assert.equal(pageRes.headers['x-content-type-options'], 'nosniff');
  assert.doesNotMatch(pageRes.body, /https?:\/\/(?!127\.0\.0\.1)/, 'no asset from another origin');
  const csrf = (/name="_csrf" value="([^"]+)"/.exec(pageRes.body) as RegExpExecArray)[1] as string;
  for (const payload of ['', '_csrf=', `_csrf=${csrf.slice(0, -1)}${csrf.endsWith('x') ? 'y' : 'x'}`]) {
    const r = await app.inject({ method: 'POST', url: action, headers: { ...form, cookie: `tw_console=${session}` }, payload });
    assert.equal(r.statusCode, 403, `CSRF ${JSON.stringify(payload)}`);
    assert.equal(r.json().error.code, 'csrf_token_invalid');
  }
  assert.equal((await t.db.tenants.get(tenant.id))?.status, 'active', 'nothing happened without the CSRF token');
  const ok = await app.inject({ method: 'POST', url: action, headers: { ...form, cookie: `tw_console=${session}` }, payload: `_csrf=${csrf}` });
  assert.equal(ok.statusCode, 303);
  assert.equal((await t.db.tenants.get(tenant.id))?.status, 'suspended');
  // Logged out: the session no longer opens anything.
  await app.inject({ method: 'POST', url: '/console/logout', headers: { ...form, cookie: `tw_console=${session}` }, payload: `_csrf=${csrf}` });
  assert.equal((await app.inject({ url: '/console/', headers: { cookie: `tw_console=${session}` } })).statusCode, 303);
});
