import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { freePort, startService } from '../adversarial/lib/service-process.ts';
import { createTestDatabase, superQuery, type TestDatabase } from '../helpers/db.ts';

/**
 * `npm start` (service/main.ts) on a database named by DATABASE_URL: it must not seed demo tenants or print
 * tenant keys there unless asked (`--seed-demo`); the embedded default is tenantwall's own database.
 */
let database: TestDatabase;
before(async () => {
  database = await createTestDatabase();
});
after(() => database.drop());

/** The banner is printed once listening; the pipe may deliver it after /readyz answered. */
async function banner(p: { output(): string }): Promise<string> {
  while (!/invoicing API on [\s\S]*(Demo API keys[\s\S]*readyz|admin API:[\s\S]*api-keys)/.test(p.output())) await new Promise((r) => setTimeout(r, 50));
  return p.output();
}

const DEMO_INVOICES = 2500;
process.env.TENANTWALL_DEMO_INVOICES = String(DEMO_INVOICES);
const tenants = async () => (await superQuery(database.name, 'SELECT slug FROM tenants ORDER BY slug')).rows.map((r) => r.slug as string);

test('DATABASE_URL: no demo tenant, no key printed; --seed-demo seeds them', async () => {
  const adminToken = 'start-test-admin-token-0123456789';
  const plain = await startService({ databaseUrl: database.url, port: await freePort(), adminToken });
  try {
    const out = await banner(plain);
    assert.deepEqual(await tenants(), []);
    assert.doesNotMatch(out, /tw_[0-9a-f]{32}_/);
    assert.ok(!out.includes(adminToken), 'the admin token from the environment is not printed');
    assert.match(out, /--seed-demo/);
  } finally {
    await plain.stop();
  }
  const seeded = await startService({ databaseUrl: database.url, port: await freePort(), adminToken, args: ['--seed-demo'] });
  try {
    const out = await banner(seeded);
    assert.deepEqual(await tenants(), ['acme', 'globex']);
    assert.match(out, /acme .*: tw_[0-9a-f]{32}_/);
    // The large demo tenant is dedicated, the other shared, and the banner says so.
    assert.match(out, /Tenants and their placement:\s+acme\s+dedicated\s+own partitions \(invoices_t_[0-9a-f]{32}/);
    assert.match(out, /globex\s+shared\s+shared hash buckets/);
    const acme = (await superQuery(database.name, `SELECT id FROM tenants WHERE slug = 'acme'`)).rows[0]?.id as string;
    const big = await superQuery(database.name, `SELECT count(*)::int AS n FROM "invoices_t_${acme.replaceAll('-', '')}"`);
    assert.equal(big.rows[0]?.n, 2 + DEMO_INVOICES, 'the large tenant\'s invoices are in its own partition');
  } finally {
    await seeded.stop();
  }
});
