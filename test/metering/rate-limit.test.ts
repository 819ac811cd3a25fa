import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { TenantwallError, type TenantId } from '../../src/index.ts';
import { Metering, RateLimiter, type RateLimitStore } from '../../src/metering/index.ts';
import { startMetering, untilMinuteHasLeft, type MeteringFixture } from './fixture.ts';

const CHILD = new URL('./children/limiter-child.ts', import.meta.url).pathname;

async function redisAvailable(): Promise<string | undefined> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port: 6379 });
    s.setTimeout(500);
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => {
      s.destroy();
      resolve(d.toString().startsWith('+PONG') ? undefined : `Redis on 127.0.0.1:6379 answered ${JSON.stringify(d.toString().trim())}`);
    });
    s.once('error', (e) => resolve(`Redis not reachable on 127.0.0.1:6379 (${e.message})`));
    s.once('timeout', () => {
      s.destroy();
      resolve('Redis on 127.0.0.1:6379 did not answer within 500 ms');
    });
  });
}
const redisSkip = await redisAvailable();

/**
 * Starts a child; `ready` resolves once it is connected, `first` once it took its first request after `go()`,
 * `done` with its per-window admissions after `more()`.
 */
function startChild(url: string, tenantId: string, store: string, attempts: number) {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, url, tenantId, store, String(attempts)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  const said = (word: string) =>
    new Promise<void>((resolve) => {
      const check = () => err.split('\n').includes(word) && resolve();
      child.stderr.on('data', check);
      check();
    });
  child.stderr.on('data', (d) => (err += d));
  const done = new Promise<Record<string, number>>((resolve, reject) => {
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}: ${err}`))));
  });
  return { ready: said('ready'), first: said('first'), done, go: () => child.stdin.write('go\n'), more: () => child.stdin.end('more\n') };
}

/** A store that counts claims, around a real one. */
function counting(inner: RateLimitStore): RateLimitStore & { claims: number } {
  const s = {
    claims: 0,
    claim: (...args: Parameters<RateLimitStore['claim']>) => {
      s.claims++;
      return inner.claim(...args);
    },
  };
  return s;
}

describe('rate limits', () => {
  let f: MeteringFixture;
  let T: TenantId;
  before(async () => {
    f = await startMetering();
    T = (await f.t.db.tenants.create({ slug: 'rl', name: 'RL' })).id;
  });
  after(() => f.close());

  for (const store of ['postgres', 'redis'] as const) {
    test(`two processes sharing ${store} never admit more than the limit per window`, { skip: store === 'redis' ? redisSkip : undefined }, async () => {
      const tenant = (await f.t.db.tenants.create({ slug: `two-${store}`, name: store })).id;
      const children = [startChild(f.t.database.url, tenant, store, 400), startChild(f.t.database.url, tenant, store, 400)];
      await Promise.all(children.map((c) => c.ready));
      for (const c of children) c.go();
      // Both have taken a request before either goes on: each competes for the same windows however late the
      // machine scheduled it.
      await Promise.all(children.map((c) => c.first));
      for (const c of children) c.more();
      const [a, b] = (await Promise.all(children.map((c) => c.done))) as [Record<string, number>, Record<string, number>];
      const windows = new Set([...Object.keys(a), ...Object.keys(b)]);
      let total = 0;
      for (const w of windows) {
        const n = (a[w] ?? 0) + (b[w] ?? 0);
        assert.ok(n <= 300, `window ${w}: ${n} admitted for a limit of 300`);
        total += n;
      }
      // 800 attempts against 300 per window: the limit was reached, and both processes got a share.
      assert.ok(total >= 300, `only ${total} admitted`);
      assert.ok(Object.values(a).reduce((s, x) => s + x, 0) > 0 && Object.values(b).reduce((s, x) => s + x, 0) > 0, `one process got nothing: ${JSON.stringify([a, b])}`);
    });
  }

  test('leases: far from the limit most requests do not touch the store; near it, never more than the limit', async () => {
    const { PostgresRateLimitStore } = await import('../../src/metering/index.ts');
    const store = counting(new PostgresRateLimitStore(f.t.db));
    const limiter = new RateLimiter(store, { failure: 'closed', timeoutMs: 5000, maxBatch: 50, batchFraction: 0.02, leaseMs: 100 });
    const key = `lease-${Date.now()}`;
    const far = await Promise.all(Array.from({ length: 1000 }, () => limiter.take(T, key, 100_000, 60_000)));
    assert.ok(far.every((d) => d.allowed));
    assert.ok(store.claims <= 100, `${store.claims} store claims for 1000 requests`);
    const near = await Promise.all(Array.from({ length: 500 }, () => limiter.take(T, `${key}-near`, 120, 60_000)));
    const ok = near.filter((d) => d.allowed).length;
    // The window may roll over during the run; within one window never more than 120.
    const byWindow = new Map<number, number>();
    for (const d of near) if (d.allowed) byWindow.set(d.resetMs, (byWindow.get(d.resetMs) ?? 0) + 1);
    for (const n of byWindow.values()) assert.ok(n <= 120, `${n} admitted for 120`);
    assert.ok(ok >= 120);
  });

  test('plan rate limits: hard refusal carries rate_limited with used/limit/resets_at; per API key counted apart', async () => {
    const m = new Metering(f.t.db, {
      spec: {
        meters: [],
        plans: { tight: { rateLimits: [{ scope: 'apiKey', per: 'minute', limit: 3 }, { scope: 'tenant', per: 'minute', limit: 100, enforcement: 'soft' }] } },
        defaultPlan: 'tight',
      },
    });
    try {
      await untilMinuteHasLeft();
      for (let i = 0; i < 3; i++) await m.rateLimit(T, 'key-1');
      await assert.rejects(m.rateLimit(T, 'key-1'), (e: unknown) => {
        assert.ok(e instanceof TenantwallError);
        assert.equal(e.code, 'rate_limited');
        assert.equal(e.status, 429);
        assert.equal(e.details.limit, 3);
        assert.equal(e.details.used, 3);
        assert.equal(e.details.scope, 'apiKey');
        assert.ok(Number(e.details.retry_after) >= 1 && Number(e.details.retry_after) <= 60);
        return true;
      });
      const other = await m.rateLimit(T, 'key-2');
      assert.ok(other.every((d) => d.allowed));
    } finally {
      await m.close();
    }
  });

  test('store failure: fail-open admits (degraded), fail-closed refuses with rate_limit_unavailable', async () => {
    const hanging: RateLimitStore = { claim: () => new Promise(() => undefined) };
    const spec = { meters: [], plans: { p: { rateLimits: [{ scope: 'tenant' as const, per: 'second' as const, limit: 10 }] } }, defaultPlan: 'p' };
    const open = new Metering(f.t.db, { spec, rateLimitStore: hanging, rateLimitTimeoutMs: 30, rateLimitFailure: 'open' });
    const [d] = await open.rateLimit(T);
    assert.equal(d?.allowed, true);
    assert.equal(d?.degraded, true);
    const closed = new Metering(f.t.db, { spec, rateLimitStore: hanging, rateLimitTimeoutMs: 30, rateLimitFailure: 'closed' });
    await assert.rejects(closed.rateLimit(T), (e: unknown) => e instanceof TenantwallError && e.code === 'rate_limit_unavailable' && e.status === 503);
    // Redis that is not there (port 1): the same two behaviours, without hanging.
    const deadRedis = new Metering(f.t.db, { spec, rateLimitStore: 'redis', redisUrl: 'redis://127.0.0.1:1', rateLimitTimeoutMs: 200, rateLimitFailure: 'closed' });
    await assert.rejects(deadRedis.rateLimit(T), (e: unknown) => e instanceof TenantwallError && e.code === 'rate_limit_unavailable');
    await deadRedis.close();
  });
});
