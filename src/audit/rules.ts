import { CITUS_RULES } from './citus-rules.ts';
import { ATTACK_FAMILIES } from './attacks/index.ts';
import { RULE_FAMILIES } from './rules/index.ts';
import type { RuleInfo } from './types.ts';

/**
 * Catalog rules of `tenantwall audit`, from every rule family. Ids are stable: exception files and CI baselines
 * refer to them, so an id is never renamed or reused. docs/audit.md documents each one.
 */
export const AUDIT_RULES: readonly RuleInfo[] = Object.freeze(RULE_FAMILIES.flatMap((f) => f.rules));

/** Attacks of `tenantwall verify`, from every attack family; a finding means the attack succeeded. */
export const VERIFY_ATTACKS: readonly RuleInfo[] = Object.freeze(ATTACK_FAMILIES.flatMap((f) => f.attacks));

const BY_ID = new Map<string, RuleInfo>([...AUDIT_RULES, ...VERIFY_ATTACKS, ...CITUS_RULES].map((x) => [x.id, x]));

/** The documentation entry (severity, category, summary) of an audit rule or verify attack. */
export function ruleInfo(id: string): RuleInfo {
  const info = BY_ID.get(id);
  if (!info) throw new Error(`unknown rule ${id}`);
  return info;
}
