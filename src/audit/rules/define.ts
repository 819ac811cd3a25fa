import type { Catalog, Relation } from '../catalog.ts';
import type { ResolvedCheckOptions } from '../options.ts';
import type { TenantSet } from '../tenant-set.ts';
import type { Category, ObjectKind, RuleInfo, Severity } from '../types.ts';

export function rule(id: string, severity: Severity, category: Category, title: string, why: string): RuleInfo {
  return Object.freeze({ id, severity, category, title, why });
}

/** What a finding carries beyond its message and fix. */
export interface FindingExtra {
  /** A query returning one row with a boolean `fixed` (the `confirm*` helpers of confirm.ts build them). */
  readonly confirm: string;
  readonly details?: Readonly<Record<string, unknown>> | undefined;
  /** Lower than the rule's severity when the application role cannot do what the hole allows. */
  readonly severity?: Severity | undefined;
}

/** What every rule family sees: one catalog snapshot, the resolved options and the tenant set. */
export interface RuleContext {
  readonly cat: Catalog;
  readonly opts: ResolvedCheckOptions;
  readonly ts: TenantSet;
  /** The application role, quoted for SQL. */
  readonly appName: string;
  /** The tenant column, plain and quoted. */
  readonly col: string;
  readonly qcol: string;
  /** `tenant_id = (SELECT nullif(current_setting(...), '')::<type>)` for `r`. */
  pred(r: Relation): string;
  /** The tenant policy `r` should have. */
  policyFix(r: Relation): string;
  /** Reports a finding (the same rule on the same object is reported once). */
  push(ruleId: string, kind: ObjectKind, object: string, message: string, fix: string, extra: FindingExtra): void;
}

/**
 * A family of catalog rules: its rule catalogue (docs/audit.md documents each id) and the evaluation. Families
 * are registered in rules/index.ts, one line each.
 */
export interface RuleFamily {
  readonly name: string;
  readonly rules: readonly RuleInfo[];
  evaluate(ctx: RuleContext): void;
}
