/**
 * Invoice documents (issue 17): issuing an invoice enqueues the rendering of its PDF in the request's transaction
 * (tenantwall/jobs); the service's document worker renders it in the invoice's tenant's scope and stores it in
 * `invoice_documents`; GET /invoices/:id/document serves it (202 while it renders). Every answer is checked
 * against /openapi.json.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { TenantWorker } from '../../src/jobs/index.ts';
import { enqueueJob } from '../../src/jobs/index.ts';
import pg from 'pg';
import { type DocumentWorkerOptions, RENDER_TASK, renderAndStore, startDocumentWorker } from '../../examples/invoicing-service/src/documents.ts';
import { serviceKysely } from '../../examples/invoicing-service/src/repo/db.ts';
import { adminUrl, superQuery, withDatabase } from '../helpers/db.ts';
import { waitFor } from '../webhooks/receiver.ts';
import { type ServiceFixture, type TenantFixture, startService } from './setup.ts';

let s: ServiceFixture;
before(async () => {
  s = await startService();
});
after(() => s.close());

/** graphile-worker's entries (owner view) of the render task: the tenant each one carries. */
async function queueEntries(): Promise<Array<{ tenant: string; tw_job: string }>> {
  const { rows } = await superQuery(
    s.t.database.name,
    `SELECT j.payload FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = $1 ORDER BY j.id`,
    [RENDER_TASK],
  );
  return rows.map((r) => r.payload as { tenant: string; tw_job: string });
}

/** tw_jobs rows of the render task, all tenants (superuser). */
async function jobRows(): Promise<Array<{ tenant_id: string; payload: { invoice_id: string }; status: string }>> {
  return (await superQuery(s.t.database.name, `SELECT tenant_id::text, payload, status FROM tw_jobs WHERE task = $1 ORDER BY created_at, id`, [RENDER_TASK])).rows as never;
}

async function issue(who: TenantFixture, customer: string): Promise<string> {
  const r = await s.as(who, { method: 'POST', url: '/invoices', payload: { customer, currency: 'EUR', status: 'issued', line_items: [{ description: `Work for ${customer}`, quantity: 2, unit_amount_cents: 5000 }] } });
  assert.equal(r.statusCode, 201, r.body);
  return r.json().id as string;
}

async function withWorker<T>(fn: (w: TenantWorker) => Promise<T>, options: DocumentWorkerOptions = {}): Promise<T> {
  const w = await startDocumentWorker(s.db, { pollIntervalMs: 100, ...options });
  try {
    return await fn(w);
  } finally {
    await w.stop();
  }
}

const queued = async () => (await jobRows()).filter((j) => j.status === 'queued').length;

test('issuing enqueues in the request\'s transaction (create and PATCH); a rolled-back issue enqueues nothing; 202 until rendered', async () => {
  const before = (await jobRows()).length;
  // A create that issues, then fails on its line items (a repeated position): the whole request rolls back,
  // with the job row it had written and the queue entry its trigger had added.
  const failed = await s.as(s.a, {
    method: 'POST',
    url: '/invoices',
    payload: { customer: 'Rolled Back', status: 'issued', line_items: [{ description: 'x', quantity: 1, unit_amount_cents: 1, position: 1 }, { description: 'y', quantity: 1, unit_amount_cents: 1, position: 1 }] },
  });
  assert.equal(failed.statusCode, 409, failed.body);
  assert.equal((await jobRows()).length, before, 'no job row');
  assert.deepEqual(await queueEntries(), [], 'no queue entry');

  // A draft has no document and gets none until issued.
  const draft = await s.as(s.a, { method: 'POST', url: '/invoices', payload: { customer: 'Draft First', amount_cents: 100 } });
  assert.equal(draft.statusCode, 201);
  const id = draft.json().id as string;
  const none = await s.as(s.a, { method: 'GET', url: `/invoices/${id}/document` });
  assert.equal(none.statusCode, 409);
  assert.equal(none.json().error.code, 'conflict');
  assert.equal(none.json().error.details.field, 'status');
  assert.equal((await jobRows()).length, before);

  // PATCH to issued enqueues one job in A's scope; the queue entry carries A and the row's id only.
  const issued = await s.as(s.a, { method: 'PATCH', url: `/invoices/${id}`, payload: { status: 'issued' } });
  assert.equal(issued.statusCode, 200, issued.body);
  const rows = await jobRows();
  assert.equal(rows.length, before + 1);
  assert.deepEqual([rows.at(-1)?.tenant_id, rows.at(-1)?.payload], [s.a.id, { invoice_id: id }]);
  const entries = await queueEntries();
  assert.equal(entries.length, 1);
  assert.equal(entries[0]?.tenant, s.a.id);
  // Paying it later enqueues nothing more.
  assert.equal((await s.as(s.a, { method: 'PATCH', url: `/invoices/${id}`, payload: { status: 'paid' } })).statusCode, 200);
  assert.equal((await jobRows()).length, before + 1);

  // No worker runs yet: 202 with Retry-After; B sees no such invoice.
  const pending = await s.as(s.a, { method: 'GET', url: `/invoices/${id}/document` });
  assert.equal(pending.statusCode, 202, pending.body);
  assert.equal(pending.headers['retry-after'], '1');
  assert.deepEqual(pending.json(), { invoice_id: id, status: 'rendering', issued_at: issued.json().issued_at });
  assert.equal((await s.as(s.b, { method: 'GET', url: `/invoices/${id}/document` })).statusCode, 404);
  assert.equal((await s.as(s.a, { method: 'GET', url: '/invoices/00000000-0000-4000-8000-000000000000/document' })).statusCode, 404);
});

test('a job for A renders in A\'s scope and never reads B; B\'s likewise; a job of A naming B\'s invoice renders nothing', async () => {
  const invA = await issue(s.a, 'Alpha Customer');
  const invB = await issue(s.b, 'Beta Customer');
  // A job written in A's scope that names B's invoice (what a confused or hostile payload would do).
  await enqueueJob(s.db.forTenant(s.a.id), RENDER_TASK, { invoice_id: invB });
  const seen: Array<{ tenant: string; invoice: string; visible: string[]; refused: boolean }> = [];
  await withWorker(
    async () => {
      await waitFor(async () => (await queued()) === 0, 'every render job done');
    },
    {
      beforeRender: async (ctx, invoice) => {
        // What the job's scope can see of both invoices. The guard admits only its own tenant's predicate (a read
        // of the tenant setting, or of B's tenant_id, is refused), and RLS returns A's rows only when the
        // transaction's tenant setting is A: seeing its invoice proves the setting.
        const visible = await ctx.scope.query<{ id: string }>('SELECT id FROM invoices WHERE tenant_id = $1 AND id = ANY($2::uuid[])', [ctx.tenantId, [invA, invB]]);
        const refused = await ctx.scope.query('SELECT id FROM invoices WHERE tenant_id = $1', [ctx.tenantId === s.a.id ? s.b.id : s.a.id]).then(() => false, () => true);
        seen.push({ tenant: ctx.tenantId, invoice, visible: visible.rows.map((r) => r.id), refused });
      },
    },
  );
  const byInvoice = (inv: string, tenant: string) => seen.filter((x) => x.invoice === inv && x.tenant === tenant);
  assert.deepEqual(byInvoice(invA, s.a.id).map((x) => x.visible), [[invA]]);
  assert.deepEqual(byInvoice(invB, s.b.id).map((x) => x.visible), [[invB]]);
  assert.deepEqual(byInvoice(invB, s.a.id).map((x) => x.visible), [[invA]], "A's job naming B's invoice ran as A and saw A's invoice only");
  assert.ok(seen.every((x) => x.refused), "every job's scope refused a statement naming the other tenant");

  const docA = await s.as(s.a, { method: 'GET', url: `/invoices/${invA}/document` });
  assert.equal(docA.statusCode, 200);
  assert.equal(docA.headers['content-type'], 'application/pdf');
  const pdf = docA.rawPayload;
  assert.equal(pdf.subarray(0, 5).toString('latin1'), '%PDF-');
  assert.match(pdf.subarray(-8).toString('latin1'), /%%EOF\s*$/);
  const text = pdf.toString('latin1');
  assert.ok(text.includes(`Invoice ${invA}`) && text.includes('Alpha Customer'), "A's document names A's invoice and customer");
  assert.ok(!text.includes('Beta') && !text.includes(invB), "A's document holds nothing of B");
  const docB = await s.as(s.b, { method: 'GET', url: `/invoices/${invB}/document` });
  assert.equal(docB.statusCode, 200);
  assert.ok(docB.rawPayload.toString('latin1').includes('Beta Customer'));
  assert.equal((await s.as(s.b, { method: 'GET', url: `/invoices/${invA}/document` })).statusCode, 404, "B cannot read A's document");
  // Documents only where they belong: (A, invA), (B, invB); the cross job wrote none.
  const docs = await superQuery(s.t.database.name, `SELECT tenant_id::text AS t, invoice_id::text AS i FROM invoice_documents WHERE invoice_id = ANY($1::uuid[]) ORDER BY t`, [[invA, invB]]);
  assert.deepEqual(docs.rows.map((r) => [r.t, r.i]).sort(), [[s.a.id, invA], [s.b.id, invB]].sort());
  // Deleting the invoice deletes its document.
  assert.equal((await s.as(s.b, { method: 'DELETE', url: `/invoices/${invB}` })).statusCode, 204);
  assert.equal((await superQuery(s.t.database.name, 'SELECT 1 FROM invoice_documents WHERE invoice_id = $1', [invB])).rowCount, 0);
});

test('kill -9 of the worker mid-job: the job runs again in A\'s scope and renders A\'s document', async () => {
  assert.equal(await queued(), 0, 'no job left from earlier tests');
  const inv = await issue(s.a, 'Crash Customer');
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'document-worker-child.ts')], {
    env: { ...process.env, TW_DOCS_DATABASE_URL: s.t.database.url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  await waitFor(() => out.includes(`started ${inv}`), 'the child worker started the job');
  assert.match(out, new RegExp(`started ${inv} ${s.a.id} visible 1`));
  child.kill('SIGKILL');
  await exited;
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${inv}/document` })).statusCode, 202, 'not rendered by the killed worker');
  const reruns: Array<{ tenant: string; visible: number; attempt: number }> = [];
  await withWorker(
    async (w) => {
      // Recovery finds the dead worker once PostgreSQL has ended its session (its liveness lock is then free).
      await waitFor(async () => reruns.length > 0 || (await w.recover()).length > 0, 'the dead worker was detected');
      await waitFor(async () => (await s.as(s.a, { method: 'GET', url: `/invoices/${inv}/document` })).statusCode === 200, 'the document was rendered');
    },
    {
      recoveryGraceMs: 0,
      recoveryIntervalMs: 100,
      beforeRender: async (ctx, invoice) => {
        // RLS shows A's invoice only under A's tenant setting (see the test above).
        const { rowCount } = await ctx.scope.query('SELECT id FROM invoices WHERE tenant_id = $1 AND id = $2', [ctx.tenantId, invoice]);
        reruns.push({ tenant: ctx.tenantId, visible: rowCount ?? 0, attempt: ctx.attempt });
      },
    },
  );
  assert.deepEqual(reruns, [{ tenant: s.a.id, visible: 1, attempt: 2 }]);
  const doc = await s.as(s.a, { method: 'GET', url: `/invoices/${inv}/document` });
  assert.ok(doc.rawPayload.toString('latin1').includes('Crash Customer'));
});

test('tenant export holds the documents and jobs; tenant delete removes them and their queue entries', async () => {
  const created = await s.admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'tenant-docs', name: 'Docs' } });
  assert.equal(created.statusCode, 201, created.body);
  const tid = created.json().id as string;
  const key = await s.admin({ method: 'POST', url: `/admin/tenants/${tid}/api-keys`, payload: { name: 't' } });
  const who: TenantFixture = { id: tid, slug: 'tenant-docs', key: key.json().key, keyId: key.json().id, placement: 'shared' };
  const rendered = await issue(who, 'Rendered Customer');
  await withWorker(() => waitFor(async () => (await queued()) === 0, 'the render job done'));
  const pendingInv = await issue(who, 'Pending Customer'); // no worker: stays queued
  assert.equal((await queueEntries()).filter((e) => e.tenant === tid).length, 1);

  const started = await s.admin({ method: 'POST', url: `/admin/tenants/${tid}/export` });
  assert.equal(started.statusCode, 202, started.body);
  let job = started.json() as { id: string; status: string };
  while (job.status === 'running') {
    await new Promise((r) => setImmediate(r));
    job = (await s.admin({ method: 'GET', url: `/admin/jobs/${job.id}` })).json();
  }
  assert.equal(job.status, 'succeeded', JSON.stringify(job));
  const dl = await s.admin({ method: 'GET', url: `/admin/jobs/${job.id}/download` });
  const lines = dl.body.trimEnd().split('\n').slice(1).map((l) => JSON.parse(l) as { table: string; row: Record<string, unknown> });
  const docs = lines.filter((l) => l.table === 'invoice_documents');
  assert.deepEqual(docs.map((d) => d.row.invoice_id), [rendered]);
  assert.match(String(docs[0]?.row.content), /^\\x255044462d/, 'the PDF bytes (%PDF-) as bytea hex');
  const jobs = lines.filter((l) => l.table === 'tw_jobs');
  assert.deepEqual(jobs.map((j) => [(j.row.payload as { invoice_id: string }).invoice_id, j.row.status]).sort(), [[pendingInv, 'queued'], [rendered, 'done']].sort());

  const del = await s.admin({ method: 'DELETE', url: `/admin/tenants/${tid}?confirm=tenant-docs` });
  assert.equal(del.statusCode, 200, del.body);
  for (const table of ['invoice_documents', 'tw_jobs']) {
    assert.equal((await superQuery(s.t.database.name, `SELECT 1 FROM ${table} WHERE tenant_id = $1`, [tid])).rowCount, 0, table);
  }
  assert.deepEqual((await queueEntries()).filter((e) => e.tenant === tid), [], 'the queued job left the queue with the tenant');
});

test('an invoice deleted while its document renders leaves no document, and a document without its invoice is never served', async () => {
  const id = await issue(s.a, 'Raced Customer'); // no worker: the job stays queued; the rendering is run here
  const docs = async () => (await superQuery(s.t.database.name, 'SELECT 1 FROM invoice_documents WHERE invoice_id = $1', [id])).rowCount;
  const su = new pg.Client({ connectionString: withDatabase(adminUrl(), s.t.database.name) });
  await su.connect();
  try {
    // The delete of repo/invoices.ts, held open: the invoice first, then its document.
    await su.query('BEGIN');
    await su.query('DELETE FROM invoices WHERE tenant_id = $1 AND id = $2', [s.a.id, id]);
    const render = renderAndStore(serviceKysely(s.db, s.a.id), id);
    const rendered = render.then((wrote) => {
      throw new Error(`the rendering finished (wrote a document: ${wrote}) while the delete of its invoice was still open`);
    });
    rendered.catch(() => undefined);
    const waiting = async () => (await superQuery(s.t.database.name, `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`)).rowCount !== 0;
    await Promise.race([waitFor(waiting, 'the rendering waiting for the invoice row lock'), rendered]);
    await su.query('DELETE FROM invoice_documents WHERE tenant_id = $1 AND invoice_id = $2', [s.a.id, id]);
    await su.query('COMMIT');
    assert.equal(await render, false, 'the invoice was gone once the lock was granted: nothing rendered');
  } finally {
    await su.query('ROLLBACK').catch(() => undefined);
    await su.end();
  }
  assert.equal(await docs(), 0, 'no document of the deleted invoice');

  // A document row whose invoice does not exist (written by an earlier version, or by hand) is not served.
  const other = await issue(s.a, 'Orphan Customer');
  await superQuery(s.t.database.name, `INSERT INTO invoice_documents (tenant_id, invoice_id, content, sha256) VALUES ($1, $2, '\\x255044462d', repeat('a', 64))`, [s.a.id, id]);
  const orphan = await s.as(s.a, { method: 'GET', url: `/invoices/${id}/document` });
  assert.equal(orphan.statusCode, 404, orphan.body);
  assert.equal(orphan.json().error.code, 'not_found');
  assert.equal((await s.as(s.a, { method: 'GET', url: `/invoices/${other}/document` })).statusCode, 202, 'an issued invoice not yet rendered');
});
