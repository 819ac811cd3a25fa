/**
 * Webhooks: isolation between endpoints. Events are written at a steady rate (plan changes, one transaction
 * each) and delivered by one relay (`start()`, pollIntervalMs 100) to a healthy receiver on loopback; the
 * figure is the healthy endpoint's delivery latency (outbox row written -> request received), p50 and p99, in
 * rounds without and with a slow endpoint (answering in SLOW_MS, under the timeout) receiving the same events,
 * alternated so both see the same machine load. Target: the p99 with the slow endpoint within 10% of without.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { meteringSpec } from '../examples/invoicing-service/src/metering.ts';
import { migrations, schema } from '../examples/invoicing-service/src/schema.ts';
import { Metering, type TenantId } from '../src/index.ts';
import type { BenchHarness } from './harness.ts';

const EVENTS = Number(process.env.BENCH_WEBHOOK_EVENTS ?? 200);
const INTERVAL_MS = Number(process.env.BENCH_WEBHOOK_INTERVAL_MS ?? 20);
const SLOW_MS = Number(process.env.BENCH_WEBHOOK_SLOW_MS ?? 5000);
const ROUNDS = Number(process.env.BENCH_WEBHOOK_ROUNDS ?? 3);

/** A receiver on 127.0.0.1 answering 204 after `delayMs`; records each event's latency since it was written. */
async function receiver(delayMs: number) {
  const latencies: number[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      latencies.push(Date.now() - Date.parse((JSON.parse(body) as { timestamp: string }).timestamp));
      setTimeout(() => res.writeHead(204).end(), delayMs);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`,
    latencies,
    close: () => new Promise<void>((r) => (server.closeAllConnections(), server.close(() => r()))),
  };
}

const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((p / 100) * xs.length))] ?? NaN;

export default async function webhooksBench(harness: BenchHarness): Promise<void> {
  const db = await harness.createTenantwall(schema, migrations, { poolSize: 8 });
  const metering = new Metering(db, { spec: meteringSpec, webhooks: { allowNetworks: ['127.0.0.1'] } });
  const tenants: TenantId[] = [];
  for (let i = 0; i < 20; i++) tenants.push((await db.tenants.create({ slug: `w${i}`, name: `W${i}` })).id);
  const plans = Object.keys(meteringSpec.plans);
  let n = 0;

  async function round(withSlow: boolean): Promise<{ p50: number; p99: number; slowGot: number }> {
    const healthy = await receiver(0);
    const slow = withSlow ? await receiver(SLOW_MS) : undefined;
    const eps = [await metering.webhooks.addEndpoint({ url: healthy.url })];
    if (slow) eps.push(await metering.webhooks.addEndpoint({ url: slow.url }));
    const relay = metering.webhooks.relay({ pollIntervalMs: 100 });
    relay.start((err) => console.log(`! relay: ${(err as Error).message}`));
    for (let i = 0; i < EVENTS; i++) {
      const t0 = Date.now();
      // Tenant by tenant, each pass to the next plan: every call is a change and writes one plan.changed.
      const t = tenants[n % tenants.length] as TenantId;
      await metering.setPlan(t, plans[(Math.floor(n++ / tenants.length) + 1) % plans.length] as string);
      await new Promise((r) => setTimeout(r, Math.max(0, INTERVAL_MS - (Date.now() - t0))));
    }
    const deadline = Date.now() + 30_000;
    while (healthy.latencies.length < EVENTS && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const ep of eps) await metering.webhooks.disableEndpoint(ep.id);
    await relay.stop();
    await healthy.close();
    await slow?.close();
    if (healthy.latencies.length < EVENTS) console.log(`! only ${healthy.latencies.length} of ${EVENTS} events reached the healthy endpoint`);
    return { p50: pct(healthy.latencies, 50), p99: pct(healthy.latencies, 99), slowGot: slow?.latencies.length ?? 0 };
  }

  console.log(`isolation: ${EVENTS} events at one per ${INTERVAL_MS} ms to a healthy endpoint, alone or beside one answering in ${SLOW_MS} ms; ${ROUNDS} alternated rounds each`);
  const alone: number[] = [];
  const beside: number[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const a = await round(false);
    const b = await round(true);
    alone.push(a.p99);
    beside.push(b.p99);
    console.log(`  round ${i + 1}: healthy p50/p99 alone ${a.p50}/${a.p99} ms, beside the slow endpoint ${b.p50}/${b.p99} ms (slow endpoint received ${b.slowGot})`);
  }
  const med = (xs: number[]) => pct(xs, 50);
  console.log(`  median p99: alone ${med(alone)} ms, beside a slow endpoint ${med(beside)} ms, ratio ${(med(beside) / med(alone)).toFixed(2)} (target <= 1.10)`);
  await metering.close();
}
