import { TenantwallError } from 'tenantwall';
import type { Param } from 'tenantwall/kysely';
import { type Page, type PageRequest, iso, keysetPage, notFound, nowMs, pgCode, toPage } from './common.ts';
import { type K, prepared } from './db.ts';

export interface Customer {
  id: string;
  name: string;
  email: string | null;
  created_at: string;
  updated_at: string;
}

type Row = { id: string; name: string; email: string | null; created_at: Date; updated_at: Date };

const COLS = ['id', 'name', 'email', 'created_at', 'updated_at'] as const;

function toCustomer(r: Row): Customer {
  return { id: r.id, name: r.name, email: r.email, created_at: iso(r.created_at) as string, updated_at: iso(r.updated_at) as string };
}

function duplicateEmail(err: unknown): never {
  if (pgCode(err) === '23505') {
    throw new TenantwallError('conflict', 'Another customer already has this email.', { cause: err, details: { field: 'email' } });
  }
  throw err;
}

export async function createCustomer(k: K, input: { name: string; email?: string | null | undefined }): Promise<Customer> {
  try {
    const row = await k.insertInto('customers').values({ name: input.name, email: input.email ?? null }).returning(COLS).executeTakeFirstOrThrow();
    return toCustomer(row);
  } catch (err) {
    return duplicateEmail(err);
  }
}

// A lookup by the primary key (tenant_id, id): one plan fits every tenant.
const customerById = prepared((db, param: Param<{ id: string }>) => db.selectFrom('customers').select(COLS).where('id', '=', param('id')), { plan: 'generic' });

export async function getCustomer(k: K, id: string): Promise<Customer> {
  const row = await customerById(k).executeTakeFirst({ id }, k);
  if (!row) throw notFound('customer', id);
  return toCustomer(row);
}

export async function updateCustomer(k: K, id: string, patch: { name?: string | undefined; email?: string | null | undefined }): Promise<Customer> {
  try {
    const row = await k
      .updateTable('customers')
      .set({
        ...(patch.name !== undefined ? { name: patch.name } : {}),
        ...(patch.email !== undefined ? { email: patch.email } : {}),
        updated_at: nowMs,
      })
      .where('id', '=', id)
      .returning(COLS)
      .executeTakeFirst();
    if (!row) throw notFound('customer', id);
    return toCustomer(row);
  } catch (err) {
    return duplicateEmail(err);
  }
}

export async function deleteCustomer(k: K, id: string): Promise<void> {
  try {
    const r = await k.deleteFrom('customers').where('id', '=', id).executeTakeFirst();
    if (r.numDeletedRows === 0n) throw notFound('customer', id);
  } catch (err) {
    if (pgCode(err) === '23503') {
      throw new TenantwallError('conflict', `Customer ${id} still has invoices; delete or reassign them first.`, { cause: err, details: { field: 'id' } });
    }
    throw err;
  }
}

export const CUSTOMER_SORTS = ['created_at', 'name'] as const;
export type CustomerSort = (typeof CUSTOMER_SORTS)[number];

export async function listCustomers(k: K, page: PageRequest & { sort: CustomerSort; email?: string | undefined }): Promise<Page<Customer>> {
  let q = k.selectFrom('customers').select(COLS);
  if (page.email !== undefined) q = q.where('email', '=', page.email);
  const kind = page.sort === 'name' ? 'text' : 'timestamp';
  const rows = await keysetPage(q, page.sort, kind, page).execute();
  return toPage(rows, page, page.sort, (r) => (page.sort === 'name' ? r.name : (iso(r.created_at) as string)), toCustomer);
}
