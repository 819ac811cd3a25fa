import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Progress, type TenantwallMetrics, isTenantwallError, mapPgError } from 'tenantwall';

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

interface Job extends JobInfo {
  /** Working directory of the job (export files, an uploaded import), removed with the job. */
  dir: string;
  done: Promise<void>;
}

export interface JobsOptions {
  /** How long finished jobs (and the files of an export) are kept, ms. Default 1 hour. */
  retentionMs?: number;
  /** Where job directories go. Default the OS temp directory. */
  tmpDir?: string;
  /** Metrics that follow the running jobs (`trackOperation`). */
  metrics?: TenantwallMetrics;
}

/**
 * Long admin operations run as jobs in this process: the request that starts one answers 202 with the job, and
 * `GET /admin/jobs/:jobId` shows its progress and result. Jobs are not persisted: after a restart they are gone,
 * but what they did is not (a move is journaled by the library and resumes when started again; an import is all
 * or nothing). Finished jobs and their files are dropped after `retentionMs`, and all of them on close.
 */
/** The admin jobs of each app built by `buildApp`: an operator asks whether it holds a job (operator.ts). */
export const appJobs = new WeakMap<object, Jobs>();

export class Jobs {
  readonly #jobs = new Map<string, Job>();
  readonly #retentionMs: number;
  readonly #tmpDir: string;
  readonly #metrics: TenantwallMetrics | undefined;

  constructor(options: JobsOptions = {}) {
    this.#retentionMs = options.retentionMs ?? 3_600_000;
    this.#tmpDir = options.tmpDir ?? os.tmpdir();
    this.#metrics = options.metrics;
  }

  /** A new job directory (for an upload that is written before its job starts). */
  makeDir(): string {
    return fs.mkdtempSync(path.join(this.#tmpDir, 'tw-job-'));
  }

  /** Starts `work` as a job; it reports progress through the listener it gets. */
  start(
    kind: JobInfo['kind'],
    tenantId: string,
    work: (ctx: { dir: string; onProgress: (p: Progress) => void }) => Promise<Record<string, unknown>>,
    dir: string = this.makeDir(),
  ): JobInfo {
    this.#sweep();
    const job: Job = {
      id: randomUUID(),
      kind,
      tenant_id: tenantId,
      status: 'running',
      progress: null,
      result: null,
      error: null,
      created_at: new Date().toISOString(),
      finished_at: null,
      dir,
      done: Promise.resolve(),
    };
    this.#jobs.set(job.id, job);
    const tracked = this.#metrics?.trackOperation(kind, tenantId);
    const onProgress = (p: Progress) => {
      job.progress = { phase: p.phase, table: p.table ?? null, done: p.done, total: p.total ?? null };
      tracked?.onProgress(p);
    };
    job.done = work({ dir, onProgress }).then(
      (result) => {
        job.result = result;
        job.status = 'succeeded';
        tracked?.end('succeeded');
      },
      (err: unknown) => {
        tracked?.end('failed');
        job.error = jobError(err);
        job.status = 'failed';
        // Nothing of a failed job is worth keeping (a failed import wrote nothing; a failed export is incomplete).
        fs.rmSync(dir, { recursive: true, force: true });
      },
    ).finally(() => {
      job.finished_at = new Date().toISOString();
      if (kind !== 'export') fs.rmSync(dir, { recursive: true, force: true });
    });
    return this.info(job);
  }

  /** The job, or undefined. */
  get(id: string): (JobInfo & { dir: string }) | undefined {
    const job = this.#jobs.get(id);
    return job ? { ...this.info(job), dir: job.dir } : undefined;
  }

  /** Waits for the running jobs, then drops every job and its files. */
  async close(): Promise<void> {
    await Promise.all([...this.#jobs.values()].map((j) => j.done.catch(() => undefined)));
    for (const j of this.#jobs.values()) fs.rmSync(j.dir, { recursive: true, force: true });
    this.#jobs.clear();
  }

  info(job: JobInfo): JobInfo {
    const { id, kind, tenant_id, status, progress, result, error, created_at, finished_at } = job;
    return { id, kind, tenant_id, status, progress: progress && { ...progress }, result, error, created_at, finished_at };
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, j] of this.#jobs) {
      if (j.finished_at !== null && Date.parse(j.finished_at) + this.#retentionMs <= now) {
        fs.rmSync(j.dir, { recursive: true, force: true });
        this.#jobs.delete(id);
      }
    }
  }
}
