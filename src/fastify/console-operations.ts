import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { TenantwallError, isTenantwallError } from '../errors.ts';
import type { Progress } from '../lifecycle/progress.ts';
import type { TenantwallMetrics } from '../observability/metrics.ts';

/** A long tenant operation started from the console (move, export, delete), as its page shows it. */
export interface ConsoleOperation {
  readonly id: string;
  readonly kind: 'move' | 'export' | 'delete';
  readonly tenantId: string;
  readonly slug: string;
  status: 'running' | 'succeeded' | 'failed';
  /** The latest progress report, if any. */
  progress: { phase: string; table: string | null; done: number; total: number | null } | null;
  /** Progress reports received. */
  reports: number;
  result: Record<string, unknown> | null;
  error: { code: string; message: string } | null;
  readonly startedAt: string;
  finishedAt: string | null;
  /** The export's folder (export operations). */
  readonly dir: string | undefined;
}

/**
 * The console's long operations, run in this process: one per tenant at a time, progress kept for the page
 * (and fed to the metrics' `trackOperation` when metrics are passed), finished ones kept `retentionMs` (an
 * export's files with them). Not persisted: the library's lifecycle journal makes an interrupted move or delete
 * resumable by starting it again.
 */
export class ConsoleOperations {
  readonly #ops = new Map<string, ConsoleOperation & { done: Promise<void> }>();
  readonly #retentionMs: number;
  readonly #dir: string;
  readonly #metrics: TenantwallMetrics | undefined;

  constructor(options: { retentionMs: number; dir: string | undefined; metrics: TenantwallMetrics | undefined }) {
    this.#retentionMs = options.retentionMs;
    this.#dir = options.dir ?? os.tmpdir();
    this.#metrics = options.metrics;
  }

  /** The running operation of a tenant, if any. */
  runningFor(tenantId: string): ConsoleOperation | undefined {
    for (const o of this.#ops.values()) if (o.tenantId === tenantId && o.status === 'running') return o;
    return undefined;
  }

  /** The operations of a tenant, newest first. */
  of(tenantId: string): ConsoleOperation[] {
    return [...this.#ops.values()].filter((o) => o.tenantId === tenantId).reverse();
  }

  get(id: string): ConsoleOperation | undefined {
    return this.#ops.get(id);
  }

  /** Starts `work`; refuses with `tenant_busy` while another console operation runs on the tenant. */
  start(kind: ConsoleOperation['kind'], tenant: { id: string; slug: string }, work: (ctx: { dir: string | undefined; onProgress: (p: Progress) => void }) => Promise<Record<string, unknown>>): ConsoleOperation {
    this.#sweep();
    const busy = this.runningFor(tenant.id);
    if (busy) throw new TenantwallError('tenant_busy', `The console's ${busy.kind} of tenant ${tenant.slug} is still running; wait for it to end.`, { details: { operation: busy.id } });
    const dir = kind === 'export' ? fs.mkdtempSync(path.join(this.#dir, 'tw-console-export-')) : undefined;
    const tracked = this.#metrics?.trackOperation(kind, tenant.id);
    const op: ConsoleOperation & { done: Promise<void> } = {
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
    };
    this.#ops.set(op.id, op);
    const onProgress = (p: Progress) => {
      op.progress = { phase: p.phase, table: p.table ?? null, done: p.done, total: p.total ?? null };
      op.reports++;
      tracked?.onProgress(p);
    };
    op.done = Promise.resolve()
      .then(() => work({ dir, onProgress }))
      .then(
        (result) => {
          op.result = result;
          op.status = 'succeeded';
          tracked?.end('succeeded');
        },
        (err: unknown) => {
          op.error = isTenantwallError(err) ? { code: err.code, message: err.message } : { code: 'internal_error', message: 'The operation failed on the server (see the service log); a move or delete resumes when started again.' };
          op.status = 'failed';
          tracked?.end('failed');
          if (dir) fs.rmSync(dir, { recursive: true, force: true });
        },
      )
      .finally(() => {
        op.finishedAt = new Date().toISOString();
      });
    return op;
  }

  /** Waits for the running operations, then drops every operation and its files. */
  async close(): Promise<void> {
    await Promise.all([...this.#ops.values()].map((o) => o.done.catch(() => undefined)));
    for (const o of this.#ops.values()) if (o.dir) fs.rmSync(o.dir, { recursive: true, force: true });
    this.#ops.clear();
  }

  #sweep(): void {
    const now = Date.now();
    for (const [id, o] of this.#ops) {
      if (o.finishedAt !== null && Date.parse(o.finishedAt) + this.#retentionMs <= now) {
        if (o.dir) fs.rmSync(o.dir, { recursive: true, force: true });
        this.#ops.delete(id);
      }
    }
  }
}
