/**
 * The leak fuzzer's database judge (Fuzzer.checkDatabase) on states a long run reaches. An import copies row ids
 * (only the tenant changes), so the admin lane's imported copy of a fuzz tenant holds invoices with the same ids
 * as the source: the totals check must compare each tenant's invoices with that tenant's own items (grouped by
 * id alone it counted the copy's items twice and reported consistent invoices as "not the sum of their items").
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Fuzzer, openApiEndpoints } from './lib/fuzz.ts';
import { createWorld, type World } from './lib/world.ts';

let world: World;
let fuzzer: Fuzzer;

before(async () => {
  world = await createWorld({ tenants: 3, guard: true });
  fuzzer = new Fuzzer(world, openApiEndpoints((await world.app.inject({ method: 'GET', url: '/openapi.json' })).json()));
});
after(() => world?.close());

async function finished(jobId: string): Promise<{ status: string; result: any }> {
  for (;;) {
    const r = await world.admin({ method: 'GET', url: `/admin/jobs/${jobId}` });
    assert.equal(r.statusCode, 200, r.body);
    if (r.json().status !== 'running') return r.json();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

test('an imported copy of a fuzz tenant (same row ids) passes the totals check; a wrong total is still found', async () => {
  const t = world.tenants[1] as World['tenants'][number];
  for (let i = 0; i < 3; i++) {
    const r = await world.as(t, { method: 'POST', url: '/invoices', payload: { customer: `${t.marker} c${i}`, line_items: [{ description: `${t.marker} a`, quantity: 2, unit_amount_cents: 150 + i }, { description: `${t.marker} b`, quantity: 1, unit_amount_cents: 7 }] } });
    assert.equal(r.statusCode, 201, r.body);
  }
  const exp = await world.admin({ method: 'POST', url: `/admin/tenants/${t.id}/export` });
  assert.equal(exp.statusCode, 202, exp.body);
  assert.equal((await finished(exp.json().id)).status, 'succeeded');
  const dl = await world.admin({ method: 'GET', url: `/admin/jobs/${exp.json().id}/download` });
  assert.equal(dl.statusCode, 200);
  const imp = await world.admin({ method: 'POST', url: '/admin/tenants/import?slug=fuzz-check-copy&placement=shared', payload: dl.body, headers: { 'content-type': 'application/x-ndjson' } });
  assert.equal(imp.statusCode, 202, imp.body);
  const job = await finished(imp.json().id);
  assert.equal(job.status, 'succeeded', JSON.stringify(job));
  const copy = job.result.tenant.id as string;
  const same = await world.su.query(`SELECT count(*)::int AS n FROM invoices a JOIN invoices b ON b.id = a.id AND b.tenant_id = $2 WHERE a.tenant_id = $1`, [t.id, copy]);
  assert.equal(same.rows[0].n, 3, 'the copy has the same invoice ids');

  await fuzzer.syncModels();
  await fuzzer.checkDatabase();

  // A fuzz tenant's invoice whose total is not the sum of its items (written behind the API's back) is found.
  await world.su.query(`UPDATE invoices SET amount_cents = amount_cents + 1 WHERE tenant_id = $1 AND id = (SELECT min(id::text)::uuid FROM invoices WHERE tenant_id = $1)`, [t.id]);
  await fuzzer.syncModels();
  await assert.rejects(fuzzer.checkDatabase(), (err: Error) => /not the sum of their items/.test(err.message) && err.message.includes(`tenant ${t.idx}`) && !err.message.includes(copy));
});
