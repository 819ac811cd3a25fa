/**
 * Crash and restart.
 *
 * 1. kill -9 of the service (examples/invoicing-service/src/main.ts as a child process) under a mixed write load, then a restart: every
 *    write that got a 2xx is present, whole; a write that got an error is absent; a write whose answer was lost
 *    in the crash is either absent or present whole (an invoice with all its line items, never some).
 *    Every acknowledged write also has its usage events (invoices.created for the quota, rows.created per table):
 *    the metering plugin records them before the answer is sent, so a kill -9 after the answer cannot lose them.
 *    Three tenants are on the `pro` plan (soft quota: the load is never refused for quota), one stays on `free`,
 *    whose hard quota of 100 invoices a month runs out during a long run: it must never admit more, crash or not.
 * 2. PostgreSQL stopped under load (a dedicated embedded server, not the shared test server): readiness goes red,
 *    requests fail fast with 503 instead of hanging, and the service recovers by itself when the server is back.
 *
 * CRASH_ROUNDS (default 1; each round is one kill -9 and one restart) and CRASH_ACKED (invoices acknowledged per
 * round before the kill, default 40) make the run longer. A start of service/main.ts costs several seconds.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { buildApp } from '../../examples/invoicing-service/src/app.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { Tenantwall, startEmbeddedPostgres, type EmbeddedServer } from '../../src/index.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitUntil } from '../helpers/wait.ts';
import { errorCode } from './lib/leak.ts';
import { freePort, startService, type ServiceProcess } from './lib/service-process.ts';
import { ADMIN_TOKEN } from './lib/world.ts';

const ROUNDS = Number(process.env.CRASH_ROUNDS ?? 1);
/** Writes acknowledged in a round before the kill (the kill lands at a random moment after that). */
const ACKED_BEFORE_KILL = Number(process.env.CRASH_ACKED ?? 40);

interface Tenant {
  id: string;
  key: string;
}

type Outcome = { status: number; body: any } | 'lost';

/**
 * One request. `hangAfterMs` only guards against a hang (a lock left behind by a killed process, a pool that
 * never gives a connection back): far beyond what a loaded machine needs, never a latency bound.
 */
async function send(url: string, key: string | undefined, method: string, p: string, body?: unknown, hangAfterMs = 120_000): Promise<Outcome> {
  const headers: Record<string, string> = key ? { authorization: `Bearer ${key}` } : {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  try {
    const r = await fetch(`${url}${p}`, { method, headers, signal: AbortSignal.timeout(hangAfterMs), ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const text = await r.text();
    let json: any;
    try {
      json = text ? JSON.parse(text) : undefined;
    } catch {
      json = text;
    }
    return { status: r.status, body: json };
  } catch (err) {
    if ((err as Error).name === 'TimeoutError') throw new Error(`${method} ${p} hung for ${hangAfterMs} ms`, { cause: err });
    return 'lost';
  }
}

async function makeTenants(url: string, n: number, tag: string, plan?: string): Promise<Tenant[]> {
  const out: Tenant[] = [];
  for (let i = 0; i < n; i++) {
    const t = await send(url, ADMIN_TOKEN, 'POST', '/admin/tenants', { slug: `crash-${tag}-${i}-${Date.now().toString(36)}`, name: `Crash ${i}` });
    assert.ok(t !== 'lost' && t.status === 201, JSON.stringify(t));
    const k = await send(url, ADMIN_TOKEN, 'POST', `/admin/tenants/${t.body.id}/api-keys`, { name: 'crash' });
    assert.ok(k !== 'lost' && k.status === 201, JSON.stringify(k));
    if (plan !== undefined) {
      const p = await send(url, ADMIN_TOKEN, 'PUT', `/admin/usage/tenants/${t.body.id}/plan`, { plan });
      assert.ok(p !== 'lost' && p.status === 200, JSON.stringify(p));
    }
    out.push({ id: t.body.id, key: k.body.key });
  }
  return out;
}

/** How many of `outcomes` got each answer ("lost" when the connection died), e.g. `201: 40, 429: 3, lost: 2`. */
function histogram(outcomes: Outcome[]): string {
  const h = new Map<string, number>();
  for (const o of outcomes) {
    const k = o === 'lost' ? 'lost' : `${o.status}${o.status >= 400 ? ` ${errorCode(JSON.stringify(o.body)) ?? ''}` : ''}`;
    h.set(k, (h.get(k) ?? 0) + 1);
  }
  return [...h].map(([k, v]) => `${k}: ${v}`).join(', ');
}

describe('kill -9 of the service under a mixed write load', () => {
  let database: TestDatabase;
  let su: pg.Client;
  let svc: ServiceProcess | undefined;
  before(async () => {
    database = await createTestDatabase();
    su = new pg.Client({ connectionString: database.url });
    await su.connect();
  });
  after(async () => {
    await svc?.kill9();
    await su?.end();
    await database?.drop();
  });

  test(`${ROUNDS} crash(es): acknowledged writes survive whole, failed ones leave nothing, lost ones all-or-nothing`, async () => {
    const port = await freePort();
    svc = await startService({ databaseUrl: database.url, port, adminToken: ADMIN_TOKEN });
    // Three tenants on `pro` (a soft quota: the load is never refused for quota, however many rounds) and one on
    // `free` (a hard quota of 100 invoices a month, used up during a long run).
    const pro = await makeTenants(svc.url, 3, 'k', 'pro');
    const free = (await makeTenants(svc.url, 1, 'f'))[0] as Tenant;
    const tenants = [...pro, free];
    // What the clients were told, by a unique tag in the written row.
    const invoices: Array<{ tag: string; tenant: string; items: number; outcome: Outcome }> = [];
    const customers: Array<{ tag: string; tenant: string; outcome: Outcome }> = [];
    const itemAdds: Array<{ invoice: string; tenant: string; outcome: Outcome }> = [];
    const patches: Array<{ invoice: string; outcome: Outcome }> = [];
    let seq = 0;
    let totalKilled = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const url = svc.url;
      let stop = false;
      // Invoices acknowledged as drafts in this round, each used by at most one follow-up write.
      const drafts: Array<{ id: string; tenant: Tenant }> = [];
      // This round's invoice answers to the pro tenants (which nothing may refuse).
      const proAnswers: Outcome[] = [];
      const worker = async (w: number) => {
        while (!stop) {
          const t = tenants[(w + seq) % tenants.length] as Tenant;
          const n = ++seq;
          const dice = n % 10;
          if (dice < 5) {
            const items = 1 + (n % 4);
            const tag = `inv-${round}-${n}`;
            const o = await send(url, t.key, 'POST', '/invoices', {
              customer: tag,
              line_items: Array.from({ length: items }, (_, i) => ({ description: `${tag}-${i}`, quantity: 1 + i, unit_amount_cents: 100 })),
            });
            invoices.push({ tag, tenant: t.id, items, outcome: o });
            if (t !== free) proAnswers.push(o);
            if (o !== 'lost' && o.status === 201) drafts.push({ id: o.body.id, tenant: t });
          } else if (dice < 7) {
            const tag = `cust-${round}-${n}`;
            customers.push({ tag, tenant: t.id, outcome: await send(url, t.key, 'POST', '/customers', { name: tag }) });
          } else {
            const d = drafts.shift();
            if (!d) continue;
            if (dice < 9) {
              itemAdds.push({ invoice: d.id, tenant: d.tenant.id, outcome: await send(url, d.tenant.key, 'POST', `/invoices/${d.id}/line-items`, { description: `add-${n}`, quantity: 2, unit_amount_cents: 7 }) });
            } else {
              patches.push({ invoice: d.id, outcome: await send(url, d.tenant.key, 'PATCH', `/invoices/${d.id}`, { status: 'issued' }) });
            }
          }
        }
      };
      const ackedAtStart = invoices.filter((i) => i.outcome !== 'lost' && i.outcome.status === 201).length;
      const workers = Array.from({ length: 8 }, (_, w) => worker(w));
      try {
        // The kill point is measured in work done, not in time: a loaded machine gets the same load before each kill.
        await waitUntil(() => {
          if (invoices.filter((i) => i.outcome !== 'lost' && i.outcome.status === 201).length - ackedAtStart >= ACKED_BEFORE_KILL) return true;
          // A service that refuses everything never gets there: say so with what it answered, not after the guard.
          const recent = proAnswers.slice(-100);
          if (recent.length === 100 && recent.every((o) => o === 'lost' || o.status >= 400)) {
            throw new Error(`round ${round}: the last 100 invoices of pro tenants were all refused (${histogram(proAnswers)}); service output:\n${svc?.output().slice(-3000)}`);
          }
          return false;
        }, `${ACKED_BEFORE_KILL} invoices acknowledged before kill ${round + 1}`);
        await new Promise((r) => setTimeout(r, Math.floor(Math.random() * 30)));
        await svc.kill9();
        totalKilled++;
      } finally {
        // Also when the round failed: workers left running would spin against a dead port for the rest of the file.
        stop = true;
        await Promise.all(workers);
      }
      try {
        svc = await startService({ databaseUrl: database.url, port, adminToken: ADMIN_TOKEN });
      } catch (err) {
        svc = undefined;
        throw new Error(`restart after kill ${round + 1} failed; the killed service's sessions: ${JSON.stringify((await su.query(`SELECT pid, state, wait_event_type, wait_event, left(query, 120) AS query FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()`)).rows)}`, { cause: err });
      }
    }

    // The truth, as superuser.
    const invRows = await su.query(`SELECT i.id::text, i.tenant_id::text, i.customer, i.amount_cents::float8 AS amount, i.status,
        (SELECT count(*)::int FROM invoice_line_items l WHERE l.tenant_id = i.tenant_id AND l.invoice_id = i.id) AS items,
        (SELECT coalesce(sum(amount_cents), 0)::float8 FROM invoice_line_items l WHERE l.tenant_id = i.tenant_id AND l.invoice_id = i.id) AS item_sum
      FROM invoices i`);
    const byTag = new Map<string, Array<{ id: string; tenant_id: string; items: number; amount: number; item_sum: number; status: string }>>();
    const byId = new Map<string, { id: string; tenant_id: string; items: number; amount: number; item_sum: number; status: string }>();
    for (const r of invRows.rows) {
      byTag.set(r.customer, [...(byTag.get(r.customer) ?? []), r]);
      byId.set(r.id, r);
      if (r.items > 0) assert.equal(r.amount, r.item_sum, `invoice ${r.id}: total ${r.amount} is not the sum of its items ${r.item_sum}`);
    }
    const count = { acked: 0, failed: 0, lost: 0, lostPresent: 0 };
    for (const inv of invoices) {
      const rows = byTag.get(inv.tag) ?? [];
      assert.ok(rows.length <= 1, `invoice ${inv.tag} written twice`);
      const row = rows[0];
      if (inv.outcome === 'lost') {
        count.lost++;
        if (row) {
          count.lostPresent++;
          assert.ok(row.items === inv.items || row.items === inv.items + itemAdds.filter((a) => a.invoice === row.id).length, `invoice ${inv.tag} half-present: ${row.items} of ${inv.items} items`);
          assert.equal(row.tenant_id, inv.tenant);
        }
      } else if (inv.outcome.status === 201) {
        count.acked++;
        assert.ok(row, `acknowledged invoice ${inv.tag} is missing after the crash`);
        assert.equal(row.id, inv.outcome.body.id);
        assert.equal(row.tenant_id, inv.tenant);
        assert.ok(row.items >= inv.items, `acknowledged invoice ${inv.tag} lost items`);
      } else {
        count.failed++;
        assert.equal(row, undefined, `invoice ${inv.tag} answered ${inv.outcome.status} but was written`);
      }
    }
    const custRows = await su.query(`SELECT name, tenant_id::text FROM customers`);
    const custByName = new Map(custRows.rows.map((r) => [r.name as string, r.tenant_id as string]));
    let custAcked = 0;
    for (const c of customers) {
      if (c.outcome === 'lost') continue;
      if (c.outcome.status === 201) {
        custAcked++;
        assert.equal(custByName.get(c.tag), c.tenant, `acknowledged customer ${c.tag} missing or in another tenant`);
      } else assert.equal(custByName.get(c.tag), undefined, `customer ${c.tag} answered ${c.outcome.status} but was written`);
    }
    const itemRows = await su.query(`SELECT description, invoice_id::text, tenant_id::text FROM invoice_line_items WHERE description LIKE 'add-%'`);
    const addedTo = new Set(itemRows.rows.map((r) => `${r.tenant_id}/${r.invoice_id}`));
    let addsAcked = 0;
    for (const a of itemAdds) {
      if (a.outcome === 'lost') continue;
      if (a.outcome.status === 201) {
        addsAcked++;
        assert.ok(addedTo.has(`${a.tenant}/${a.invoice}`), `acknowledged line item on ${a.invoice} is missing`);
      } else assert.ok(!addedTo.has(`${a.tenant}/${a.invoice}`), `line item on ${a.invoice} answered ${a.outcome.status} but was written`);
    }
    let patchesAcked = 0;
    for (const p of patches) {
      const row = byId.get(p.invoice);
      if (p.outcome === 'lost') continue;
      if (p.outcome.status === 200) {
        patchesAcked++;
        assert.equal(row?.status, 'issued', `acknowledged issue of ${p.invoice} is missing`);
      } else assert.equal(row?.status, 'draft', `patch of ${p.invoice} answered ${p.outcome.status} but was applied`);
    }
    // Usage events: per tenant, at least one per acknowledged write (recorded before the answer) and at most one
    // per committed write (recorded only after the commit). invoices.created is the quota's meter, rows.created
    // counts created rows per table.
    const { rows: evRows } = await su.query<{ tenant_id: string; key: string; n: number }>(
      `SELECT tenant_id::text, meter || coalesce('/' || (properties->>'table'), '') AS key, sum(quantity)::float8 AS n
         FROM tw_usage_events WHERE meter IN ('invoices.created', 'rows.created') GROUP BY 1, 2`,
    );
    const events = new Map(evRows.map((r) => [`${r.tenant_id} ${r.key}`, r.n]));
    const acked = (list: Array<{ tenant: string; outcome: Outcome }>, tenant: string) => list.filter((x) => x.tenant === tenant && x.outcome !== 'lost' && x.outcome.status === 201).length;
    let eventsChecked = 0;
    for (const t of tenants) {
      const committedInvoices = invRows.rows.filter((r) => r.tenant_id === t.id).length;
      const committedCustomers = custRows.rows.filter((r) => r.tenant_id === t.id).length;
      const committedAdds = itemRows.rows.filter((r) => r.tenant_id === t.id).length;
      for (const [key, ack, committed] of [
        ['invoices.created', acked(invoices, t.id), committedInvoices],
        ['rows.created/invoices', acked(invoices, t.id), committedInvoices],
        ['rows.created/customers', acked(customers, t.id), committedCustomers],
        ['rows.created/invoice_line_items', acked(itemAdds, t.id), committedAdds],
      ] as const) {
        const n = events.get(`${t.id} ${key}`) ?? 0;
        assert.ok(n >= ack, `tenant ${t.id}: ${ack - n} usage events ${key} of acknowledged writes lost (${n} recorded, ${ack} acknowledged)`);
        assert.ok(n <= committed, `tenant ${t.id}: ${n} usage events ${key} for ${committed} committed writes`);
        eventsChecked += ack;
      }
    }
    // The hard quota never admits more than its limit, crashes or not; units a kill took between admission and
    // the write are not given back (reported, not asserted).
    const freeInvoices = invRows.rows.filter((r) => r.tenant_id === free.id).length;
    assert.ok(freeInvoices <= 100, `the free plan's hard quota of 100 invoices admitted ${freeInvoices}`);
    const { rows: freeQuota } = await su.query<{ used: string }>(`SELECT coalesce(sum(used), 0)::text AS used FROM tw_quota_counters WHERE tenant_id = $1 AND quota = 'invoices'`, [free.id]);
    const freeUsed = Number(freeQuota[0]?.used ?? 0);
    assert.ok(freeUsed >= freeInvoices, `the free tenant has ${freeInvoices} invoices but its quota counted ${freeUsed}`);

    // After the restart the service answers, and each tenant sees its own rows only.
    for (const t of tenants) {
      const r = await send(svc.url, t.key, 'GET', '/invoices?limit=100');
      assert.ok(r !== 'lost' && r.status === 200, JSON.stringify(r));
      for (const inv of r.body.data) assert.equal(byId.get(inv.id)?.tenant_id, t.id);
    }
    console.log(
      `# crash: ${totalKilled} kill -9 under load; invoices ${invoices.length} sent (${count.acked} acknowledged, ${count.failed} refused [${histogram(invoices.filter((i) => i.outcome !== 'lost' && i.outcome.status !== 201).map((i) => i.outcome))}], ${count.lost} answers lost of which ${count.lostPresent} committed whole), ` +
        `customers ${customers.length} (${custAcked} acknowledged), line items added ${itemAdds.length} (${addsAcked} acknowledged), issues ${patches.length} (${patchesAcked} acknowledged); ` +
        `${count.acked + custAcked + addsAcked + patchesAcked} acknowledged writes, 0 lost; ${eventsChecked} usage events of acknowledged writes, 0 lost; ` +
        `free tenant: ${freeInvoices} invoices for ${freeUsed} quota units used (${freeUsed - freeInvoices} taken by kills)`,
    );
    assert.ok(count.acked > 0, 'the load wrote nothing before the kill');
  });
});

describe('PostgreSQL restarted under load', () => {
  let dir: string;
  let server: EmbeddedServer | undefined;
  let db: Tenantwall | undefined;
  let app: FastifyInstance | undefined;
  let pgPort: number;
  const start = async () =>
    startEmbeddedPostgres({ dataDir: path.join(dir, 'data'), port: pgPort, persistent: true, settings: { fsync: 'off', full_page_writes: 'off', max_connections: '50' } });
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantwall-adv-pg-'));
    pgPort = await freePort();
    server = await start();
    db = await Tenantwall.connect({ schema, databaseUrl: server.url, manageRoles: true, connectTimeoutMs: 1_000, poolSize: 4, statementTimeoutMs: 2_000 });
    await db.migrate(migrations);
    app = await buildApp({ db, adminToken: ADMIN_TOKEN });
    await app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    if (app) {
      const closing = app.close();
      app.server.closeAllConnections();
      await closing;
    }
    await db?.close();
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('readiness goes red, requests fail fast with 503, the service recovers by itself', async () => {
    const url = `http://127.0.0.1:${((app as FastifyInstance).server.address() as AddressInfo).port}`;
    const tenants = await makeTenants(url, 3, 'pg');
    type Rec = { kind: 'read' | 'write'; tag: string; tenant: string; sentAt: number; ms: number; outcome: Outcome };
    const recs: Rec[] = [];
    let stop = false;
    let n = 0;
    const worker = async (w: number) => {
      while (!stop) {
        const t = tenants[(w + n) % 3] as Tenant;
        const i = ++n;
        const sentAt = Date.now();
        const kind = i % 2 === 0 ? 'read' : 'write';
        const tag = `pg-${i}`;
        const outcome = kind === 'read' ? await send(url, t.key, 'GET', '/invoices?limit=5') : await send(url, t.key, 'POST', '/customers', { name: tag });
        recs.push({ kind, tag, tenant: t.id, sentAt, ms: Date.now() - sentAt, outcome });
        if (outcome !== 'lost' && outcome.status >= 500) await new Promise((r) => setTimeout(r, 20));
      }
    };
    const workers = Array.from({ length: 4 }, (_, w) => worker(w));
    let downAt = 0;
    let upAt = 0;
    let readyAt = 0;
    try {
      await waitUntil(() => recs.filter((r) => r.outcome !== 'lost' && r.outcome.status < 300).length >= 20, '20 requests answered before the stop');

      await (server as EmbeddedServer).stop();
      downAt = Date.now();
      // Readiness goes red.
      let red = 'lost' as Outcome;
      await waitUntil(async () => {
        red = await send(url, undefined, 'GET', '/readyz');
        return red !== 'lost' && red.status === 503;
      }, 'readiness to go red');
      assert.ok(red !== 'lost' && red.status === 503 && red.body.error.code === 'database_unreachable', `readiness while down: ${JSON.stringify(red)}`);
      // Down until enough requests were answered meanwhile (each is checked below), however slow the machine.
      await waitUntil(() => recs.filter((r) => r.sentAt >= downAt).length >= 8, '8 requests answered while the database is down');
      upAt = Date.now();
      server = await start();
      // The service recovers without being touched.
      let green = 'lost' as Outcome;
      await waitUntil(async () => {
        green = await send(url, undefined, 'GET', '/readyz');
        return green !== 'lost' && green.status === 200;
      }, 'readiness to go green after the restart', { everyMs: 50 });
      assert.ok(green !== 'lost' && green.status === 200, `readiness after restart: ${JSON.stringify(green)}`);
      readyAt = Date.now();
      await waitUntil(() => recs.filter((r) => r.sentAt >= readyAt + 100).length >= 8, '8 requests answered after recovery');
    } finally {
      // Also when a wait failed: workers left running would spin against the app for the rest of the file.
      stop = true;
      await Promise.all(workers);
    }

    const during = recs.filter((r) => r.sentAt >= downAt && r.sentAt + r.ms < upAt);
    const afterReady = recs.filter((r) => r.sentAt >= readyAt + 100);
    assert.ok(during.length > 0, 'no request was sent while the database was down');
    for (const r of during) {
      assert.ok(r.outcome !== 'lost', 'a request was dropped instead of answered');
      assert.equal(r.outcome.status, 503, `while down: ${JSON.stringify(r.outcome)}`);
      assert.equal(errorCode(JSON.stringify(r.outcome.body)), 'database_unreachable');
    }
    // Fail fast, not hang: every request sent while the server was down got its 503 (a hung one fails `send`'s
    // guard). How fast is reported, not asserted: a loaded machine is slow, a hang is not a matter of degree.
    const slowest = Math.max(...during.map((r) => r.ms));
    assert.ok(afterReady.length > 0, 'no request after recovery');
    for (const r of afterReady) assert.ok(r.outcome !== 'lost' && r.outcome.status < 300, `after recovery: ${JSON.stringify(r.outcome)}`);

    // Writes acknowledged before the stop are there; writes refused while down are not.
    const { rows } = await (db as Tenantwall).dangerouslyCrossTenant().query<{ name: string; tenant_id: string }>(`SELECT name, tenant_id::text FROM customers`);
    const stored = new Map(rows.map((r) => [r.name, r.tenant_id]));
    let acked = 0;
    for (const r of recs.filter((x) => x.kind === 'write')) {
      if (r.outcome === 'lost') continue;
      if (r.outcome.status === 201) {
        acked++;
        assert.equal(stored.get(r.tag), r.tenant, `acknowledged customer ${r.tag} missing after the restart`);
      }
    }
    for (const r of during.filter((x) => x.kind === 'write')) assert.equal(stored.get(r.tag), undefined, `customer ${r.tag} refused while down but stored`);
    console.log(
      `# postgres restart: ${recs.length} requests (${acked} writes acknowledged), ${during.length} while down all 503 in at most ${slowest} ms, ` +
        `ready again ${readyAt - upAt} ms after the server start was called, ${afterReady.length} requests after recovery all 2xx`,
    );
  });
});
