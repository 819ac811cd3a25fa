import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TenantId } from '../../src/index.ts';
import { cli } from '../helpers/cli.ts';
import { startMetering, type MeteringFixture } from './fixture.ts';
import { startReceiver } from '../webhooks/receiver.ts';

const CONFIG = new URL('./cli-config.ts', import.meta.url).pathname;

describe('CLI: tenantwall usage / webhooks', () => {
  let f: MeteringFixture;
  let A: TenantId;
  let db: string[];
  before(async () => {
    f = await startMetering();
    A = (await f.t.db.tenants.create({ slug: 'a', name: 'A' })).id;
    db = ['--config', CONFIG, '--database-url', f.t.database.url];
    await f.metering.recordBatch(A, [
      { event_id: '1', meter: 'tokens', quantity: 4 },
      { event_id: '2', meter: 'tokens', quantity: 6 },
    ]);
  });
  after(() => f.close());

  test('usage query prints CSV, JSON and a table', async () => {
    const csv = await cli('usage', 'query', ...db, '--meter', 'tokens', '--granularity', 'month', '--format', 'csv');
    assert.equal(csv.code, 0, csv.err);
    const lines = csv.out.trim().split('\r\n');
    assert.equal(lines[0], 'tenant_id,meter,aggregation,bucket,value,events');
    assert.match(lines[1] ?? '', new RegExp(`^${A},tokens,sum,\\d{4}-\\d{2}-01T00:00:00.000Z,10,2$`));
    const json = await cli('usage', 'query', ...db, '--meter', 'tokens', '--granularity', 'month', '--json', '--tenant', A);
    assert.equal(JSON.parse(json.out)[0].value, 10);
    const tbl = await cli('usage', 'query', ...db, '--meter', 'tokens', '--granularity', 'month');
    assert.match(tbl.out, /^tenant_id\s+meter\s+aggregation\s+bucket\s+value\s+events\n/);
    assert.match(tbl.out, new RegExp(`${A}\\s+tokens\\s+sum\\s+\\S+\\s+10\\s+2`));
    const bad = await cli('usage', 'query', ...db, '--granularity', 'fortnight');
    assert.equal(bad.code, 1);
    assert.match(bad.err, /^tenantwall usage: \[invalid_usage_query\]/);
  });

  test('close-period is idempotent; set-plan writes plan.changed', async () => {
    const first = await cli('usage', 'close-period', ...db, '--at', new Date().toISOString(), '--json');
    assert.deepEqual(JSON.parse(first.out), { written: 1, existing: 0 });
    const again = await cli('usage', 'close-period', ...db, '--at', new Date().toISOString(), '--json');
    assert.deepEqual(JSON.parse(again.out), { written: 0, existing: 1 });
    const plan = await cli('usage', 'set-plan', ...db, A, 'pro', '--json');
    assert.equal(plan.code, 0, plan.err);
    assert.equal(JSON.parse(plan.out).version, 1);
    assert.equal((await cli('usage', 'set-plan', ...db, A, 'gold')).code, 1);
    // A tenant by slug, as every command accepts (issue 13: set-plan refused the slug).
    const bySlug = await cli('usage', 'set-plan', ...db, 'a', 'pro', '--json');
    assert.equal(bySlug.code, 0, bySlug.err);
    assert.equal(JSON.parse(bySlug.out).tenant_id, A);
    assert.equal(JSON.parse(bySlug.out).changed, false);
    const query = await cli('usage', 'query', ...db, '--meter', 'tokens', '--granularity', 'month', '--json', '--tenant', 'a');
    assert.equal(JSON.parse(query.out)[0].value, 10);
    const unknown = await cli('usage', 'set-plan', ...db, 'no-such-tenant', 'pro');
    assert.equal(unknown.code, 1);
    assert.match(unknown.err, /\[tenant_not_found\]/);
  });

  test('webhooks replay re-queues dead deliveries with the same webhook-id', async () => {
    let fail = true;
    const rx = await startReceiver(() => (fail ? 503 : 200));
    try {
      const add = await cli('webhooks', 'endpoints', 'add', rx.url, ...db, '--json');
      assert.equal(add.code, 0, add.err);
      assert.match(JSON.parse(add.out).secret, /^whsec_/);
      const relay = f.metering.webhooks.relay({ maxAttempts: 1 });
      await relay.runOnce();
      const dead = await cli('webhooks', 'deliveries', ...db, '--status', 'dead', '--json');
      const deadRows = JSON.parse(dead.out) as Array<{ eventId: string; webhookId: string }>;
      assert.ok(deadRows.length >= 2, dead.out);
      const one = await cli('webhooks', 'replay', ...db, '--event', deadRows[0]!.eventId, '--json');
      assert.deepEqual(JSON.parse(one.out), { replayed: 1 });
      const rest = await cli('webhooks', 'replay', ...db, '--json');
      assert.deepEqual(JSON.parse(rest.out), { replayed: deadRows.length - 1 });
      fail = false;
      const before = rx.received.length;
      const r = await cli('webhooks', 'relay', '--once', ...db, '--json');
      assert.equal(JSON.parse(r.out).delivered, deadRows.length);
      const redelivered = rx.received.slice(before).map((x) => x.headers['webhook-id']);
      assert.deepEqual(new Set(redelivered), new Set(deadRows.map((d) => d.webhookId)));
      const list = await cli('webhooks', 'endpoints', 'list', ...db, '--json');
      assert.ok(!list.out.includes('whsec_'), 'secrets are not listed');
      assert.equal((await cli('webhooks', 'replay', ...db, '--status', 'bogus')).code, 1);
    } finally {
      await rx.close();
    }
  });
});
