import { TenantwallError } from '../../src/index.ts';
import { type Page, type PageRequest, type Q, iso, keysetSql, notFound, pgCode, toPage } from './common.ts';

export interface Customer {
  id: string;
  name: string;
  email: string | null;
  created_at: string;
  updated_at: string;
}

type Row = { id: string; name: string; email: string | null; created_at: Date; updated_at: Date };

const COLS = 'id, name, email, created_at, updated_at';

function toCustomer(r: Row): Customer {
  return { id: r.id, name: r.name, email: r.email, created_at: iso(r.created_at) as string, updated_at: iso(r.updated_at) as string };
}

function duplicateEmail(err: unknown): never {
  if (pgCode(err) === '23505') {
    throw new TenantwallError('conflict', 'Another customer already has this email.', { cause: err, details: { field: 'email' } });
  }
  throw err;
}

export async function createCustomer(q: Q, input: { name: string; email?: string | null | undefined }): Promise<Customer> {
  try {
    const { rows } = await q.query<Row>(`INSERT INTO customers (tenant_id, name, email) VALUES ($1, $2, $3) RETURNING ${COLS}`, [
      q.tenantId,
      input.name,
      input.email ?? null,
    ]);
    return toCustomer(rows[0] as Row);
  } catch (err) {
    return duplicateEmail(err);
  }
}

export async function getCustomer(q: Q, id: string): Promise<Customer> {
  const { rows } = await q.query<Row>(`SELECT ${COLS} FROM customers WHERE tenant_id = $1 AND id = $2`, [q.tenantId, id]);
  if (!rows[0]) throw notFound('customer', id);
  return toCustomer(rows[0]);
}

export async function updateCustomer(q: Q, id: string, patch: { name?: string | undefined; email?: string | null | undefined }): Promise<Customer> {
  try {
    const { rows } = await q.query<Row>(
      `UPDATE customers SET name = coalesce($3, name), email = CASE WHEN $4 THEN $5 ELSE email END,
         updated_at = date_trunc('milliseconds', now())
       WHERE tenant_id = $1 AND id = $2 RETURNING ${COLS}`,
      [q.tenantId, id, patch.name ?? null, patch.email !== undefined, patch.email ?? null],
    );
    if (!rows[0]) throw notFound('customer', id);
    return toCustomer(rows[0]);
  } catch (err) {
    return duplicateEmail(err);
  }
}

export async function deleteCustomer(q: Q, id: string): Promise<void> {
  try {
    const { rowCount } = await q.query(`DELETE FROM customers WHERE tenant_id = $1 AND id = $2`, [q.tenantId, id]);
    if (!rowCount) throw notFound('customer', id);
  } catch (err) {
    if (pgCode(err) === '23503') {
      throw new TenantwallError('conflict', `Customer ${id} still has invoices; delete or reassign them first.`, { cause: err, details: { field: 'id' } });
    }
    throw err;
  }
}

export const CUSTOMER_SORTS = ['created_at', 'name'] as const;
export type CustomerSort = (typeof CUSTOMER_SORTS)[number];

export async function listCustomers(q: Q, page: PageRequest & { sort: CustomerSort; email?: string | undefined }): Promise<Page<Customer>> {
  const params: unknown[] = [q.tenantId];
  let where = 'tenant_id = $1';
  if (page.email !== undefined) {
    params.push(page.email);
    where += ` AND email = $${params.length}`;
  }
  const kind = page.sort === 'name' ? 'text' : 'timestamp';
  const { condition, tail } = keysetSql(params, page.sort, kind, page);
  const { rows } = await q.query<Row>(`SELECT ${COLS} FROM customers WHERE ${where}${condition}${tail}`, params);
  return toPage(rows, page, page.sort, (r) => (page.sort === 'name' ? r.name : (iso(r.created_at) as string)), toCustomer);
}
