/**
 * Noisy neighbours: a tenant made noisy through the real stack is ranked first and flagged, with the suggested
 * commands, by the library report and by `tenantwall top` (one refresh, and the first refresh of --watch).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { createGuard, createMetrics, type TenantwallMetrics, type TopReport } from '../../src/index.ts';
import { observabilityPlugin } from '../../src/fastify/index.ts';
import { cli, CLI } from '../helpers/cli.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginApp, pluginMigrations, pluginSchema } from '../fastify/app.ts';

const ADMIN = 'observability-admin-token-0123';
const ROOT = path.resolve(import.meta.dirname, '../..');
let t: TestTenantwall;
let metrics: TenantwallMetrics;
let app: FastifyInstance;
let url: string;
const tenants: Array<{ id: string; key: string }> = [];

before(async () => {
  t = await createTestTenantwall(pluginSchema, pluginMigrations, { guard: createGuard(pluginSchema) });
  metrics = createMetrics({ db: t.db, processMetrics: false, noisySharePercent: 50 });
  ({ app } = await pluginApp(t.db, {}, async (a) => {
    await a.register(observabilityPlugin, { metrics, adminToken: ADMIN });
    a.get('/obs/notes', async () => {
      const { rows } = await t.db.query<{ body: string }>('SELECT body FROM notes WHERE tenant_id = $1', [t.db.currentTenantId()]);
      return { notes: rows.length };
    });
  }));
  url = await app.listen({ host: '127.0.0.1', port: 0 });
  for (let i = 0; i < 3; i++) {
    const tenant = await t.db.tenants.create({ slug: `top${i}-${randomUUID().slice(0, 8)}`, name: `Top${i}` });
    const { key } = await app.tenantwall.apiKeys.create(tenant.id, { name: 'k' });
    tenants.push({ id: tenant.id, key });
  }
  // The noisy one holds many rows and asks for them often; the others ask once for nothing.
  const noisy = tenants[1] as { id: string };
  await t.db.forTenant(noisy.id).query(`INSERT INTO notes (tenant_id, body) SELECT $1, 'row ' || g FROM generate_series(1, 2000) g`, [noisy.id]);
  for (const [i, x] of tenants.entries()) {
    for (let n = 0; n < (i === 1 ? 20 : 1); n++) {
      const res = await fetch(`${url}/obs/notes`, { headers: { authorization: `Bearer ${x.key}` } });
      assert.equal(res.status, 200);
    }
  }
});
after(async () => {
  metrics.close();
  await app.close();
  await t.close();
});

test('the library report names the noisy tenant first, with shares and suggestions', () => {
  const r = metrics.activity.top({ by: 'rows' });
  const first = r.tenants[0];
  assert.ok(first);
  assert.equal(first.tenantId, tenants[1]?.id);
  assert.ok(first.noisy);
  assert.ok(first.noisyOn.includes('rows'));
  assert.ok(first.share.rows > 0.9);
  assert.ok(first.suggestions.some((s) => s.command === `tenantwall tenants move ${first.tenantId} --to dedicated`));
  assert.ok(first.suggestions.some((s) => s.command.startsWith(`tenantwall usage set-plan ${first.tenantId}`)));
  assert.ok(r.tenants.slice(1).every((x) => !x.noisy));
  const shares = r.tenants.reduce((a, x) => a + x.share.requests, 0);
  assert.ok(Math.abs(shares - 1) < 1e-9);
});

test('tenantwall top --json names the noisy tenant in one refresh; the table flags it', async () => {
  const r = await cli('top', '--url', url, '--token', ADMIN, '--by', 'rows', '--json');
  assert.equal(r.code, 0, r.err);
  const report = JSON.parse(r.out) as TopReport;
  assert.equal(report.tenants[0]?.tenantId, tenants[1]?.id);
  assert.ok(report.tenants[0]?.noisy);
  const table = await cli('top', '--url', url, '--token', ADMIN, '--by', 'statements');
  assert.equal(table.code, 0, table.err);
  assert.match(table.out, new RegExp(`${tenants[1]?.id}.*NOISY`));
  assert.match(table.out, /tenantwall tenants move .* --to dedicated/);
  const denied = await cli('top', '--url', url, '--token', 'wrong-token-0123456789');
  assert.equal(denied.code, 1);
  assert.match(denied.err, /activity_source_unreachable.*401/);
});

test('tenantwall top --watch: the first refresh already names the noisy tenant', async () => {
  const child = spawn(process.execPath, [...CLI, 'top', '--url', url, '--by', 'rows', '--json', '--watch', '--interval', '1', '--iterations', '2'], {
    cwd: ROOT,
    env: { ...process.env, TENANTWALL_ADMIN_TOKEN: ADMIN },
  });
  let out = '';
  child.stdout.on('data', (d) => (out += String(d)));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  assert.equal(code, 0);
  const lines = out.trim().split('\n');
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0] as string) as TopReport;
  assert.equal(first.tenants[0]?.tenantId, tenants[1]?.id);
  assert.ok(first.tenants[0]?.noisy);
});
