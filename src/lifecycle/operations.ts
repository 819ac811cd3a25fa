import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isTenantwallError } from '../errors.ts';
import type { Progress } from './progress.ts';

/** A long tenant operation (move, export, import, delete) run in the background by an `OperationRegistry`. */
export interface RunningOperation<K extends string = string> {
  readonly id: string;
  readonly kind: K;
  readonly tenantId: string;
  /** The tenant's slug, when the caller gave it. */
  readonly slug: string | undefined;
  readonly status: 'running' | 'succeeded' | 'failed';
  /** The latest progress report, if any. */
  readonly progress: { readonly phase: string; readonly table: string | null; readonly done: number; readonly total: number | null } | null;
  /** Progress reports received. */
  readonly reports: number;
  readonly result: Record<string, unknown> | null;
  readonly error: { readonly code: string; readonly message: string } | null;
  /** ISO timestamps. */
  readonly startedAt: string;
  readonly finishedAt: string | null;
  /** The operation's own directory (an export's files, an uploaded import), if it has one. */
  readonly dir: string | undefined;
}

/** What an `OperationRegistry` reports a running operation to: what `metrics.trackOperation` returns. */
export interface OperationTracker {
  onProgress(p: Progress): void;
  end(outcome: 'succeeded' | 'failed'): void;
}

/** Options of `new OperationRegistry(...)`. */
export interface OperationRegistryOptions {
  /** How long a finished operation (and its directory) is kept, ms. Default 3,600,000 (one hour). */
  retentionMs?: number | undefined;
  /** Where `makeDir` creates operation directories. Default the OS temporary directory. */
  dir?: string | undefined;
  /**
   * Follows every operation: `trackOperation(kind, tenantId)` is called when one starts, and what it returns is
   * told the progress and the outcome. The metrics of `createMetrics` fit (typed by shape: lifecycle does not
   * import observability).
   */
  metrics?: { trackOperation(kind: string, tenantId: string): OperationTracker } | undefined;
  /**
   * How a failure is shown (`error`). Default: a tenantwall error as it is, anything else `internal_error` with a
   * message that sends the reader to the server log (the cause is not shown to the client).
   */
  describeError?: ((err: unknown) => { code: string; message: string }) | undefined;
}

/** How `OperationRegistry.start` runs one operation. */
export interface StartOperationOptions {
  /** The operation's directory (from `makeDir`), removed when the operation fails or is dropped. */
  dir?: string | undefined;
  /** Keep the directory after success until the operation is dropped (an export's files). Default false. */
  keepDir?: boolean | undefined;
}

type Entry<K extends string> = { -readonly [P in keyof RunningOperation<K>]: RunningOperation<K>[P] } & { done: Promise<void>; keepDir: boolean };

const internalError = { code: 'internal_error', message: 'The operation failed on the server (see the service log); a move or delete resumes when started again.' };

/**
 * Long tenant operations run in this process in the background, with their progress, result or error kept for a
 * status page (the console's operations, the reference service's admin jobs). Finished operations and their
 * directories are dropped after `retentionMs`, and all of them on `close`. Not persisted: what an interrupted
 * operation did is not lost (a move or delete is journaled and resumes when started again; an import is all or
 * nothing), only its entry here.
 */
export class OperationRegistry<K extends string = string> {
  readonly #ops = new Map<string, Entry<K>>();
  readonly #retentionMs: number;
  readonly #dir: string;
  readonly #metrics: OperationRegistryOptions['metrics'];
  readonly #describeError: (err: unknown) => { code: string; message: string };

  constructor(options: OperationRegistryOptions = {}) {
    this.#retentionMs = options.retentionMs ?? 3_600_000;
    this.#dir = options.dir ?? os.tmpdir();
    this.#metrics = options.metrics;
    this.#describeError = options.describeError ?? ((err) => (isTenantwallError(err) ? { code: err.code, message: err.message } : internalError));
  }

  /** A new operation directory (e.g. for an upload written before its operation starts). */
  makeDir(): string {
    return fs.mkdtempSync(path.join(this.#dir, 'tw-operation-'));
  }

  /** Starts `work` in the background; it reports progress through the listener it gets. */
  start(kind: K, tenant: { readonly id: string; readonly slug?: string | undefined }, work: (ctx: { dir: string | undefined; onProgress: (p: Progress) => void }) => Promise<Record<string, unknown>>, options: StartOperationOptions = {}): RunningOperation<K> {
    this.#sweep();
    const dir = options.dir;
    const op: Entry<K> = {
      id: randomUUID(),
      kind,
      tenantId: tenant.id,
      slug: tenant.slug,
      status: 'running',
      progress: null,
      reports: 0,
      result: null,
      error: null,
      startedAt: new Date().toISOString(),
      finishedAt: null,
      dir,
      done: Promise.resolve(),
      keepDir: options.keepDir === true,
    };
    this.#ops.set(op.id, op);
    const tracker = this.#metrics?.trackOperation(kind, tenant.id);
    const onProgress = (p: Progress) => {
      op.progress = { phase: p.phase, table: p.table ?? null, done: p.done, total: p.total ?? null };
      op.reports++;
      tracker?.onProgress(p);
    };
    op.done = Promise.resolve()
      .then(() => work({ dir, onProgress }))
      .then(
        (result) => {
          op.result = result;
          op.status = 'succeeded';
          tracker?.end('succeeded');
        },
        (err: unknown) => {
          op.error = this.#describeError(err);
          op.status = 'failed';
          tracker?.end('failed');
          // Nothing of a failed operation is worth keeping (a failed import wrote nothing; a failed export is incomplete).
          op.keepDir = false;
        },
      )
      .finally(() => {
        op.finishedAt = new Date().toISOString();
        if (!op.keepDir) removeDir(op.dir);
      });
    return op;
  }

  /** The operation, or undefined (unknown, or dropped after `retentionMs`). */
  get(id: string): RunningOperation<K> | undefined {
    return this.#ops.get(id);
  }

  /** The running operation of a tenant, if any. */
  runningFor(tenantId: string): RunningOperation<K> | undefined {
    for (const o of this.#ops.values()) if (o.tenantId === tenantId && o.status === 'running') return o;
    return undefined;
  }

  /** The operations of a tenant, newest first. */
  of(tenantId: string): Array<RunningOperation<K>> {
    return [...this.#ops.values()].filter((o) => o.tenantId === tenantId).reverse();
  }

  /** Waits for the running operations, then drops every operation and its directory. */
  async close(): Promise<void> {
    await Promise.all([...this.#ops.values()].map((o) => o.done.catch(() => undefined)));
    for (const o of this.#ops.values()) removeDir(o.dir);
    this.#ops.clear();
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, o] of this.#ops) {
      if (o.finishedAt !== null && Date.parse(o.finishedAt) + this.#retentionMs <= now) {
        removeDir(o.dir);
        this.#ops.delete(id);
      }
    }
  }
}

function removeDir(dir: string | undefined): void {
  if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
}
