import { EventEmitter } from 'node:events';
import pg from 'pg';
import { type JobHelpers, type Runner, type Task, type TaskList, type WorkerEvents, run } from 'graphile-worker';
import type { CrossTenantHandle, TenantScope, Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { runWithTenant } from '../tenant/context.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { quietLogger } from './enqueue.ts';

/** What a tenant job's handler gets besides its payload. */
export interface TenantJobContext {
  /** The job's tenant (also the implicit tenant while the handler runs: `db.query`, tenant Kysely/Drizzle). */
  readonly tenantId: TenantId;
  /** `db.forTenant(tenantId)`: guard, RLS and the tenant's limits apply to everything run through it. */
  readonly scope: TenantScope;
  /** The `tw_jobs` id. */
  readonly jobId: string;
  /** 1 on the first run, 2 on the first retry, ... */
  readonly attempt: number;
  /** Aborts when the worker shuts down. */
  readonly signal: AbortSignal;
}

/** A tenant job's handler. Throwing fails the attempt; graphile-worker retries it (same tenant) with backoff. */
export type TenantTaskHandler = (payload: unknown, ctx: TenantJobContext) => Promise<void>;

/** What a cross-tenant job's handler gets. */
export interface CrossTenantJobContext {
  /** The owner-level handle: no tenant scope. */
  readonly db: CrossTenantHandle;
  readonly attempt: number;
  readonly signal: AbortSignal;
}

/** A handler of jobs that belong to no tenant (`dangerouslyEnqueueCrossTenantJob`). */
export type CrossTenantTaskHandler = (payload: unknown, ctx: CrossTenantJobContext) => Promise<void>;

/** Options of `startTenantWorker`. */
export interface TenantWorkerOptions {
  /** Handlers of tenant jobs by task name. */
  tasks: Readonly<Record<string, TenantTaskHandler>>;
  /** Handlers of jobs that belong to no tenant; a tenant job is never given to them, nor they to tenant tasks. */
  dangerouslyCrossTenantTasks?: Readonly<Record<string, CrossTenantTaskHandler>> | undefined;
  /** Jobs this process runs at once (default 4). Per tenant: `perTenantConcurrency` of `jobsMigrationSql`. */
  concurrency?: number | undefined;
  /** Owner connection string for graphile-worker (default: the Tenantwall's `databaseUrl`). */
  connectionString?: string | undefined;
  /** How often graphile-worker polls for scheduled and retried jobs, in ms (default 2000). */
  pollIntervalMs?: number | undefined;
  /** How often the worker looks for jobs locked by crashed workers, in ms (default 10000). */
  recoveryIntervalMs?: number | undefined;
  /** A job must have been locked this long before its worker's liveness is checked, in ms (default 30000). */
  recoveryGraceMs?: number | undefined;
  /** graphile-worker's logger (default: warnings and errors to stderr). */
  logger?: import('graphile-worker').Logger | undefined;
}

/** A running worker. */
export interface TenantWorker {
  /** Unlocks the jobs of crashed workers now (also runs every `recoveryIntervalMs`); returns the workers found dead. */
  recover(): Promise<string[]>;
  /** Stops taking jobs, waits for running ones, closes its connections. */
  stop(): Promise<void>;
}

const LOCK_PREFIX = 'tenantwall.jobs:';

interface TenantPayload {
  readonly tw_job: string;
  readonly tenant: string;
}

function isTenantPayload(p: unknown): p is TenantPayload {
  return typeof p === 'object' && p !== null && typeof (p as TenantPayload).tw_job === 'string' && typeof (p as TenantPayload).tenant === 'string';
}

/**
 * Starts graphile-worker with tenantwall's handlers:
 * - a tenant job runs only if its payload names a tenant and a `tw_jobs` row (written by the enqueue trigger);
 *   the handler runs inside `forTenant(tenant)` and as the implicit tenant, reading its payload from `tw_jobs`
 *   through the tenant's scope;
 * - a job without a tenant is refused (it fails, and stays failed in graphile-worker's table for inspection)
 *   unless its task is in `dangerouslyCrossTenantTasks`;
 * - a suspended tenant's jobs are held (each attempt fails with `tenant_suspended` and is retried with
 *   graphile-worker's backoff); a deleted tenant's jobs, and jobs whose row is gone or done, are dropped;
 * - crashed workers (kill -9, lost machine) are found by a session advisory lock each worker holds while it
 *   lives, and their jobs unlocked for another run instead of graphile-worker's 4-hour lock expiry.
 */
export async function startTenantWorker(db: Tenantwall, options: TenantWorkerOptions): Promise<TenantWorker> {
  const connectionString = options.connectionString ?? (db.options.databaseUrl as string);
  const cross = options.dangerouslyCrossTenantTasks ?? {};
  for (const name of Object.keys(cross)) {
    if (name in options.tasks) throw new TenantwallError('config_invalid', `Task ${name} is both a tenant task and a cross-tenant task.`, { details: { field: 'tasks' } });
  }
  const liveness = new pg.Client({ connectionString, application_name: 'tenantwall-jobs-liveness' });
  liveness.on('error', () => undefined);
  await liveness.connect();
  // graphile-worker locks jobs with its pool's id. The id is registered (and its liveness lock requested) when the
  // pool is created, before any of its workers can lock a job: a recovery in this process never takes its own
  // running jobs for a dead worker's, however short the grace.
  const registered = new Set<string>();
  const locks: Array<Promise<unknown>> = [];
  const events: WorkerEvents = new EventEmitter();
  events.on('pool:create', ({ workerPool }: { workerPool: { id: string } }) => {
    registered.add(workerPool.id);
    locks.push(liveness.query('SELECT pg_advisory_lock(hashtext($1))', [LOCK_PREFIX + workerPool.id]));
  });

  const taskList: TaskList = {};
  for (const [name, handler] of Object.entries(options.tasks)) taskList[name] = tenantTask(db, name, handler);
  for (const [name, handler] of Object.entries(cross)) taskList[name] = crossTenantTask(db, name, handler);

  const pgPool = new pg.Pool({ connectionString, max: (options.concurrency ?? 4) + 2 });
  pgPool.on('error', () => undefined);
  pgPool.on('connect', (client) => client.on('error', () => undefined));
  let runner: Runner;
  try {
    runner = await run({
      pgPool,
      taskList,
      concurrency: options.concurrency ?? 4,
      pollInterval: options.pollIntervalMs ?? 2000,
      noHandleSignals: true,
      logger: options.logger ?? quietLogger(),
      events,
    });
    await Promise.all(locks);
  } catch (err) {
    await liveness.end().catch(() => undefined);
    await pgPool.end().catch(() => undefined);
    throw err;
  }

  let recovering: Promise<string[]> | undefined;
  const recover = (): Promise<string[]> => {
    recovering ??= recoverCrashed(liveness, registered, options.recoveryGraceMs ?? 30_000).finally(() => {
      recovering = undefined;
    });
    return recovering;
  };
  const timer = setInterval(() => void recover().catch(() => undefined), options.recoveryIntervalMs ?? 10_000);
  timer.unref();
  await recover();

  return {
    recover,
    async stop() {
      clearInterval(timer);
      await recovering?.catch(() => undefined);
      await runner.stop();
      // graphile-worker does not await a finished job's completion (the DELETE from its queue): ending the pool
      // before it ran left the job locked in the queue until a recovery, and then ran its handler again.
      await queriesDone(pgPool);
      await pgPool.end().catch(() => undefined);
      await liveness.end().catch(() => undefined);
    },
  };
}

/** Until no client of the pool is checked out or waited for (at most 10 s: a stop must end). */
async function queriesDone(pool: pg.Pool): Promise<void> {
  const until = Date.now() + 10_000;
  while ((pool.totalCount > pool.idleCount || pool.waitingCount > 0) && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
}

/** Workers holding tenantwall jobs whose liveness lock is free (their session ended): unlock their jobs. */
async function recoverCrashed(liveness: pg.Client, own: ReadonlySet<string>, graceMs: number): Promise<string[]> {
  const { rows } = await liveness.query<{ worker: string }>(
    `SELECT DISTINCT locked_by AS worker FROM graphile_worker._private_jobs
      WHERE locked_by IS NOT NULL AND locked_at < now() - make_interval(secs => $1::double precision / 1000)
        AND (payload->>'tw_job' IS NOT NULL OR payload->>'tw_cross_tenant' IS NOT NULL)`,
    [graceMs],
  );
  const dead: string[] = [];
  for (const { worker } of rows) {
    // A session's own advisory locks are re-entrant: never test this process's workers with it.
    if (own.has(worker)) continue;
    const got = await liveness.query<{ free: boolean }>('SELECT pg_try_advisory_lock(hashtext($1)) AS free', [LOCK_PREFIX + worker]);
    if (!got.rows[0]?.free) continue;
    try {
      await liveness.query('SELECT graphile_worker.force_unlock_workers(ARRAY[$1]::text[])', [worker]);
      dead.push(worker);
    } finally {
      await liveness.query('SELECT pg_advisory_unlock(hashtext($1))', [LOCK_PREFIX + worker]);
    }
  }
  return dead;
}

function tenantTask(db: Tenantwall, name: string, handler: TenantTaskHandler): Task {
  return async (payload: unknown, helpers: JobHelpers) => {
    if (!isTenantPayload(payload)) {
      throw new TenantwallError('tenant_context_missing', `Job ${helpers.job.id} of task ${name} names no tenant: refused (enqueue it with enqueueJob in a tenant scope).`);
    }
    const tenantId = TenantId.parse(payload.tenant);
    const tenant = await db.tenants.get(tenantId);
    if (!tenant || tenant.status === 'deleted') {
      helpers.logger.info(`Dropping job ${helpers.job.id} of task ${name}: tenant ${tenantId} is deleted.`);
      return;
    }
    if (tenant.status === 'suspended') {
      throw new TenantwallError('tenant_suspended', `Tenant ${tenant.slug} is suspended: job ${helpers.job.id} of task ${name} is held and retried later.`);
    }
    const scope = db.forTenant(tenantId);
    const { rows } = await scope.query<{ task: string; payload: unknown; status: string }>('SELECT task, payload, status FROM tw_jobs WHERE tenant_id = $1 AND id = $2', [
      tenantId,
      payload.tw_job,
    ]);
    const row = rows[0];
    if (!row || row.status !== 'queued' || row.task !== name) {
      helpers.logger.info(`Dropping job ${helpers.job.id} of task ${name}: its tw_jobs row is gone or done.`);
      return;
    }
    const ctx: TenantJobContext = { tenantId, scope, jobId: payload.tw_job, attempt: helpers.job.attempts, signal: helpers.abortSignal ?? new AbortController().signal };
    await runWithTenant(tenantId, () => handler(row.payload, ctx));
    await scope.query(`UPDATE tw_jobs SET status = 'done', finished_at = now() WHERE tenant_id = $1 AND id = $2`, [tenantId, payload.tw_job]);
  };
}

function crossTenantTask(db: Tenantwall, name: string, handler: CrossTenantTaskHandler): Task {
  return async (payload: unknown, helpers: JobHelpers) => {
    const p = payload as { tw_cross_tenant?: unknown; payload?: unknown } | null;
    if (typeof p !== 'object' || p === null || p.tw_cross_tenant !== true) {
      throw new TenantwallError('tenant_context_missing', `Job ${helpers.job.id} of cross-tenant task ${name} was not enqueued with dangerouslyEnqueueCrossTenantJob: refused.`);
    }
    await handler(p.payload ?? null, { db: db.dangerouslyCrossTenant(), attempt: helpers.job.attempts, signal: helpers.abortSignal ?? new AbortController().signal });
  };
}
