import { createHash } from 'node:crypto';
import { TenantwallError, type Tenantwall } from 'tenantwall';
import { type TenantJobContext, type TenantWorker, type TenantWorkerOptions, startTenantWorker } from 'tenantwall/jobs';
import { renderInvoicePdf } from './pdf.ts';
import { type K, serviceKysely } from './repo/db.ts';
import { RENDER_TASK, getInvoice, type Invoice, type LineItem } from './repo/invoices.ts';
import { iso } from './repo/common.ts';

export { RENDER_TASK };

/** What `GET /invoices/:id/document` finds: the PDF, or why there is none yet. */
export type DocumentLookup =
  | { state: 'ready'; content: Buffer; sha256: string; rendered_at: string }
  | { state: 'pending'; invoice: Invoice };

/**
 * The document of an invoice of the current tenant: `not_found` for an unknown (or another tenant's) invoice,
 * `conflict` naming `status` for an invoice that was never issued (it has no document and gets none until issued),
 * `pending` while the rendering job has not finished.
 */
export async function getDocument(k: K, invoiceId: string): Promise<DocumentLookup> {
  // Only the document of an invoice that exists: the table has no foreign key to the partitioned invoices.
  const doc = await k
    .selectFrom('invoice_documents as d')
    .innerJoin('invoices as i', 'i.id', 'd.invoice_id')
    .select(['d.content', 'd.sha256', 'd.rendered_at'])
    .where('d.invoice_id', '=', invoiceId)
    .executeTakeFirst();
  if (doc) return { state: 'ready', content: doc.content, sha256: doc.sha256, rendered_at: iso(doc.rendered_at) as string };
  const invoice = await getInvoice(k, invoiceId);
  if (invoice.issued_at === null) {
    throw new TenantwallError('conflict', `Invoice ${invoiceId} is ${invoice.status} and was never issued: its document is rendered when it is issued.`, {
      details: { field: 'status', status: invoice.status },
    });
  }
  return { state: 'pending', invoice };
}

/**
 * Renders an invoice's document and stores it, in one transaction of the current tenant (the job's): reads the
 * invoice and its line items, renders the PDF, replaces any earlier document (a rerun after a crash renders
 * again: idempotent). An invoice that is gone (deleted, or not the tenant's) renders nothing. Returns whether a
 * document was written.
 *
 * The invoice row is locked (FOR KEY SHARE) first: `invoice_documents` has no foreign key to the invoice, so
 * without the lock a delete committed between this read and the insert would leave a document of a deleted
 * invoice. With it, a concurrent delete waits for this transaction and then deletes the document too
 * (repo/invoices.ts deletes the invoice, then its document), or it committed first and this finds no invoice.
 */
export async function renderAndStore(k: K, invoiceId: string): Promise<boolean> {
  return k.transaction().execute(async (tx) => {
    const locked = await tx.selectFrom('invoices').select('id').where('id', '=', invoiceId).forKeyShare().executeTakeFirst();
    if (!locked) return false;
    let invoice: Invoice;
    try {
      invoice = await getInvoice(tx, invoiceId);
    } catch (err) {
      if (err instanceof TenantwallError && err.code === 'not_found') return false;
      throw err;
    }
    const rows = await tx
      .selectFrom('invoice_line_items')
      .select(['id', 'invoice_id', 'position', 'description', 'quantity', 'unit_amount_cents', 'amount_cents', 'created_at'])
      .where('invoice_id', '=', invoiceId)
      .orderBy('position')
      .execute();
    const items: LineItem[] = rows.map((r) => ({ ...r, unit_amount_cents: Number(r.unit_amount_cents), amount_cents: Number(r.amount_cents), created_at: iso(r.created_at) as string }));
    const content = await renderInvoicePdf(invoice, items);
    await tx.deleteFrom('invoice_documents').where('invoice_id', '=', invoiceId).execute();
    await tx.insertInto('invoice_documents').values({ invoice_id: invoiceId, content, sha256: createHash('sha256').update(content).digest('hex') }).execute();
    return true;
  });
}

export interface DocumentWorkerOptions extends Omit<TenantWorkerOptions, 'tasks'> {
  /**
   * Called in the job's tenant scope before each rendering (tests: observe the scope, hold a job mid-run). Runs
   * inside the handler: what it throws fails the attempt.
   */
  beforeRender?: ((ctx: TenantJobContext, invoiceId: string) => Promise<void>) | undefined;
}

/**
 * The service's background worker (`tenantwall/jobs`): renders invoice documents. Each job runs inside its
 * tenant's scope (`startTenantWorker`: registry check, `forTenant`, the implicit tenant), so the service's Kysely
 * queries get the tenant predicate, the guard verifies them and RLS applies, as in a request.
 */
export function startDocumentWorker(db: Tenantwall, options: DocumentWorkerOptions = {}): Promise<TenantWorker> {
  const { beforeRender, ...rest } = options;
  return startTenantWorker(db, {
    concurrency: 2,
    ...rest,
    tasks: {
      [RENDER_TASK]: async (payload, ctx) => {
        const invoiceId = (payload as { invoice_id?: unknown } | null)?.invoice_id;
        if (typeof invoiceId !== 'string') throw new TenantwallError('validation_failed', `Job ${ctx.jobId}: the payload names no invoice_id.`);
        await beforeRender?.(ctx, invoiceId);
        // The Kysely handle of the job's tenant: every statement gets the tenant predicate and the guard's check.
        await renderAndStore(serviceKysely(db, ctx.tenantId), invoiceId);
      },
    },
  });
}
