import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { TenantwallError, type TenantId } from '../../src/index.ts';
import { DEFAULT_RETRY_SCHEDULE_MS, retryDelayMs, verifyWebhook, webhookId } from '../../src/metering/index.ts';
import { startMetering, type MeteringFixture } from '../metering/fixture.ts';
import { startReceiver, waitFor } from './receiver.ts';

describe('billing webhooks: outbox, relay, signatures, retries, dead letters, replay', () => {
  let f: MeteringFixture;
  let A: TenantId;
  let B: TenantId;
  before(async () => {
    f = await startMetering();
    A = (await f.t.db.tenants.create({ slug: 'a', name: 'A' })).id;
    B = (await f.t.db.tenants.create({ slug: 'b', name: 'B' })).id;
  });
  after(() => f.close());

  /** Runs relay rounds until nothing is due (or `rounds` is exhausted). */
  async function drain(relay: ReturnType<MeteringFixture['metering']['webhooks']['relay']>, rounds = 20) {
    for (let i = 0; i < rounds; i++) {
      const r = await relay.runOnce();
      if (r.dispatched + r.delivered + r.failed + r.dead === 0) return;
    }
  }

  test('events are delivered signed in the Standard Webhooks shape; per-tenant and per-type endpoints filter', async () => {
    const all = await startReceiver();
    const onlyA = await startReceiver();
    try {
      const e1 = await f.metering.webhooks.addEndpoint({ url: all.url });
      const e2 = await f.metering.webhooks.addEndpoint({ url: onlyA.url, tenantId: A, eventTypes: ['plan.changed'] });
      await f.metering.setPlan(A, 'pro');
      await f.metering.setPlan(B, 'pro');
      await drain(f.metering.webhooks.relay());
      assert.deepEqual([...all.ids()].sort(), [webhookId(A, `plan.changed:${A}:1`), webhookId(B, `plan.changed:${B}:1`)].sort());
      assert.deepEqual([...onlyA.ids()], [webhookId(A, `plan.changed:${A}:1`)]);
      for (const r of all.received) {
        const v = verifyWebhook(e1.secret, r.body, r.headers as Record<string, string>);
        assert.equal(v.type, 'plan.changed');
        assert.equal(v.id, r.headers['webhook-id']);
        // The reference implementation agrees.
        new Webhook(e1.secret).verify(r.body, r.headers as Record<string, string>);
        assert.match(String(r.headers['webhook-signature']), /^v1,[A-Za-z0-9+/]+=*$/);
      }
      const v = verifyWebhook(e2.secret, onlyA.received[0]!.body, onlyA.received[0]!.headers as Record<string, string>);
      assert.deepEqual({ plan: v.data.plan, previous: v.data.previous_plan, tenant: v.data.tenant_id }, { plan: 'pro', previous: 'free', tenant: A });
      await f.metering.webhooks.disableEndpoint(e1.id);
      await f.metering.webhooks.disableEndpoint(e2.id);
    } finally {
      await all.close();
      await onlyA.close();
    }
  });

  test('the verification helper refuses tampered bodies, wrong secrets, stale timestamps, missing headers', () => {
    const secret = `whsec_${Buffer.from('0123456789abcdef0123456789abcdef').toString('base64')}`;
    const body = JSON.stringify({ type: 'x', timestamp: new Date().toISOString(), data: { a: 1 } });
    const now = new Date();
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(Math.floor(now.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign('msg_1', now, body) };
    assert.equal(verifyWebhook(secret, body, headers).data.a, 1);
    const refused = (fn: () => unknown) => assert.throws(fn, (e: unknown) => e instanceof TenantwallError && e.code === 'webhook_signature_invalid');
    refused(() => verifyWebhook(secret, body.replace('1', '2'), headers));
    refused(() => verifyWebhook(`whsec_${Buffer.from('another secret entirely, 32 byte').toString('base64')}`, body, headers));
    refused(() => verifyWebhook(secret, body, { ...headers, 'webhook-id': 'msg_2' }));
    const old = new Date(now.getTime() - 600_000);
    refused(() => verifyWebhook(secret, body, { ...headers, 'webhook-timestamp': String(Math.floor(old.getTime() / 1000)), 'webhook-signature': new Webhook(secret).sign('msg_1', old, body) }));
    refused(() => verifyWebhook(secret, body, { 'webhook-id': 'msg_1', 'webhook-timestamp': headers['webhook-timestamp'] }));
  });

  test('failures retry with backoff and a fresh signature per attempt; exhausted deliveries are dead until replayed', async () => {
    let mode: 'fail' | 'ok' = 'fail';
    const rx = await startReceiver(() => (mode === 'fail' ? 500 : 204));
    try {
      const ep = await f.metering.webhooks.addEndpoint({ url: rx.url, tenantId: A });
      const relay = f.metering.webhooks.relay({ maxAttempts: 2, retrySchedule: [1100], deliveryTimeoutMs: 2000, leaseMs: 5000 });
      await f.metering.suspendTenant(A, 'unpaid');
      await f.metering.suspendTenant(A, 'unpaid'); // already suspended: no second event
      assert.equal((await f.t.db.tenants.get(A))?.status, 'suspended');
      let r = await relay.runOnce();
      assert.deepEqual(r, { dispatched: 1, delivered: 0, failed: 1, dead: 0 });
      // The retry is scheduled at least the backoff's lower bound (1100 ms - 20%) after the failed attempt; the
      // relay sends it only once due. Checked on timestamps, not on how fast this machine runs: poll until it went.
      const due = (await f.t.db.dangerouslyCrossTenant().query<{ at: Date }>(`SELECT next_attempt_at AS at FROM tw_webhook_deliveries WHERE endpoint_id = $1`, [ep.id])).rows[0]?.at;
      assert.ok(due && due.getTime() - (rx.received[0]?.at ?? Infinity) >= 880, 'retry scheduled with backoff');
      const rounds = { dispatched: 0, delivered: 0, failed: 0, dead: 0 };
      while (rounds.dead === 0) {
        r = await relay.runOnce();
        for (const k of Object.keys(rounds) as Array<keyof typeof rounds>) rounds[k] += r[k];
        if (rounds.dead === 0) await new Promise((res) => setTimeout(res, 50));
      }
      assert.deepEqual(rounds, { dispatched: 0, delivered: 0, failed: 0, dead: 1 });
      assert.equal(rx.received.length, 2);
      assert.ok((rx.received[1]?.at ?? 0) >= due.getTime(), 'the retry was not sent before it was due');
      const [first, second] = rx.received as [(typeof rx.received)[0], (typeof rx.received)[0]];
      assert.equal(first.headers['webhook-id'], second.headers['webhook-id']);
      assert.notEqual(first.headers['webhook-timestamp'], second.headers['webhook-timestamp']);
      assert.notEqual(first.headers['webhook-signature'], second.headers['webhook-signature']);
      // Each attempt's signature is valid for its own timestamp.
      for (const x of rx.received) new Webhook(ep.secret).verify(x.body, x.headers as Record<string, string>);
      const dead = await f.metering.webhooks.deliveries({ status: 'dead' });
      assert.equal(dead.length, 1);
      assert.equal(dead[0]?.type, 'tenant.suspended');
      assert.equal(dead[0]?.lastError, 'HTTP 500');
      mode = 'ok';
      assert.equal((await relay.runOnce()).delivered, 0, 'dead letters stay dead');
      assert.equal(await f.metering.webhooks.replay({ eventId: dead[0]?.eventId }), 1);
      // The endpoint failed twice: this relay pauses it (per-endpoint backoff) before the replay goes out.
      await waitFor(async () => (await relay.runOnce()).delivered === 1, 'the replayed delivery');
      assert.equal(rx.received.at(-1)?.headers['webhook-id'], first.headers['webhook-id']);
      assert.equal((await f.metering.webhooks.deliveries({ status: 'delivered', eventId: dead[0]?.eventId })).length, 1);
      await f.metering.webhooks.disableEndpoint(ep.id);
    } finally {
      await f.t.db.tenants.resume(A);
      await rx.close();
    }
  });

  test('a period close is deterministic: a re-run writes nothing and bills nothing twice', async () => {
    const rx = await startReceiver();
    try {
      const ep = await f.metering.webhooks.addEndpoint({ url: rx.url, eventTypes: ['period.closed'] });
      const at = new Date();
      await f.metering.recordBatch(B, [
        { event_id: 'pc-1', meter: 'tokens', quantity: 7 },
        { event_id: 'pc-2', meter: 'tokens', quantity: 5 },
        { event_id: 'pc-3', meter: 'calls' },
      ]);
      assert.deepEqual(await f.metering.closePeriod({ at, tenantIds: [A, B] }), { written: 2, existing: 0 });
      assert.deepEqual(await f.metering.closePeriod({ at, tenantIds: [A, B] }), { written: 0, existing: 2 });
      const relay = f.metering.webhooks.relay();
      await drain(relay);
      await f.metering.closePeriod({ at, tenantIds: [B] });
      await drain(relay);
      assert.equal(rx.received.length, 2);
      const b = rx.received.map((r) => verifyWebhook(ep.secret, r.body, r.headers as Record<string, string>)).find((v) => v.data.tenant_id === B);
      assert.ok(b);
      assert.equal(b.type, 'period.closed');
      assert.deepEqual({ tokens: (b.data.usage as Record<string, number>).tokens, calls: (b.data.usage as Record<string, number>).calls }, { tokens: 12, calls: 1 });
      await f.metering.webhooks.disableEndpoint(ep.id);
    } finally {
      await rx.close();
    }
  });

  test('two relays claim with SKIP LOCKED: every event once; an expired lease of a dead relay is taken over', async () => {
    const rx = await startReceiver();
    try {
      const ep = await f.metering.webhooks.addEndpoint({ url: rx.url, eventTypes: ['quota.threshold_crossed'] });
      const tenants: TenantId[] = [];
      for (let i = 0; i < 15; i++) tenants.push((await f.t.db.tenants.create({ slug: `r${i}`, name: `R${i}` })).id);
      // free plan: 5 invoices; 5 units cross 80% and 100% -> 2 events per tenant.
      await Promise.all(tenants.map((t) => f.metering.consume(t, 'invoices', 5)));
      const r1 = f.metering.webhooks.relay({ batchSize: 4 });
      const r2 = f.metering.webhooks.relay({ batchSize: 4 });
      await Promise.all([drain(r1, 50), drain(r2, 50)]);
      assert.equal(rx.ids().size, 30);
      assert.equal(rx.received.length, 30, 'no event was delivered twice by the two relays');
      // A relay that died mid-delivery: its lease expires, another relay delivers again (at least once).
      const one = [...rx.ids()][0] as string;
      const [row] = await f.metering.webhooks.deliveries({ eventId: one });
      await f.t.db.dangerouslyCrossTenant().query(`UPDATE tw_webhook_deliveries SET status = 'in_flight', lease_until = now() - interval '1 second' WHERE event_id = $1`, [row?.eventId]);
      await drain(r1);
      assert.equal(rx.received.filter((r) => r.headers['webhook-id'] === one).length, 2);
      await f.metering.webhooks.disableEndpoint(ep.id);
    } finally {
      await rx.close();
    }
  });

  test('retry delays follow the schedule within +-20%; its last entry repeats', () => {
    assert.equal(retryDelayMs(1, [1000, 5000], () => 0.5), 1000);
    assert.equal(retryDelayMs(2, [1000, 5000], () => 0.5), 5000);
    assert.equal(retryDelayMs(9, [1000, 5000], () => 1), 6000);
    assert.equal(retryDelayMs(1, [1000, 5000], () => 0), 800);
    assert.equal(retryDelayMs(9, DEFAULT_RETRY_SCHEDULE_MS, () => 0.5), 86_400_000);
  });
});
