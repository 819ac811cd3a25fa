/**
 * A metered service process for the crash tests: the small metered app plus a webhook relay, listening on a
 * random port (printed as `listening <port>` on stderr). `CRASH_ON_EVENT=<event_id>`: SIGKILL itself after
 * the ingestion of that event committed, before the response is written.
 */
import { Tenantwall } from '../../../src/index.ts';
import { Metering } from '../../../src/metering/index.ts';
import { buildMeteredApp } from '../app.ts';
import { LOOPBACK_RECEIVERS, schema, spec } from '../fixture.ts';

const url = process.argv[2] as string;
const db = await Tenantwall.connect({ schema, databaseUrl: url, manageRoles: false, poolSize: 4 });
const metering = new Metering(db, { spec, planCacheTtlMs: 200, webhooks: LOOPBACK_RECEIVERS });
const crashOn = process.env.CRASH_ON_EVENT;
const app = await buildMeteredApp(db, metering, {}, (a) => {
  if (!crashOn) return;
  a.addHook('onSend', async (request, _reply, payload) => {
    const body = request.body as { event_id?: string } | undefined;
    if (request.url === '/usage/events' && body?.event_id === crashOn) process.kill(process.pid, 'SIGKILL');
    return payload;
  });
});
const relay = metering.webhooks.relay({ pollIntervalMs: 50, deliveryTimeoutMs: 1000, leaseMs: 1500, retrySchedule: [100], maxAttempts: 50 });
relay.start();
await app.listen({ port: 0, host: '127.0.0.1' });
const address = app.server.address();
process.stderr.write(`listening ${typeof address === 'object' && address ? address.port : 0}\n`);
