/**
 * A tenant page with a month of usage among 10,000 tenants, in Chromium: seeds the tenants with one
 * INSERT ... SELECT generate_series, a month of usage for the tenant viewed (one event per meter every 2 minutes)
 * and some for every other tenant, then loads the page and records, from the browser's own navigation timing, the
 * time to the drawn usage chart (and the tenants page). No timing assertion (the figure depends on the machine):
 * the figures and the EXPLAIN of the page's queries go to the test output (.test-output/console/render-10k.json,
 * explain-10k.txt) and docs/observability.md. What is asserted: the page shows the right data, and the queries
 * are bounded (the usage query reads the tenant's rows through its index, the tenants page stops at its LIMIT).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Browser } from 'playwright-core';
import { quoteIdent } from '../../src/index.ts';
import type { TestTenantwall } from '../helpers/db.ts';
import { TEST_TENANT_KEY } from '../helpers/tenant-key.ts';
import { ADMIN, type ConsoleWorld, OUT, startConsole } from './console-fixture.ts';

const TENANTS = 10_000;
let t: TestTenantwall;
let url: string;
let browser: Browser;

let world: ConsoleWorld;
before(async () => {
  world = await startConsole();
  ({ t, url, browser } = world);
});
after(() => world?.close());

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;

test('a tenant page with a month of usage among 10,000 tenants: render time recorded, queries bounded', async (ctx) => {
  const owner = t.db.dangerouslyCrossTenant();
  const registry = quoteIdent(t.db.schema.registryTable);
  const id = TEST_TENANT_KEY === 'bigint' ? `(1000000 + g)::bigint` : TEST_TENANT_KEY === 'text' ? `'bulk-' || g || '.test'` : 'gen_random_uuid()';
  await owner.query(`INSERT INTO ${registry} (id, slug, name) SELECT ${id}, 'bulk-' || lpad(g::text, 5, '0'), 'Bulk tenant ' || g FROM generate_series(1, ${TENANTS}) g`);
  const viewed = await t.db.tenants.getBySlug('bulk-04321');
  assert.ok(viewed);
  // A month for the viewed tenant: tokens and invoices.created every 2 minutes (43,200 events); 20 events for
  // every other tenant (200,000), so its rows are a minority of the table, as on a real service.
  await owner.query(
    `INSERT INTO tw_usage_events (tenant_id, event_id, meter, quantity, occurred_at)
     SELECT $1, m || '-' || g, m, 1 + g % 7, now() - interval '30 days' + g * interval '2 minutes'
       FROM generate_series(1, 21599) g, unnest(ARRAY['tokens', 'invoices.created']) m`,
    [viewed.id],
  );
  await owner.query(
    `INSERT INTO tw_usage_events (tenant_id, event_id, meter, quantity, occurred_at)
     SELECT r.id, 'bg-' || g, 'tokens', 3, now() - g * interval '36 hours' FROM ${registry} r, generate_series(1, 20) g WHERE r.id <> $1`,
    [viewed.id],
  );
  await owner.query('ANALYZE tw_usage_events');
  await owner.query(`ANALYZE ${registry}`);
  const { rows: counts } = await owner.query<{ tenants: number; events: number; mine: number }>(
    `SELECT (SELECT count(*)::int FROM ${registry}) AS tenants, (SELECT count(*)::int FROM tw_usage_events) AS events, (SELECT count(*)::int FROM tw_usage_events WHERE tenant_id = $1) AS mine`,
    [viewed.id],
  );
  assert.ok((counts[0]?.tenants ?? 0) >= TENANTS);

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await page.goto(`${url}/console/login`);
  await page.fill('input[name=token]', ADMIN);
  await page.click('button:has-text("Log in")');
  await page.waitForURL(/\/console\/$/);
  const timing = `(() => {
    const n = performance.getEntriesByType('navigation')[0];
    const m = performance.getEntriesByName('tw-meter-chart-drawn')[0];
    return { responseStart: n.responseStart, responseEnd: n.responseEnd, domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd, chartDrawn: m ? m.startTime : null };
  })()`;
  type Timing = { responseStart: number; responseEnd: number; domContentLoaded: number; load: number; chartDrawn: number | null };
  const runs: Timing[] = [];
  for (let i = 0; i < 6; i++) {
    await page.goto(`${url}/console/tenants/${viewed.id}`);
    await page.waitForSelector('#meter-chart[data-drawn=true] canvas');
    await page.waitForFunction('performance.getEntriesByType("navigation")[0].loadEventEnd > 0');
    runs.push(await page.evaluate<Timing>(timing));
  }
  const data = JSON.parse((await page.locator('#meter-data').textContent()) as string) as { t: number[]; meters: Array<{ meter: string; total: number }> };
  assert.equal(data.t.length, 30);
  const { rows: truth } = await owner.query<{ meter: string; total: number }>(
    `SELECT meter, sum(quantity)::float8 AS total FROM tw_usage_events WHERE tenant_id = $1 AND meter = 'tokens' AND occurred_at >= date_trunc('day', now(), 'UTC') - interval '29 days' GROUP BY meter`,
    [viewed.id],
  );
  assert.equal(data.meters.find((m) => m.meter === 'tokens')?.total, truth[0]?.total, 'the chart holds the month of the tenant');
  await page.screenshot({ path: path.join(OUT, 'tenant-10k.png'), fullPage: true });
  const warm = runs.slice(1); // the first load also compiles the page's script and fills caches
  const tenantPage = { serverMs: median(warm.map((r) => r.responseStart)), htmlMs: median(warm.map((r) => r.responseEnd)), chartDrawnMs: median(warm.map((r) => r.chartDrawn ?? NaN)), loadMs: median(warm.map((r) => r.load)), firstLoadChartMs: runs[0]?.chartDrawn };

  const list: number[] = [];
  for (let i = 0; i < 4; i++) {
    await page.goto(`${url}/console/`);
    list.push(await page.evaluate<number>('performance.getEntriesByType("navigation")[0].responseEnd'));
  }
  assert.equal(await page.locator('tbody tr').count(), 50, 'the tenants page shows one page of tenants');
  await page.close();

  // The plans of the page's queries, with the values the page uses.
  const explain = async (sql: string, params: unknown[]) => (await owner.query<{ 'QUERY PLAN': string }>(`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) ${sql}`, params)).rows.map((r) => r['QUERY PLAN']).join('\n');
  const usagePlan = await explain(
    `SELECT tenant_id, date_trunc('day', occurred_at, 'UTC') AS bucket, sum(quantity)::float8 AS value, count(*)::int AS events FROM tw_usage_events
      WHERE tenant_id = $1 AND meter = 'tokens' AND occurred_at >= now() - interval '30 days' AND occurred_at < now() GROUP BY tenant_id, bucket ORDER BY tenant_id, bucket`,
    [viewed.id],
  );
  const listPlan = await explain(`SELECT id, slug, name, status, created_at FROM ${registry} WHERE status <> 'deleted' ORDER BY slug LIMIT 51`, []);
  const deliveriesPlan = await explain(`SELECT * FROM tw_webhook_deliveries d WHERE d.event_tenant_id = $1 ORDER BY d.created_at DESC LIMIT 50`, [viewed.id]);
  fs.writeFileSync(path.join(OUT, 'explain-10k.txt'), `-- usage of one meter, 30 days (one query per meter)\n${usagePlan}\n\n-- tenants page\n${listPlan}\n\n-- webhook deliveries\n${deliveriesPlan}\n`);
  assert.doesNotMatch(usagePlan, /Seq Scan on tw_usage_events/, 'the usage query reads the tenant through the (tenant_id, meter, occurred_at) index');
  assert.match(listPlan, /Limit[\s\S]*Index Scan using \S*slug/, 'the tenants page walks the slug index and stops at its LIMIT');

  const result = { tenants: counts[0]?.tenants, usageEvents: counts[0]?.events, viewedTenantEvents: counts[0]?.mine, tenantPage, tenantsPageHtmlMs: median(list.slice(1)), runs };
  fs.writeFileSync(path.join(OUT, 'render-10k.json'), `${JSON.stringify(result, null, 2)}\n`);
  ctx.diagnostic(`10,000 tenants, ${counts[0]?.mine} usage events of the viewed tenant: tenant page HTML ${tenantPage.htmlMs.toFixed(0)} ms, chart drawn ${tenantPage.chartDrawnMs.toFixed(0)} ms after navigation start (median of ${warm.length} warm loads); tenants page HTML ${result.tenantsPageHtmlMs.toFixed(0)} ms`);
});
