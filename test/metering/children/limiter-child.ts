/**
 * One "service process" for the cross-process rate-limit test: its own Tenantwall and Metering (own pools,
 * own lease state), hammering one tenant's limit. Prints `{ windowStartMs: admitted }` as JSON.
 */
import { Tenantwall, defineSchema } from '../../../src/index.ts';
import { Metering } from '../../../src/metering/index.ts';

const [url, tenantId, store, attempts] = process.argv.slice(2) as [string, string, 'postgres' | 'redis', string];
const db = await Tenantwall.connect({ schema: defineSchema({ tables: [] }), databaseUrl: url, manageRoles: false, poolSize: 4 });
const metering = new Metering(db, {
  spec: { meters: [], plans: { rl: { rateLimits: [{ scope: 'tenant', per: 'minute', limit: 300 }] } }, defaultPlan: 'rl' },
  rateLimitStore: store,
  rateLimitFailure: 'closed',
  rateLimitTimeoutMs: 5000,
});
await metering.planOf(tenantId); // warm the plan cache outside the measured loop
// Both processes start on the parent's signals so their requests interleave: each takes its first request,
// then waits until the other has taken its first too (a barrier, not a delay: a loaded machine may start one
// process long after the other).
const signals: string[] = [];
let signalled: (() => void) | undefined;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (d: string) => {
  signals.push(...d.split('\n').filter(Boolean));
  signalled?.();
});
const signal = async (name: string) => {
  while (!signals.includes(name)) await new Promise<void>((r) => (signalled = r));
};
process.stderr.write('ready\n');
await signal('go');
const admitted: Record<string, number> = {};
let next = 0;
const attempt = async () => {
  next++;
  try {
    const [d] = await metering.rateLimit(tenantId);
    const w = String((d?.resetMs ?? 0) - 60_000);
    admitted[w] = (admitted[w] ?? 0) + 1;
  } catch (err) {
    if ((err as { code?: string }).code !== 'rate_limited') throw err;
  }
};
await attempt();
process.stderr.write('first\n');
await signal('more');
await Promise.all(
  Array.from({ length: 16 }, async () => {
    while (next < Number(attempts)) {
      // Paced so the two processes' requests overlap in time instead of one finishing before the other starts.
      await new Promise((r) => setTimeout(r, 2));
      await attempt();
    }
  }),
);
process.stdout.write(JSON.stringify(admitted));
await metering.close();
await db.close();
