/**
 * `npm run bench -- citus` (CITUS_URL = coordinator of a Citus cluster, e.g. `../shared/citus/cluster.sh url`):
 * a tenant-scoped primary-key lookup through the library (on Citus: BEGIN; SET LOCAL; SELECT; COMMIT pipelined,
 * one round trip to the coordinator) against the same lookup with the bare driver on an identical distributed
 * table without RLS (colocated, same keys, same app role and pool). Both are routed to one worker.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Tenantwall, defineSchema, tenantTable, type Migration, type TenantId } from '../src/index.ts';
import { createCitusDatabase } from '../test/citus/cluster.ts';
import { compare } from './core.ts';
import type { BenchHarness } from './harness.ts';

const schema = defineSchema({
  tables: [
    tenantTable({
      name: 'invoices',
      columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, customer: { type: 'text' }, amount_cents: { type: 'bigint' } },
    }),
  ],
});
const migrations: Migration[] = [
  { version: 1, name: 'init', sql: (ctx) => ctx.createSchema() },
  {
    version: 2,
    name: 'baseline copy without RLS',
    sql: (ctx) => `CREATE TABLE invoices_plain (LIKE invoices INCLUDING ALL);
SELECT create_distributed_table('invoices_plain', 'tenant_id', colocate_with => 'invoices');
ALTER TABLE invoices_plain ADD FOREIGN KEY (tenant_id) REFERENCES tenants (id);
GRANT SELECT, INSERT, UPDATE, DELETE ON invoices_plain TO ${ctx.appRole};`,
  },
];

const TENANTS = 100;
const PER_TENANT = 1000;

function fmt(n: number): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: 2, minimumFractionDigits: 2 });
}

export default async function run(h: BenchHarness): Promise<void> {
  const url = process.env.CITUS_URL ?? h.adminUrl;
  if (!(await isCitus(url))) throw new Error('bench citus needs CITUS_URL (or DATABASE_URL) = the coordinator of a Citus cluster, e.g. $(../shared/citus/cluster.sh url)');
  process.env.TENANTWALL_APP_PASSWORD ??= randomBytes(12).toString('hex');
  const database = await createCitusDatabase(url);
  const db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, appPassword: process.env.TENANTWALL_APP_PASSWORD, poolSize: 8 });
  try {
    await db.migrate(migrations);
    const admin = db.dangerouslyCrossTenant();
    const tenants: TenantId[] = [];
    for (let i = 0; i < TENANTS; i++) tenants.push((await db.tenants.create({ slug: `t${i}`, name: `T${i}` })).id);
    await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, ${PER_TENANT}) g`);
    await admin.query('INSERT INTO invoices_plain SELECT * FROM invoices');
    await admin.query('ANALYZE invoices');
    await admin.query('ANALYZE invoices_plain');
    const keys = (await admin.query<{ tenant_id: TenantId; id: string }>('SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT 5000')).rows;
    const workers = (await admin.query(`SELECT count(*)::int AS n FROM pg_dist_node WHERE groupid <> 0`)).rows[0]?.n;
    console.log(`Citus ${db.citusVersion}, ${workers} workers; data: ${TENANTS} tenants x ${PER_TENANT} invoices (32 shards); lookups over 5,000 random keys; scope mode ${db.options.scopeMode}`);
    const bare = db.dangerouslyRawAppPool();
    const key = (i: number) => keys[i % keys.length] as { tenant_id: TenantId; id: string };
    const lookup = 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2';
    const lookups = await compare('primary-key lookup on Citus', [
      { name: 'bare driver, no tenancy (invoices_plain)', op: (i) => bare.query('SELECT * FROM invoices_plain WHERE tenant_id = $1 AND id = $2', [key(i).tenant_id, key(i).id]) },
      { name: 'forTenant(id).query (BEGIN/SET LOCAL, 1 round trip)', op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      {
        name: 'bare driver inside BEGIN ... COMMIT (same SQL, no tenancy)',
        op: (i) => bare.query(`BEGIN; SELECT * FROM invoices_plain WHERE tenant_id = '${key(i).tenant_id}' AND id = '${key(i).id}'; COMMIT`),
      },
      { name: "forTenant(id).query, plan: 'generic'", op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id], { plan: 'generic' }) },
    ]);
    console.log(`  => scoped lookup / bare lookup on Citus = ${fmt(lookups.get('forTenant(id).query (BEGIN/SET LOCAL, 1 round trip)')?.ratio ?? 0)} (target >= 0.90)`);
  } finally {
    await db.close();
    await database.drop();
  }
}

async function isCitus(url: string): Promise<boolean> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`)).rowCount === 1;
  } finally {
    await c.end();
  }
}
