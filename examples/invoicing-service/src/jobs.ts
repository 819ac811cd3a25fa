import fs from 'node:fs';
import { OperationRegistry, type Progress, type RunningOperation, TenantwallError, type TenantwallMetrics, isTenantwallError, mapPgError } from 'tenantwall';

/** A long admin operation (move, export, import) as its status endpoint shows it. */
export interface JobInfo {
  id: string;
  kind: 'move' | 'export' | 'import';
  tenant_id: string;
  status: 'running' | 'succeeded' | 'failed';
  progress: { phase: string; table: string | null; done: number; total: number | null } | null;
  result: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
  created_at: string;
  finished_at: string | null;
}

/**
 * A job's failure as its status shows it. PostgreSQL's lock waits, deadlocks and serialization failures become
 * `transaction_conflict` (through the library's mapping), with a hint that nothing changed and the operation can
 * be started again (a move is journaled and resumes); anything else not raised by tenantwall is `internal_error`.
 */
function jobError(err: unknown): { code: string; message: string } {
  const mapped = mapPgError(err);
  if (isTenantwallError(mapped, 'transaction_conflict')) {
    const sqlstate = String(mapped.details?.['sqlstate'] ?? '');
    return {
      code: mapped.code,
      message: `The operation lost a lock wait or a deadlock to concurrent transactions (PostgreSQL ${sqlstate}) and was rolled back: nothing of it changed. Start it again (a move is journaled and resumes where it stopped).`,
    };
  }
  if (isTenantwallError(mapped)) return { code: mapped.code, message: mapped.message };
  return { code: 'internal_error', message: 'The job failed on the server.' };
}

export interface JobsOptions {
  /** How long finished jobs (and the files of an export) are kept, ms. Default 1 hour. */
  retentionMs?: number;
  /** Where job directories go. Default the OS temp directory. */
  tmpDir?: string;
  /** Metrics that follow the running jobs (`trackOperation`). */
  metrics?: TenantwallMetrics;
}

type Kind = JobInfo['kind'];

/** The admin jobs of each app built by `buildApp`: an operator asks whether it holds a job (operator.ts). */
export const appJobs = new WeakMap<object, Jobs>();

/**
 * Long admin operations run as jobs in this process, on the library's OperationRegistry: the request that starts
 * one answers 202 with the job, and `GET /admin/jobs/:jobId` shows its progress and result. Jobs are not
 * persisted: after a restart they are gone, but what they did is not (a move is journaled by the library and
 * resumes when started again; an import is all or nothing). Finished jobs and their files are dropped after
 * `retentionMs`, and all of them on close.
 */
export class Jobs {
  readonly #ops: OperationRegistry<Kind>;

  constructor(options: JobsOptions = {}) {
    this.#ops = new OperationRegistry<Kind>({ retentionMs: options.retentionMs, dir: options.tmpDir, describeError: jobError, metrics: options.metrics });
  }

  /** A new job directory (for an upload that is written before its job starts). */
  makeDir(): string {
    return this.#ops.makeDir();
  }

  /**
   * Starts `work` as a job in its own directory (`dir`, or a new one), kept after success only for an export's
   * download. One job per tenant at a time: `tenant_busy` while another one runs.
   */
  start(kind: Kind, tenantId: string, work: (ctx: { dir: string; onProgress: (p: Progress) => void }) => Promise<Record<string, unknown>>, dir?: string): JobInfo {
    const busy = this.#ops.runningFor(tenantId);
    if (busy) {
      if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
      throw new TenantwallError('tenant_busy', `Job ${busy.id} is still working on tenant ${tenantId}; follow it at /admin/jobs/${busy.id}.`, { details: { job_id: busy.id } });
    }
    const own = dir ?? this.makeDir();
    return info(this.#ops.start(kind, { id: tenantId }, ({ onProgress }) => work({ dir: own, onProgress }), { dir: own, keepDir: kind === 'export' }));
  }

  /** The job, or undefined. */
  get(id: string): (JobInfo & { dir: string }) | undefined {
    const op = this.#ops.get(id);
    return op ? { ...info(op), dir: op.dir as string } : undefined;
  }

  /** Waits for the running jobs, then drops every job and its files. */
  close(): Promise<void> {
    return this.#ops.close();
  }
}

/** A job as the admin API shows it. */
function info(op: RunningOperation<Kind>): JobInfo {
  const { id, kind, tenantId, status, progress, result, error, startedAt, finishedAt } = op;
  return { id, kind, tenant_id: tenantId, status, progress: progress && { ...progress }, result, error, created_at: startedAt, finished_at: finishedAt };
}
