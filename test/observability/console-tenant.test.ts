/**
 * The console's tenant operations in a real browser (Debian's Chromium driven by playwright-core): the usage chart
 * per meter drawn with the tenant's data and redrawn for another range, quota bars against the plan, a webhook
 * delivery replayed (the receiver gets a new attempt), delete refused without the typed slug (in the page and on
 * the server), a move with its progress page that ends, the tenants page's placement and sparkline; the
 * lifecycle_operation_* metrics while a move and an export run. Screenshots under .test-output/console/.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import type { Browser, Page } from 'playwright-core';
import { type Metering, exportTenant, moveTenant, type TenantwallMetrics } from '../../src/index.ts';
import { ADMIN, type ConsoleWorld, OUT, startConsole } from './console-fixture.ts';
import type { TestTenantwall } from '../helpers/db.ts';
import { waitUntil } from '../helpers/wait.ts';
import { startReceiver } from '../webhooks/receiver.ts';

/** uPlot strokes of the meter chart, in meter order (console.js). */
const METER_COLOURS = ['#6b46c1', '#dd6b20'];

let t: TestTenantwall;
let metrics: TenantwallMetrics;
let metering: Metering;
let app: FastifyInstance;
let url: string;
let browser: Browser;

let world: ConsoleWorld;
before(async () => {
  world = await startConsole({ metering: { webhooks: { allowNetworks: ['127.0.0.1'] } }, metricsEndpoint: true });
  ({ t, metrics, metering, app, url, browser } = world);
});
after(() => world?.close());

const tenant = (prefix: string) => t.db.tenants.create({ slug: `${prefix}-${randomUUID().slice(0, 8)}`, name: prefix.toUpperCase() });
const hoursAgo = (h: number) => new Date(Date.now() - h * 3_600_000);
async function usage(tenantId: string, meter: string, at: Date, quantity: number) {
  await t.db.dangerouslyCrossTenant().query('INSERT INTO tw_usage_events (tenant_id, event_id, meter, quantity, occurred_at) VALUES ($1, $2, $3, $4, $5)', [tenantId, randomUUID(), meter, quantity, at]);
}

/** A logged-in page; errors of scripts or the CSP are collected into `errors`. */
async function loggedIn(width = 1280): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width, height: 900 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => m.type() === 'error' && !m.text().includes('status of 4') && errors.push(m.text()));
  await page.goto(`${url}/console/login`);
  await page.fill('input[name=token]', ADMIN);
  await page.click('button:has-text("Log in")');
  await page.waitForURL(/\/console\/$/);
  return { page, errors };
}

/** Pixels of the chart canvas drawn in `hex` (uPlot draws each series in its stroke colour). */
const pixelsOf = (page: Page, selector: string, hex: string) =>
  page.evaluate<number>(`(() => {
    const canvas = document.querySelector(${JSON.stringify(`${selector} canvas`)});
    const { data } = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height);
    const [r, g, b] = [0, 0, 0].map((_, k) => parseInt(${JSON.stringify(hex)}.slice(1 + 2 * k, 3 + 2 * k), 16));
    let n = 0;
    for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i] - r) < 8 && Math.abs(data[i + 1] - g) < 8 && Math.abs(data[i + 2] - b) < 8 && data[i + 3] > 200) n++;
    return n;
  })()`);
type MeterData = { range: string; t: number[]; meters: Array<{ meter: string; values: Array<number | null>; total?: number }> };
const meterData = async (page: Page) => JSON.parse((await page.locator('#meter-data').textContent()) as string) as MeterData;

test('usage chart per meter drawn with the data; another range redraws other data; quota bars against the plan', async () => {
  const a = await tenant('usage');
  const other = await tenant('other');
  // tokens: 100 two hours ago, 1000 three days ago, 5000 twenty days ago; invoices.created: 3 events today.
  await usage(a.id, 'tokens', hoursAgo(2), 100);
  await usage(a.id, 'tokens', hoursAgo(72), 1000);
  await usage(a.id, 'tokens', hoursAgo(480), 5000);
  for (let i = 0; i < 3; i++) await usage(a.id, 'invoices.created', hoursAgo(1), 1);
  await usage(other.id, 'tokens', hoursAgo(2), 777_777); // another tenant's usage never shows
  for (let i = 0; i < 3; i++) assert.equal((await metering.consume(a.id, 'invoices'))?.admitted, true);

  const { page, errors } = await loggedIn();
  await page.goto(`${url}/console/tenants/${a.id}`);
  await page.waitForSelector('#meter-chart[data-drawn=true] canvas');
  const month = await meterData(page);
  assert.equal(month.range, '30d');
  assert.equal(month.t.length, 30);
  assert.deepEqual(month.meters.map((m) => [m.meter, m.total]), [['tokens', 6100], ['invoices.created', 3], ['api_requests', 0]]);
  const tokensMonth = month.meters[0]?.values.filter((v) => v !== 0) ?? [];
  assert.equal(tokensMonth.length, 3, 'three days with tokens in the month');
  assert.ok((await pixelsOf(page, '#meter-chart', METER_COLOURS[0] as string)) > 0, 'the tokens series is drawn on the canvas');
  assert.ok((await pixelsOf(page, '#meter-chart', METER_COLOURS[1] as string)) > 0, 'the invoices series is drawn on the canvas');
  assert.equal(await page.locator('#meter-totals td[data-meter="tokens"]').innerText(), '6100');
  // Quota bar: the plan's limit (free: 5) and the quota's use (3).
  const bar = page.locator('#quota-invoices');
  assert.equal(await page.locator('#plan').innerText(), 'free');
  assert.equal(await bar.getAttribute('max'), '5');
  assert.equal(await bar.getAttribute('value'), '3');
  await page.screenshot({ path: path.join(OUT, 'tenant-usage-30d.png'), fullPage: true });

  // Keyboard only: focus the range picker, choose the last 24 hours, submit.
  await page.focus('#range');
  await page.selectOption('#range', '24h');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Enter');
  await page.waitForURL(/range=24h/);
  await page.waitForSelector('#meter-chart[data-drawn=true] canvas');
  const day = await meterData(page);
  assert.equal(day.t.length, 24);
  assert.deepEqual(day.meters.map((m) => [m.meter, m.total]), [['tokens', 100], ['invoices.created', 3], ['api_requests', 0]]);
  assert.notDeepEqual(day.t, month.t);
  assert.ok((await pixelsOf(page, '#meter-chart', METER_COLOURS[0] as string)) > 0);
  await page.screenshot({ path: path.join(OUT, 'tenant-usage-24h.png'), fullPage: true });

  // Another plan: the bar's maximum follows it.
  await metering.setPlan(a.id, 'pro');
  await page.reload();
  assert.equal(await page.locator('#plan').innerText(), 'pro');
  assert.equal(await bar.getAttribute('max'), '50');
  assert.equal(await bar.getAttribute('value'), '3');
  assert.ok(!(await page.content()).includes('777777'), "no other tenant's usage on the page");
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await page.waitForSelector('#meter-chart[data-drawn=true] canvas');
  const overflow = await page.evaluate<number>('document.documentElement.scrollWidth - document.documentElement.clientWidth');
  assert.ok(overflow <= 0, `the page fits a phone width (overflow ${overflow}px)`);
  await page.screenshot({ path: path.join(OUT, 'tenant-usage-phone.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('replaying a webhook delivery from the console makes a new delivery attempt', async () => {
  const receiver = await startReceiver();
  try {
    const a = await tenant('hooks');
    await metering.webhooks.addEndpoint({ url: receiver.url, tenantId: a.id });
    await metering.setPlan(a.id, 'pro'); // a plan.changed event in the tenant's outbox
    const relay = metering.webhooks.relay();
    await waitUntil(async () => (await relay.runOnce(), receiver.received.length >= 1), 'the first delivery');
    const webhookId = String(receiver.received[0]?.headers['webhook-id']);

    const { page, errors } = await loggedIn();
    await page.goto(`${url}/console/tenants/${a.id}`);
    const row = page.locator(`#deliveries tr[data-webhook-id="${webhookId}"]`);
    assert.equal(await row.locator('.status').innerText(), 'delivered');
    await page.screenshot({ path: path.join(OUT, 'tenant-deliveries.png'), fullPage: true });
    await row.locator('button:has-text("Replay")').click();
    await page.waitForSelector('#replayed');
    assert.match(await page.locator('#replayed').innerText(), /^1 delivery/);
    assert.equal(await row.locator('.status').innerText(), 'pending');
    await waitUntil(async () => (await relay.runOnce(), receiver.received.length >= 2), 'the replayed delivery');
    assert.equal(receiver.received.length, 2, 'one new attempt');
    assert.equal(String(receiver.received[1]?.headers['webhook-id']), webhookId, 'the same event, delivered again');
    await page.reload();
    assert.equal(await row.locator('.status').innerText(), 'delivered');
    assert.equal(await row.locator('.attempts').innerText(), '1', 'a fresh attempt budget, one attempt used');
    assert.deepEqual(errors, []);
    await page.close();
  } finally {
    await receiver.close();
  }
});

async function session(): Promise<{ cookie: string; csrf: string }> {
  const login = await app.inject({ method: 'POST', url: '/console/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${ADMIN}` });
  const cookie = `tw_console=${(/tw_console=([^;]+)/.exec(String(login.headers['set-cookie'])) as RegExpExecArray)[1]}`;
  const home = await app.inject({ url: '/console/', headers: { cookie } });
  return { cookie, csrf: (/name="_csrf" value="([^"]+)"/.exec(home.body) as RegExpExecArray)[1] as string };
}

test('delete needs the typed slug: the page keeps the button disabled and the server refuses a wrong one', async () => {
  const a = await tenant('doomed');
  await t.db.dangerouslyCrossTenant().query('INSERT INTO invoices (tenant_id, customer) SELECT $1, $2 FROM generate_series(1, 10)', [a.id, 'x']);
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const { cookie, csrf } = await session();
  for (const payload of [`_csrf=${csrf}`, `_csrf=${csrf}&confirm=`, `_csrf=${csrf}&confirm=${a.slug}x`, `_csrf=${csrf}&confirm=${a.slug.toUpperCase()}`, `_csrf=${csrf}&confirm=${a.id}`]) {
    const r = await app.inject({ method: 'POST', url: `/console/tenants/${a.id}/delete`, headers: { ...form, cookie }, payload });
    assert.equal(r.statusCode, 400, payload);
    assert.equal(r.json().error.code, 'confirmation_required');
  }
  // Without the CSRF token or the session, even with the right slug: refused.
  assert.equal((await app.inject({ method: 'POST', url: `/console/tenants/${a.id}/delete`, headers: { ...form, cookie }, payload: `confirm=${a.slug}` })).statusCode, 403);
  assert.equal((await app.inject({ method: 'POST', url: `/console/tenants/${a.id}/delete`, headers: form, payload: `_csrf=${csrf}&confirm=${a.slug}` })).statusCode, 401);
  assert.equal((await t.db.tenants.get(a.id))?.status, 'active', 'nothing was deleted');

  const { page, errors } = await loggedIn();
  await page.goto(`${url}/console/tenants/${a.id}`);
  const button = page.locator('#delete-button');
  assert.equal(await button.isDisabled(), true);
  await page.fill('input[name=confirm]', `${a.slug}-wrong`);
  assert.equal(await button.isDisabled(), true, 'a wrong slug keeps it disabled');
  // A browser whose script did not run posts it anyway: the server's refusal is a page saying why.
  await page.evaluate("document.getElementById('delete-button').disabled = false");
  await button.click();
  await page.waitForSelector('#error');
  assert.match(await page.locator('#error').innerText(), /confirmation_required/);
  await page.screenshot({ path: path.join(OUT, 'delete-refused.png'), fullPage: true });
  assert.equal((await t.db.tenants.get(a.id))?.status, 'active');

  await page.goto(`${url}/console/tenants/${a.id}`);
  await page.fill('input[name=confirm]', a.slug);
  assert.equal(await button.isDisabled(), false);
  await button.click();
  await page.waitForURL(/\/console\/operations\//);
  await page.waitForSelector('#operation[data-status=succeeded]');
  assert.match(await page.locator('#op-result').innerText(), /"rowsDeleted": 10/);
  assert.equal((await t.db.tenants.get(a.id))?.status, 'deleted');
  assert.deepEqual(errors.filter((e) => !e.includes('400')), []);
  await page.close();
});

test('a move from the console shows its progress and ends; the tenants page shows placement and activity', async () => {
  const a = await tenant('mover');
  await t.db.dangerouslyCrossTenant().query('INSERT INTO invoices (tenant_id, customer) SELECT $1, $2 || g FROM generate_series(1, 3000) g', [a.id, 'c']);
  for (let i = 0; i < 5; i++) await t.db.forTenant(a.id).query('SELECT count(*) FROM invoices WHERE tenant_id = $1', [a.id]);
  const { page, errors } = await loggedIn();
  await page.fill('input[name=q]', a.slug);
  await page.click('button:has-text("Find")');
  const row = page.locator('tbody tr', { hasText: a.slug });
  assert.equal(await row.locator('.placement').innerText(), 'shared');
  // The sparkline is drawn from the activity window: 5 statements, so not a flat line at the bottom.
  const points = (await row.locator('svg.spark polyline').getAttribute('points')) as string;
  const ys = points.split(' ').map((p) => Number(p.split(',')[1]));
  assert.ok(Math.min(...ys) < Math.max(...ys) || Math.max(...ys) < 19, `the sparkline has the activity (${points})`);
  await page.screenshot({ path: path.join(OUT, 'tenants-placement.png'), fullPage: true });

  await row.locator('a').click();
  await page.click('button:has-text("Move to dedicated")');
  await page.waitForURL(/\/console\/operations\//);
  await page.screenshot({ path: path.join(OUT, 'move-progress.png'), fullPage: true });
  // The page follows the operation (console.js polls its status) and shows the end when it comes.
  await page.waitForSelector('#operation[data-status=succeeded]', { timeout: 120_000 });
  const status = (await (await page.request.get(`${page.url()}/status`)).json()) as { status: string; reports: number; progress: { phase: string; done: number; total: number }; result: { rows: number } };
  assert.equal(status.status, 'succeeded');
  assert.ok(status.reports >= 3, `progress was reported (${status.reports} reports)`);
  assert.deepEqual([status.progress.phase, status.progress.done], ['switch', status.progress.total]);
  assert.equal(status.result.rows, 3000);
  const bar = page.locator('#op-progress');
  assert.equal(await bar.getAttribute('value'), await bar.getAttribute('max'), 'the bar is full');
  await page.screenshot({ path: path.join(OUT, 'move-done.png'), fullPage: true });
  await page.click('a:has-text("Back to")');
  assert.equal(await page.locator('#placement').innerText(), 'dedicated');
  const scrape = await app.inject({ url: '/metrics', headers: { authorization: `Bearer ${ADMIN}` } });
  assert.match(scrape.body, /lifecycle_operations_total\{operation="move",outcome="succeeded"\} 1/);
  assert.match(scrape.body, /lifecycle_operations_running 0|lifecycle_operations_running\{[^}]*\} 0|# TYPE tenantwall_lifecycle_operations_running gauge\n(?!tenantwall_lifecycle_operations_running\{)/);

  // Export: its files are downloadable with the session only.
  await page.click('button:has-text("Export")');
  await page.waitForSelector('#operation[data-status=succeeded]', { timeout: 120_000 });
  const link = page.locator('#op-files a', { hasText: 'invoices' });
  const href = (await link.getAttribute('href')) as string;
  const file = await page.request.get(`${url}${href}`);
  assert.equal(file.status(), 200);
  assert.equal((await file.text()).trim().split('\n').length, 3000);
  assert.equal((await fetch(`${url}${href}`)).status, 401, 'no download without the session');
  assert.equal((await fetch(`${url}${href.replace(/\/files\/.*/, '/status')}`)).status, 401, 'no status without the session');
  await page.screenshot({ path: path.join(OUT, 'export-done.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('lifecycle_operation_* metrics while a move and an export run, removed when they end', async () => {
  const a = await tenant('metered-move');
  await t.db.dangerouslyCrossTenant().query('INSERT INTO invoices (tenant_id, customer) SELECT $1, $2 FROM generate_series(1, 12000) g', [a.id, 'c']);
  for (const [operation, run] of [
    ['move', (onProgress: (p: import('../../src/index.ts').Progress) => void) => moveTenant(t.db, a.id, 'dedicated', { onProgress, batchSize: 1000 })],
    ['export', (onProgress: (p: import('../../src/index.ts').Progress) => void) => exportTenant(t.db, a.id, { dir: fs.mkdtempSync(path.join(OUT, 'export-')), onProgress, batchSize: 1000 })],
  ] as const) {
    const op = metrics.trackOperation(operation, a.id);
    // metrics() reads the gauges synchronously when called: a scrape taken inside the listener sees the
    // operation exactly as it stands at that report.
    const scrapes: Array<Promise<string>> = [];
    await run((p) => {
      op.onProgress(p);
      if (p.table === 'invoices' && p.done === 5000) scrapes.push(metrics.metrics());
    });
    const during = await scrapes[0];
    assert.ok(during, `a scrape at 5000 rows of the ${operation}`);
    assert.match(during, new RegExp(`lifecycle_operations_running\\{operation="${operation}"\\} 1`));
    const phase = operation === 'move' ? 'copy' : 'rows';
    assert.match(during, new RegExp(`lifecycle_operation_done\\{operation="${operation}",tenant="${a.id}",phase="${phase}"\\} 5000`));
    assert.match(during, new RegExp(`lifecycle_operation_total\\{operation="${operation}",tenant="${a.id}",phase="${phase}"\\} 12000`));
    const before = /lifecycle_operations_total\{operation="(\w+)",outcome="succeeded"\} (\d+)/g;
    const count = (text: string) => Number([...text.matchAll(before)].find((m) => m[1] === operation)?.[2] ?? 0);
    const was = count(during);
    op.end('succeeded');
    const afterEnd = await metrics.metrics();
    assert.doesNotMatch(afterEnd, new RegExp(`lifecycle_operation_done\\{operation="${operation}",tenant="${a.id}"`), 'no series once it ended');
    assert.doesNotMatch(afterEnd, new RegExp(`lifecycle_operations_running\\{operation="${operation}"\\} 1`));
    assert.equal(count(afterEnd), was + 1);
  }
});

test('the new pages and actions need the admin session (a tenant API key never opens them) and the CSRF token', async () => {
  const a = await tenant('guarded');
  const { key } = await app.tenantwall.apiKeys.create(a.id, { name: 'k' });
  const form = { 'content-type': 'application/x-www-form-urlencoded' };
  const { cookie, csrf } = await session();
  // An operation to point the read routes at.
  const exp = await app.inject({ method: 'POST', url: `/console/tenants/${a.id}/export`, headers: { ...form, cookie }, payload: `_csrf=${csrf}` });
  assert.equal(exp.statusCode, 303);
  const opUrl = exp.headers.location as string;
  await waitUntil(async () => (await app.inject({ url: `${opUrl}/status`, headers: { cookie } })).json().status !== 'running', 'the export');
  for (const u of [`/console/tenants/${a.id}?range=24h`, opUrl, '/console/?q=guarded&status=all']) {
    for (const headers of [{}, { authorization: `Bearer ${key}`, cookie: `tw_console=${key}` }, { authorization: `Bearer ${ADMIN}` }]) {
      const r = await app.inject({ url: u, headers });
      assert.equal(r.statusCode, 303, `${u} ${JSON.stringify(headers)}`);
      assert.equal(r.headers.location, '/console/login');
    }
  }
  for (const u of [`${opUrl}/status`, `${opUrl}/files/manifest.json`]) {
    assert.equal((await app.inject({ url: u, headers: { authorization: `Bearer ${key}`, cookie: `tw_console=${key}` } })).statusCode, 401, u);
    assert.equal((await app.inject({ url: u, headers: { cookie } })).statusCode, 200, `${u} with the session`);
  }
  const actions: Array<[string, string]> = [
    [`/console/tenants/${a.id}/move`, 'to=dedicated'],
    [`/console/tenants/${a.id}/export`, ''],
    [`/console/tenants/${a.id}/delete`, `confirm=${a.slug}`],
    [`/console/tenants/${a.id}/webhooks/replay`, `event=x&endpoint=${randomUUID()}`],
  ];
  for (const [u, body] of actions) {
    const noSession = await app.inject({ method: 'POST', url: u, headers: { ...form, cookie: `tw_console=${key}` }, payload: `_csrf=${csrf}&${body}` });
    assert.equal(noSession.statusCode, 401, `${u} without a session`);
    for (const token of ['', `${csrf.slice(0, -1)}${csrf.endsWith('x') ? 'y' : 'x'}`]) {
      const r = await app.inject({ method: 'POST', url: u, headers: { ...form, cookie }, payload: `_csrf=${token}&${body}` });
      assert.equal(r.statusCode, 403, `${u} with CSRF ${JSON.stringify(token)}`);
      assert.equal(r.json().error.code, 'csrf_token_invalid');
    }
  }
  const tenantNow = await t.db.tenants.get(a.id);
  assert.equal(tenantNow?.status, 'active', 'nothing was deleted');
  const placement = await app.inject({ url: `/console/tenants/${a.id}`, headers: { cookie } });
  assert.match(placement.body, /<span id="placement">shared<\/span>/, 'nothing was moved');
});
