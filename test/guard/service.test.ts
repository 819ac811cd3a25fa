/**
 * The reference service with the guard on and row-level security OFF: every statement the service sends in
 * tenant scope must pass the verifier (a refusal would be a 500), and tenant A still never sees or changes
 * tenant B's rows: the guard alone holds.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp } from '../../examples/invoicing-service/src/app.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { type Params, type TenantId, createGuard } from '../../src/index.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';

const ADMIN = 'guard-test-admin-token-0123456789';
const checked = new Set<string>();
const refused: string[] = [];
const inner = createGuard(schema);
// Records what the service sends, so the test can tell "passed the verifier" from "never ran".
const guard = {
  ready: () => inner.ready(),
  check(sql: string, params: Params, tenantId: TenantId) {
    try {
      inner.check(sql, params, tenantId);
      checked.add(sql);
    } catch (err) {
      refused.push(`${sql} -> ${(err as Error).message}`);
      throw err;
    }
  },
};

let t: TestTenantwall;
let app: FastifyInstance;
const keys: Record<'a' | 'b', string> = { a: '', b: '' };
const ids: Record<'a' | 'b', { customer: string; invoice: string; item: string }> = {
  a: { customer: '', invoice: '', item: '' },
  b: { customer: '', invoice: '', item: '' },
};

const admin = (o: InjectOptions) => app.inject({ ...o, headers: { authorization: `Bearer ${ADMIN}`, ...o.headers } });
const as = (who: 'a' | 'b', o: InjectOptions) => app.inject({ ...o, headers: { authorization: `Bearer ${keys[who]}`, ...o.headers } });

before(async () => {
  t = await createTestTenantwall(schema, migrations, { guard });
  await superQuery(t.database.name, schema.tenantTables.map((x) => `ALTER TABLE ${x.name} DISABLE ROW LEVEL SECURITY;`).join('\n'));
  app = await buildApp({ db: t.db, adminToken: ADMIN });
  await app.ready();
  for (const who of ['a', 'b'] as const) {
    const created = await admin({ method: 'POST', url: '/admin/tenants', payload: { slug: `guard-${who}`, name: who.toUpperCase() } });
    assert.equal(created.statusCode, 201, created.body);
    const key = await admin({ method: 'POST', url: `/admin/tenants/${created.json().id}/api-keys`, payload: { name: 'k' } });
    assert.equal(key.statusCode, 201, key.body);
    keys[who] = key.json().key;
    const c = await as(who, { method: 'POST', url: '/customers', payload: { name: `${who}-customer`, email: `x@${who}.test` } });
    assert.equal(c.statusCode, 201, c.body);
    const i = await as(who, {
      method: 'POST',
      url: '/invoices',
      payload: { customer_id: c.json().id, line_items: [{ description: `${who}-item`, quantity: 1, unit_amount_cents: 100 }] },
    });
    assert.equal(i.statusCode, 201, i.body);
    ids[who] = { customer: c.json().id, invoice: i.json().id, item: i.json().line_items[0].id };
    for (let n = 0; n < 3; n++) await as(who, { method: 'POST', url: '/invoices', payload: { customer: `${who}-${n}`, amount_cents: 1000 + n } });
  }
});

after(async () => {
  await app?.close();
  await t?.close();
});

test('RLS is really off for the application role', async () => {
  const r = await t.db.dangerouslyRawAppPool().query('SELECT count(*)::int AS n FROM invoices');
  assert.ok((r.rows[0]?.n ?? 0) >= 8, 'the app role sees every tenant without a tenant setting');
});

test('every endpoint works through the guard, A never reaches B, and every statement passed the verifier', async () => {
  const A = ids.a;
  const B = ids.b;
  const own: InjectOptions[] = [
    { method: 'GET', url: '/customers?limit=100' },
    { method: 'GET', url: '/customers?sort=name&order=desc' },
    { method: 'GET', url: `/customers/${A.customer}` },
    { method: 'PATCH', url: `/customers/${A.customer}`, payload: { name: 'renamed' } },
    { method: 'GET', url: '/invoices?limit=100' },
    { method: 'GET', url: '/invoices?sort=amount_cents&order=asc&limit=2' },
    { method: 'GET', url: `/invoices?customer_id=${A.customer}` },
    { method: 'GET', url: `/invoices/${A.invoice}` },
    { method: 'GET', url: `/invoices/${A.invoice}/line-items` },
    { method: 'POST', url: `/invoices/${A.invoice}/line-items`, payload: { description: 'more', quantity: 2, unit_amount_cents: 5 } },
    { method: 'GET', url: `/invoices/${A.invoice}/line-items/${A.item}` },
    { method: 'PATCH', url: `/invoices/${A.invoice}/line-items/${A.item}`, payload: { quantity: 3 } },
    { method: 'PATCH', url: `/invoices/${A.invoice}`, payload: { status: 'issued' } },
  ];
  for (const c of own) {
    const r = await as('a', c);
    assert.ok(r.statusCode < 300, `${c.method} ${c.url} -> ${r.statusCode} ${r.body}`);
    assert.ok(!r.body.includes(B.customer) && !r.body.includes(B.invoice) && !r.body.includes(B.item), `${c.method} ${c.url} leaked B`);
    assert.ok(!r.body.includes('b-customer') && !r.body.includes('b-item') && !/"b-\d"/.test(r.body), `${c.method} ${c.url} leaked B`);
  }
  const cross: InjectOptions[] = [
    { method: 'GET', url: `/customers/${B.customer}` },
    { method: 'PATCH', url: `/customers/${B.customer}`, payload: { name: 'pwned' } },
    { method: 'DELETE', url: `/customers/${B.customer}` },
    { method: 'GET', url: `/invoices/${B.invoice}` },
    { method: 'PATCH', url: `/invoices/${B.invoice}`, payload: { status: 'void' } },
    { method: 'DELETE', url: `/invoices/${B.invoice}` },
    { method: 'GET', url: `/invoices/${B.invoice}/line-items` },
    { method: 'GET', url: `/invoices/${B.invoice}/line-items/${B.item}` },
    { method: 'DELETE', url: `/invoices/${B.invoice}/line-items/${B.item}` },
    { method: 'POST', url: '/invoices', payload: { customer_id: B.customer, amount_cents: 5 } },
  ];
  const snapshot = async () => (await superQuery(t.database.name, `SELECT md5(string_agg(x, '|' ORDER BY x)) AS s FROM (
      SELECT c::text AS x FROM customers c WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'guard-b')
      UNION ALL SELECT i::text FROM invoices i WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'guard-b')
      UNION ALL SELECT l::text FROM invoice_line_items l WHERE tenant_id = (SELECT id FROM tenants WHERE slug = 'guard-b')) s`)).rows[0]?.s;
  const before = await snapshot();
  for (const c of cross) {
    const r = await as('a', c);
    assert.equal(r.statusCode, 404, `${c.method} ${c.url} -> ${r.statusCode} ${r.body}`);
  }
  assert.equal(await snapshot(), before, "B's rows changed");
  const list = await as('a', { method: 'GET', url: '/invoices?limit=100' });
  assert.equal(list.json().data.length, 4);
  assert.deepEqual(refused, [], 'the service sent statements the guard refuses');
  if (process.env.TW_GUARD_DEBUG) console.log([...checked].join('\n'));
  assert.ok(checked.size >= 8, `only ${checked.size} distinct statements went through the guard`);
});
