import type pg from 'pg';
import { TenantId, type Params, type Row, type Tenantwall, type TenantTransaction } from '../../src/index.ts';
import { superQuery } from '../helpers/db.ts';
import { testTenantId } from '../helpers/tenant-key.ts';

/** Three tenants with fixed ids (of the run's key type), so that two databases seeded alike give identical rows. */
export const TENANTS = {
  a: testTenantId(0xaaaaaaaa),
  b: testTenantId(0xbbbbbbbb),
  c: testTenantId(0xcccccccc),
} as const;

export const customerId = (t: 'a' | 'b' | 'c', k: number) => `${t.repeat(8)}-c000-4000-8000-00000000000${k}`;
export const invoiceId = (t: 'a' | 'b' | 'c', k: number) => `${t.repeat(8)}-1000-4000-8000-00000000000${k}`;

/**
 * Rows of every tenant carry recognisable values (ids, `b1@b.test`, `B-inv-2`, amounts), so a leaked value
 * shows up in any result that contains it.
 */
export async function seedTenants(db: Tenantwall, database: string): Promise<void> {
  for (const [slug, id] of Object.entries(TENANTS)) await db.tenants.create({ slug, name: slug.toUpperCase(), id });
  const sql: string[] = [];
  for (const t of ['a', 'b', 'c'] as const) {
    const tid = TENANTS[t];
    for (let k = 1; k <= 3; k++) sql.push(`INSERT INTO customers (tenant_id, id, email) VALUES ('${tid}', '${customerId(t, k)}', '${t}${k}@${t}.test');`);
    const offset = { a: 1, b: 2, c: 3 }[t];
    for (let k = 1; k <= 4; k++) {
      const cust = k === 4 ? 'NULL' : `'${customerId(t, k)}'`;
      const amount = k === 1 ? 0 : k * 100 + offset;
      sql.push(`INSERT INTO invoices (tenant_id, id, customer, amount_cents, customer_id) VALUES ('${tid}', '${invoiceId(t, k)}', '${t.toUpperCase()}-inv-${k}', ${amount}, ${cust});`);
    }
  }
  await superQuery(database, sql.join('\n'));
}

/** Values that must never appear in a result of tenant A. */
export const FOREIGN_TOKENS: readonly string[] = (['b', 'c'] as const).flatMap((t) => [
  TENANTS[t],
  ...[1, 2, 3].map((k) => customerId(t, k)),
  ...[1, 2, 3, 4].map((k) => invoiceId(t, k)),
  `@${t}.test`,
  `${t.toUpperCase()}-inv`,
]);

export function leakedTokens(rows: readonly Row[]): string[] {
  const text = JSON.stringify(rows, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return FOREIGN_TOKENS.filter((t) => text.includes(t));
}

export const OTHER_TENANTS_CHECKSUM = `SELECT md5(coalesce(string_agg(x, '|' ORDER BY x), '')) AS sum FROM (
  SELECT c::text AS x FROM customers c WHERE c.tenant_id <> $1 UNION ALL SELECT i::text FROM invoices i WHERE i.tenant_id <> $1) s`;

class Rollback {
  constructor(readonly value: unknown) {}
}

/** Runs `fn` in a tenant transaction that is always rolled back; returns what `fn` returned. */
export async function inRolledBackTransaction<T>(db: Tenantwall, tenantId: TenantId, fn: (tx: TenantTransaction) => Promise<T>): Promise<T> {
  try {
    await db.forTenant(tenantId).transaction(async (tx) => {
      throw new Rollback(await fn(tx));
    });
  } catch (err) {
    if (err instanceof Rollback) return err.value as T;
    throw err;
  }
  throw new Error('unreachable');
}

export interface Outcome {
  readonly rows?: Row[];
  readonly rowCount?: number | null;
  readonly error?: string;
  /** Checksum of the other tenants' rows after the statement, inside its transaction (RLS-off database only). */
  readonly others?: string;
}

/** Runs a statement in a rolled-back transaction and reports rows (sorted) or the error code. */
export async function runStatement(db: Tenantwall, tenantId: TenantId, sql: string, params: Params, checksum: boolean): Promise<Outcome> {
  return inRolledBackTransaction(db, tenantId, async (tx) => {
    let r: pg.QueryResult<Row>;
    try {
      await tx.query('SAVEPOINT s');
      r = await tx.query(sql, params);
    } catch (err) {
      await tx.query('ROLLBACK TO SAVEPOINT s');
      const e = err as { code?: string; cause?: { code?: string; message?: string }; message?: string };
      return { error: `${e.cause?.code ?? e.code ?? 'error'}: ${e.cause?.message ?? e.message ?? ''}` };
    }
    const rows = sortRows(r.rows);
    if (!checksum) return { rows, rowCount: r.rowCount };
    const sum = await tx.query<{ sum: string }>(OTHER_TENANTS_CHECKSUM, [tenantId]);
    return { rows, rowCount: r.rowCount, others: sum.rows[0]?.sum ?? '' };
  });
}

export function sortRows(rows: readonly Row[]): Row[] {
  const key = (r: Row) => JSON.stringify(r, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
  return [...rows].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}
