/** Severities in increasing order of urgency; `--fail-on` compares against this order. */
export type Severity = 'info' | 'warn' | 'error';

export const SEVERITY_RANK: Readonly<Record<Severity, number>> = { info: 0, warn: 1, error: 2 };

/** The kind of database object an audit finding is about. */
export type ObjectKind =
  | 'database'
  | 'role'
  | 'schema'
  | 'table'
  | 'partition'
  | 'policy'
  | 'constraint'
  | 'index'
  | 'view'
  | 'materialized-view'
  | 'foreign-table'
  | 'function'
  | 'sequence'
  | 'rule'
  | 'publication';

/** One isolation hole: what, where, why it matters and the SQL that fixes it. */
export interface Finding {
  readonly ruleId: string;
  readonly severity: Severity;
  /** `audit` (catalog rule) or `verify` (an attack that succeeded). */
  readonly source: 'audit' | 'verify';
  readonly objectKind: ObjectKind;
  /** Qualified object name, e.g. `public.invoices` or `public.invoices.tenant_isolation`. */
  readonly object: string;
  readonly message: string;
  readonly why: string;
  readonly fix: string;
}

/** Static description of a rule or an attack (docs/audit.md has one entry per id). */
export interface RuleInfo {
  readonly id: string;
  readonly severity: Severity;
  readonly title: string;
  readonly why: string;
}

/** A finding that an exception entry silenced, with the recorded reason. */
export interface SuppressedFinding {
  readonly finding: Finding;
  readonly reason: string;
}

export interface Report {
  readonly kind: 'audit' | 'verify';
  readonly database: string;
  readonly serverVersion: string;
  readonly findings: readonly Finding[];
  readonly suppressed: readonly SuppressedFinding[];
  /** Exception entries that matched nothing: stale, remove them. */
  readonly unusedExceptions: readonly { rule: string; object: string; reason: string }[];
  readonly stats: Readonly<Record<string, number>>;
  /** Notes that are not findings (e.g. attacks that could not run on a table). */
  readonly notes: readonly string[];
  /** verify with `checksum`: content checksums taken before and after the attacks. */
  readonly checksums?: { readonly before: string; readonly after: string } | undefined;
  readonly durationMs: number;
}
