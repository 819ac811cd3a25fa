import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { buildApp } from '../../examples/invoicing-service/src/app.ts';
import { serviceGuard } from '../../examples/invoicing-service/src/guard.ts';
import { meteringSpec } from '../../examples/invoicing-service/src/metering.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { Metering } from '../../src/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

const ADMIN = 'service-metering-admin-token-0123';

describe('the reference service with metering on (and its statement guard)', () => {
  let t: TestTenantwall;
  let metering: Metering;
  let app: FastifyInstance;
  let key: string;
  let tenantId: string;
  const as = (o: InjectOptions) => app.inject({ ...o, headers: { authorization: `Bearer ${key}`, ...o.headers } });
  before(async () => {
    // As `npm start` runs it: statement guard on.
    t = await createTestTenantwall(schema, migrations, { guard: serviceGuard() });
    // The service's plans, without the free plan's 50/s rate limit: 100 requests in a row must meet the quota.
    const free = { ...meteringSpec.plans.free, rateLimits: [] };
    metering = new Metering(t.db, { spec: { ...meteringSpec, plans: { ...meteringSpec.plans, free } } });
    app = await buildApp({ db: t.db, adminToken: ADMIN, metering });
    await app.ready();
    tenantId = (await t.db.tenants.create({ slug: 'svc', name: 'Svc' })).id;
    key = (await app.tenantwall.apiKeys.create(tenantId, { name: 'k' })).key;
  });
  after(async () => {
    await app.close();
    await metering.close();
    await t.close();
  });

  test('POST /invoices consumes the hard monthly quota of the free plan (100), then 429 quota_exceeded', async () => {
    let last = '';
    for (let i = 0; i < 100; i++) {
      const r = await as({ method: 'POST', url: '/invoices', payload: { customer: `c${i}`, amount_cents: 100 } });
      assert.equal(r.statusCode, 201, r.body);
      last = String(r.headers['x-quota-remaining']);
    }
    assert.equal(last, 'invoices=0');
    const refused = await as({ method: 'POST', url: '/invoices', payload: { customer: 'over', amount_cents: 1 } });
    assert.equal(refused.statusCode, 429);
    assert.equal(refused.json().error.code, 'quota_exceeded');
    assert.ok(Number(refused.headers['retry-after']) > 0);
    const list = await as({ method: 'GET', url: '/invoices?limit=1' });
    assert.equal(list.statusCode, 200);
    assert.equal(list.headers['x-quota-remaining'], 'invoices=0');
    // An upgrade through the admin route lifts the limit at once (pro: soft quota of 10000).
    const up = await app.inject({ method: 'PUT', url: `/admin/usage/tenants/${tenantId}/plan`, payload: { plan: 'pro' }, headers: { authorization: `Bearer ${ADMIN}` } });
    assert.equal(up.statusCode, 200, up.body);
    const pro = await as({ method: 'POST', url: '/invoices', payload: { customer: 'pro', amount_cents: 1 } });
    assert.equal(pro.statusCode, 201);
    assert.equal(pro.headers['ratelimit-limit'], '1000', 'the pro plan rate limits apply');
  });

  test('usage: api_requests and rows.created are recorded and queryable by the tenant', async () => {
    await metering.flush();
    const r = await as({ method: 'GET', url: '/usage?meter=rows.created,api_requests,invoices.created&granularity=month' });
    assert.equal(r.statusCode, 200, r.body);
    const byMeter = Object.fromEntries(r.json().data.map((x: { meter: string; value: number }) => [x.meter, x.value]));
    assert.equal(byMeter['rows.created'], 101);
    assert.equal(byMeter['invoices.created'], 101);
    assert.ok(byMeter.api_requests >= 103);
  });

  test("tenants cannot inflate the service's meters through POST /usage/events (403 meter_not_writable)", async () => {
    for (const meter of ['invoices.created', 'api_requests', 'rows.created']) {
      const r = await as({ method: 'POST', url: '/usage/events', payload: { event_id: `forged-${meter}`, meter, quantity: 1_000_000 } });
      assert.equal(r.statusCode, 403, r.body);
      assert.equal(r.json().error.code, 'meter_not_writable');
      assert.equal(r.json().error.details.meter, meter);
    }
    const { rows } = await t.db.forTenant(tenantId).query(`SELECT count(*)::int AS n FROM tw_usage_events WHERE tenant_id = $1 AND event_id LIKE 'forged-%'`, [tenantId]);
    assert.equal(rows[0]?.n, 0);
  });

  test('the admin suspend route writes tenant.suspended with the status change, once; the tenant is then refused', async () => {
    const other = (await t.db.tenants.create({ slug: 'svc-susp', name: 'Suspended' })).id;
    const otherKey = (await app.tenantwall.apiKeys.create(other, { name: 'k' })).key;
    const suspended = async () =>
      (await t.db.dangerouslyCrossTenant().query<{ payload: { tenant_id: string } }>(`SELECT payload FROM tw_outbox WHERE tenant_id = $1 AND type = 'tenant.suspended'`, [other])).rows;
    for (let i = 0; i < 2; i++) {
      const r = await app.inject({ method: 'POST', url: `/admin/tenants/${other}/suspend`, headers: { authorization: `Bearer ${ADMIN}` } });
      assert.equal(r.statusCode, 200, r.body);
      assert.equal(r.json().status, 'suspended');
    }
    const events = await suspended();
    assert.equal(events.length, 1, 'one event per suspension, none for the repeat');
    assert.equal(events[0]?.payload.tenant_id, other);
    const refused = await app.inject({ method: 'GET', url: '/invoices', headers: { authorization: `Bearer ${otherKey}` } });
    assert.equal(refused.statusCode, 403);
    assert.equal(refused.json().error.code, 'tenant_suspended');
  });
});
