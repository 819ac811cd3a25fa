import { Logger as GraphileLogger, type Logger, runMigrations } from 'graphile-worker';
import type { TenantQueryable, Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';

/** Options of one enqueued job. */
export interface EnqueueOptions {
  /** Do not run before this time (default: now). */
  runAt?: Date | undefined;
  /** Attempts before graphile-worker gives up on the job (default 25, graphile-worker's default). */
  maxAttempts?: number | undefined;
}

const TASK = /^[A-Za-z0-9_.:-]{1,200}$/;

function checkTask(task: string): void {
  if (!TASK.test(task)) {
    throw new TenantwallError('validation_failed', `Task names are 1-200 characters of A-Z, a-z, 0-9, "_", ".", ":" and "-"; got ${JSON.stringify(task)}.`, { details: { field: 'task' } });
  }
}

/**
 * Enqueues a job for the tenant of `scope`: a row in `tw_jobs` written in that scope (pass the `tx` of
 * `forTenant(id).transaction(...)` to enqueue in the same transaction as the request's writes: a rollback
 * enqueues nothing), or in the implicit tenant's scope when given the Tenantwall. Returns the job's id.
 */
export async function enqueueJob(scope: TenantQueryable | Tenantwall, task: string, payload: unknown, options: EnqueueOptions = {}): Promise<string> {
  checkTask(task);
  const q: TenantQueryable = 'forTenant' in scope ? scope.current() : scope;
  const { rows } = await q.query<{ id: string }>(
    'INSERT INTO tw_jobs (tenant_id, task, payload, run_at, max_attempts) VALUES ($1, $2, $3::jsonb, $4, $5) RETURNING id',
    [q.tenantId, task, JSON.stringify(payload ?? null), options.runAt ?? null, options.maxAttempts ?? null],
  );
  return (rows[0] as { id: string }).id;
}

/**
 * Enqueues a job that belongs to no tenant (maintenance, fan-out over tenants). Only tasks registered under
 * `dangerouslyCrossTenantTasks` run it; tenant tasks refuse it. Goes through the owner connection.
 */
export async function dangerouslyEnqueueCrossTenantJob(db: Tenantwall, task: string, payload: unknown, options: EnqueueOptions = {}): Promise<string> {
  checkTask(task);
  const { rows } = await db
    .dangerouslyCrossTenant()
    .query<{ id: string }>('SELECT (graphile_worker.add_job($1, $2::json, run_at := $3, max_attempts := $4)).id::text AS id', [
      task,
      JSON.stringify({ tw_cross_tenant: true, payload: payload ?? null }),
      options.runAt ?? null,
      options.maxAttempts ?? null,
    ]);
  return (rows[0] as { id: string }).id;
}

/**
 * Installs (or upgrades) graphile-worker's own schema with the owner connection; idempotent. Needed before the
 * first enqueue when no worker has started yet (a worker installs it too).
 */
export async function installJobQueue(db: Tenantwall, connectionString: string = db.options.databaseUrl as string): Promise<void> {
  await runMigrations({ connectionString, logger: quietLogger() });
}

/** @internal graphile-worker's logger, warnings and errors only. */
export function quietLogger(): Logger {
  return new GraphileLogger((scope) => (level, message) => {
    if (level === 'error' || level === 'warning') console.error(`[tenantwall/jobs ${level}] ${message}`, scope.workerId ?? '');
  });
}
