import { TenantwallError, type TenantTransaction } from '../../src/index.ts';
import { type Page, type PageRequest, type Q, iso, keysetSql, notFound, pgCode, toPage } from './common.ts';

export type InvoiceStatus = 'draft' | 'issued' | 'paid' | 'void';

export interface Invoice {
  id: string;
  customer: string;
  customer_id: string | null;
  amount_cents: number;
  currency: string;
  status: InvoiceStatus;
  issued_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface LineItem {
  id: string;
  invoice_id: string;
  position: number;
  description: string;
  quantity: number;
  unit_amount_cents: number;
  amount_cents: number;
  created_at: string;
}

export interface LineItemInput {
  position?: number | undefined;
  description: string;
  quantity: number;
  unit_amount_cents: number;
}

export interface InvoiceInput {
  customer?: string | undefined;
  customer_id?: string | null | undefined;
  amount_cents?: number | undefined;
  currency?: string | undefined;
  status?: 'draft' | 'issued' | undefined;
  issued_at?: string | undefined;
  line_items?: LineItemInput[] | undefined;
}

export interface InvoicePatch {
  customer?: string | undefined;
  customer_id?: string | null | undefined;
  amount_cents?: number | undefined;
  currency?: string | undefined;
  status?: InvoiceStatus | undefined;
  issued_at?: string | undefined;
}

type InvoiceRow = Omit<Invoice, 'amount_cents' | 'issued_at' | 'created_at' | 'updated_at'> & {
  amount_cents: string;
  issued_at: Date | null;
  created_at: Date;
  updated_at: Date;
};
type ItemRow = Omit<LineItem, 'unit_amount_cents' | 'amount_cents' | 'created_at'> & { unit_amount_cents: string; amount_cents: string; created_at: Date };

const INVOICE_COLS = 'id, customer, customer_id, amount_cents, currency, status, issued_at, created_at, updated_at';
const ITEM_COLS = 'id, invoice_id, position, description, quantity, unit_amount_cents, amount_cents, created_at';

function toInvoice(r: InvoiceRow): Invoice {
  return {
    id: r.id,
    customer: r.customer,
    customer_id: r.customer_id,
    amount_cents: Number(r.amount_cents),
    currency: r.currency,
    status: r.status,
    issued_at: iso(r.issued_at),
    created_at: iso(r.created_at) as string,
    updated_at: iso(r.updated_at) as string,
  };
}

function toItem(r: ItemRow): LineItem {
  return {
    id: r.id,
    invoice_id: r.invoice_id,
    position: r.position,
    description: r.description,
    quantity: r.quantity,
    unit_amount_cents: Number(r.unit_amount_cents),
    amount_cents: Number(r.amount_cents),
    created_at: iso(r.created_at) as string,
  };
}

function invalid(field: string, message: string): TenantwallError {
  return new TenantwallError('validation_failed', message, { details: { field, location: 'body' } });
}

function conflict(field: string, message: string, cause?: unknown): TenantwallError {
  return new TenantwallError('conflict', message, { cause, details: { field } });
}

function lineAmount(item: LineItemInput, field: string): number {
  const amount = item.quantity * item.unit_amount_cents;
  if (!Number.isSafeInteger(amount)) throw invalid(field, `Invalid body field "${field}": quantity x unit_amount_cents is too large.`);
  return amount;
}

/** The name of a customer of the current tenant; `not_found` naming `customer_id` otherwise. */
async function customerName(q: Q, customerId: string): Promise<string> {
  const { rows } = await q.query<{ name: string }>(`SELECT name FROM customers WHERE tenant_id = $1 AND id = $2`, [q.tenantId, customerId]);
  if (!rows[0]) throw notFound('customer', customerId, 'customer_id');
  return rows[0].name;
}

/** Creates an invoice and its line items in the caller's transaction: all rows or none. */
export async function createInvoice(tx: TenantTransaction, input: InvoiceInput): Promise<Invoice & { line_items: LineItem[] }> {
  const customerId = input.customer_id ?? null;
  let customer = input.customer;
  if (customerId !== null) {
    const name = await customerName(tx, customerId);
    customer ??= name;
  }
  if (customer === undefined) throw invalid('customer', 'Invalid body field "customer": give customer or customer_id.');
  const items = input.line_items ?? [];
  let amount = input.amount_cents;
  if (items.length > 0) {
    let sum = 0;
    items.forEach((it, i) => (sum += lineAmount(it, `line_items.${i}`)));
    if (!Number.isSafeInteger(sum)) throw invalid('line_items', 'Invalid body field "line_items": the total is too large.');
    if (amount !== undefined && amount !== sum) {
      throw invalid('amount_cents', `Invalid body field "amount_cents": ${amount} is not the sum of the line items (${sum}).`);
    }
    amount = sum;
  }
  if (amount === undefined) throw invalid('amount_cents', 'Invalid body field "amount_cents": required when there are no line_items.');
  const status = input.status ?? 'draft';
  const issuedAt = status === 'issued' ? (input.issued_at ?? new Date().toISOString()) : null;
  if (status === 'draft' && input.issued_at !== undefined) throw invalid('issued_at', 'Invalid body field "issued_at": a draft has no issue date.');
  const { rows } = await tx.query<InvoiceRow>(
    `INSERT INTO invoices (tenant_id, customer, customer_id, amount_cents, currency, status, issued_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${INVOICE_COLS}`,
    [tx.tenantId, customer, customerId, amount, input.currency ?? 'EUR', status, issuedAt],
  );
  const invoice = toInvoice(rows[0] as InvoiceRow);
  const created: LineItem[] = [];
  for (const [i, it] of items.entries()) {
    try {
      const r = await tx.query<ItemRow>(
        `INSERT INTO invoice_line_items (tenant_id, invoice_id, position, description, quantity, unit_amount_cents, amount_cents)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ${ITEM_COLS}`,
        [tx.tenantId, invoice.id, it.position ?? i + 1, it.description, it.quantity, it.unit_amount_cents, lineAmount(it, `line_items.${i}`)],
      );
      created.push(toItem(r.rows[0] as ItemRow));
    } catch (err) {
      if (pgCode(err) === '23505') throw conflict(`line_items.${i}.position`, `Line item ${i} repeats position ${it.position ?? i + 1}.`, err);
      throw err;
    }
  }
  return { ...invoice, line_items: created };
}

export async function getInvoice(q: Q, id: string): Promise<Invoice> {
  const { rows } = await q.query<InvoiceRow>(`SELECT ${INVOICE_COLS} FROM invoices WHERE tenant_id = $1 AND id = $2`, [q.tenantId, id]);
  if (!rows[0]) throw notFound('invoice', id);
  return toInvoice(rows[0]);
}

const TRANSITIONS: Record<InvoiceStatus, readonly InvoiceStatus[]> = {
  draft: ['draft', 'issued', 'void'],
  issued: ['issued', 'paid', 'void'],
  paid: ['paid'],
  void: ['void'],
};

/** Updates an invoice under a row lock: content changes only while draft, status along the allowed transitions. */
export async function updateInvoice(tx: TenantTransaction, id: string, patch: InvoicePatch): Promise<Invoice> {
  const { rows } = await tx.query<InvoiceRow>(`SELECT ${INVOICE_COLS} FROM invoices WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tx.tenantId, id]);
  const current = rows[0];
  if (!current) throw notFound('invoice', id);
  const contentChange = patch.customer !== undefined || patch.customer_id !== undefined || patch.amount_cents !== undefined || patch.currency !== undefined;
  if (contentChange && current.status !== 'draft') throw conflict('status', `Invoice ${id} is ${current.status}; only drafts can be edited.`);
  const next = patch.status ?? current.status;
  if (!TRANSITIONS[current.status].includes(next)) throw conflict('status', `An invoice cannot go from ${current.status} to ${next}.`);
  if (patch.amount_cents !== undefined) {
    const items = await tx.query(`SELECT 1 FROM invoice_line_items WHERE tenant_id = $1 AND invoice_id = $2 LIMIT 1`, [tx.tenantId, id]);
    if (items.rows.length > 0) throw conflict('amount_cents', 'The amount of an invoice with line items is their sum; edit the line items.');
  }
  let customer = patch.customer;
  if (patch.customer_id) customer ??= await customerName(tx, patch.customer_id);
  const issuing = next === 'issued' && current.status !== 'issued';
  if (patch.issued_at !== undefined && next === 'draft') throw invalid('issued_at', 'Invalid body field "issued_at": a draft has no issue date.');
  const issuedAt = patch.issued_at ?? (issuing ? new Date().toISOString() : null);
  const { rows: updated } = await tx.query<InvoiceRow>(
    `UPDATE invoices SET
       customer = coalesce($3, customer),
       customer_id = CASE WHEN $4 THEN $5::uuid ELSE customer_id END,
       amount_cents = coalesce($6, amount_cents),
       currency = coalesce($7, currency),
       status = $8,
       issued_at = coalesce($9::timestamptz, issued_at),
       updated_at = date_trunc('milliseconds', now())
     WHERE tenant_id = $1 AND id = $2 RETURNING ${INVOICE_COLS}`,
    [tx.tenantId, id, customer ?? null, patch.customer_id !== undefined, patch.customer_id ?? null, patch.amount_cents ?? null, patch.currency ?? null, next, issuedAt],
  );
  return toInvoice(updated[0] as InvoiceRow);
}

export async function deleteInvoice(q: Q, id: string): Promise<void> {
  const { rowCount } = await q.query(`DELETE FROM invoices WHERE tenant_id = $1 AND id = $2`, [q.tenantId, id]);
  if (!rowCount) throw notFound('invoice', id);
}

export const INVOICE_SORTS = ['created_at', 'amount_cents'] as const;
export type InvoiceSort = (typeof INVOICE_SORTS)[number];

export interface InvoiceFilter {
  status?: InvoiceStatus | undefined;
  customer_id?: string | undefined;
  customer?: string | undefined;
  issued_from?: string | undefined;
  issued_to?: string | undefined;
}

export async function listInvoices(q: Q, page: PageRequest & InvoiceFilter & { sort: InvoiceSort }): Promise<Page<Invoice>> {
  const params: unknown[] = [q.tenantId];
  let where = 'tenant_id = $1';
  const add = (sql: string, value: unknown) => {
    params.push(value);
    where += ` AND ${sql.replace('?', `$${params.length}`)}`;
  };
  if (page.status !== undefined) add('status = ?', page.status);
  if (page.customer_id !== undefined) add('customer_id = ?', page.customer_id);
  if (page.customer !== undefined) add('customer = ?', page.customer);
  if (page.issued_from !== undefined) add('issued_at >= ?::timestamptz', page.issued_from);
  if (page.issued_to !== undefined) add('issued_at < ?::timestamptz', page.issued_to);
  const kind = page.sort === 'amount_cents' ? 'integer' : 'timestamp';
  const { condition, tail } = keysetSql(params, page.sort, kind, page);
  const { rows } = await q.query<InvoiceRow>(`SELECT ${INVOICE_COLS} FROM invoices WHERE ${where}${condition}${tail}`, params);
  return toPage(rows, page, page.sort, (r) => (page.sort === 'amount_cents' ? Number(r.amount_cents) : (iso(r.created_at) as string)), toInvoice);
}

// ---- line items ----

async function lockDraftInvoice(tx: TenantTransaction, invoiceId: string): Promise<void> {
  const { rows } = await tx.query<{ status: InvoiceStatus }>(`SELECT status FROM invoices WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, [tx.tenantId, invoiceId]);
  if (!rows[0]) throw notFound('invoice', invoiceId, 'invoice_id');
  if (rows[0].status !== 'draft') throw conflict('status', `Invoice ${invoiceId} is ${rows[0].status}; only drafts' line items can change.`);
}

async function refreshTotal(tx: TenantTransaction, invoiceId: string): Promise<void> {
  await tx.query(
    `UPDATE invoices SET amount_cents = (SELECT coalesce(sum(amount_cents), 0) FROM invoice_line_items WHERE tenant_id = $1 AND invoice_id = $2),
       updated_at = date_trunc('milliseconds', now())
     WHERE tenant_id = $1 AND id = $2`,
    [tx.tenantId, invoiceId],
  );
}

export async function addLineItem(tx: TenantTransaction, invoiceId: string, input: LineItemInput): Promise<LineItem> {
  await lockDraftInvoice(tx, invoiceId);
  try {
    const { rows } = await tx.query<ItemRow>(
      `INSERT INTO invoice_line_items (tenant_id, invoice_id, position, description, quantity, unit_amount_cents, amount_cents)
       VALUES ($1, $2, coalesce($3, (SELECT coalesce(max(position), 0) + 1 FROM invoice_line_items WHERE tenant_id = $1 AND invoice_id = $2)), $4, $5, $6, $7)
       RETURNING ${ITEM_COLS}`,
      [tx.tenantId, invoiceId, input.position ?? null, input.description, input.quantity, input.unit_amount_cents, lineAmount(input, 'quantity')],
    );
    await refreshTotal(tx, invoiceId);
    return toItem(rows[0] as ItemRow);
  } catch (err) {
    if (pgCode(err) === '23505') throw conflict('position', `The invoice already has a line item at position ${input.position}.`, err);
    throw err;
  }
}

export async function getLineItem(q: Q, invoiceId: string, id: string): Promise<LineItem> {
  const { rows } = await q.query<ItemRow>(`SELECT ${ITEM_COLS} FROM invoice_line_items WHERE tenant_id = $1 AND invoice_id = $2 AND id = $3`, [
    q.tenantId,
    invoiceId,
    id,
  ]);
  if (!rows[0]) throw notFound('line item', id);
  return toItem(rows[0]);
}

export async function updateLineItem(tx: TenantTransaction, invoiceId: string, id: string, patch: Partial<LineItemInput>): Promise<LineItem> {
  await lockDraftInvoice(tx, invoiceId);
  const current = await getLineItem(tx, invoiceId, id);
  const merged: LineItemInput = {
    description: patch.description ?? current.description,
    quantity: patch.quantity ?? current.quantity,
    unit_amount_cents: patch.unit_amount_cents ?? current.unit_amount_cents,
    position: patch.position ?? current.position,
  };
  try {
    const { rows } = await tx.query<ItemRow>(
      `UPDATE invoice_line_items SET position = $4, description = $5, quantity = $6, unit_amount_cents = $7, amount_cents = $8
       WHERE tenant_id = $1 AND invoice_id = $2 AND id = $3 RETURNING ${ITEM_COLS}`,
      [tx.tenantId, invoiceId, id, merged.position, merged.description, merged.quantity, merged.unit_amount_cents, lineAmount(merged, 'quantity')],
    );
    await refreshTotal(tx, invoiceId);
    return toItem(rows[0] as ItemRow);
  } catch (err) {
    if (pgCode(err) === '23505') throw conflict('position', `The invoice already has a line item at position ${merged.position}.`, err);
    throw err;
  }
}

export async function deleteLineItem(tx: TenantTransaction, invoiceId: string, id: string): Promise<void> {
  await lockDraftInvoice(tx, invoiceId);
  const { rowCount } = await tx.query(`DELETE FROM invoice_line_items WHERE tenant_id = $1 AND invoice_id = $2 AND id = $3`, [tx.tenantId, invoiceId, id]);
  if (!rowCount) throw notFound('line item', id);
  await refreshTotal(tx, invoiceId);
}

export async function listLineItems(q: Q, invoiceId: string, page: PageRequest): Promise<Page<LineItem>> {
  // Answer 404 for an unknown (or another tenant's) invoice rather than an empty page.
  await getInvoice(q, invoiceId).catch((err: unknown) => {
    throw err instanceof TenantwallError && err.code === 'not_found' ? notFound('invoice', invoiceId, 'invoice_id') : err;
  });
  const params: unknown[] = [q.tenantId, invoiceId];
  const { condition, tail } = keysetSql(params, 'position', 'integer', page);
  const { rows } = await q.query<ItemRow>(
    `SELECT ${ITEM_COLS} FROM invoice_line_items WHERE tenant_id = $1 AND invoice_id = $2${condition}${tail}`,
    params,
  );
  return toPage(rows, page, 'position', (r) => r.position, toItem);
}
