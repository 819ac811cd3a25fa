import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type Progress, isTenantwallError } from 'tenantwall';

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

/** A failure that is not a TenantwallError: lock waits and deadlocks say so (the move is journaled and resumes). */
function serverError(err: unknown): { code: string; message: string } {
  const sqlstate = (err as { code?: unknown }).code;
  if (sqlstate === '55P03' || sqlstate === '40P01') {
    const what = sqlstate === '55P03' ? 'could not take its locks within the lock timeout' : 'was chosen as the victim of a deadlock';
    return { code: 'internal_error', message: `The operation ${what} (PostgreSQL ${sqlstate}); nothing changed, and a move is journaled: start it again to resume.` };
  }
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
}

/**
 * Long admin operations run as jobs in this process: the request that starts one answers 202 with the job, and
 * `GET /admin/jobs/:jobId` shows its progress and result. Jobs are not persisted: after a restart they are gone,
 * but what they did is not (a move is journaled by the library and resumes when started again; an import is all
 * or nothing). Finished jobs and their files are dropped after `retentionMs`, and all of them on close.
 */
export class Jobs {
  readonly #jobs = new Map<string, Job>();
  readonly #retentionMs: number;
  readonly #tmpDir: string;

  constructor(options: JobsOptions = {}) {
    this.#retentionMs = options.retentionMs ?? 3_600_000;
    this.#tmpDir = options.tmpDir ?? os.tmpdir();
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
    const onProgress = (p: Progress) => {
      job.progress = { phase: p.phase, table: p.table ?? null, done: p.done, total: p.total ?? null };
    };
    job.done = work({ dir, onProgress }).then(
      (result) => {
        job.result = result;
        job.status = 'succeeded';
      },
      (err: unknown) => {
        job.error = isTenantwallError(err) ? { code: err.code, message: err.message } : serverError(err);
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
