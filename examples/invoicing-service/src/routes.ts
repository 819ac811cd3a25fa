import type { Static } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Tenantwall } from 'tenantwall';
import { getDocument } from './documents.ts';
import { type OperationSpec, op } from './openapi.ts';
import * as customers from './repo/customers.ts';
import { serviceKysely } from './repo/db.ts';
import * as invoices from './repo/invoices.ts';
import * as S from './schemas.ts';

const tenantOp = (spec: Omit<OperationSpec, 'security'>) => op({ ...spec, security: 'tenant' });

/** Seconds a client waits before asking again for a document that is being rendered. */
const DOCUMENT_RETRY_AFTER = 1;

/**
 * Operations whose routes answer a non-JSON body (the PDF) and carry no response schema of their own: their
 * description for /openapi.json (app.ts `described`).
 */
export function documentOperations(): Record<string, OperationSpec & { response?: Record<number, unknown> }> {
  return {
    'GET /invoices/:id/document': {
      tag: 'invoices',
      security: 'tenant',
      id: 'getInvoiceDocument',
      summary: 'Get the PDF of an invoice',
      description:
        "Issuing an invoice (on create or by PATCH) enqueues the rendering of its PDF in the same transaction; a background worker renders it in the tenant's scope. 200: the PDF. 202 (`DocumentPending`, with `Retry-After`): issued, the document is still being rendered. `conflict` naming `status`: the invoice was never issued, so it has no document. Another tenant's id is `not_found`.",
      params: S.IdParams,
      ok: {},
      response: {
        200: {
          description: 'The invoice document (PDF)',
          headers: {
            'Content-Disposition': { type: 'string', description: 'inline; filename="invoice-<id>.pdf"' },
            ETag: { type: 'string', description: 'The sha256 of the document, quoted' },
          },
          content: { 'application/pdf': { schema: { type: 'string', contentMediaType: 'application/pdf' } } },
        },
        202: {
          description: 'Issued; the document is being rendered',
          headers: { 'Retry-After': { type: 'integer', minimum: 0, description: 'Seconds to wait before asking again' } },
          content: { 'application/json': { schema: S.DocumentPending } },
        },
      },
      errors: ['not_found', 'conflict'],
    },
  };
}

/**
 * The tenant-scoped API. Handlers never name a tenant: the tenantwall plugin resolved it and runs each handler
 * inside that tenant's context. Queries are built with Kysely through tenantwall's plugin (service/repo/db.ts),
 * which adds the tenant predicate to every table reference and tenant_id to every insert; `k.transaction()` is a
 * tenantwall transaction of the request's tenant.
 */
export function tenantRoutes(app: FastifyInstance, db: Tenantwall): void {
  const k = serviceKysely(db);

  // ---- customers ----
  const customer = { tag: 'customers' } as const;
  app.post(
    '/customers',
    tenantOp({ ...customer, id: 'createCustomer', summary: 'Create a customer', description: 'Emails are unique per tenant (`conflict` naming `email`).', body: S.CustomerCreate, ok: { 201: S.Customer }, errors: ['conflict'] }),
    async (req, reply) => reply.code(201).send(await customers.createCustomer(k, req.body as Static<typeof S.CustomerCreate>)),
  );
  app.get(
    '/customers',
    tenantOp({ ...customer, id: 'listCustomers', summary: 'List customers', description: 'One page at a time: pass `next_cursor` back as `cursor` with the same sort and order.', querystring: S.CustomerListQuery, ok: { 200: S.Page(S.Customer) }, errors: ['invalid_cursor'] }),
    async (req) => {
      const q = req.query as Static<typeof S.CustomerListQuery>;
      return customers.listCustomers(k, { limit: q.limit ?? 20, cursor: q.cursor, order: q.order ?? 'asc', sort: q.sort ?? 'created_at', email: q.email });
    },
  );
  app.get(
    '/customers/:id',
    tenantOp({ ...customer, id: 'getCustomer', summary: 'Get a customer', description: "One customer of the calling tenant; another tenant's id is `not_found`.", params: S.IdParams, ok: { 200: S.Customer }, errors: ['not_found'] }),
    async (req) => customers.getCustomer(k, (req.params as Static<typeof S.IdParams>).id),
  );
  app.patch(
    '/customers/:id',
    tenantOp({ ...customer, id: 'updateCustomer', summary: 'Update a customer', description: 'Changes the fields given.', params: S.IdParams, body: S.CustomerPatch, ok: { 200: S.Customer }, errors: ['not_found', 'conflict'] }),
    async (req) => customers.updateCustomer(k, (req.params as Static<typeof S.IdParams>).id, req.body as Static<typeof S.CustomerPatch>),
  );
  app.delete(
    '/customers/:id',
    tenantOp({ ...customer, id: 'deleteCustomer', summary: 'Delete a customer', description: 'Only a customer without invoices (`conflict` otherwise).', params: S.IdParams, ok: { 204: null }, errors: ['not_found', 'conflict'] }),
    async (req, reply) => {
      await customers.deleteCustomer(k, (req.params as Static<typeof S.IdParams>).id);
      return reply.code(204).send();
    },
  );

  // ---- invoices ----
  const invoice = { tag: 'invoices' } as const;
  app.post(
    '/invoices',
    tenantOp({
      ...invoice,
      id: 'createInvoice',
      summary: 'Create an invoice',
      description:
        'Creates an invoice, optionally with its line items, in one transaction. Give `customer` (the printed name), `customer_id` (a customer of the tenant, whose name is used unless `customer` is given), or both. Without line items `amount_cents` is required; with them it is their sum.',
      body: S.InvoiceCreate,
      ok: { 201: S.InvoiceWithItems },
      errors: ['not_found', 'conflict'],
    }),
    async (req, reply) => reply.code(201).send(await k.transaction().execute((tx) => invoices.createInvoice(tx, req.body as Static<typeof S.InvoiceCreate>))),
  );
  app.get(
    '/invoices',
    tenantOp({ ...invoice, id: 'listInvoices', summary: 'List invoices', description: 'Filtered by status, customer and issue date; one page at a time (`cursor` / `next_cursor`).', querystring: S.InvoiceListQuery, ok: { 200: S.Page(S.Invoice) }, errors: ['invalid_cursor'] }),
    async (req) => {
      const q = req.query as Static<typeof S.InvoiceListQuery>;
      return invoices.listInvoices(k, {
        limit: q.limit ?? 20,
        cursor: q.cursor,
        order: q.order ?? 'desc',
        sort: q.sort ?? 'created_at',
        status: q.status,
        customer_id: q.customer_id,
        customer: q.customer,
        issued_from: q.issued_from,
        issued_to: q.issued_to,
      });
    },
  );
  app.get(
    '/invoices/:id',
    tenantOp({ ...invoice, id: 'getInvoice', summary: 'Get an invoice', description: "One invoice of the calling tenant; another tenant's id is `not_found`.", params: S.IdParams, ok: { 200: S.Invoice }, errors: ['not_found'] }),
    async (req) => invoices.getInvoice(k, (req.params as Static<typeof S.IdParams>).id),
  );
  app.patch(
    '/invoices/:id',
    tenantOp({
      ...invoice,
      id: 'updateInvoice',
      summary: 'Update an invoice',
      description:
        'Content changes only while draft. Status goes draft -> issued -> paid, or to void. `issued_at` can be given only when this request issues the draft; it never changes afterwards (`conflict` naming `issued_at`).',
      params: S.IdParams,
      body: S.InvoicePatch,
      ok: { 200: S.Invoice },
      errors: ['not_found', 'conflict'],
    }),
    async (req) => {
      const { id } = req.params as Static<typeof S.IdParams>;
      return k.transaction().execute((tx) => invoices.updateInvoice(tx, id, req.body as Static<typeof S.InvoicePatch>));
    },
  );
  app.delete(
    '/invoices/:id',
    tenantOp({ ...invoice, id: 'deleteInvoice', summary: 'Delete an invoice', description: 'Deletes the invoice and its line items.', params: S.IdParams, ok: { 204: null }, errors: ['not_found'] }),
    async (req, reply) => {
      await invoices.deleteInvoice(k, (req.params as Static<typeof S.IdParams>).id);
      return reply.code(204).send();
    },
  );

  app.get('/invoices/:id/document', { schema: { hide: true, params: S.IdParams, querystring: S.NoQuery } }, async (req, reply) => {
    const { id } = req.params as Static<typeof S.IdParams>;
    const found = await getDocument(k, id);
    if (found.state === 'pending') {
      return reply.code(202).header('retry-after', String(DOCUMENT_RETRY_AFTER)).type('application/json').send(JSON.stringify({ invoice_id: id, status: 'rendering', issued_at: found.invoice.issued_at }));
    }
    return reply.type('application/pdf').header('content-disposition', `inline; filename="invoice-${id}.pdf"`).header('etag', `"${found.sha256}"`).send(found.content);
  });

  // ---- line items ----
  const items = { tag: 'line-items' } as const;
  app.get(
    '/invoices/:id/line-items',
    tenantOp({ ...items, id: 'listLineItems', summary: 'List the line items of an invoice', description: 'By position, one page at a time (`cursor` / `next_cursor`).', params: S.IdParams, querystring: S.LineItemListQuery, ok: { 200: S.Page(S.LineItem) }, errors: ['not_found', 'invalid_cursor'] }),
    async (req) => {
      const q = req.query as Static<typeof S.LineItemListQuery>;
      return invoices.listLineItems(k, (req.params as Static<typeof S.IdParams>).id, { limit: q.limit ?? 20, cursor: q.cursor, order: q.order ?? 'asc' });
    },
  );
  app.post(
    '/invoices/:id/line-items',
    tenantOp({ ...items, id: 'createLineItem', summary: 'Add a line item', description: 'Only to a draft invoice; its total follows.', params: S.IdParams, body: S.LineItemCreate, ok: { 201: S.LineItem }, errors: ['not_found', 'conflict'] }),
    async (req, reply) => {
      const { id } = req.params as Static<typeof S.IdParams>;
      return reply.code(201).send(await k.transaction().execute((tx) => invoices.addLineItem(tx, id, req.body as Static<typeof S.LineItemCreate>)));
    },
  );
  app.get(
    '/invoices/:id/line-items/:itemId',
    tenantOp({ ...items, id: 'getLineItem', summary: 'Get a line item', description: 'One line item of an invoice of the calling tenant.', params: S.ItemParams, ok: { 200: S.LineItem }, errors: ['not_found'] }),
    async (req) => {
      const p = req.params as Static<typeof S.ItemParams>;
      return invoices.getLineItem(k, p.id, p.itemId);
    },
  );
  app.patch(
    '/invoices/:id/line-items/:itemId',
    tenantOp({ ...items, id: 'updateLineItem', summary: 'Update a line item', description: 'Only on a draft invoice; its total follows.', params: S.ItemParams, body: S.LineItemPatch, ok: { 200: S.LineItem }, errors: ['not_found', 'conflict'] }),
    async (req) => {
      const p = req.params as Static<typeof S.ItemParams>;
      return k.transaction().execute((tx) => invoices.updateLineItem(tx, p.id, p.itemId, req.body as Static<typeof S.LineItemPatch>));
    },
  );
  app.delete(
    '/invoices/:id/line-items/:itemId',
    tenantOp({ ...items, id: 'deleteLineItem', summary: 'Delete a line item', description: 'Only on a draft invoice; its total follows.', params: S.ItemParams, ok: { 204: null }, errors: ['not_found', 'conflict'] }),
    async (req, reply) => {
      const p = req.params as Static<typeof S.ItemParams>;
      await k.transaction().execute((tx) => invoices.deleteLineItem(tx, p.id, p.itemId));
      return reply.code(204).send();
    },
  );
}
