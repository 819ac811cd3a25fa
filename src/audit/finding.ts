import type { FindingExtra } from './rules/define.ts';
import { ruleInfo } from './rules.ts';
import { type Finding, type ObjectKind, SEVERITY_RANK } from './types.ts';

export const DOCS_URL = 'https://github.com/tenantwall/tenantwall/blob/main/docs/audit.md';

/** A finding of `ruleId` (catalog rule or attack): the rule's category, why and doc link, at most its severity. */
export function make(ruleId: string, objectKind: ObjectKind, object: string, message: string, fix: string, extra: FindingExtra): Finding {
  const info = ruleInfo(ruleId);
  const severity = extra.severity !== undefined && SEVERITY_RANK[extra.severity] < SEVERITY_RANK[info.severity] ? extra.severity : info.severity;
  return Object.freeze({
    ruleId,
    severity,
    category: info.category,
    docUrl: `${DOCS_URL}#${ruleId}`,
    source: ruleId.startsWith('attack-') ? 'verify' : 'audit',
    objectKind,
    object,
    message,
    why: info.why,
    fix,
    confirm: extra.confirm,
    details: Object.freeze({ ...(extra.details ?? {}) }),
  });
}

/** Most severe first, then by rule and object: stable output for diffs and baselines. */
export function sortFindings(findings: Finding[]): Finding[] {
  return findings.sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.ruleId.localeCompare(b.ruleId) || a.object.localeCompare(b.object));
}
