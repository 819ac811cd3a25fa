import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';
import { type ServiceFixture, type TenantFixture, startService } from './setup.ts';

/**
 * Business rules and input classes found by the outside review (issue 16): references in bodies resolved in the
 * tenant's scope on every code path, issue-date rules, no schema names in error details, query filters checked
 * before they reach PostgreSQL, `tenant_id` refused on every route.
 */
let s: ServiceFixture;
let foreignCustomer: string;
let ownCustomer: string;

before(async () => {
  s = await startService();
  foreignCustomer = (await s.as(s.b, { method: 'POST', url: '/customers', payload: { name: 'B customer' } })).json().id;
  ownCustomer = (await s.as(s.a, { method: 'POST', url: '/customers', payload: { name: 'A customer' } })).json().id;
});
after(() => s.close());

function expectError(r: LightMyRequestResponse, status: number, code: string, field?: string, label = '') {
  assert.equal(r.statusCode, status, `${label} -> ${r.statusCode} ${r.body}`);
  const body = r.json();
  assert.equal(body.error.code, code, label);
  if (field !== undefined) assert.equal(body.error.details.field, field, `${label}: ${r.body}`);
}

async function draft(who: TenantFixture = s.a, extra: object = {}): Promise<string> {
  const r = await s.as(who, { method: 'POST', url: '/invoices', payload: { customer: 'X', ...('line_items' in extra ? {} : { amount_cents: 10 }), ...extra } });
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id;
}

test('another tenant\'s customer_id is 404 not_found naming customer_id on every code path, alone or with other fields', async () => {
  const id = await draft();
  const bodies = [
    { customer_id: foreignCustomer },
    { customer: 'x', customer_id: foreignCustomer },
    { customer: 'x', customer_id: foreignCustomer, currency: 'USD' },
    { customer_id: foreignCustomer, amount_cents: 5 },
  ];
  for (const payload of bodies) {
    expectError(await s.as(s.a, { method: 'PATCH', url: `/invoices/${id}`, payload }), 404, 'not_found', 'customer_id', `PATCH ${JSON.stringify(payload)}`);
    expectError(await s.as(s.a, { method: 'POST', url: '/invoices', payload: { customer: 'x', amount_cents: 1, ...payload } }), 404, 'not_found', 'customer_id', `POST ${JSON.stringify(payload)}`);
  }
  // Nothing was changed by the refused PATCHes.
  const after = (await s.as(s.a, { method: 'GET', url: `/invoices/${id}` })).json();
  assert.equal(after.customer_id, null);
  assert.equal(after.customer, 'X');
  // Own customers still work on the same paths.
  const ok = await s.as(s.a, { method: 'PATCH', url: `/invoices/${id}`, payload: { customer: 'Printed name', customer_id: ownCustomer } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.json().customer_id, ownCustomer);
  assert.equal(ok.json().customer, 'Printed name');
});

test('issued_at: fixed once issued or paid, never set on a void invoice that was never issued', async () => {
  const at = '2026-01-15T12:00:00.000Z';
  const issued = await draft(s.a, { status: 'issued', issued_at: at });
  const patch = (id: string, payload: object) => s.as(s.a, { method: 'PATCH', url: `/invoices/${id}`, payload });
  expectError(await patch(issued, { issued_at: '2020-01-01T00:00:00Z' }), 409, 'conflict', 'issued_at', 'rewrite on issued');
  expectError(await patch(issued, { status: 'paid', issued_at: '2020-01-01T00:00:00Z' }), 409, 'conflict', 'issued_at', 'rewrite while paying');
  // Repeating the same date is not a change.
  assert.equal((await patch(issued, { issued_at: at })).statusCode, 200);
  const paid = await patch(issued, { status: 'paid' });
  assert.equal(paid.json().status, 'paid');
  assert.equal(paid.json().issued_at, at);
  expectError(await patch(issued, { issued_at: '2027-01-01T00:00:00Z' }), 409, 'conflict', 'issued_at', 'rewrite on paid');

  const neverIssued = await draft();
  expectError(await patch(neverIssued, { status: 'void', issued_at: at }), 409, 'conflict', 'issued_at', 'void with a date');
  const voided = await patch(neverIssued, { status: 'void' });
  assert.equal(voided.json().issued_at, null);
  expectError(await patch(neverIssued, { issued_at: at }), 409, 'conflict', 'issued_at', 'date on a void invoice');
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${neverIssued}` })).json().issued_at, null);

  // Issuing a draft may still set its date.
  const d = await draft();
  const ok = await patch(d, { status: 'issued', issued_at: at });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(ok.json().issued_at, at);
});

test('a total over the limit is refused naming a request field, never a constraint name', async () => {
  const id = await draft(s.a, { line_items: [{ description: 'big', quantity: 1, unit_amount_cents: Number.MAX_SAFE_INTEGER - 100 }] });
  const r = await s.as(s.a, { method: 'POST', url: `/invoices/${id}/line-items`, payload: { description: 'more', quantity: 1, unit_amount_cents: 101 } });
  expectError(r, 400, 'validation_failed', 'unit_amount_cents', 'sum overflow');
  assert.doesNotMatch(r.body, /_check|_fkey|_key\b|invoices_/);
  const p = await s.as(s.a, { method: 'POST', url: `/invoices/${id}/line-items`, payload: { description: 'more', quantity: 2, unit_amount_cents: 20 } });
  assert.equal(p.statusCode, 201, p.body);
  const u = await s.as(s.a, { method: 'PATCH', url: `/invoices/${id}/line-items/${p.json().id}`, payload: { unit_amount_cents: 2 ** 50 } });
  expectError(u, 400, 'validation_failed', 'unit_amount_cents', 'sum overflow on update');
  const items = (await s.as(s.a, { method: 'GET', url: `/invoices/${id}/line-items` })).json().data;
  assert.deepEqual(items.map((i: { amount_cents: number }) => i.amount_cents), [Number.MAX_SAFE_INTEGER - 100, 40]);
});

test('query filters: impossible dates and NUL are refused with 400 naming the query field', async () => {
  const G = (url: string): InjectOptions => ({ method: 'GET', url });
  const cases: Array<[string, string]> = [
    ['/invoices?issued_from=2026-02-30T00:00:00Z', 'issued_from'],
    ['/invoices?issued_to=2026-04-31T00:00:00Z', 'issued_to'],
    ['/invoices?issued_from=2026-01-01T24:00:00Z', 'issued_from'],
    ['/invoices?customer=a%00b', 'customer'],
    ['/customers?email=a%00@b.c', 'email'],
    ['/customers?cursor=%00', 'cursor'],
  ];
  for (const [url, field] of cases) {
    const r = await s.as(s.a, G(url));
    expectError(r, 400, 'validation_failed', field, url);
    assert.equal(r.json().error.details.location, 'querystring', url);
    assert.ok(r.json().error.message.includes(field), r.body);
  }
  assert.equal((await s.as(s.a, G('/invoices?issued_from=2024-02-29T00:00:00Z'))).statusCode, 200);
});

test('tenant_id (or any unknown parameter) in the query string is refused on every tenant and admin route', async () => {
  const inv = await draft();
  const item = (await s.as(s.a, { method: 'POST', url: `/invoices/${inv}/line-items`, payload: { description: 'd', quantity: 1, unit_amount_cents: 1 } })).json().id;
  const routes: InjectOptions[] = [
    { method: 'GET', url: '/customers' },
    { method: 'POST', url: '/customers', payload: { name: 'n' } },
    { method: 'GET', url: `/customers/${ownCustomer}` },
    { method: 'PATCH', url: `/customers/${ownCustomer}`, payload: { name: 'n' } },
    { method: 'DELETE', url: `/customers/${ownCustomer}` },
    { method: 'GET', url: '/invoices' },
    { method: 'POST', url: '/invoices', payload: { customer: 'x', amount_cents: 1 } },
    { method: 'GET', url: `/invoices/${inv}` },
    { method: 'PATCH', url: `/invoices/${inv}`, payload: { currency: 'USD' } },
    { method: 'DELETE', url: `/invoices/${inv}` },
    { method: 'GET', url: `/invoices/${inv}/line-items` },
    { method: 'POST', url: `/invoices/${inv}/line-items`, payload: { description: 'd', quantity: 1, unit_amount_cents: 1 } },
    { method: 'GET', url: `/invoices/${inv}/line-items/${item}` },
    { method: 'PATCH', url: `/invoices/${inv}/line-items/${item}`, payload: { quantity: 2 } },
    { method: 'DELETE', url: `/invoices/${inv}/line-items/${item}` },
  ];
  for (const r of routes) {
    const url = `${r.url as string}${(r.url as string).includes('?') ? '&' : '?'}tenant_id=${s.b.id}`;
    expectError(await s.as(s.a, { ...r, url }), 400, 'validation_failed', 'tenant_id', `${r.method} ${url}`);
  }
  for (const url of ['/admin/tenants', `/admin/tenants/${s.a.id}`, `/admin/tenants/${s.a.id}/api-keys`]) {
    expectError(await s.admin({ method: 'GET', url: `${url}?tenant_id=${s.b.id}` }), 400, 'validation_failed', 'tenant_id', url);
  }
  // Nothing was deleted or changed by the refused requests.
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${inv}` })).json().currency, 'EUR');
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${inv}/line-items/${item}` })).statusCode, 200);
});

test('a JSON body in a charset other than UTF-8 is refused with 415, not decoded as UTF-8', async () => {
  const send = (ct: string) => s.as(s.a, { method: 'POST', url: '/customers', headers: { 'content-type': ct }, payload: JSON.stringify({ name: 'Charset' }) });
  for (const ct of ['application/json; charset=utf-16', 'application/json; charset=ISO-8859-1', 'application/json;charset="latin1"']) {
    expectError(await send(ct), 415, 'unsupported_media_type', 'content-type', ct);
  }
  for (const ct of ['application/json; charset=utf-8', 'application/json; charset=UTF-8', 'application/json']) assert.equal((await send(ct)).statusCode, 201, ct);
});

test('413 on POST /usage/events names the limit of that route (its batches may be larger than other bodies)', async () => {
  const m = await startService({}, { metering: true });
  try {
    const huge = JSON.stringify({ events: [{ event_id: 'e', meter: 'reports.exported', properties: { pad: 'x'.repeat(1100 * 1024) } }] });
    const r = await m.as(m.a, { method: 'POST', url: '/usage/events', headers: { 'content-type': 'application/json' }, payload: huge });
    expectError(r, 413, 'payload_too_large');
    assert.equal(r.json().error.details.limit_bytes, 1_048_576, r.body);
    assert.match(r.json().error.message, /1048576/);
    // Other routes keep the server's 64 KiB limit, and say so.
    const c = await m.as(m.a, { method: 'POST', url: '/customers', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ name: 'x'.repeat(70 * 1024) }) });
    expectError(c, 413, 'payload_too_large');
    assert.equal(c.json().error.details.limit_bytes, 64 * 1024);
  } finally {
    await m.close();
  }
});
