import pg from 'pg';
import { type Migration, type Tenantwall, defineSchema, globalTable, tenantTable } from '../../src/index.ts';

/**
 * Two partitioned tenant tables (hybrid layout, 4 hash buckets) with a composite foreign key between them, a
 * tenant table that stays unpartitioned and a global table: every kind a lifecycle operation has to handle.
 */
export const lifecycleSchema = defineSchema({
  tables: [
    globalTable({ name: 'currencies', columns: { code: { type: 'text' } }, primaryKey: ['code'] }),
    tenantTable({
      name: 'customers',
      columns: { id: { type: 'bigint' }, email: { type: 'text' }, meta: { type: 'jsonb', nullable: true } },
      indexes: [{ columns: ['email'], unique: true }],
      partition: { hashPartitions: 4 },
    }),
    tenantTable({
      name: 'invoices',
      columns: {
        id: { type: 'bigint' },
        customer_id: { type: 'bigint' },
        amount_cents: { type: 'bigint', check: 'amount_cents >= 0' },
        note: { type: 'text', nullable: true },
        created_at: { type: 'timestamptz', default: 'now()' },
      },
      foreignKeys: [{ columns: ['customer_id'], references: 'customers' }],
      indexes: [{ columns: ['created_at'] }],
      partition: { hashPartitions: 4 },
    }),
    tenantTable({ name: 'notes', columns: { id: { type: 'bigint' }, body: { type: 'text' } } }),
  ],
});

export const lifecycleMigrations: Migration[] = [
  { version: 1, name: 'init', sql: (ctx) => ctx.createSchema() },
  { version: 2, name: 'currencies', sql: `INSERT INTO currencies (code) VALUES ('EUR');` },
];

/** Seeds `n` customers with 3 invoices each and `n` notes for a tenant, as the owner. */
export async function seedTenant(db: Tenantwall, tenantId: string, n: number): Promise<void> {
  const a = db.dangerouslyCrossTenant();
  await a.query(
    `INSERT INTO customers (tenant_id, id, email, meta) SELECT $1, g, 'c' || g || '@example.com', jsonb_build_object('g', g, 's', 'x,"y"' || chr(10)) FROM generate_series(1, $2::int) g`,
    [tenantId, n],
  );
  await a.query(
    `INSERT INTO invoices (tenant_id, id, customer_id, amount_cents, note) SELECT $1, g, (g - 1) / 3 + 1, g * 7, CASE WHEN g % 5 = 0 THEN NULL WHEN g % 7 = 0 THEN '' ELSE 'n,"' || g || E'\\n' END FROM generate_series(1, $2::int * 3) g`,
    [tenantId, n],
  );
  await a.query(`INSERT INTO notes (tenant_id, id, body) SELECT $1, g, 'note ' || g FROM generate_series(1, $2::int) g`, [tenantId, n]);
}

/** Row counts and checksums of every tenant table for every tenant, in one snapshot, as the superuser. */
export async function allChecksums(url: string): Promise<Record<string, string>> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    await c.query('BEGIN ISOLATION LEVEL REPEATABLE READ');
    const out: Record<string, string> = {};
    for (const t of ['customers', 'invoices', 'notes']) {
      const { rows } = await c.query<{ tenant_id: string; n: string; s: string }>(
        `SELECT tenant_id, count(*)::text AS n, sum(('x' || left(md5(x::text), 16))::bit(64)::bigint)::text AS s FROM ${t} x GROUP BY tenant_id`,
      );
      for (const r of rows) out[`${t}/${r.tenant_id}`] = `${r.n}:${r.s}`;
    }
    await c.query('COMMIT');
    return out;
  } finally {
    await c.end();
  }
}

/** The checksums of every tenant but `except`. */
export function without(sums: Record<string, string>, except: string): Record<string, string> {
  return Object.fromEntries(Object.entries(sums).filter(([k]) => !k.endsWith(`/${except}`)));
}
