/**
 * Every tenant-scoped statement of the reference service routes to exactly one worker on Citus. The service
 * runs unchanged on a real cluster behind a real HTTP listener; a wrapper around its statement guard records
 * every statement it sends in tenant scope; every tenant route of its OpenAPI document is called (with the
 * variants that change the SQL: filters, sorts, cursors, transactions); then each recorded statement is
 * EXPLAINed as the application role with its tenant set, and every Citus scan in the plan must have one task.
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../examples/invoicing-service/src/app.ts';
import { serviceGuard } from '../../examples/invoicing-service/src/guard.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import type { Params, StatementGuard, TenantId } from '../../src/index.ts';
import { type CitusTenantwall, createCitusTenantwall, skipWithoutCitus } from './cluster.ts';

const ADMIN_TOKEN = 'citus-admin-token-0123456789abcdef';

interface Recorded {
  route: string;
  sql: string;
  params: Params;
  tenantId: TenantId;
}

describe('Citus: every tenant-scoped statement of the service routes to one worker', { skip: skipWithoutCitus }, () => {
  let t: CitusTenantwall;
  let app: FastifyInstance;
  let base: string;
  let route = '(setup)';
  const recorded: Recorded[] = [];
  const exercised = new Set<string>();

  before(async () => {
    const inner = serviceGuard();
    const recorder: StatementGuard = {
      check(sql, params, tenantId) {
        inner.check(sql, params, tenantId);
        recorded.push({ route, sql, params: [...params], tenantId });
      },
    };
    t = await createCitusTenantwall(schema, migrations, { guard: recorder });
    app = await buildApp({ db: t.db, adminToken: ADMIN_TOKEN });
    await app.listen({ port: 0, host: '127.0.0.1' });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  });
  after(async () => {
    await app?.close();
    await t?.close();
  });

  async function call(method: string, url: string, token: string, body?: unknown): Promise<{ status: number; json: any }> {
    const res = await fetch(base + url, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : undefined };
  }

  test('the service runs on Citus and each statement of each OpenAPI tenant route is a one-task plan', async () => {
    const tenant = await call('POST', '/admin/tenants', ADMIN_TOKEN, { slug: 'acme', name: 'Acme' });
    assert.equal(tenant.status, 201, JSON.stringify(tenant.json));
    const key = await call('POST', `/admin/tenants/${tenant.json.id}/api-keys`, ADMIN_TOKEN, { name: 'routing' });
    assert.equal(key.status, 201, JSON.stringify(key.json));
    const token = key.json.key as string;

    /** One call of a tenant route; `template` is its OpenAPI path. */
    async function as(method: string, template: string, url: string, body: unknown, expected: number): Promise<any> {
      route = `${method} ${template}`;
      exercised.add(route);
      const before = recorded.length;
      const res = await call(method, url, token, body);
      assert.equal(res.status, expected, `${method} ${url}: ${JSON.stringify(res.json)}`);
      assert.ok(recorded.length > before, `${method} ${url} sent no tenant-scoped statement`);
      return res.json;
    }

    const customer = await as('POST', '/customers', '/customers', { name: 'Bob', email: 'bob@acme.test' }, 201);
    const other = await as('POST', '/customers', '/customers', { name: 'Eve' }, 201);
    for (const q of ['', '?limit=1', '?order=desc&sort=name', '?sort=created_at', '?email=bob@acme.test']) {
      const page = await as('GET', '/customers', `/customers${q}`, undefined, 200);
      if (page.next_cursor) await as('GET', '/customers', `/customers${q}${q ? '&' : '?'}cursor=${encodeURIComponent(page.next_cursor)}`, undefined, 200);
    }
    await as('GET', '/customers/{id}', `/customers/${customer.id}`, undefined, 200);
    await as('PATCH', '/customers/{id}', `/customers/${customer.id}`, { name: 'Bobby', email: null }, 200);

    const invoice = await as(
      'POST',
      '/invoices',
      '/invoices',
      { customer_id: customer.id, line_items: [{ description: 'Widget', quantity: 2, unit_amount_cents: 150 }, { description: 'Gadget', quantity: 1, unit_amount_cents: 99 }] },
      201,
    );
    const plain = await as('POST', '/invoices', '/invoices', { customer: 'Walk-in', amount_cents: 1200, status: 'issued', issued_at: new Date().toISOString() }, 201);
    for (const q of ['', '?limit=1', '?sort=amount_cents&order=asc', '?status=issued', `?customer_id=${customer.id}`, '?customer=Walk-in', `?issued_from=2000-01-01T00:00:00.000Z&issued_to=2999-01-01T00:00:00.000Z`]) {
      const page = await as('GET', '/invoices', `/invoices${q}`, undefined, 200);
      if (page.next_cursor) await as('GET', '/invoices', `/invoices${q}${q ? '&' : '?'}cursor=${encodeURIComponent(page.next_cursor)}`, undefined, 200);
    }
    await as('GET', '/invoices/{id}', `/invoices/${invoice.id}`, undefined, 200);
    await as('PATCH', '/invoices/{id}', `/invoices/${invoice.id}`, { customer_id: other.id }, 200);

    const item = await as('POST', '/invoices/{id}/line-items', `/invoices/${invoice.id}/line-items`, { description: 'Extra', quantity: 3, unit_amount_cents: 10 }, 201);
    for (const q of ['', '?limit=1', '?order=desc']) {
      const page = await as('GET', '/invoices/{id}/line-items', `/invoices/${invoice.id}/line-items${q}`, undefined, 200);
      if (page.next_cursor) await as('GET', '/invoices/{id}/line-items', `/invoices/${invoice.id}/line-items${q}${q ? '&' : '?'}cursor=${encodeURIComponent(page.next_cursor)}`, undefined, 200);
    }
    await as('GET', '/invoices/{id}/line-items/{itemId}', `/invoices/${invoice.id}/line-items/${item.id}`, undefined, 200);
    await as('PATCH', '/invoices/{id}/line-items/{itemId}', `/invoices/${invoice.id}/line-items/${item.id}`, { quantity: 4 }, 200);
    await as('DELETE', '/invoices/{id}/line-items/{itemId}', `/invoices/${invoice.id}/line-items/${item.id}`, undefined, 204);
    await as('PATCH', '/invoices/{id}', `/invoices/${invoice.id}`, { status: 'issued' }, 200);
    // No document worker runs on Citus (the enqueue trigger is left out there, docs/service.md): still rendering.
    await as('GET', '/invoices/{id}/document', `/invoices/${invoice.id}/document`, undefined, 202);
    await as('PATCH', '/invoices/{id}', `/invoices/${invoice.id}`, { status: 'paid' }, 200);
    await as('DELETE', '/invoices/{id}', `/invoices/${plain.id}`, undefined, 204);
    await as('DELETE', '/customers/{id}', `/customers/${other.id}`, undefined, 409);
    const lone = await as('POST', '/customers', '/customers', { name: 'Lone' }, 201);
    await as('DELETE', '/customers/{id}', `/customers/${lone.id}`, undefined, 204);

    // Every tenant route of the OpenAPI document was called.
    route = '(openapi)';
    const doc = (await (await fetch(`${base}/openapi.json`)).json()) as { paths: Record<string, Record<string, { security?: Array<Record<string, unknown>> }>> };
    const tenantRoutes = Object.entries(doc.paths).flatMap(([path, ops]) =>
      Object.entries(ops)
        .filter(([, op]) => op.security?.some((s) => 'bearer' in s))
        .map(([method]) => `${method.toUpperCase()} ${path}`),
    );
    assert.ok(tenantRoutes.length >= 12, `found ${tenantRoutes.length} tenant routes`);
    assert.deepEqual([...exercised].sort(), [...tenantRoutes].sort(), 'every tenant route of the OpenAPI document is exercised');

    // Each distinct statement, EXPLAINed as the application role with its tenant set.
    const distinct = new Map<string, Recorded>();
    for (const r of recorded) if (!distinct.has(r.sql)) distinct.set(r.sql, r);
    const pool = t.db.dangerouslyRawAppPool();
    const failures: string[] = [];
    for (const r of distinct.values()) {
      const c = await pool.connect();
      try {
        await c.query('BEGIN');
        await c.query(`SET LOCAL ${t.db.options.settingName} = '${r.tenantId}'`);
        const plan = await c.query(`EXPLAIN (FORMAT JSON) ${r.sql}`, r.params as unknown[]);
        const tasks = taskCounts(plan.rows[0]['QUERY PLAN']);
        if (tasks.length === 0 || tasks.some((n) => n !== 1)) failures.push(`${r.route}: tasks ${JSON.stringify(tasks)} for ${r.sql}`);
      } finally {
        await c.query('ROLLBACK');
        c.release();
      }
    }
    assert.ok(distinct.size >= 20, `${distinct.size} distinct statements recorded`);
    assert.deepEqual(failures, [], 'statements that do not route to one worker');
  });
});

/** Task Count of every Citus custom scan in an EXPLAIN (FORMAT JSON) plan. */
function taskCounts(plan: unknown): number[] {
  const out: number[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node === null || typeof node !== 'object') return;
    const n = node as Record<string, unknown>;
    if (typeof n['Custom Plan Provider'] === 'string' && String(n['Custom Plan Provider']).startsWith('Citus')) {
      const job = (n['Distributed Query'] as { Job?: { 'Task Count'?: number } } | undefined)?.Job;
      out.push(job?.['Task Count'] ?? -1);
    }
    for (const v of Object.values(n)) walk(v);
  };
  walk(plan);
  return out;
}
