import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { webhookId, type TenantId } from '../../src/index.ts';
import { ApiKeyStore } from '../../src/fastify/index.ts';
import { ADMIN } from './app.ts';
import { startMetering, type MeteringFixture } from './fixture.ts';
import { startReceiver } from '../webhooks/receiver.ts';

const CHILD = new URL('./children/server-child.ts', import.meta.url).pathname;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  child: ChildProcess;
  base: string;
  exited: Promise<number | null>;
}

async function startServer(url: string, env: Record<string, string> = {}): Promise<Server> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, url], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let err = '';
  const port = await new Promise<number>((resolve, reject) => {
    child.stderr!.on('data', (d) => {
      err += d;
      const m = /listening (\d+)/.exec(err);
      if (m) resolve(Number(m[1]));
    });
    void exited.then((code) => reject(new Error(`server exited ${code} before listening: ${err}`)));
  });
  return { child, base: `http://127.0.0.1:${port}`, exited };
}

async function kill9(s: Server): Promise<void> {
  s.child.kill('SIGKILL');
  await s.exited;
}

describe('crash safety (kill -9)', () => {
  let f: MeteringFixture;
  let tenants: Array<{ id: TenantId; key: string }>;
  // The server restarted by the first test serves the second: process start-up is most of these tests' time.
  let server: Server | undefined;
  before(async () => {
    f = await startMetering();
    const keys = new ApiKeyStore(f.t.db);
    tenants = [];
    for (let i = 0; i < 4; i++) {
      const id = (await f.t.db.tenants.create({ slug: `c${i}`, name: `C${i}` })).id;
      tenants.push({ id, key: (await keys.create(id, { name: 'k' })).key });
    }
  });
  after(async () => {
    if (server) await kill9(server);
    await f.close();
  });

  test('a retry after a crash between commit and response is answered duplicate and counted once', async () => {
    const T = tenants[0]!;
    const event = { event_id: 'crash-after-commit', meter: 'tokens', quantity: 42 };
    const s1 = await startServer(f.t.database.url, { CRASH_ON_EVENT: event.event_id });
    const post = (base: string) =>
      fetch(`${base}/usage/events`, { method: 'POST', headers: { authorization: `Bearer ${T.key}`, 'content-type': 'application/json' }, body: JSON.stringify(event) });
    await assert.rejects(post(s1.base), 'the process died before answering');
    await s1.exited;
    server = await startServer(f.t.database.url);
    const retry = await post(server.base);
    assert.equal(retry.status, 200);
    assert.deepEqual(await retry.json(), { event_id: event.event_id, duplicate: true });
    const rows = await f.t.db.forTenant(T.id).query(`SELECT quantity::int AS q FROM tw_usage_events WHERE tenant_id = $1 AND event_id = $2`, [T.id, event.event_id]);
    assert.deepEqual(rows.rows, [{ q: 42 }]);
  });

  test('kill -9 at random points under load loses no committed event or outbox row; every outbox row is delivered after restart', async () => {
    const rx = await startReceiver(() => 204);
    await f.metering.webhooks.addEndpoint({ url: rx.url });
    server ??= await startServer(f.t.database.url);
    let current: Server = server;
    const acked = new Set<string>();
    const sent = new Set<string>();
    const ackedOutbox = new Set<string>();
    let stop = false;
    let seq = 0;
    let failures = 0;

    /** Sends until acknowledged, like a client that retries on connection errors (same payload, same ids). */
    async function until(make: (base: string) => Promise<Response>): Promise<Response> {
      // A hang guard only (a server that never comes back), far beyond any restart on a loaded machine.
      const deadline = Date.now() + 300_000;
      for (;;) {
        if (Date.now() > deadline) throw new Error('no acknowledgement within 300 s: the restarted server does not answer');
        try {
          const r = await make(current.base);
          if (r.status < 500) return r;
        } catch {
          // connection refused/reset: the server is down or restarting
        }
        failures++;
        await sleep(25);
      }
    }

    // Each worker mixes single events, batches, plan changes (outbox rows) and quota-consuming requests
    // (threshold outbox rows); its first operation is a plan change, so every run writes outbox rows.
    const worker = async (w: number) => {
      for (let i = 0; !stop; i++) {
        const T = tenants[(i + w) % tenants.length]!;
        const auth = { authorization: `Bearer ${T.key}`, 'content-type': 'application/json' };
        const k = seq++;
        const kind = i % 10;
        if (kind === 0) {
          const plan = (i / 10) % 2 === 0 ? 'pro' : 'free';
          const r = await until((b) => fetch(`${b}/admin/usage/tenants/${T.id}/plan`, { method: 'PUT', headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' }, body: JSON.stringify({ plan }) }));
          const body = (await r.json()) as { changed: boolean; version: number };
          if (body.changed) ackedOutbox.add(`plan.changed:${T.id}:${body.version}`);
        } else if (kind === 5) {
          const r = await until((b) => fetch(`${b}/invoices`, { method: 'POST', headers: auth, body: JSON.stringify({ customer: 'x' }) }));
          await r.arrayBuffer();
        } else if (kind % 2 === 1) {
          const id = `w${w}-${k}`;
          sent.add(id);
          const r = await until((b) => fetch(`${b}/usage/events`, { method: 'POST', headers: auth, body: JSON.stringify({ event_id: id, meter: 'calls' }) }));
          assert.equal(r.status, 200);
          await r.arrayBuffer();
          acked.add(id);
        } else {
          const ids = Array.from({ length: 20 }, (_, j) => `w${w}-${k}-b${j}`);
          for (const id of ids) sent.add(id);
          const r = await until((b) => fetch(`${b}/usage/events`, { method: 'POST', headers: auth, body: JSON.stringify({ events: ids.map((id) => ({ event_id: id, meter: 'tokens', quantity: 2 })) }) }));
          assert.equal(r.status, 200);
          await r.arrayBuffer();
          for (const id of ids) acked.add(id);
        }
      }
    };
    const workers = Array.from({ length: 6 }, (_, w) =>
      worker(w).catch((err: unknown) => {
        stop = true;
        throw err;
      }),
    );
    /**
     * Waits until `n` more events are acknowledged: the kill points are measured in work done, not in time, so
     * a loaded machine that acknowledges little per second still gets the same load before each kill.
     */
    const acknowledged = async (n: number) => {
      const target = acked.size + n;
      while (acked.size < target) {
        if (stop) return; // a worker failed: its error is reported below
        await sleep(10);
      }
    };
    try {
      for (let k = 0; k < 2 && !stop; k++) {
        await acknowledged(60 + Math.floor(Math.random() * 120)); // a random point under load
        await kill9(current);
        current = server = await startServer(f.t.database.url);
      }
      await acknowledged(60); // the restarted server takes writes again
    } finally {
      stop = true;
      await Promise.allSettled(workers);
    }
    await Promise.all(workers);
    try {
      assert.ok(failures > 0, 'the kills interrupted requests');
      // (At least 180 events were acknowledged: the kills waited for them, see `acknowledged`.)
      // Every acknowledged event is stored, exactly once (retries of committed ones were duplicates).
      const stored = await f.t.db.dangerouslyCrossTenant().query<{ event_id: string; n: number }>(
        `SELECT event_id, count(*)::int AS n FROM tw_usage_events WHERE event_id LIKE 'w%' GROUP BY event_id`,
      );
      const storedIds = new Set(stored.rows.map((r) => r.event_id));
      for (const id of acked) assert.ok(storedIds.has(id), `acknowledged event ${id} was lost`);
      assert.ok(stored.rows.every((r) => r.n === 1), "an event id was stored twice");
      assert.equal(acked.size, sent.size, 'every event was eventually acknowledged');
      // Every acknowledged plan change wrote its outbox row.
      const outbox = await f.t.db.dangerouslyCrossTenant().query<{ tenant_id: string; id: string }>(`SELECT tenant_id, id FROM tw_outbox`);
      const outboxIds = new Set(outbox.rows.map((r) => r.id));
      for (const id of ackedOutbox) assert.ok(outboxIds.has(id), `outbox event ${id} was lost`);
      assert.ok(ackedOutbox.size > 0 && outboxIds.size >= ackedOutbox.size);
      // The restarted process's relay delivers everything (leases of killed relays expire and are taken over).
      // Waits for that condition; the deadline is a hang guard, not an expectation of speed.
      const deadline = Date.now() + 300_000;
      while (Date.now() < deadline) {
        const { rows } = await f.t.db.dangerouslyCrossTenant().query<{ n: number }>(
          `SELECT (SELECT count(*) FROM tw_outbox WHERE status = 'pending') + (SELECT count(*) FROM tw_webhook_deliveries WHERE status <> 'delivered') AS n`,
        );
        if (Number(rows[0]?.n) === 0) break;
        await sleep(100);
      }
      const receivedIds = rx.ids();
      const missing = outbox.rows.filter((r) => !receivedIds.has(webhookId(r.tenant_id, r.id))).map((r) => r.id);
      assert.deepEqual(missing, [], 'outbox events never delivered');
    } finally {
      await rx.close();
    }
  });
});
