import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { meteringSpec } from '../../examples/invoicing-service/src/metering.ts';
import { Metering } from '../../src/index.ts';
import { cli } from '../helpers/cli.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { startReceiver } from './receiver.ts';

describe('CLI: tenantwall webhooks with the repository config (schema and migrations only)', () => {
  let t: TestTenantwall;
  let db: string[];
  before(async () => {
    t = await createTestTenantwall(schema, migrations);
    // No --config: ./tenantwall.config.ts, which exports no metering and no webhooks options.
    db = ['--database-url', t.database.url];
  });
  after(() => t.close());

  test('endpoints add/list/disable/enable, relay --once and deliveries (with the endpoint) work', async () => {
    const rx = await startReceiver();
    process.env.TENANTWALL_WEBHOOK_ALLOW_NETWORKS = '127.0.0.1';
    try {
      const empty = await cli('webhooks', 'endpoints', 'list', ...db, '--json');
      assert.equal(empty.code, 0, empty.err);
      assert.deepEqual(JSON.parse(empty.out), []);
      const add = await cli('webhooks', 'endpoints', 'add', rx.url, ...db, '--types', 'plan.changed', '--json');
      assert.equal(add.code, 0, add.err);
      const ep = JSON.parse(add.out) as { id: string; secret: string };
      const tenant = await t.db.tenants.create({ slug: 'acme', name: 'Acme' });
      await new Metering(t.db, { spec: meteringSpec }).setPlan(tenant.id, 'pro');
      const relay = await cli('webhooks', 'relay', '--once', ...db, '--json');
      assert.deepEqual(JSON.parse(relay.out), { dispatched: 1, delivered: 1, failed: 0, dead: 0 });
      const rows = JSON.parse((await cli('webhooks', 'deliveries', ...db, '--json')).out) as Array<Record<string, unknown>>;
      assert.equal(rows.length, 1);
      assert.deepEqual([rows[0]?.endpointId, rows[0]?.endpoint, rows[0]?.status, rows[0]?.webhookId], [ep.id, rx.url, 'delivered', rx.received[0]?.headers['webhook-id']]);
      const human = await cli('webhooks', 'deliveries', ...db, '--endpoint', ep.id);
      assert.match(human.out, new RegExp(`^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z  delivered\\s+1  plan\\.changed\\s+msg_[0-9a-f]{32}  ${ep.id} ${rx.url}\\n$`));
      assert.equal((await cli('webhooks', 'endpoints', 'disable', ep.id, ...db)).code, 0);
      assert.match((await cli('webhooks', 'endpoints', 'list', ...db)).out, /disabled/);
      assert.equal((await cli('webhooks', 'endpoints', 'enable', ep.id, ...db)).code, 0);
    } finally {
      delete process.env.TENANTWALL_WEBHOOK_ALLOW_NETWORKS;
      await rx.close();
    }
  });

  test('bad input answers a stable code and never prints credentials', async () => {
    const creds = await cli('webhooks', 'endpoints', 'add', 'https://ops:hunter2@hooks.example.com/x', ...db);
    assert.equal(creds.code, 1);
    assert.match(creds.err, /\[webhook_url_invalid\]/);
    assert.ok(!creds.err.includes('hunter2'));
    const ssrf = await cli('webhooks', 'endpoints', 'add', 'http://169.254.169.254/latest/meta-data/', ...db);
    assert.match(ssrf.err, /\[webhook_url_forbidden\].*linkLocal/);
    const types = await cli('webhooks', 'endpoints', 'add', 'https://93.184.215.14/x', '--types', 'invoice.paid', ...db);
    assert.match(types.err, /\[unknown_event_type\]/);
    const missing = await cli('webhooks', 'endpoints', 'disable', '00000000-0000-4000-8000-000000000000', ...db);
    assert.equal(missing.code, 1);
    assert.match(missing.err, /\[webhook_endpoint_not_found\]/);
  });
});
