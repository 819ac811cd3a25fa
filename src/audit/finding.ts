import { ruleInfo } from './rules.ts';
import { type Finding, type ObjectKind, SEVERITY_RANK } from './types.ts';

/** A finding of `ruleId` (catalog rule or attack) with the rule's severity and why. */
export function make(ruleId: string, objectKind: ObjectKind, object: string, message: string, fix: string): Finding {
  const info = ruleInfo(ruleId);
  return Object.freeze({ ruleId, severity: info.severity, source: ruleId.startsWith('attack-') ? 'verify' : 'audit', objectKind, object, message, why: info.why, fix });
}

/** Most severe first, then by rule and object: stable output for diffs and baselines. */
export function sortFindings(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.ruleId.localeCompare(b.ruleId) || a.object.localeCompare(b.object));
}
