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
  | 'publication'
  /** A place in the project's source (`file:line`), from `--source`. */
  | 'source';

/** What a rule is about, separate from how urgent it is. */
export type Category = 'isolation' | 'performance' | 'hygiene';

/** One isolation hole: what, where, why it matters, the SQL that fixes it and a query that shows the fix worked. */
export interface Finding {
  readonly ruleId: string;
  /** The rule's severity, or lower when the application role cannot do what the hole allows. */
  readonly severity: Severity;
  readonly category: Category;
  /** The rule's section in docs/audit.md. */
  readonly docUrl: string;
  /** `audit` (catalog rule) or `verify` (an attack that succeeded). */
  readonly source: 'audit' | 'verify';
  readonly objectKind: ObjectKind;
  /** Qualified object name, e.g. `public.invoices` or `public.invoices.tenant_isolation`. */
  readonly object: string;
  readonly message: string;
  readonly why: string;
  readonly fix: string;
  /** A query returning one row with a boolean column `fixed`: false while the hole is there, true once fixed. */
  readonly confirm: string;
  /** Structured facts beside the message (policy command, roles, USING / WITH CHECK text, function signature...). */
  readonly details: Readonly<Record<string, unknown>>;
}

/** Static description of a rule or an attack (docs/audit.md has one entry per id). */
export interface RuleInfo {
  readonly id: string;
  /** The highest severity a finding of this rule can have. */
  readonly severity: Severity;
  readonly category: Category;
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
  /** The application role(s) checked (found in the catalog when none was given). */
  readonly appRoles?: readonly string[] | undefined;
  /** verify: every relation the application role can reach, and whether an attack ran on it. */
  readonly coverage?: readonly CoverageEntry[] | undefined;
  /** verify: what the attacks ran with (tenant A attacked tenant B). */
  readonly attack?: { readonly tenants: readonly [string, string]; readonly setting: string; readonly tenantColumn: string; readonly appRole: string } | undefined;
  /** verify with `checksum`: content checksums taken before and after the attacks. */
  readonly checksums?: { readonly before: string; readonly after: string; readonly changed?: readonly string[] | undefined } | undefined;
  readonly durationMs: number;
}

/** One relation the application role can reach, in a verify report. */
export interface CoverageEntry {
  readonly relation: string;
  readonly kind: ObjectKind;
  /** tenant (isolated per tenant), global (shared by all tenants) or unknown (nothing says). */
  readonly class: 'tenant' | 'global' | 'unknown';
  /** `skipped` makes `tenantwall verify` fail unless `--allow-skips`. */
  readonly status: 'attacked' | 'skipped' | 'not-applicable';
  readonly reason: string;
}
