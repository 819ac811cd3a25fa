import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { InjectOptions } from 'fastify';
import { type ServiceFixture, startService } from './setup.ts';

/**
 * Tenant A's credentials with tenant B's ids: every endpoint answers 404 (never 403, existence is not revealed),
 * lists never contain B's rows, a body cannot place a row in B, forged cursors stay in A.
 */
let s: ServiceFixture;
const A: Record<string, string> = {};
const B: Record<string, string> = {};

async function seed(who: 'a' | 'b', into: Record<string, string>) {
  const t = s[who];
  const c = await s.as(t, { method: 'POST', url: '/customers', payload: { name: `${who}-customer`, email: `x@${who}.test` } });
  assert.equal(c.statusCode, 201, c.body);
  into.customer = c.json().id;
  const i = await s.as(t, {
    method: 'POST',
    url: '/invoices',
    payload: { customer_id: into.customer, line_items: [{ description: `${who}-item`, quantity: 1, unit_amount_cents: 100 }] },
  });
  assert.equal(i.statusCode, 201, i.body);
  into.invoice = i.json().id;
  into.item = i.json().line_items[0].id;
}

before(async () => {
  s = await startService();
  await seed('a', A);
  await seed('b', B);
  // More rows so that lists and cursors have something to page through.
  for (let n = 0; n < 4; n++) {
    await s.as(s.a, { method: 'POST', url: '/invoices', payload: { customer: `a-${n}`, amount_cents: 1000 + n } });
    await s.as(s.b, { method: 'POST', url: '/invoices', payload: { customer: `b-${n}`, amount_cents: 1000 + n } });
  }
});
after(() => s.close());

async function snapshotB(): Promise<string> {
  const parts = await Promise.all([
    s.as(s.b, { method: 'GET', url: '/customers?limit=100' }),
    s.as(s.b, { method: 'GET', url: '/invoices?limit=100' }),
    s.as(s.b, { method: 'GET', url: `/invoices/${B.invoice}/line-items?limit=100` }),
  ]);
  return parts.map((p) => p.body).join('\n');
}

test('every endpoint: A credentials + B ids -> 404 not_found, and B is unchanged', async () => {
  const before = await snapshotB();
  const cases: InjectOptions[] = [
    { method: 'GET', url: `/customers/${B.customer}` },
    { method: 'PATCH', url: `/customers/${B.customer}`, payload: { name: 'pwned' } },
    { method: 'DELETE', url: `/customers/${B.customer}` },
    { method: 'GET', url: `/invoices/${B.invoice}` },
    { method: 'PATCH', url: `/invoices/${B.invoice}`, payload: { status: 'void' } },
    { method: 'PATCH', url: `/invoices/${B.invoice}`, payload: { amount_cents: 1 } },
    { method: 'DELETE', url: `/invoices/${B.invoice}` },
    { method: 'GET', url: `/invoices/${B.invoice}/line-items` },
    { method: 'POST', url: `/invoices/${B.invoice}/line-items`, payload: { description: 'pwned', quantity: 1, unit_amount_cents: 1 } },
    { method: 'GET', url: `/invoices/${B.invoice}/line-items/${B.item}` },
    { method: 'PATCH', url: `/invoices/${B.invoice}/line-items/${B.item}`, payload: { quantity: 99 } },
    { method: 'DELETE', url: `/invoices/${B.invoice}/line-items/${B.item}` },
    // Mixed: A's invoice with B's line item.
    { method: 'GET', url: `/invoices/${A.invoice}/line-items/${B.item}` },
    { method: 'PATCH', url: `/invoices/${A.invoice}/line-items/${B.item}`, payload: { quantity: 99 } },
    { method: 'DELETE', url: `/invoices/${A.invoice}/line-items/${B.item}` },
    // References to B's customer from A's writes.
    { method: 'POST', url: '/invoices', payload: { customer_id: B.customer, amount_cents: 5 } },
    { method: 'PATCH', url: `/invoices/${A.invoice}`, payload: { customer_id: B.customer } },
  ];
  for (const c of cases) {
    const r = await s.as(s.a, c);
    assert.equal(r.statusCode, 404, `${c.method} ${c.url} ${JSON.stringify(c.payload)} -> ${r.statusCode} ${r.body}`);
    assert.equal(r.json().error.code, 'not_found');
  }
  assert.equal(await snapshotB(), before);
});

test('lists never contain B rows (any filter, sort or order)', async () => {
  const bIds = new Set(Object.values(B));
  const urls = [
    '/customers?limit=100',
    '/customers?sort=name&order=desc',
    '/invoices?limit=100',
    '/invoices?sort=amount_cents&order=asc&limit=100',
    `/invoices?customer_id=${B.customer}`,
    '/invoices?customer=b-customer',
    `/invoices/${A.invoice}/line-items`,
  ];
  for (const url of urls) {
    const r = await s.as(s.a, { method: 'GET', url });
    assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
    for (const row of r.json().data) assert.ok(!bIds.has(row.id), `${url} leaked ${row.id}`);
  }
  const all = await s.as(s.a, { method: 'GET', url: '/invoices?limit=100' });
  assert.equal(all.json().data.length, 5);
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices?customer_id=${B.customer}` })).json().data.length, 0);
});

test('a tenant_id in a body is refused (400 naming tenant_id) and nothing is written anywhere', async () => {
  const before = await snapshotB();
  const countA = (await s.as(s.a, { method: 'GET', url: '/invoices?limit=100' })).json().data.length;
  const bodies: InjectOptions[] = [
    { method: 'POST', url: '/customers', payload: { name: 'x', tenant_id: s.b.id } },
    { method: 'POST', url: '/invoices', payload: { customer: 'x', amount_cents: 1, tenant_id: s.b.id } },
    { method: 'POST', url: '/invoices', payload: { customer: 'x', line_items: [{ description: 'd', quantity: 1, unit_amount_cents: 1, tenant_id: s.b.id }] } },
    { method: 'PATCH', url: `/invoices/${A.invoice}`, payload: { tenant_id: s.b.id } },
    { method: 'POST', url: `/invoices/${A.invoice}/line-items`, payload: { description: 'd', quantity: 1, unit_amount_cents: 1, tenant_id: s.b.id } },
  ];
  for (const c of bodies) {
    const r = await s.as(s.a, c);
    assert.equal(r.statusCode, 400, `${c.url}: ${r.body}`);
    assert.equal(r.json().error.code, 'validation_failed');
    assert.match(r.json().error.details.field, /tenant_id$/);
  }
  assert.equal(await snapshotB(), before);
  assert.equal((await s.as(s.a, { method: 'GET', url: '/invoices?limit=100' })).json().data.length, countA);
});

function cursor(sort: string, order: string, value: unknown, id: string): string {
  return Buffer.from(JSON.stringify({ s: sort, o: order, v: value, i: id })).toString('base64url');
}

test('forged cursors that encode B positions return only A rows', async () => {
  const bInvoices = (await s.as(s.b, { method: 'GET', url: '/invoices?limit=100&order=asc' })).json().data as Array<{ id: string; created_at: string; amount_cents: number }>;
  const aIds = new Set(((await s.as(s.a, { method: 'GET', url: '/invoices?limit=100' })).json().data as Array<{ id: string }>).map((r) => r.id));
  const first = bInvoices[0] as { id: string; created_at: string; amount_cents: number };
  const forged = [
    `/invoices?order=asc&cursor=${cursor('created_at', 'asc', first.created_at, first.id)}`,
    `/invoices?order=desc&cursor=${cursor('created_at', 'desc', '2999-01-01T00:00:00.000Z', 'ffffffff-ffff-ffff-ffff-ffffffffffff')}`,
    `/invoices?sort=amount_cents&order=asc&cursor=${cursor('amount_cents', 'asc', -1, '00000000-0000-0000-0000-000000000000')}`,
    `/customers?order=asc&cursor=${cursor('created_at', 'asc', '1970-01-01T00:00:00.000Z', B.customer as string)}`,
  ];
  let seen = 0;
  for (const url of forged) {
    const r = await s.as(s.a, { method: 'GET', url: `${url}&limit=100` });
    assert.equal(r.statusCode, 200, `${url}: ${r.body}`);
    for (const row of r.json().data) {
      assert.ok(!Object.values(B).includes(row.id), `${url} leaked ${row.id}`);
      if (url.startsWith('/invoices')) assert.ok(aIds.has(row.id));
      seen++;
    }
  }
  assert.ok(seen >= 10, 'the forged cursors did return A rows');
});

test('the admin token is not a tenant credential, and a tenant credential is not an admin token', async () => {
  const r1 = await s.app.inject({ method: 'GET', url: '/invoices', headers: { authorization: 'Bearer test-admin-token-0123456789abcdef' } });
  assert.equal(r1.statusCode, 401);
  assert.equal(r1.json().error.code, 'unauthenticated');
  for (const [method, url] of [
    ['GET', '/admin/tenants'],
    ['POST', `/admin/tenants/${s.b.id}/suspend`],
    ['POST', `/admin/tenants/${s.b.id}/api-keys`],
    ['DELETE', `/admin/tenants/${s.b.id}/api-keys/${s.b.keyId}`],
  ] as const) {
    const r = await s.as(s.a, method === 'POST' ? { method, url, payload: { name: 'x' } } : { method, url });
    assert.equal(r.statusCode, 401, `${method} ${url}`);
    assert.equal(r.json().error.code, 'admin_unauthorized');
  }
  assert.equal((await s.admin({ method: 'GET', url: `/admin/tenants/${s.b.id}` })).json().status, 'active');
});
