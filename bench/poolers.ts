/**
 * The scoped primary-key lookup through PgBouncer (transaction mode, `pooler: 'transaction'`: unnamed
 * statements, limits and statement timeout per transaction) against the same lookup sent bare through the same
 * PgBouncer. Skipped with a note when pgbouncer is not installed (apt-get install -y pgbouncer).
 */
import { randomBytes } from 'node:crypto';
import { Tenantwall, type TenantId } from '../src/index.ts';
import { pgbouncerBinary, startPgBouncer } from '../test/poolers/pgbouncer.ts';
import { compare, migrations, schema } from './core.ts';
import type { BenchHarness } from './harness.ts';

const TENANTS = 100;
const PER_TENANT = 1000;
const ROLE = 'tenantwall_bench_pooled';

export default async function run(h: BenchHarness): Promise<void> {
  if (!pgbouncerBinary()) {
    console.log('pgbouncer is not installed: skipped (apt-get install -y pgbouncer)');
    return;
  }
  const password = randomBytes(12).toString('hex');
  const server = new URL(h.adminUrl);
  const bouncer = await startPgBouncer({ serverHost: server.hostname, serverPort: Number(server.port || 5432), users: { [ROLE]: password }, poolSize: 8 });
  const name = await h.createDatabase();
  const db = await Tenantwall.connect({
    schema,
    databaseUrl: h.urlOf(name),
    appRole: ROLE,
    appPassword: password,
    manageRoles: true,
    appDatabaseUrl: bouncer.url(ROLE, password, name),
    pooler: 'transaction',
    poolSize: 16,
  });
  try {
    await db.migrate(migrations);
    const tenants: TenantId[] = [];
    for (let i = 0; i < TENANTS; i++) tenants.push((await db.tenants.create({ slug: `t${i}`, name: `T${i}` })).id);
    const admin = db.dangerouslyCrossTenant();
    await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, ${PER_TENANT}) g`);
    await admin.query('INSERT INTO invoices_plain SELECT * FROM invoices');
    await admin.query('VACUUM ANALYZE invoices');
    await admin.query('VACUUM ANALYZE invoices_plain');
    const keys = (await admin.query<{ tenant_id: TenantId; id: string }>('SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT 5000')).rows;
    const key = (i: number) => keys[i % keys.length] as { tenant_id: TenantId; id: string };
    const bare = db.dangerouslyRawAppPool();
    const lookup = 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2';
    console.log(`PgBouncer 1.18 transaction mode, 8 server connections, 16 client connections; ${TENANTS} tenants x ${PER_TENANT} invoices`);
    const r = await compare('primary-key lookup through PgBouncer', [
      { name: 'bare driver through PgBouncer (invoices_plain)', op: (i) => bare.query('SELECT * FROM invoices_plain WHERE tenant_id = $1 AND id = $2', [key(i).tenant_id, key(i).id]) },
      { name: "forTenant(id).query, pooler: 'transaction'", op: (i) => db.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]) },
      { name: "forTenant(id).query, pooler + 4 plan limits", op: (i) => db.forTenant(key(i).tenant_id, { limits: LIMITS }).query(lookup, [key(i).tenant_id, key(i).id]) },
    ]);
    console.log(`  => scoped lookup / bare lookup through the same PgBouncer = ${(r.get("forTenant(id).query, pooler: 'transaction'")?.ratio ?? 0).toFixed(2)}`);
  } finally {
    await db.close();
    await bouncer.stop();
  }
}

const LIMITS = Object.freeze({ statementTimeoutMs: 30_000, lockTimeoutMs: 5_000, idleInTransactionSessionTimeoutMs: 60_000, workMem: '4MB' });
