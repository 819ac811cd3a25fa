/**
 * Tenant lifecycle through the admin API (issue 21): move between shared and dedicated placement, export as a
 * streamed NDJSON download, import of that download into a new tenant, delete with typed confirmation; long
 * operations are jobs followed at GET /admin/jobs/:jobId. Every answer is checked against /openapi.json.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';
import { tenantChecksums } from '../../src/index.ts';
import { ADMIN_TOKEN, type ServiceFixture, startService } from './setup.ts';

let s: ServiceFixture;
before(async () => {
  s = await startService({ importMaxBytes: 256 * 1024 });
});
after(() => s.close());

const ndjson = { 'content-type': 'application/x-ndjson' };

/** Polls the job until it is no longer running (a condition, not a duration). */
async function finished(jobId: string): Promise<{ id: string; status: string; result: Record<string, unknown> | null; error: { code: string } | null; progress: unknown }> {
  for (;;) {
    const r = await s.admin({ method: 'GET', url: `/admin/jobs/${jobId}` });
    assert.equal(r.statusCode, 200, r.body);
    if (r.json().status !== 'running') return r.json();
    await new Promise((resolve) => setImmediate(resolve));
  }
}

async function started(r: LightMyRequestResponse) {
  assert.equal(r.statusCode, 202, r.body);
  return finished(r.json().id as string);
}

/** Seeds a few rows for tenant `who` through the API. */
async function seed(who: ServiceFixture['a'], n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const r = await s.as(who, { method: 'POST', url: '/invoices', payload: { customer: `C${i}`, currency: 'EUR', line_items: [{ description: `Item ${i}`, quantity: i + 1, unit_amount_cents: 100 }] } });
    assert.equal(r.statusCode, 201, r.body);
  }
}

const invoices = async (who: ServiceFixture['a']) => (await s.as(who, { method: 'GET', url: '/invoices?limit=100' })).json().data.map((i: { id: string }) => i.id).sort();

test('move: dedicated -> shared -> dedicated as jobs; the tenant keeps every row; same placement is 409', async () => {
  await seed(s.a, 5);
  const ids = await invoices(s.a);
  const sums = await tenantChecksums(s.db, s.a.id);
  assert.equal((await s.admin({ method: 'GET', url: `/admin/tenants/${s.a.id}` })).json().placement, 'dedicated');

  const same = await s.admin({ method: 'POST', url: `/admin/tenants/${s.a.id}/move`, payload: { to: 'dedicated' } });
  assert.equal(same.statusCode, 409);
  assert.equal(same.json().error.code, 'placement_unchanged');

  const back = await started(await s.admin({ method: 'POST', url: `/admin/tenants/${s.a.id}/move`, payload: { to: 'shared' } }));
  assert.equal(back.status, 'succeeded', JSON.stringify(back));
  assert.equal(back.result?.to, 'shared');
  assert.equal((await s.admin({ method: 'GET', url: `/admin/tenants/${s.a.id}` })).json().placement, 'shared');
  assert.deepEqual(await invoices(s.a), ids);

  const there = await started(await s.admin({ method: 'POST', url: `/admin/tenants/${s.a.id}/move`, payload: { to: 'dedicated' } }));
  assert.equal(there.status, 'succeeded', JSON.stringify(there));
  assert.ok(there.progress !== null, 'progress was reported');
  assert.equal((await s.admin({ method: 'GET', url: `/admin/tenants/${s.a.id}` })).json().placement, 'dedicated');
  assert.deepEqual(await invoices(s.a), ids);
  assert.deepEqual(await tenantChecksums(s.db, s.a.id), sums);
  // The jobs report to the metrics of the process that runs them: both moves ended and counted, none still running.
  const scrape = (await s.adminApp.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${ADMIN_TOKEN}` } })).body;
  assert.match(scrape, /lifecycle_operations_total\{operation="move",outcome="succeeded"\} 2\b/);
  assert.doesNotMatch(scrape, /lifecycle_operation_done\{operation="move"/);

  const list = (await s.admin({ method: 'GET', url: '/admin/tenants?limit=100' })).json().data;
  assert.deepEqual(Object.fromEntries(list.map((t: { slug: string; placement: string }) => [t.slug, t.placement])), { 'tenant-a': 'dedicated', 'tenant-b': 'shared' });
  const missing = await s.admin({ method: 'POST', url: '/admin/tenants/00000000-0000-4000-8000-000000000000/move', payload: { to: 'dedicated' } });
  assert.equal(missing.statusCode, 404);
  const bad = await s.admin({ method: 'POST', url: `/admin/tenants/${s.a.id}/move`, payload: { to: 'elsewhere' } });
  assert.equal(bad.statusCode, 400);
  assert.equal(bad.json().error.details.field, 'to');
});

test('export -> streamed NDJSON download -> import into a new dedicated tenant: the same rows; then delete it', async () => {
  await seed(s.b, 4);
  const exportJob = await started(await s.admin({ method: 'POST', url: `/admin/tenants/${s.b.id}/export` }));
  assert.equal(exportJob.status, 'succeeded', JSON.stringify(exportJob));
  const dl = await s.admin({ method: 'GET', url: `/admin/jobs/${exportJob.id}/download` });
  assert.equal(dl.statusCode, 200);
  assert.match(String(dl.headers['content-type']), /^application\/x-ndjson/);
  const lines = dl.body.trimEnd().split('\n');
  const manifest = JSON.parse(lines[0] as string);
  assert.equal(manifest.kind, 'tenantwall-export');
  assert.equal(manifest.tenant.id, s.b.id);
  const rows = lines.slice(1).map((l) => JSON.parse(l) as { table: string; row: Record<string, unknown> });
  assert.equal(rows.filter((r) => r.table === 'invoices').length, 4);
  assert.ok(rows.every((r) => !('tenant_id' in r.row)), 'rows carry no tenant id');

  // A changed row is refused by the import's checksum check; nothing is created.
  const tampered = dl.body.replace('"quantity":"2"', '"quantity":"3"');
  assert.ok(tampered !== dl.body, 'a row was changed');
  const bad = await started(await s.admin({ method: 'POST', url: '/admin/tenants/import?slug=b-tampered', headers: ndjson, payload: tampered }));
  assert.equal(bad.status, 'failed');
  assert.equal(bad.error?.code, 'import_checksum_mismatch');
  assert.equal((await s.admin({ method: 'GET', url: '/admin/tenants?limit=100' })).json().data.some((t: { slug: string }) => t.slug === 'b-tampered'), false);
  // Not an export at all: 400 at once.
  const junk = await s.admin({ method: 'POST', url: '/admin/tenants/import?slug=junk', headers: ndjson, payload: '{"hello":1}\n' });
  assert.equal(junk.statusCode, 400);
  assert.equal(junk.json().error.code, 'import_invalid');
  const unsafe = await s.admin({ method: 'POST', url: '/admin/tenants/import?slug=junk', headers: ndjson, payload: `${JSON.stringify({ ...manifest, tables: [{ ...manifest.tables[0], file: '../../etc/x.ndjson' }] })}\n` });
  assert.equal(unsafe.json().error?.code, 'import_invalid');
  const huge = await s.admin({ method: 'POST', url: '/admin/tenants/import?slug=junk', headers: ndjson, payload: `${lines[0]}\n${'{"table":"customers","row":{}}\n'.repeat(10_000)}` });
  assert.equal(huge.statusCode, 413, huge.body);
  assert.equal(huge.json().error.details.limit_bytes, 256 * 1024);
  const taken = await s.admin({ method: 'POST', url: '/admin/tenants/import?slug=tenant-a', headers: ndjson, payload: dl.body });
  assert.equal(taken.statusCode, 409);
  const reserved = await s.admin({ method: 'POST', url: '/admin/tenants/import?slug=www', headers: ndjson, payload: dl.body });
  assert.equal(reserved.json().error?.code, 'invalid_slug');

  const imported = await started(await s.admin({ method: 'POST', url: '/admin/tenants/import?slug=b-copy&placement=dedicated', headers: ndjson, payload: dl.body }));
  assert.equal(imported.status, 'succeeded', JSON.stringify(imported));
  const copy = imported.result?.tenant as { id: string; slug: string; placement: string };
  assert.deepEqual([copy.slug, copy.placement], ['b-copy', 'dedicated']);
  const [orig, dup] = [await tenantChecksums(s.db, s.b.id), await tenantChecksums(s.db, copy.id)];
  for (const table of ['customers', 'invoices', 'invoice_line_items']) assert.deepEqual(dup[table], orig[table], table);

  // Delete with typed confirmation: a dedicated tenant's partitions are dropped.
  const wrong = await s.admin({ method: 'DELETE', url: `/admin/tenants/${copy.id}?confirm=b-cop` });
  assert.equal(wrong.json().error.code, 'confirmation_required');
  const del = await s.admin({ method: 'DELETE', url: `/admin/tenants/${copy.id}?confirm=b-copy` });
  assert.equal(del.statusCode, 200, del.body);
  assert.equal(del.json().dropped_partitions.length, 3);
  assert.equal(del.json().tenant.status, 'deleted');
});

test('jobs: unknown ids are 404; a download of a move job is 409; tenant credentials are refused', async () => {
  const unknown = await s.admin({ method: 'GET', url: '/admin/jobs/00000000-0000-4000-8000-000000000000' });
  assert.equal(unknown.statusCode, 404);
  assert.equal(unknown.json().error.details.field, 'jobId');
  const move = (await s.admin({ method: 'POST', url: `/admin/tenants/${s.b.id}/move`, payload: { to: 'dedicated' } })).json();
  await finished(move.id);
  assert.equal((await s.admin({ method: 'GET', url: `/admin/jobs/${move.id}/download` })).statusCode, 409);
  assert.equal((await s.as(s.a, { method: 'GET', url: `/admin/jobs/${move.id}` })).statusCode, 401);
  assert.equal((await s.as(s.a, { method: 'POST', url: `/admin/tenants/${s.a.id}/export` })).statusCode, 401);
});
