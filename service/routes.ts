import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import type { Tenantwall } from '../src/index.ts';
import * as customers from './repo/customers.ts';
import { serviceKysely } from './repo/db.ts';
import * as invoices from './repo/invoices.ts';
import * as S from './schemas.ts';

const errors = { '4xx': S.ErrorResponse, '5xx': S.ErrorResponse };
const security = [{ bearer: [] }];

function schema(tag: string, summary: string, parts: { params?: TSchema; querystring?: TSchema; body?: TSchema }, ok: Record<number, TSchema>) {
  return { tags: [tag], summary, security, querystring: S.NoQuery, ...parts, response: { ...ok, ...errors } };
}
const NoContent = { 204: { type: 'null', description: 'Deleted' } as unknown as TSchema };

/**
 * The tenant-scoped API. Handlers never name a tenant: the tenantwall plugin resolved it and runs each handler
 * inside that tenant's context. Queries are built with Kysely through tenantwall's plugin (service/repo/db.ts),
 * which adds the tenant predicate to every table reference and tenant_id to every insert; `k.transaction()` is a
 * tenantwall transaction of the request's tenant.
 */
export function tenantRoutes(app: FastifyInstance, db: Tenantwall): void {
  const k = serviceKysely(db);

  // ---- customers ----
  app.post('/customers', { schema: schema('customers', 'Create a customer', { body: S.CustomerCreate }, { 201: S.Customer }) }, async (req, reply) => {
    const created = await customers.createCustomer(k, req.body as Static<typeof S.CustomerCreate>);
    return reply.code(201).send(created);
  });
  app.get('/customers', { schema: schema('customers', 'List customers', { querystring: S.CustomerListQuery }, { 200: S.Page(S.Customer) }) }, async (req) => {
    const q = req.query as Static<typeof S.CustomerListQuery>;
    return customers.listCustomers(k, {
      limit: q.limit ?? 20,
      cursor: q.cursor,
      order: q.order ?? 'asc',
      sort: q.sort ?? 'created_at',
      email: q.email,
    });
  });
  app.get('/customers/:id', { schema: schema('customers', 'Get a customer', { params: S.IdParams }, { 200: S.Customer }) }, async (req) => {
    return customers.getCustomer(k, (req.params as Static<typeof S.IdParams>).id);
  });
  app.patch('/customers/:id', { schema: schema('customers', 'Update a customer', { params: S.IdParams, body: S.CustomerPatch }, { 200: S.Customer }) }, async (req) => {
    return customers.updateCustomer(k, (req.params as Static<typeof S.IdParams>).id, req.body as Static<typeof S.CustomerPatch>);
  });
  app.delete('/customers/:id', { schema: schema('customers', 'Delete a customer without invoices', { params: S.IdParams }, NoContent) }, async (req, reply) => {
    await customers.deleteCustomer(k, (req.params as Static<typeof S.IdParams>).id);
    return reply.code(204).send();
  });

  // ---- invoices ----
  app.post('/invoices', { schema: schema('invoices', 'Create an invoice, optionally with its line items (one transaction)', { body: S.InvoiceCreate }, { 201: S.InvoiceWithItems }) }, async (req, reply) => {
    const created = await k.transaction().execute((tx) => invoices.createInvoice(tx, req.body as Static<typeof S.InvoiceCreate>));
    return reply.code(201).send(created);
  });
  app.get('/invoices', { schema: schema('invoices', 'List invoices', { querystring: S.InvoiceListQuery }, { 200: S.Page(S.Invoice) }) }, async (req) => {
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
  });
  app.get('/invoices/:id', { schema: schema('invoices', 'Get an invoice', { params: S.IdParams }, { 200: S.Invoice }) }, async (req) => {
    return invoices.getInvoice(k, (req.params as Static<typeof S.IdParams>).id);
  });
  app.patch('/invoices/:id', { schema: schema('invoices', 'Update an invoice (content while draft; status draft -> issued -> paid, or void)', { params: S.IdParams, body: S.InvoicePatch }, { 200: S.Invoice }) }, async (req) => {
    const { id } = req.params as Static<typeof S.IdParams>;
    return k.transaction().execute((tx) => invoices.updateInvoice(tx, id, req.body as Static<typeof S.InvoicePatch>));
  });
  app.delete('/invoices/:id', { schema: schema('invoices', 'Delete an invoice and its line items', { params: S.IdParams }, NoContent) }, async (req, reply) => {
    await invoices.deleteInvoice(k, (req.params as Static<typeof S.IdParams>).id);
    return reply.code(204).send();
  });

  // ---- line items ----
  app.get('/invoices/:id/line-items', { schema: schema('line items', 'List the line items of an invoice', { params: S.IdParams, querystring: S.LineItemListQuery }, { 200: S.Page(S.LineItem) }) }, async (req) => {
    const q = req.query as Static<typeof S.LineItemListQuery>;
    return invoices.listLineItems(k, (req.params as Static<typeof S.IdParams>).id, { limit: q.limit ?? 20, cursor: q.cursor, order: q.order ?? 'asc' });
  });
  app.post('/invoices/:id/line-items', { schema: schema('line items', 'Add a line item to a draft invoice', { params: S.IdParams, body: S.LineItemCreate }, { 201: S.LineItem }) }, async (req, reply) => {
    const { id } = req.params as Static<typeof S.IdParams>;
    const item = await k.transaction().execute((tx) => invoices.addLineItem(tx, id, req.body as Static<typeof S.LineItemCreate>));
    return reply.code(201).send(item);
  });
  app.get('/invoices/:id/line-items/:itemId', { schema: schema('line items', 'Get a line item', { params: S.ItemParams }, { 200: S.LineItem }) }, async (req) => {
    const p = req.params as Static<typeof S.ItemParams>;
    return invoices.getLineItem(k, p.id, p.itemId);
  });
  app.patch('/invoices/:id/line-items/:itemId', { schema: schema('line items', 'Update a line item of a draft invoice', { params: S.ItemParams, body: S.LineItemPatch }, { 200: S.LineItem }) }, async (req) => {
    const p = req.params as Static<typeof S.ItemParams>;
    return k.transaction().execute((tx) => invoices.updateLineItem(tx, p.id, p.itemId, req.body as Static<typeof S.LineItemPatch>));
  });
  app.delete('/invoices/:id/line-items/:itemId', { schema: schema('line items', 'Delete a line item of a draft invoice', { params: S.ItemParams }, NoContent) }, async (req, reply) => {
    const p = req.params as Static<typeof S.ItemParams>;
    await k.transaction().execute((tx) => invoices.deleteLineItem(tx, p.id, p.itemId));
    return reply.code(204).send();
  });
}
