import { TenantwallError } from 'tenantwall';
import type { Param } from 'tenantwall/kysely';
import { type Page, type PageRequest, iso, keysetPage, notFound, nowMs, pgCode, toPage } from './common.ts';
import { type K, prepared } from './db.ts';

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

const INVOICE_COLS = ['id', 'customer', 'customer_id', 'amount_cents', 'currency', 'status', 'issued_at', 'created_at', 'updated_at'] as const;
const ITEM_COLS = ['id', 'invoice_id', 'position', 'description', 'quantity', 'unit_amount_cents', 'amount_cents', 'created_at'] as const;

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

/** The task that renders an invoice's document (a `tw_jobs` task name; service/documents.ts runs it). */
export const RENDER_TASK = 'render-invoice-document';

/**
 * Enqueues the rendering of an invoice's document in the caller's transaction: a row of `tw_jobs` written in the
 * request's tenant scope (the Kysely plugin sets tenant_id, RLS checks it), whose trigger adds graphile-worker's
 * queue entry in the same transaction. A request that fails after this and rolls back enqueues nothing.
 */
async function enqueueRender(tx: K, invoiceId: string): Promise<void> {
  await tx.insertInto('tw_jobs').values({ task: RENDER_TASK, payload: JSON.stringify({ invoice_id: invoiceId }) }).execute();
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
async function customerName(k: K, customerId: string): Promise<string> {
  const row = await k.selectFrom('customers').select('name').where('id', '=', customerId).executeTakeFirst();
  if (!row) throw notFound('customer', customerId, 'customer_id');
  return row.name;
}

/** Creates an invoice and its line items in the caller's transaction (a Kysely transaction): all rows or none. */
export async function createInvoice(tx: K, input: InvoiceInput): Promise<Invoice & { line_items: LineItem[] }> {
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
  const row = await tx
    .insertInto('invoices')
    .values({ customer, customer_id: customerId, amount_cents: amount, currency: input.currency ?? 'EUR', status, issued_at: issuedAt })
    .returning(INVOICE_COLS)
    .executeTakeFirstOrThrow();
  const invoice = toInvoice(row);
  if (status === 'issued') await enqueueRender(tx, invoice.id);
  const created: LineItem[] = [];
  for (const [i, it] of items.entries()) {
    try {
      const item = await tx
        .insertInto('invoice_line_items')
        .values({
          invoice_id: invoice.id,
          position: it.position ?? i + 1,
          description: it.description,
          quantity: it.quantity,
          unit_amount_cents: it.unit_amount_cents,
          amount_cents: lineAmount(it, `line_items.${i}`),
        })
        .returning(ITEM_COLS)
        .executeTakeFirstOrThrow();
      created.push(toItem(item));
    } catch (err) {
      if (pgCode(err) === '23505') throw conflict(`line_items.${i}.position`, `Line item ${i} repeats position ${it.position ?? i + 1}.`, err);
      throw err;
    }
  }
  return { ...invoice, line_items: created };
}

// Lookups by the primary key (tenant_id, id): one plan fits every tenant.
const invoiceById = prepared((db, param: Param<{ id: string }>) => db.selectFrom('invoices').select(INVOICE_COLS).where('id', '=', param('id')), { plan: 'generic' });
const lineItemById = prepared(
  (db, param: Param<{ invoiceId: string; id: string }>) =>
    db.selectFrom('invoice_line_items').select(ITEM_COLS).where('invoice_id', '=', param('invoiceId')).where('id', '=', param('id')),
  { plan: 'generic' },
);

export async function getInvoice(k: K, id: string): Promise<Invoice> {
  const row = await invoiceById(k).executeTakeFirst({ id }, k);
  if (!row) throw notFound('invoice', id);
  return toInvoice(row);
}

const TRANSITIONS: Record<InvoiceStatus, readonly InvoiceStatus[]> = {
  draft: ['draft', 'issued', 'void'],
  issued: ['issued', 'paid', 'void'],
  paid: ['paid'],
  void: ['void'],
};

/**
 * The issue date a PATCH may set: only when the draft is issued by this request. Once issued (or paid, or voided
 * after issuing) the date is fixed; repeating it unchanged is not a change. A draft, and a void invoice that was
 * never issued, have none.
 */
function checkIssuedAt(current: InvoiceRow, next: InvoiceStatus, issuedAt: string): string | null {
  if (current.status === 'draft' && next === 'issued') return issuedAt;
  if (current.issued_at !== null && current.issued_at.getTime() === Date.parse(issuedAt)) return null;
  if (next === 'draft') throw invalid('issued_at', 'Invalid body field "issued_at": a draft has no issue date.');
  if (current.issued_at === null) throw conflict('issued_at', `Invoice ${current.id} was never issued; it has no issue date to set (issue the draft with status "issued").`);
  throw conflict('issued_at', `Invoice ${current.id} is ${current.status}; its issue date ${current.issued_at.toISOString()} can no longer change.`);
}

/** Updates an invoice under a row lock: content changes only while draft, status along the allowed transitions. */
export async function updateInvoice(tx: K, id: string, patch: InvoicePatch): Promise<Invoice> {
  const current = await tx.selectFrom('invoices').select(INVOICE_COLS).where('id', '=', id).forUpdate().executeTakeFirst();
  if (!current) throw notFound('invoice', id);
  const contentChange = patch.customer !== undefined || patch.customer_id !== undefined || patch.amount_cents !== undefined || patch.currency !== undefined;
  if (contentChange && current.status !== 'draft') throw conflict('status', `Invoice ${id} is ${current.status}; only drafts can be edited.`);
  const next = patch.status ?? current.status;
  if (!TRANSITIONS[current.status].includes(next)) throw conflict('status', `An invoice cannot go from ${current.status} to ${next}.`);
  if (patch.amount_cents !== undefined) {
    const item = await tx.selectFrom('invoice_line_items').select('id').where('invoice_id', '=', id).limit(1).executeTakeFirst();
    if (item) throw conflict('amount_cents', 'The amount of an invoice with line items is their sum; edit the line items.');
  }
  // Every referenced row is resolved in the tenant's scope, whatever else the body holds (never left to the
  // composite foreign key, which would answer a conflict naming a constraint).
  const referenced = patch.customer_id ? await customerName(tx, patch.customer_id) : undefined;
  const customer = patch.customer ?? referenced;
  const issuing = next === 'issued' && current.status === 'draft';
  const issuedAt = patch.issued_at === undefined ? (issuing ? new Date().toISOString() : null) : checkIssuedAt(current, next, patch.issued_at);
  const updated = await tx
    .updateTable('invoices')
    .set({
      ...(customer !== undefined ? { customer } : {}),
      ...(patch.customer_id !== undefined ? { customer_id: patch.customer_id } : {}),
      ...(patch.amount_cents !== undefined ? { amount_cents: patch.amount_cents } : {}),
      ...(patch.currency !== undefined ? { currency: patch.currency } : {}),
      status: next,
      ...(issuedAt !== null ? { issued_at: issuedAt } : {}),
      updated_at: nowMs,
    })
    .where('id', '=', id)
    .returning(INVOICE_COLS)
    .executeTakeFirstOrThrow();
  if (issuing) await enqueueRender(tx, id);
  return toInvoice(updated);
}

/** Deletes the invoice, its line items (foreign key) and its document, in one transaction. */
export async function deleteInvoice(k: K, id: string): Promise<void> {
  await k.transaction().execute(async (tx) => {
    const r = await tx.deleteFrom('invoices').where('id', '=', id).executeTakeFirst();
    if (r.numDeletedRows === 0n) throw notFound('invoice', id);
    await tx.deleteFrom('invoice_documents').where('invoice_id', '=', id).execute();
  });
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

export async function listInvoices(k: K, page: PageRequest & InvoiceFilter & { sort: InvoiceSort }): Promise<Page<Invoice>> {
  let q = k.selectFrom('invoices').select(INVOICE_COLS);
  if (page.status !== undefined) q = q.where('status', '=', page.status);
  if (page.customer_id !== undefined) q = q.where('customer_id', '=', page.customer_id);
  if (page.customer !== undefined) q = q.where('customer', '=', page.customer);
  const from = page.issued_from;
  const to = page.issued_to;
  if (from !== undefined) q = q.where((eb) => eb('issued_at', '>=', eb.cast<Date>(eb.val(from), 'timestamptz')));
  if (to !== undefined) q = q.where((eb) => eb('issued_at', '<', eb.cast<Date>(eb.val(to), 'timestamptz')));
  const kind = page.sort === 'amount_cents' ? 'integer' : 'timestamp';
  const rows = await keysetPage(q, page.sort, kind, page).execute();
  return toPage(rows, page, page.sort, (r) => (page.sort === 'amount_cents' ? Number(r.amount_cents) : (iso(r.created_at) as string)), toInvoice);
}

// ---- line items ----

async function lockDraftInvoice(tx: K, invoiceId: string): Promise<void> {
  const row = await tx.selectFrom('invoices').select('status').where('id', '=', invoiceId).forUpdate().executeTakeFirst();
  if (!row) throw notFound('invoice', invoiceId, 'invoice_id');
  if (row.status !== 'draft') throw conflict('status', `Invoice ${invoiceId} is ${row.status}; only drafts' line items can change.`);
}

/** Recomputes an invoice's total from its line items; a total over the amount limit refuses the item change. */
async function refreshTotal(tx: K, invoiceId: string): Promise<void> {
  try {
    await updateTotal(tx, invoiceId);
  } catch (err) {
    if (pgCode(err) === '23514') {
      throw invalid('unit_amount_cents', `Invalid body field "unit_amount_cents": the invoice total would exceed ${Number.MAX_SAFE_INTEGER}.`);
    }
    throw err;
  }
}

async function updateTotal(tx: K, invoiceId: string): Promise<void> {
  const r = await tx
    .updateTable('invoices')
    .set((eb) => ({
      amount_cents: eb
        .selectFrom('invoice_line_items')
        .select((e) => e.fn.coalesce(e.fn.sum<number>('invoice_line_items.amount_cents'), e.lit(0)).as('total'))
        .where('invoice_line_items.invoice_id', '=', invoiceId),
      updated_at: nowMs,
    }))
    .where('id', '=', invoiceId)
    .executeTakeFirst();
  // The caller locked this row (lockDraftInvoice) in the same transaction, so it is there. If it ever is not, the
  // item write must not commit without its total: throwing rolls the whole transaction back.
  if (r.numUpdatedRows !== 1n) throw new Error(`The total of invoice ${invoiceId} was not updated (${r.numUpdatedRows} rows): the locked invoice row is gone.`);
}

export async function addLineItem(tx: K, invoiceId: string, input: LineItemInput): Promise<LineItem> {
  await lockDraftInvoice(tx, invoiceId);
  // Next free position: one more than the highest (the invoice row is locked, so adds do not race). Read by a
  // statement of its own: Citus refuses a sub-select inside INSERT ... VALUES.
  const position =
    input.position ??
    Number(
      (
        await tx
          .selectFrom('invoice_line_items')
          .select((e) => e(e.fn.coalesce(e.fn.max('invoice_line_items.position'), e.lit(0)), '+', e.lit(1)).as('next'))
          .where('invoice_line_items.invoice_id', '=', invoiceId)
          .executeTakeFirstOrThrow()
      ).next,
    );
  try {
    const row = await tx
      .insertInto('invoice_line_items')
      .values({
        invoice_id: invoiceId,
        position,
        description: input.description,
        quantity: input.quantity,
        unit_amount_cents: input.unit_amount_cents,
        amount_cents: lineAmount(input, 'quantity'),
      })
      .returning(ITEM_COLS)
      .executeTakeFirstOrThrow();
    await refreshTotal(tx, invoiceId);
    return toItem(row);
  } catch (err) {
    if (pgCode(err) === '23505') throw conflict('position', `The invoice already has a line item at position ${input.position}.`, err);
    throw err;
  }
}

export async function getLineItem(k: K, invoiceId: string, id: string): Promise<LineItem> {
  const row = await lineItemById(k).executeTakeFirst({ invoiceId, id }, k);
  if (!row) throw notFound('line item', id);
  return toItem(row);
}

export async function updateLineItem(tx: K, invoiceId: string, id: string, patch: Partial<LineItemInput>): Promise<LineItem> {
  await lockDraftInvoice(tx, invoiceId);
  const current = await getLineItem(tx, invoiceId, id);
  const merged: LineItemInput = {
    description: patch.description ?? current.description,
    quantity: patch.quantity ?? current.quantity,
    unit_amount_cents: patch.unit_amount_cents ?? current.unit_amount_cents,
    position: patch.position ?? current.position,
  };
  try {
    const row = await tx
      .updateTable('invoice_line_items')
      .set({
        position: merged.position as number,
        description: merged.description,
        quantity: merged.quantity,
        unit_amount_cents: merged.unit_amount_cents,
        amount_cents: lineAmount(merged, 'quantity'),
      })
      .where('invoice_id', '=', invoiceId)
      .where('id', '=', id)
      .returning(ITEM_COLS)
      .executeTakeFirstOrThrow();
    await refreshTotal(tx, invoiceId);
    return toItem(row);
  } catch (err) {
    if (pgCode(err) === '23505') throw conflict('position', `The invoice already has a line item at position ${merged.position}.`, err);
    throw err;
  }
}

export async function deleteLineItem(tx: K, invoiceId: string, id: string): Promise<void> {
  await lockDraftInvoice(tx, invoiceId);
  const r = await tx.deleteFrom('invoice_line_items').where('invoice_id', '=', invoiceId).where('id', '=', id).executeTakeFirst();
  if (r.numDeletedRows === 0n) throw notFound('line item', id);
  await refreshTotal(tx, invoiceId);
}

export async function listLineItems(k: K, invoiceId: string, page: PageRequest): Promise<Page<LineItem>> {
  // Answer 404 for an unknown (or another tenant's) invoice rather than an empty page.
  await getInvoice(k, invoiceId).catch((err: unknown) => {
    throw err instanceof TenantwallError && err.code === 'not_found' ? notFound('invoice', invoiceId, 'invoice_id') : err;
  });
  const q = k.selectFrom('invoice_line_items').select(ITEM_COLS).where('invoice_id', '=', invoiceId);
  const rows = await keysetPage(q, 'position', 'integer', page).execute();
  return toPage(rows, page, 'position', (r) => r.position, toItem);
}
