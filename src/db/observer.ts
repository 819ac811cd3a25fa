import type { TenantId } from '../tenant/tenant-id.ts';

/** What the statement guard said about a tenant-scoped statement: `unchecked` when no guard is configured. */
export type GuardVerdict = 'allowed' | 'refused' | 'unchecked';

/** A tenant-scoped statement about to be checked and sent (`forTenant(id).query`, `db.query`, a transaction's `query`). */
export interface StatementEvent {
  readonly tenantId: TenantId;
  /** The statement text as given (parameters are separate and never passed to observers). */
  readonly sql: string;
  /** True inside `transaction()`. */
  readonly inTransaction: boolean;
}

/** How a tenant-scoped statement ended. */
export interface StatementOutcome {
  readonly verdict: GuardVerdict;
  /** Rows the statement returned (0 when refused or failed). */
  readonly rows: number;
  /** Time from the guard check to the result, ms (the database round trip included; 0 when refused). */
  readonly durationMs: number;
  /** The error when the statement was refused or failed. */
  readonly error: unknown;
}

/**
 * Watches every tenant-scoped statement (metrics, traces: the observability part implements it). `start` runs
 * synchronously in the caller's async context, before the guard, and returns the function called once when the
 * statement ends (or undefined to not follow it). Observers must not throw; an error thrown by one is ignored.
 */
export interface StatementObserver {
  start(event: StatementEvent): ((outcome: StatementOutcome) => void) | undefined;
}

type End = (outcome: StatementOutcome) => void;

const NO_ENDS: readonly End[] = Object.freeze([]);

/**
 * Starts every observer; returns the end callbacks (observer errors are ignored: they must not break the data
 * path). The callers observe inside their own async function (no wrapper promise per statement) and skip the
 * outcome object when no observer follows the statement (e.g. tracing without an SDK).
 */
export function startObservers(observers: readonly StatementObserver[], event: StatementEvent): readonly End[] {
  let ends: End[] | undefined;
  for (const o of observers) {
    try {
      const end = o.start(event);
      if (end) (ends ??= []).push(end);
    } catch {
      // An observer's failure is not the statement's.
    }
  }
  return ends ?? NO_ENDS;
}

/** Calls every end callback with the outcome, ignoring observer errors. */
export function endObservers(ends: readonly End[], outcome: StatementOutcome): void {
  for (const end of ends) {
    try {
      end(outcome);
    } catch {
      // An observer's failure is not the statement's.
    }
  }
}

/** Rows of a pg result (a multi-statement result is an array of results). */
export function rowsOf(result: unknown): number {
  if (Array.isArray(result)) return result.reduce((n: number, r) => n + rowsOf(r), 0);
  const rows = (result as { rows?: unknown[] } | undefined)?.rows;
  return Array.isArray(rows) ? rows.length : 0;
}
