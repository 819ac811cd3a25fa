/**
 * Standard Webhooks conformance of the billing webhooks (spec/standard-webhooks.md of standard-webhooks/
 * standard-webhooks), against real receivers on 127.0.0.1 and two verifiers: the `standardwebhooks` reference
 * implementation and a hand-written HMAC. Every test is one finding of issue 22.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { TenantwallError, type TenantId } from '../../src/index.ts';
import { Webhooks, webhookId, type RelayOptions } from '../../src/metering/index.ts';
import { startMetering, type MeteringFixture } from '../metering/fixture.ts';
import { startReceiver, waitFor, type Received } from './receiver.ts';

/** The spec's verification written out: HMAC-SHA256 over `<id>.<timestamp>.<body>` with the base64 key after whsec_. */
function handVerify(secret: string, r: Received): boolean {
  const id = String(r.headers['webhook-id']);
  const ts = String(r.headers['webhook-timestamp']);
  const expected = createHmac('sha256', Buffer.from(secret.slice('whsec_'.length), 'base64')).update(`${id}.${ts}.${r.body}`).digest();
  return String(r.headers['webhook-signature'])
    .split(' ')
    .some((s) => {
      const [version, sig] = s.split(',');
      const got = Buffer.from(sig ?? '', 'base64');
      return version === 'v1' && got.length === expected.length && timingSafeEqual(got, expected);
    });
}

const code = (c: string) => (e: unknown) => e instanceof TenantwallError && e.code === c;

describe('Standard Webhooks conformance', () => {
  let f: MeteringFixture;
  before(async () => {
    f = await startMetering();
  });
  after(() => f.close());

  const hooks = () => f.metering.webhooks;
  const newTenant = async () => (await f.t.db.tenants.create({ slug: `t-${randomBytes(4).toString('hex')}`, name: 'T' })).id;
  const changes = new Map<TenantId, number>();
  /** One plan.changed event of `t`: free -> pro, pro -> free, ... */
  const event = (t: TenantId) => {
    const n = (changes.get(t) ?? 0) + 1;
    changes.set(t, n);
    return f.metering.setPlan(t, n % 2 === 1 ? 'pro' : 'free');
  };
  const relay = (o: RelayOptions = {}) => hooks().relay({ deliveryTimeoutMs: 20_000, leaseMs: 40_000, retrySchedule: [0], ...o });

  test('webhook-id is msg_<hex>, without ".", the same on every attempt; both verifiers accept every attempt', async () => {
    const T = await newTenant();
    const rx = await startReceiver((_r, n) => (n === 1 ? 500 : 200));
    try {
      const ep = await hooks().addEndpoint({ url: rx.url, tenantId: T });
      await event(T);
      const r = relay();
      await waitFor(async () => (await r.runOnce(), rx.received.length === 2), 'the retry');
      const [a, b] = rx.received as [Received, Received];
      assert.match(String(a.headers['webhook-id']), /^msg_[0-9a-f]{32}$/);
      assert.equal(a.headers['webhook-id'], webhookId(T, `plan.changed:${T}:1`));
      assert.equal(b.headers['webhook-id'], a.headers['webhook-id']);
      assert.equal(b.body, a.body, 'byte-identical body on every attempt');
      for (const x of rx.received) {
        assert.ok(handVerify(ep.secret, x), 'hand-written HMAC');
        new Webhook(ep.secret).verify(x.body, x.headers as Record<string, string>);
      }
    } finally {
      await rx.close();
    }
  });

  test('410 Gone disables the endpoint and dead-letters the delivery; nothing more is sent to it', async () => {
    const T = await newTenant();
    const rx = await startReceiver(() => 410);
    try {
      const ep = await hooks().addEndpoint({ url: rx.url, tenantId: T });
      await event(T);
      const r = relay();
      assert.equal((await r.runOnce()).dead, 1);
      assert.equal((await hooks().listEndpoints()).find((e) => e.id === ep.id)?.active, false);
      const [d] = await hooks().deliveries({ endpointId: ep.id });
      assert.deepEqual([d?.status, d?.lastStatus], ['dead', 410]);
      await event(T);
      await r.runOnce();
      await r.runOnce();
      assert.equal(rx.received.length, 1);
    } finally {
      await rx.close();
    }
  });

  test('Retry-After of a 503 (seconds) and a 429 (HTTP date) schedules the retry, bounded by maxRetryAfterMs', async () => {
    const T = await newTenant();
    const answers: Array<[number, string]> = [
      [503, '120'],
      [429, new Date(Date.now() + 300_000).toUTCString()],
      [503, '86400'],
    ];
    for (const [status, after] of answers) {
      const rx = await startReceiver((_r, _n, res) => {
        res.writeHead(status, { 'retry-after': after });
        res.end();
      });
      try {
        const ep = await hooks().addEndpoint({ url: rx.url, tenantId: T });
        await event(T);
        const before = Date.now();
        assert.equal((await relay({ maxRetryAfterMs: 600_000 }).runOnce()).failed, 1);
        const [d] = await hooks().deliveries({ endpointId: ep.id });
        const wait = Date.parse(d?.nextAttemptAt ?? '') - before;
        const expected = after === '120' ? 120_000 : after === '86400' ? 600_000 : 300_000;
        assert.ok(wait >= expected - 2_000 && wait <= expected + 5_000, `${status} Retry-After ${after}: next attempt in ${wait} ms, expected about ${expected}`);
        await hooks().disableEndpoint(ep.id);
      } finally {
        await rx.close();
      }
    }
  });

  test('a disabled endpoint gets no pending retries and no replays; enabling it resumes them', async () => {
    const T = await newTenant();
    let ok = false;
    const rx = await startReceiver(() => (ok ? 200 : 500));
    try {
      const ep = await hooks().addEndpoint({ url: rx.url, tenantId: T });
      await event(T);
      const r = relay({ endpointBackoffMaxMs: 0 });
      assert.equal((await r.runOnce()).failed, 1);
      await hooks().disableEndpoint(ep.id);
      ok = true;
      assert.deepEqual(await r.runOnce(), { dispatched: 0, delivered: 0, failed: 0, dead: 0 }, 'the due retry is not sent');
      assert.equal(await hooks().replay({ tenantId: T, statuses: ['pending', 'dead', 'delivered'] }), 0, 'nothing is replayed to it');
      assert.equal(rx.received.length, 1);
      assert.equal(await hooks().enableEndpoint(ep.id), true);
      await waitFor(async () => (await r.runOnce()).delivered === 1, 'the delivery after enabling');
      assert.equal(rx.received.length, 2);
    } finally {
      await rx.close();
    }
  });

  test('defaults follow the spec: a 15-30 s timeout and a jittered retry schedule spanning days', () => {
    const o = hooks().relay().options;
    assert.ok(o.deliveryTimeoutMs >= 15_000 && o.deliveryTimeoutMs <= 30_000, `timeout ${o.deliveryTimeoutMs}`);
    const span = o.retrySchedule.slice(0, o.maxAttempts - 1).reduce((a, b) => a + b, 0);
    assert.ok(span >= 2 * 86_400_000, `retries span ${span / 3_600_000} h`);
    assert.ok(o.leaseMs > o.deliveryTimeoutMs);
  });

  test('an http:// endpoint added in production raises a warning; https:// and non-production do not', async () => {
    const T = await newTenant();
    const warnings: Error[] = [];
    const onWarning = (w: Error) => warnings.push(w);
    process.on('warning', onWarning);
    try {
      const prod = new Webhooks(f.t.db, { production: true, allowNetworks: ['127.0.0.1'] });
      const dev = new Webhooks(f.t.db, { production: false, allowNetworks: ['127.0.0.1'] });
      const eps = [
        await dev.addEndpoint({ url: 'http://127.0.0.1:9/dev', tenantId: T }),
        await prod.addEndpoint({ url: 'https://127.0.0.1:9/secure', tenantId: T }),
        await prod.addEndpoint({ url: 'http://127.0.0.1:9/plain', tenantId: T }),
      ];
      await waitFor(() => warnings.length > 0, 'the warning');
      await new Promise((r) => setImmediate(r));
      assert.equal(warnings.length, 1);
      assert.equal((warnings[0] as Error & { code?: string }).code, 'TENANTWALL_WEBHOOK_HTTP');
      for (const e of eps) await hooks().disableEndpoint(e.id);
    } finally {
      process.off('warning', onWarning);
    }
  });

  test('endpoint input is refused with stable codes: weak secrets, unknown types and tenants, credentials (never echoed)', async () => {
    const T = await newTenant();
    const url = 'http://127.0.0.1:9/hooks';
    const secret = (bytes: number) => `whsec_${randomBytes(bytes).toString('base64')}`;
    await assert.rejects(hooks().addEndpoint({ url, tenantId: T, secret: 'whsec_AA==' }), code('webhook_secret_invalid'));
    await assert.rejects(hooks().addEndpoint({ url, tenantId: T, secret: secret(23) }), code('webhook_secret_invalid'));
    await assert.rejects(hooks().addEndpoint({ url, tenantId: T, secret: secret(65) }), code('webhook_secret_invalid'));
    await assert.rejects(hooks().addEndpoint({ url, tenantId: T, secret: randomBytes(32).toString('base64') }), code('webhook_secret_invalid'));
    await assert.rejects(hooks().addEndpoint({ url, tenantId: T, eventTypes: ['plan.changed', 'invoice.paid'] }), (e: unknown) => {
      return code('unknown_event_type')(e) && (e as TenantwallError).message.includes('"invoice.paid"') && (e as TenantwallError).details.field === 'eventTypes';
    });
    await assert.rejects(hooks().addEndpoint({ url, tenantId: T, eventTypes: [] }), code('unknown_event_type'));
    await assert.rejects(hooks().addEndpoint({ url, tenantId: randomUUID() }), (e: unknown) => code('tenant_not_found')(e) && (e as TenantwallError).details.field === 'tenantId');
    await assert.rejects(hooks().addEndpoint({ url: 'http://admin:s3cr3t-pw@127.0.0.1:9/hooks', tenantId: T }), (e: unknown) => {
      return code('webhook_url_invalid')(e) && !(e as Error).message.includes('s3cr3t-pw') && !JSON.stringify(e).includes('s3cr3t-pw');
    });
    await assert.rejects(hooks().addEndpoint({ url: 'ftp://127.0.0.1/x', tenantId: T }), code('webhook_url_invalid'));
    await assert.rejects(hooks().addEndpoint({ url: 'not a url', tenantId: T }), code('webhook_url_invalid'));
    await assert.rejects(hooks().disableEndpoint('not-an-id'), code('webhook_endpoint_not_found'));
    const ok = await hooks().addEndpoint({ url, tenantId: T, secret: secret(24), eventTypes: ['plan.changed'] });
    assert.equal(await hooks().disableEndpoint(ok.id), true);
  });

  test('every timestamp of a delivery has one format: ISO 8601 UTC with milliseconds', async () => {
    const T = await newTenant();
    const rx = await startReceiver();
    try {
      await hooks().addEndpoint({ url: rx.url, tenantId: T });
      await f.metering.consume(T, 'invoices', 5); // free plan: crosses 80% and 100%
      await event(T);
      await f.metering.closePeriod({ at: new Date(), tenantIds: [T] });
      const r = relay();
      await waitFor(async () => (await r.runOnce(), rx.received.length === 4), 'four events');
      const stamps: string[] = [];
      for (const x of rx.received) {
        const p = JSON.parse(x.body) as { timestamp: string; data: Record<string, unknown> };
        stamps.push(p.timestamp, ...Object.values(p.data).filter((v): v is string => typeof v === 'string' && /^\d{4}-\d\d-\d\dT/.test(v)));
      }
      assert.ok(stamps.length >= 10, stamps.join(' '));
      for (const s of stamps) assert.match(s, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
    } finally {
      await rx.close();
    }
  });

  test('the outcome is decided on the status line: a 200 with a body still trickling is delivered, a 500 is not', async () => {
    const T = await newTenant();
    const open: http.ServerResponse[] = [];
    const rx = await startReceiver((r, _n, res) => {
      res.writeHead(JSON.parse(r.body).data.plan === 'pro' ? 200 : 500, { 'content-type': 'text/plain' });
      res.write('still'); // ...and never ends
      open.push(res);
    });
    try {
      await hooks().addEndpoint({ url: rx.url, tenantId: T });
      await event(T); // pro -> 200
      assert.equal((await relay().runOnce()).delivered, 1);
      assert.ok(!open[0]?.writableEnded && !open[0]?.destroyed, 'decided while the body was still open');
      await event(T); // free -> 500
      assert.equal((await relay().runOnce()).failed, 1);
      assert.ok(!open[1]?.writableEnded && !open[1]?.destroyed);
    } finally {
      await rx.close();
    }
  });

  test('a huge response body is read up to maxResponseBytes, then the connection is dropped', async () => {
    const T = await newTenant();
    const TOTAL = 256 * 1024 * 1024;
    let written = 0;
    let closed = false;
    const chunk = Buffer.alloc(1024 * 1024, 120);
    const rx = await startReceiver((_r, _n, res) => {
      res.writeHead(200, { 'content-length': String(TOTAL) });
      res.once('close', () => (closed = true));
      const pump = () => {
        while (!closed && written < TOTAL) {
          written += chunk.length;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    });
    try {
      await hooks().addEndpoint({ url: rx.url, tenantId: T });
      await event(T);
      assert.equal((await relay({ maxResponseBytes: 65_536 }).runOnce()).delivered, 1);
      await waitFor(() => closed, 'the relay to drop the connection');
      assert.ok(written < TOTAL, `the receiver could write only ${written} of ${TOTAL} bytes`);
    } finally {
      await rx.close();
    }
  });

  describe('SSRF', () => {
    const strict = () => new Webhooks(f.t.db, { allowNetworks: [] });

    test('loopback, private, link-local, metadata and unspecified addresses are refused in every spelling', async () => {
      const T = await newTenant();
      const urls = [
        'http://169.254.169.254/latest/meta-data/',
        'http://10.0.0.5:6379/',
        'http://192.168.1.10/',
        'http://172.16.0.1/',
        'http://100.100.100.200/',
        'http://[::1]:5432/',
        'http://localhost:9200/',
        'http://0x7f000001/',
        'http://2130706433/',
        'http://0177.0.0.1/',
        'http://127.1/',
        'http://0.0.0.0/',
        'http://[::]/',
        'http://[::ffff:127.0.0.1]/',
        'http://[::ffff:7f00:1]/',
        'http://[::ffff:a9fe:a9fe]/',
        'http://[fd00:ec2::254]/',
        'http://[fe80::1]/',
      ];
      for (const url of urls) await assert.rejects(strict().addEndpoint({ url, tenantId: T }), code('webhook_url_forbidden'), url);
      const pub = await strict().addEndpoint({ url: 'https://93.184.215.14/hooks', tenantId: T });
      await hooks().disableEndpoint(pub.id);
    });

    test('the allow-list lets the listed networks through, and only them', async () => {
      const T = await newTenant();
      const allow = new Webhooks(f.t.db, { allowNetworks: ['127.0.0.0/8'] });
      const ep = await allow.addEndpoint({ url: 'http://127.0.0.1:9/hooks', tenantId: T });
      await allow.disableEndpoint(ep.id);
      await assert.rejects(allow.addEndpoint({ url: 'http://[::1]:9/', tenantId: T }), code('webhook_url_forbidden'));
      await assert.rejects(allow.addEndpoint({ url: 'http://10.0.0.5/', tenantId: T }), code('webhook_url_forbidden'));
      assert.throws(() => new Webhooks(f.t.db, { allowNetworks: ['10.0.0.0/33'] }), code('config_invalid'));
    });

    test('every connection is checked again: an address refused at delivery time is never contacted', async () => {
      const T = await newTenant();
      const rx = await startReceiver();
      try {
        // Registered while allowed (as a name and as a literal); delivered by a relay whose policy refuses loopback,
        // as after a DNS answer that changed since registration.
        const allow = new Webhooks(f.t.db, { allowNetworks: ['127.0.0.1', '::1'] });
        await allow.addEndpoint({ url: `http://localhost:${rx.port}/hooks`, tenantId: T });
        await allow.addEndpoint({ url: rx.url, tenantId: T });
        await event(T);
        const r = strict().relay({ retrySchedule: [3_600_000] });
        assert.equal((await r.runOnce()).failed, 2);
        assert.equal(rx.received.length, 0);
        const ds = await hooks().deliveries({ status: 'pending' });
        const mine = ds.filter((d) => d.tenantId === T);
        assert.equal(mine.length, 2);
        for (const d of mine) assert.match(d.lastError ?? '', /\(loopback\)/);
        // The suite's allow-list delivers them.
        await hooks().replay({ tenantId: T, statuses: ['pending'] });
        await waitFor(async () => (await relay().runOnce(), rx.received.length === 2), 'allowed delivery');
      } finally {
        await rx.close();
      }
    });
  });

  test('isolation: a slow and a dead endpoint do not delay another endpoint; all its deliveries finish while theirs hang', async () => {
    const T = await newTenant();
    const held: http.ServerResponse[] = [];
    const healthy = await startReceiver();
    const slow = await startReceiver((_r, _n, res) => void held.push(res)); // answers only when the test ends
    const dead = await startReceiver();
    const deadUrl = dead.url;
    await dead.close(); // connection refused
    const N = 40;
    const r = relay({ batchSize: 10, endpointConcurrency: 2, deliveryTimeoutMs: 60_000, leaseMs: 120_000, retrySchedule: [1000] });
    try {
      for (const url of [slow.url, deadUrl, healthy.url]) await hooks().addEndpoint({ url, tenantId: T });
      r.start();
      for (let i = 0; i < N; i++) await event(T);
      await waitFor(() => healthy.received.length >= N, `${N} deliveries to the healthy endpoint`, 45_000);
      assert.equal(held.filter((res) => res.writableEnded).length, 0, 'no slow delivery finished before all healthy ones');
      assert.ok(held.length <= 2, `the slow endpoint holds at most its own ${2} slots (got ${held.length})`);
    } finally {
      for (const res of held) res.end();
      await r.stop();
      await healthy.close();
      await slow.close();
    }
  });
});
