import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { once } from 'node:events';
import { after, before, test } from 'node:test';
import { type TenantId, deleteTenant, exportTenant, isTenantwallError, runAudit, suspendTenant } from '../../src/index.ts';
import { type TenantTaskHandler, dangerouslyEnqueueCrossTenantJob, enqueueJob, installJobQueue, startTenantWorker, type TenantWorker } from '../../src/jobs/index.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { waitFor } from '../webhooks/receiver.ts';
import { TENANTS, jobsMigrations, jobsSchema } from './fixture.ts';

let t: TestTenantwall;
const { a: A, b: B, c: C } = TENANTS;

before(async () => {
  t = await createTestTenantwall(jobsSchema, jobsMigrations);
  await installJobQueue(t.db);
  for (const [slug, id] of Object.entries(TENANTS)) await t.db.tenants.create({ slug, name: slug.toUpperCase(), id });
  const rows = Object.entries(TENANTS).flatMap(([slug, id]) => [1, 2].map((k) => `('${id}', '${slug}-note-${k}')`));
  await superQuery(t.database.name, `INSERT INTO notes (tenant_id, body) VALUES ${rows.join(', ')}`);
});

after(async () => {
  await t?.close();
});

/** graphile-worker's view of the queue (owner): payloads and errors of jobs of `task`. */
async function queued(task: string): Promise<Array<{ id: string; payload: { tenant?: string; tw_job?: string }; attempts: number; last_error: string | null; queue_name: string | null }>> {
  const { rows } = await superQuery(
    t.database.name,
    `SELECT j.id::text, j.payload, j.attempts, j.last_error, q.queue_name
       FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id
       LEFT JOIN graphile_worker._private_job_queues q ON q.id = j.job_queue_id
      WHERE t.identifier = $1 ORDER BY j.id`,
    [task],
  );
  return rows as never;
}

/** Makes a failed job runnable now instead of after graphile-worker's backoff. */
async function runNow(task: string): Promise<void> {
  await superQuery(t.database.name, `SELECT graphile_worker.reschedule_jobs(array_agg(j.id), run_at := now()) FROM graphile_worker._private_jobs j JOIN graphile_worker._private_tasks t ON t.id = j.task_id WHERE t.identifier = $1`, [task]);
}

async function withWorker<T>(tasks: Record<string, TenantTaskHandler>, fn: (w: TenantWorker) => Promise<T>, extra: Partial<Parameters<typeof startTenantWorker>[1]> = {}): Promise<T> {
  const w = await startTenantWorker(t.db, { tasks, pollIntervalMs: 100, concurrency: 2, ...extra });
  try {
    return await fn(w);
  } finally {
    await w.stop();
  }
}

test('a job enqueued in a rolled-back transaction enqueues nothing; a committed one records its tenant', async () => {
  await assert.rejects(
    t.db.forTenant(A).transaction(async (tx) => {
      await tx.query(`INSERT INTO notes (tenant_id, body) VALUES ($1, 'rolled back')`, [A]);
      await enqueueJob(tx, 'enqueue-only', { n: 1 });
      throw new Error('request failed');
    }),
    /request failed/,
  );
  assert.deepEqual(await queued('enqueue-only'), []);
  const jobId = await t.db.forTenant(A).transaction((tx) => enqueueJob(tx, 'enqueue-only', { n: 2 }));
  const q = await queued('enqueue-only');
  assert.equal(q.length, 1);
  assert.deepEqual(q[0]?.payload, { tw_job: jobId, tenant: A }, 'the queue entry carries the id and tenant, not the payload');
  assert.match(q[0]?.queue_name ?? '', new RegExp(`^tw:${A}:0$`));
  // The payload stays in the tenant's table: B cannot see A's job row.
  const { rows } = await t.db.forTenant(B).query('SELECT id FROM tw_jobs');
  assert.deepEqual(rows, []);
  await assert.rejects(enqueueJob(t.db.forTenant(A), 'bad task name!', {}), (err) => isTenantwallError(err, 'validation_failed'));
  await assert.rejects(enqueueJob(t.db, 'enqueue-only', {}), (err) => isTenantwallError(err, 'tenant_context_missing'));
  await superQuery(t.database.name, `DELETE FROM tw_jobs WHERE task = 'enqueue-only'`);
  assert.deepEqual(await queued('enqueue-only'), [], 'deleting the row removes the queue entry');
});

test('the same tw_jobs id in two tenants (an imported export keeps ids): one queue entry each; a delete removes only its own', async () => {
  const id = await enqueueJob(t.db.forTenant(A), 'same-id', { who: 'a' });
  // B's copy of A's job row, as an import of A's export into B would write it.
  await t.db.forTenant(B).query(`INSERT INTO tw_jobs (tenant_id, id, task, payload) VALUES ($1, $2, 'same-id', '{"who":"b"}')`, [B, id]);
  const both = await queued('same-id');
  assert.deepEqual(both.map((j) => j.payload.tenant).sort(), [A, B].sort(), "B's row did not replace A's queue entry");
  await t.db.forTenant(B).query('DELETE FROM tw_jobs WHERE tenant_id = $1 AND id = $2', [B, id]);
  assert.deepEqual((await queued('same-id')).map((j) => j.payload.tenant), [A], "deleting B's row left A's entry");
  await t.db.forTenant(A).query('DELETE FROM tw_jobs WHERE tenant_id = $1 AND id = $2', [A, id]);
  assert.deepEqual(await queued('same-id'), []);
});

test('a job for A runs in A\'s scope and never reads B; retries keep the tenant', async () => {
  const seen = new Map<string, { tenant: TenantId; implicit: TenantId | undefined; setting: string; bodies: string[]; attempt: number; payload: unknown }>();
  const read: TenantTaskHandler = async (payload, ctx) => {
    if ((payload as { flaky?: boolean }).flaky && ctx.attempt === 1) throw new Error('first attempt fails');
    // No tenant predicate: RLS alone decides what the job's scope sees.
    const notes = await ctx.scope.query<{ body: string }>('SELECT body FROM notes ORDER BY body');
    const setting = await ctx.scope.query<{ s: string }>(`SELECT current_setting('${t.db.options.settingName}', true) AS s`);
    seen.set(ctx.jobId, { tenant: ctx.tenantId, implicit: t.db.currentTenantId(), setting: setting.rows[0]?.s ?? '', bodies: notes.rows.map((r) => r.body), attempt: ctx.attempt, payload });
  };
  const jobA = await enqueueJob(t.db.forTenant(A), 'read-notes', { who: 'a' });
  const jobB = await enqueueJob(t.db.forTenant(B), 'read-notes', { who: 'b' });
  const flaky = await enqueueJob(t.db.forTenant(A), 'read-notes', { who: 'a', flaky: true });
  await withWorker({ 'read-notes': read }, async () => {
    await waitFor(() => seen.has(jobA) && seen.has(jobB), 'both jobs ran');
    await waitFor(async () => (await queued('read-notes')).some((j) => j.last_error?.includes('first attempt fails')), 'the flaky job failed once');
    await runNow('read-notes');
    await waitFor(() => seen.has(flaky), 'the flaky job was retried');
  });
  assert.deepEqual(seen.get(jobA), { tenant: A, implicit: A, setting: A, bodies: ['a-note-1', 'a-note-2'], attempt: 1, payload: { who: 'a' } });
  assert.deepEqual(seen.get(jobB), { tenant: B, implicit: B, setting: B, bodies: ['b-note-1', 'b-note-2'], attempt: 1, payload: { who: 'b' } });
  assert.deepEqual(seen.get(flaky), { tenant: A, implicit: A, setting: A, bodies: ['a-note-1', 'a-note-2'], attempt: 2, payload: { who: 'a', flaky: true } });
  const { rows } = await t.db.forTenant(A).query<{ status: string }>(`SELECT status FROM tw_jobs WHERE tenant_id = $1 AND task = 'read-notes'`, [A]);
  assert.deepEqual(rows.map((r) => r.status), ['done', 'done']);
  assert.deepEqual(await queued('read-notes'), [], 'finished jobs leave the queue');
});

test('a job without a tenant is refused; a cross-tenant job runs only under a dangerouslyCrossTenant task', async () => {
  let tenantRuns = 0;
  const crossRuns: unknown[] = [];
  await superQuery(t.database.name, `SELECT graphile_worker.add_job('scoped-task', '{"note": "no tenant"}'::json)`);
  await superQuery(t.database.name, `SELECT graphile_worker.add_job('cross-task', '{"tenant": "${A}"}'::json)`);
  await dangerouslyEnqueueCrossTenantJob(t.db, 'cross-task', { sweep: true });
  await dangerouslyEnqueueCrossTenantJob(t.db, 'scoped-task', { sweep: true });
  await withWorker(
    { 'scoped-task': async () => void tenantRuns++ },
    async () => {
      await waitFor(async () => (await queued('scoped-task')).filter((j) => j.last_error !== null).length === 2, 'both scoped-task jobs refused');
      await waitFor(async () => (await queued('cross-task')).filter((j) => j.last_error !== null).length === 1 && crossRuns.length === 1, 'cross-task ran once and refused once');
    },
    {
      dangerouslyCrossTenantTasks: {
        'cross-task': async (payload, ctx) => {
          const { rows } = await ctx.db.query<{ n: number }>('SELECT count(DISTINCT tenant_id)::int AS n FROM notes');
          crossRuns.push({ payload, tenants: rows[0]?.n });
        },
      },
    },
  );
  assert.equal(tenantRuns, 0, 'a tenant task never ran a job without a tenant');
  assert.deepEqual(crossRuns, [{ payload: { sweep: true }, tenants: 3 }]);
  for (const j of [...(await queued('scoped-task')), ...(await queued('cross-task'))]) assert.match(j.last_error ?? '', /refused/);
  await superQuery(t.database.name, `DELETE FROM graphile_worker._private_jobs`);
});

test('a suspended tenant\'s jobs are held until it resumes; a deleted tenant\'s jobs are dropped', async () => {
  const ran: string[] = [];
  await suspendTenant(t.db, 'b');
  const held = await enqueueJob(t.db.forTenant(B), 'status-task', {});
  await withWorker({ 'status-task': async (_p, ctx) => void ran.push(ctx.tenantId) }, async () => {
    await waitFor(async () => (await queued('status-task')).some((j) => j.last_error?.includes('suspended')), 'the held job was attempted');
    assert.deepEqual(ran, []);
    await t.db.tenants.resume(B);
    await runNow('status-task');
    await waitFor(() => ran.length === 1, 'the job ran after resume');
  });
  assert.deepEqual(ran, [B]);
  const { rows } = await t.db.forTenant(B).query<{ status: string }>('SELECT status FROM tw_jobs WHERE tenant_id = $1 AND id = $2', [B, held]);
  assert.deepEqual(rows, [{ status: 'done' }]);
  // C's queued job goes with C: the export includes it, the delete removes its row, and the row's trigger the queue entry.
  await enqueueJob(t.db.forTenant(C), 'status-task', { secret: 'c-payload' });
  assert.equal((await queued('status-task')).length, 1);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-jobs-export-'));
  try {
    const exported = await exportTenant(t.db, 'c', { dir });
    assert.equal(exported.manifest.tables.find((x) => x.table === 'tw_jobs')?.rows, 1);
    assert.match(fs.readFileSync(path.join(dir, 'tw_jobs.ndjson'), 'utf8'), /c-payload/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  await deleteTenant(t.db, 'c', { confirm: 'c' });
  assert.deepEqual(await queued('status-task'), []);
});

test('per-tenant concurrency: one tenant\'s backlog does not starve another tenant', async () => {
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const running = new Map<TenantId, number>();
  let maxA = 0;
  const done: TenantId[] = [];
  const slow: TenantTaskHandler = async (_p, ctx) => {
    running.set(ctx.tenantId, (running.get(ctx.tenantId) ?? 0) + 1);
    if (ctx.tenantId === A) {
      maxA = Math.max(maxA, running.get(A) ?? 0);
      await gate;
    }
    running.set(ctx.tenantId, (running.get(ctx.tenantId) ?? 1) - 1);
    done.push(ctx.tenantId);
  };
  for (let i = 0; i < 6; i++) await enqueueJob(t.db.forTenant(A), 'backlog', { i });
  await enqueueJob(t.db.forTenant(B), 'backlog', {});
  await withWorker(
    { backlog: slow },
    async () => {
      try {
        // With 3 workers and A's jobs held at the gate, B's job finishes while A still has 5 queued (which job a
        // worker picks first is not fixed: wait until A's first job holds its worker too).
        await waitFor(() => done.includes(B) && running.get(A) === 1, 'B\'s job finished while one of A\'s waits at the gate');
        assert.equal(done.filter((x) => x === A).length, 0);
      } finally {
        // Also when an assertion failed: a job held at the gate would keep the worker's stop waiting forever.
        open();
      }
      await waitFor(() => done.filter((x) => x === A).length === 6, 'A\'s backlog drained');
    },
    { concurrency: 3 },
  );
  assert.equal(maxA, 1);
});

test('kill -9 of a worker mid-job: the job runs again in A\'s scope', async () => {
  const jobId = await enqueueJob(t.db.forTenant(A), 'crashy', {});
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(import.meta.dirname, 'worker-child.ts')], {
    env: { ...process.env, TW_JOBS_DATABASE_URL: t.database.url },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit');
  await waitFor(() => out.includes(`started ${jobId}`), 'the child worker started the job');
  assert.match(out, new RegExp(`started ${jobId} ${A} 1`));
  child.kill('SIGKILL');
  await exited;
  const reruns: Array<{ tenant: TenantId; setting: string; attempt: number; bodies: string[] }> = [];
  await withWorker(
    {
      crashy: async (_p, ctx) => {
        const setting = await ctx.scope.query<{ s: string }>(`SELECT current_setting('${t.db.options.settingName}', true) AS s`);
        const notes = await ctx.scope.query<{ body: string }>('SELECT body FROM notes ORDER BY body');
        reruns.push({ tenant: ctx.tenantId, setting: setting.rows[0]?.s ?? '', attempt: ctx.attempt, bodies: notes.rows.map((r) => r.body) });
      },
    },
    async (w) => {
      // Recovery finds the dead worker once PostgreSQL has ended its session (its liveness lock is then free).
      await waitFor(async () => reruns.length > 0 || (await w.recover()).length > 0 || reruns.length > 0, 'the dead worker was detected');
      await waitFor(() => reruns.length === 1, 'the job ran again');
    },
    { recoveryGraceMs: 0, recoveryIntervalMs: 100 },
  );
  assert.deepEqual(reruns, [{ tenant: A, setting: A, attempt: 2, bodies: ['a-note-1', 'a-note-2'] }]);
  const { rows } = await t.db.forTenant(A).query<{ status: string }>('SELECT status FROM tw_jobs WHERE tenant_id = $1 AND id = $2', [A, jobId]);
  assert.deepEqual(rows, [{ status: 'done' }]);
});

test('a recovery running all the time never takes the worker\'s own running jobs for a dead worker\'s', async () => {
  // With no grace, every locked job is examined the moment it is locked: the worker's liveness lock must already
  // be held then (it used to be taken when the first job started, so a recovery in between unlocked a running job
  // and it ran twice).
  const runs = new Map<string, number>();
  const ids: string[] = [];
  for (let i = 0; i < 30; i++) ids.push(await enqueueJob(t.db.forTenant(i % 2 ? A : B), 'once', { i }));
  await withWorker(
    {
      once: async (_p, ctx) => {
        runs.set(ctx.jobId, (runs.get(ctx.jobId) ?? 0) + 1);
        await new Promise((r) => setImmediate(r));
      },
    },
    async (w) => {
      let dead = 0;
      await waitFor(async () => {
        dead += (await w.recover()).length;
        return ids.every((id) => runs.has(id));
      }, 'every job ran');
      assert.equal(dead, 0, 'no worker was taken for dead');
    },
    { recoveryGraceMs: 0, recoveryIntervalMs: 1, concurrency: 4 },
  );
  assert.deepEqual([...runs.values()].filter((n) => n !== 1), [], 'each job ran once');
  assert.deepEqual(await queued('once'), []);
});

test('tenantwall audit on a database with the jobs tables: no error-level finding', async () => {
  const report = await runAudit({ databaseUrl: t.database.url, appRole: t.db.options.appRole });
  const errors = report.findings.filter((f) => f.severity === 'error');
  assert.deepEqual(errors.map((f) => `${f.ruleId}: ${f.message}`), []);
});

test('a worker stopped right after a job finished leaves nothing in the queue (its completion is waited for)', async () => {
  // graphile-worker completes a job without awaiting it; stopping then ending the pool used to lose that DELETE.
  for (let i = 0; i < 10; i++) {
    let ran = 0;
    await enqueueJob(t.db.forTenant(A), 'stop-task', { i });
    await withWorker({ 'stop-task': async () => void ran++ }, async () => {
      await waitFor(() => ran === 1, `job ${i} ran`);
    });
    assert.deepEqual(await queued('stop-task'), [], `after stop ${i}`);
  }
});
