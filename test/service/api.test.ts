import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { buildApp } from '../../examples/invoicing-service/src/app.ts';
import { Tenantwall } from '../../src/index.ts';
import { schema } from '../../examples/invoicing-service/src/schema.ts';
import { ADMIN_TOKEN, type ServiceFixture, startService } from './setup.ts';

let s: ServiceFixture;
before(async () => {
  s = await startService();
});
after(() => s.close());

async function collect(url: string): Promise<Array<Record<string, any>>> {
  const rows: Array<Record<string, any>> = [];
  let next: string | null = null;
  for (let pages = 0; pages < 50; pages++) {
    const sep = url.includes('?') ? '&' : '?';
    const r = await s.as(s.a, { method: 'GET', url: next ? `${url}${sep}cursor=${next}` : url });
    assert.equal(r.statusCode, 200, r.body);
    rows.push(...r.json().data);
    next = r.json().next_cursor;
    if (!next) return rows;
  }
  throw new Error('pagination did not end');
}

test('keyset pagination walks every row exactly once, in order, for each sort and order; filters apply', async () => {
  const amounts = [500, 100, 300, 300, 200, 900, 100];
  for (const [i, amount] of amounts.entries()) {
    const body: Record<string, unknown> = { customer: i % 2 ? 'odd' : 'even', amount_cents: amount };
    if (i < 3) Object.assign(body, { status: 'issued', issued_at: `2026-0${i + 1}-15T12:00:00.000Z` });
    assert.equal((await s.as(s.a, { method: 'POST', url: '/invoices', payload: body })).statusCode, 201);
  }
  const all = await collect('/invoices?limit=100');
  assert.equal(all.length, amounts.length);
  for (const [sort, order] of [['created_at', 'asc'], ['created_at', 'desc'], ['amount_cents', 'asc'], ['amount_cents', 'desc']] as const) {
    const paged = await collect(`/invoices?limit=2&sort=${sort}&order=${order}`);
    assert.equal(new Set(paged.map((r) => r.id)).size, amounts.length, `${sort} ${order}: each row once`);
    const keys = paged.map((r) => (sort === 'amount_cents' ? r.amount_cents : Date.parse(r.created_at)));
    const sorted = [...keys].sort((x, y) => (order === 'asc' ? x - y : y - x));
    assert.deepEqual(keys, sorted, `${sort} ${order}`);
  }
  assert.equal((await collect('/invoices?status=issued&limit=1')).length, 3);
  assert.equal((await collect('/invoices?status=draft')).length, 4);
  assert.equal((await collect('/invoices?customer=odd')).length, 3);
  const range = await collect('/invoices?issued_from=2026-02-01T00:00:00Z&issued_to=2026-03-01T00:00:00Z');
  assert.deepEqual(range.map((r) => r.issued_at), ['2026-02-15T12:00:00.000Z']);
});

test('customers: CRUD, filter by email, sort by name; invoices by customer_id', async () => {
  const c = (await s.as(s.a, { method: 'POST', url: '/customers', payload: { name: 'Zed', email: 'zed@a.test' } })).json();
  await s.as(s.a, { method: 'POST', url: '/customers', payload: { name: 'Amy' } });
  assert.equal((await s.as(s.a, { method: 'GET', url: `/customers/${c.id}` })).json().name, 'Zed');
  const patched = await s.as(s.a, { method: 'PATCH', url: `/customers/${c.id}`, payload: { name: 'Zed Ltd', email: null } });
  assert.equal(patched.json().name, 'Zed Ltd');
  assert.equal(patched.json().email, null);
  const byName = await collect('/customers?sort=name&order=asc&limit=1');
  assert.deepEqual(byName.map((r) => r.name), ['Amy', 'Zed Ltd']);
  await s.as(s.a, { method: 'PATCH', url: `/customers/${c.id}`, payload: { email: 'z@a.test' } });
  assert.equal((await collect('/customers?email=z@a.test')).length, 1);
  const inv = (await s.as(s.a, { method: 'POST', url: '/invoices', payload: { customer_id: c.id, amount_cents: 1 } })).json();
  assert.equal(inv.customer, 'Zed Ltd');
  assert.deepEqual((await collect(`/invoices?customer_id=${c.id}`)).map((r) => r.id), [inv.id]);
  assert.equal((await s.as(s.a, { method: 'DELETE', url: `/invoices/${inv.id}` })).statusCode, 204);
  assert.equal((await s.as(s.a, { method: 'DELETE', url: `/customers/${c.id}` })).statusCode, 204);
  assert.equal((await s.as(s.a, { method: 'GET', url: `/customers/${c.id}` })).statusCode, 404);
});

test('line items: the invoice total follows them; status draft -> issued -> paid; deleting an invoice cascades', async () => {
  const inv = (await s.as(s.a, { method: 'POST', url: '/invoices', payload: { customer: 'Items', line_items: [{ description: 'a', quantity: 2, unit_amount_cents: 250 }] } })).json();
  assert.equal(inv.amount_cents, 500);
  const added = await s.as(s.a, { method: 'POST', url: `/invoices/${inv.id}/line-items`, payload: { description: 'b', quantity: 1, unit_amount_cents: 75 } });
  assert.equal(added.statusCode, 201);
  assert.equal(added.json().position, 2);
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${inv.id}` })).json().amount_cents, 575);
  const item = added.json().id;
  assert.equal((await s.as(s.a, { method: 'PATCH', url: `/invoices/${inv.id}/line-items/${item}`, payload: { quantity: 3 } })).json().amount_cents, 225);
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${inv.id}` })).json().amount_cents, 725);
  assert.deepEqual((await collect(`/invoices/${inv.id}/line-items?limit=1`)).map((r) => r.description), ['a', 'b']);
  assert.equal((await s.as(s.a, { method: 'DELETE', url: `/invoices/${inv.id}/line-items/${item}` })).statusCode, 204);
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${inv.id}` })).json().amount_cents, 500);
  const issued = (await s.as(s.a, { method: 'PATCH', url: `/invoices/${inv.id}`, payload: { status: 'issued' } })).json();
  assert.equal(issued.status, 'issued');
  assert.ok(issued.issued_at);
  assert.equal((await s.as(s.a, { method: 'PATCH', url: `/invoices/${inv.id}`, payload: { status: 'paid' } })).json().status, 'paid');
  assert.equal((await s.as(s.a, { method: 'PATCH', url: `/invoices/${inv.id}`, payload: { status: 'void' } })).statusCode, 409);
  assert.equal((await s.as(s.a, { method: 'DELETE', url: `/invoices/${inv.id}` })).statusCode, 204);
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${inv.id}/line-items` })).statusCode, 404);
  const left = await s.db.forTenant(s.a.id).query(`SELECT count(*)::int AS n FROM invoice_line_items WHERE tenant_id = $1 AND invoice_id = $2`, [s.a.id, inv.id]);
  assert.equal(left.rows[0]?.n, 0);
});

test('admin API: tenants and keys; suspension and revocation take effect at once', async () => {
  const bad = await s.app.inject({ method: 'GET', url: '/admin/tenants', headers: { authorization: 'Bearer wrong-token-wrong-token' } });
  assert.equal(bad.statusCode, 401);
  assert.equal(bad.json().error.code, 'admin_unauthorized');
  const created = await s.admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'gamma', name: 'Gamma' } });
  assert.equal(created.statusCode, 201);
  assert.equal((await s.admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'gamma', name: 'Again' } })).json().error.code, 'tenant_exists');
  assert.equal((await s.admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'Bad Slug', name: 'x' } })).json().error.details.field, 'slug');
  const g = created.json();
  const slugs = (await s.admin({ method: 'GET', url: '/admin/tenants' })).json().data.map((t: { slug: string }) => t.slug);
  assert.deepEqual(slugs, ['gamma', 'tenant-a', 'tenant-b']);
  // Pages like every other list: cursor / next_cursor.
  const first = (await s.admin({ method: 'GET', url: '/admin/tenants?limit=2' })).json();
  assert.deepEqual(first.data.map((t: { slug: string }) => t.slug), ['gamma', 'tenant-a']);
  const second = (await s.admin({ method: 'GET', url: `/admin/tenants?limit=2&cursor=${first.next_cursor}` })).json();
  assert.deepEqual(second, { data: [second.data[0]], next_cursor: null });
  assert.equal(second.data[0].slug, 'tenant-b');
  const key = (await s.admin({ method: 'POST', url: `/admin/tenants/${g.id}/api-keys`, payload: { name: 'ci' } })).json();
  assert.match(key.key, /^tw_[0-9a-f]{32}_[0-9a-f]{32}_/);
  const listed = (await s.admin({ method: 'GET', url: `/admin/tenants/${g.id}/api-keys` })).json();
  assert.equal(listed.data.length, 1);
  assert.equal(listed.next_cursor, null);
  assert.equal(listed.data[0].key, undefined, 'the key is never shown again');
  const key2 = (await s.admin({ method: 'POST', url: `/admin/tenants/${g.id}/api-keys`, payload: { name: 'second' } })).json();
  const p1 = (await s.admin({ method: 'GET', url: `/admin/tenants/${g.id}/api-keys?limit=1` })).json();
  assert.deepEqual(p1.data.map((k: { id: string }) => k.id), [key.id]);
  const p2 = (await s.admin({ method: 'GET', url: `/admin/tenants/${g.id}/api-keys?limit=1&cursor=${p1.next_cursor}` })).json();
  assert.deepEqual([p2.data.map((k: { id: string }) => k.id), p2.next_cursor], [[key2.id], null]);
  const auth = { authorization: `Bearer ${key.key}` };
  assert.equal((await s.app.inject({ method: 'GET', url: '/invoices', headers: auth })).statusCode, 200);
  assert.equal((await s.admin({ method: 'POST', url: `/admin/tenants/${g.id}/suspend` })).json().status, 'suspended');
  const suspended = await s.app.inject({ method: 'GET', url: '/invoices', headers: auth });
  assert.equal(suspended.statusCode, 403);
  assert.equal(suspended.json().error.code, 'tenant_suspended');
  assert.equal((await s.admin({ method: 'POST', url: `/admin/tenants/${g.id}/resume` })).json().status, 'active');
  assert.equal((await s.app.inject({ method: 'GET', url: '/invoices', headers: auth })).statusCode, 200);
  assert.equal((await s.admin({ method: 'DELETE', url: `/admin/tenants/${g.id}/api-keys/${key.id}` })).statusCode, 204);
  const revoked = await s.app.inject({ method: 'GET', url: '/invoices', headers: auth });
  assert.equal(revoked.statusCode, 401);
  assert.equal(revoked.json().error.details.reason, 'revoked_api_key');
  // A's key id under B's tenant: not found, not revoked.
  assert.equal((await s.admin({ method: 'DELETE', url: `/admin/tenants/${s.b.id}/api-keys/${s.a.keyId}` })).statusCode, 404);
  assert.equal((await s.as(s.a, { method: 'GET', url: '/invoices' })).statusCode, 200);
  assert.equal((await s.admin({ method: 'GET', url: '/admin/tenants/00000000-0000-4000-8000-000000000000' })).statusCode, 404);
});

test('OpenAPI document and docs page; health; readiness fails while the database is unreachable', async () => {
  const doc = (await s.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  assert.match(doc.openapi, /^3\./);
  for (const p of ['/invoices', '/invoices/{id}', '/invoices/{id}/line-items/{itemId}', '/customers', '/admin/tenants']) assert.ok(doc.paths[p], p);
  assert.ok(doc.paths['/invoices'].post.requestBody);
  const page = await s.app.inject({ method: 'GET', url: '/docs/' });
  assert.equal(page.statusCode, 200);
  assert.match(page.body, /swagger/i);
  assert.deepEqual((await s.app.inject({ method: 'GET', url: '/healthz' })).json(), { status: 'ok' });
  assert.deepEqual((await s.app.inject({ method: 'GET', url: '/readyz' })).json(), { status: 'ready' });
  // A second app whose database is dropped while it runs (this test is last in the file).
  const db2 = await Tenantwall.connect({ schema, databaseUrl: s.t.database.url, manageRoles: false });
  const app2 = await buildApp({ db: db2, adminToken: ADMIN_TOKEN });
  try {
    assert.equal((await app2.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
    await s.t.database.drop().catch(() => undefined); // the database goes away under a running app
    const r = await app2.inject({ method: 'GET', url: '/readyz' });
    assert.equal(r.statusCode, 503);
    assert.equal(r.json().error.code, 'database_unreachable');
    assert.equal((await app2.inject({ method: 'GET', url: '/healthz' })).statusCode, 200, 'liveness does not depend on the database');
  } finally {
    await app2.close();
    await db2.close();
  }
});
