import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { type ServiceFixture, startService } from './setup.ts';

/** Bad input gets a 4xx with a stable code naming the field; never a 5xx; nothing partially written. */
let s: ServiceFixture;
let invoiceId: string;
let customerId: string;

before(async () => {
  s = await startService();
  customerId = (await s.as(s.a, { method: 'POST', url: '/customers', payload: { name: 'C', email: 'c@a.test' } })).json().id;
  invoiceId = (await s.as(s.a, { method: 'POST', url: '/invoices', payload: { customer: 'C', amount_cents: 10 } })).json().id;
});
after(() => s.close());

async function expectError(opts: InjectOptions, status: number, code: string, field?: string | RegExp) {
  const r = await s.as(s.a, opts);
  const label = `${opts.method} ${opts.url} ${typeof opts.payload === 'string' ? opts.payload.slice(0, 80) : JSON.stringify(opts.payload)?.slice(0, 80)}`;
  assert.equal(r.statusCode, status, `${label} -> ${r.statusCode} ${r.body}`);
  const body = r.json();
  assert.equal(body.error.code, code, label);
  assert.equal(typeof body.error.message, 'string');
  if (field instanceof RegExp) assert.match(String(body.error.details.field), field, label);
  else if (field !== undefined) {
    assert.equal(body.error.details.field, field, label);
    if (code !== 'conflict') assert.ok(body.error.message.includes(field), `message names ${field}: ${body.error.message}`);
  }
}

test('wrong types, missing and unknown fields -> 400 validation_failed naming the field', async () => {
  const P = (url: string, payload: unknown, method: 'POST' | 'PATCH' = 'POST'): InjectOptions => ({ method, url, payload: payload as object });
  await expectError(P('/customers', {}), 400, 'validation_failed', 'name');
  await expectError(P('/customers', { name: 42 }), 400, 'validation_failed', 'name');
  await expectError(P('/customers', { name: '' }), 400, 'validation_failed', 'name');
  await expectError(P('/customers', { name: 'x', email: 'not-an-email' }), 400, 'validation_failed', 'email');
  await expectError(P('/customers', { name: 'x', nickname: 'y' }), 400, 'validation_failed', 'nickname');
  await expectError(P('/invoices', { customer: 'x', amount_cents: '100' }), 400, 'validation_failed', 'amount_cents');
  await expectError(P('/invoices', { customer: 'x', amount_cents: true }), 400, 'validation_failed', 'amount_cents');
  await expectError(P('/invoices', { customer: 'x', amount_cents: -1 }), 400, 'validation_failed', 'amount_cents');
  await expectError(P('/invoices', { customer: 'x', amount_cents: 1.5 }), 400, 'validation_failed', 'amount_cents');
  await expectError(P('/invoices', { customer: 'x', amount_cents: 2 ** 60 }), 400, 'validation_failed', 'amount_cents');
  await expectError(P('/invoices', { customer: 'x', amount_cents: 1, currency: 'euro' }), 400, 'validation_failed', 'currency');
  await expectError(P('/invoices', { customer: 'x', amount_cents: 1, status: 'paid' }), 400, 'validation_failed', 'status');
  await expectError(P('/invoices', { customer: 'x', amount_cents: 1, issued_at: 'yesterday' }), 400, 'validation_failed', 'issued_at');
  await expectError(P('/invoices', { amount_cents: 1 }), 400, 'validation_failed', 'customer');
  await expectError(P('/invoices', { customer: 'x' }), 400, 'validation_failed', 'amount_cents');
  await expectError(P('/invoices', { customer: 'x', customer_id: 'nope', amount_cents: 1 }), 400, 'validation_failed', 'customer_id');
  await expectError(P('/invoices', { customer: 'x', line_items: [{ description: 'd', quantity: 0, unit_amount_cents: 1 }] }), 400, 'validation_failed', 'line_items.0.quantity');
  await expectError(P('/invoices', { customer: 'x', line_items: [{ quantity: 1, unit_amount_cents: 1 }] }), 400, 'validation_failed', 'line_items.0.description');
  await expectError(P('/invoices', { customer: 'x', line_items: 'many' }), 400, 'validation_failed', 'line_items');
  await expectError(P('/invoices', { customer: 'x', amount_cents: 5, line_items: [{ description: 'd', quantity: 2, unit_amount_cents: 3 }] }), 400, 'validation_failed', 'amount_cents');
  await expectError(P('/invoices', { customer: 'x', line_items: [{ description: 'd', quantity: 1_000_000, unit_amount_cents: Number.MAX_SAFE_INTEGER }] }), 400, 'validation_failed', /line_items/);
  await expectError(P(`/invoices/${invoiceId}`, {}, 'PATCH'), 400, 'validation_failed');
  await expectError(P(`/invoices/${invoiceId}`, { status: 'archived' }, 'PATCH'), 400, 'validation_failed', 'status');
  await expectError(P(`/customers/${customerId}`, { email: 5 }, 'PATCH'), 400, 'validation_failed', 'email');
  await expectError({ method: 'POST', url: '/customers', payload: [{ name: 'x' }] }, 400, 'validation_failed', 'body');
});

test('bad ids, bad query strings and bad cursors -> 400 naming the field', async () => {
  const G = (url: string): InjectOptions => ({ method: 'GET', url });
  await expectError(G('/invoices/123'), 400, 'validation_failed', 'id');
  await expectError(G("/invoices/1' OR '1'='1"), 400, 'validation_failed', 'id');
  await expectError(G(`/invoices/${invoiceId}/line-items/xyz`), 400, 'validation_failed', 'itemId');
  await expectError({ method: 'DELETE', url: '/customers/abc' }, 400, 'validation_failed', 'id');
  await expectError(G('/invoices?limit=0'), 400, 'validation_failed', 'limit');
  await expectError(G('/invoices?limit=abc'), 400, 'validation_failed', 'limit');
  await expectError(G('/invoices?limit=1000'), 400, 'validation_failed', 'limit');
  await expectError(G('/invoices?sort=tenant_id'), 400, 'validation_failed', 'sort');
  await expectError(G('/invoices?order=sideways'), 400, 'validation_failed', 'order');
  await expectError(G('/invoices?status=lost'), 400, 'validation_failed', 'status');
  await expectError(G('/invoices?issued_from=last-week'), 400, 'validation_failed', 'issued_from');
  await expectError(G('/invoices?tenant_id=x'), 400, 'validation_failed', 'tenant_id');
  const enc = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const badCursors = [
    'garbage!',
    'bm90IGpzb24', // "not json"
    enc([1, 2]),
    enc({ s: 'amount_cents', o: 'desc', v: 1, i: invoiceId }), // made for another sort
    enc({ s: 'created_at', o: 'asc', v: '2020-01-01T00:00:00.000Z', i: invoiceId }), // another order
    enc({ s: 'created_at', o: 'desc', v: 'tomorrow', i: invoiceId }),
    enc({ s: 'created_at', o: 'desc', v: '2020-01-01T00:00:00.000Z', i: "x' OR 1=1 --" }),
    enc({ s: 'created_at', o: 'desc', v: { $gt: 0 }, i: invoiceId }),
  ];
  for (const c of badCursors) await expectError(G(`/invoices?cursor=${encodeURIComponent(c)}`), 400, 'invalid_cursor', 'cursor');
  await expectError(G(`/invoices?sort=amount_cents&cursor=${enc({ s: 'amount_cents', o: 'desc', v: 1e300, i: invoiceId })}`), 400, 'invalid_cursor', 'cursor');
  await expectError(G(`/invoices?cursor=${'A'.repeat(600)}`), 400, 'validation_failed', 'cursor');
});

test('oversized bodies -> 413, malformed JSON -> 400, other media types -> 415; nothing written', async () => {
  const before = (await s.as(s.a, { method: 'GET', url: '/customers?limit=100' })).json().data.length;
  const json = { 'content-type': 'application/json' };
  await expectError({ method: 'POST', url: '/customers', headers: json, payload: JSON.stringify({ name: 'x'.repeat(70 * 1024) }) }, 413, 'payload_too_large');
  await expectError({ method: 'POST', url: '/customers', headers: json, payload: '{"name": "x",' }, 400, 'invalid_json', 'body');
  await expectError({ method: 'POST', url: '/customers', headers: json, payload: '' }, 400, 'invalid_json', 'body');
  await expectError({ method: 'POST', url: '/customers', headers: { 'content-type': 'text/plain' }, payload: 'name=x' }, 415, 'unsupported_media_type');
  await expectError({ method: 'POST', url: '/customers', headers: json, payload: '{"name":"x","__proto__":{"admin":true}}' }, 400, 'invalid_json');
  assert.equal((await s.as(s.a, { method: 'GET', url: '/customers?limit=100' })).json().data.length, before);
});

test('an invoice whose line items fail in the database writes nothing (one transaction)', async () => {
  const count = async () => (await s.as(s.a, { method: 'GET', url: '/invoices?limit=100' })).json().data.length;
  const before = await count();
  // Two line items at the same position: the second INSERT violates the unique index after the invoice row
  // and the first item were written; the whole transaction must roll back.
  await expectError(
    {
      method: 'POST',
      url: '/invoices',
      payload: {
        customer: 'Rollback Ltd',
        line_items: [
          { position: 1, description: 'first', quantity: 1, unit_amount_cents: 100 },
          { position: 1, description: 'again', quantity: 1, unit_amount_cents: 100 },
        ],
      },
    },
    409,
    'conflict',
    'line_items.1.position',
  );
  assert.equal(await count(), before);
  const listed = await s.as(s.a, { method: 'GET', url: '/invoices?customer=Rollback%20Ltd' });
  assert.deepEqual(listed.json().data, []);
});

test('conflicts and state rules answer 409, never 5xx', async () => {
  await expectError({ method: 'POST', url: '/customers', payload: { name: 'dup', email: 'c@a.test' } }, 409, 'conflict', 'email');
  const inv = (await s.as(s.a, { method: 'POST', url: '/invoices', payload: { customer_id: customerId, amount_cents: 1 } })).json();
  await expectError({ method: 'DELETE', url: `/customers/${customerId}` }, 409, 'conflict', 'id');
  assert.equal((await s.as(s.a, { method: 'PATCH', url: `/invoices/${inv.id}`, payload: { status: 'paid' } })).statusCode, 409);
  assert.equal((await s.as(s.a, { method: 'PATCH', url: `/invoices/${inv.id}`, payload: { status: 'issued' } })).json().status, 'issued');
  await expectError({ method: 'PATCH', url: `/invoices/${inv.id}`, payload: { amount_cents: 5 } }, 409, 'conflict', 'status');
  await expectError({ method: 'POST', url: `/invoices/${inv.id}/line-items`, payload: { description: 'late', quantity: 1, unit_amount_cents: 1 } }, 409, 'conflict', 'status');
});

test('a barrage of hostile requests never produces a 5xx', async () => {
  const hostile: InjectOptions[] = [
    { method: 'POST', url: '/invoices', payload: { customer: 'x', amount_cents: Number.MAX_SAFE_INTEGER + 2 } },
    { method: 'POST', url: '/invoices', payload: { customer: '\u0000', amount_cents: 1 } },
    { method: 'POST', url: '/customers', payload: { name: '\u0000nul' } },
    { method: 'POST', url: '/invoices', payload: { customer: 'x', amount_cents: 1, issued_at: '2026-02-30T00:00:00Z', status: 'issued' } },
    { method: 'POST', url: '/invoices', payload: { customer: 'x', amount_cents: 1, issued_at: '99999-01-01T00:00:00Z', status: 'issued' } },
    { method: 'GET', url: '/invoices?issued_from=2026-13-01T00:00:00Z' },
    { method: 'GET', url: `/invoices?customer=${'x'.repeat(300)}` },
    { method: 'GET', url: '/invoices?limit=1&limit=2' },
    { method: 'GET', url: '/invoices/%00' },
    { method: 'PUT', url: `/invoices/${invoiceId}`, payload: {} },
    { method: 'POST', url: '/invoices', headers: { 'content-type': 'application/json; charset=utf-16' }, payload: '{}' },
    { method: 'POST', url: '/invoices', headers: { 'content-length': '5', 'content-type': 'application/json' }, payload: '{"a":1}' },
    { method: 'PATCH', url: `/invoices/${invoiceId}/line-items/${invoiceId}`, payload: { quantity: 2 } },
  ];
  for (const h of hostile) {
    const r = await s.as(s.a, h);
    assert.ok(r.statusCode >= 400 && r.statusCode < 500, `${h.method} ${h.url} ${JSON.stringify(h.payload)} -> ${r.statusCode} ${r.body}`);
    assert.equal(typeof r.json().error.code, 'string');
  }
});
