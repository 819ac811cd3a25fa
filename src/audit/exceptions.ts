import { AUDIT_HINT } from './hint.ts';
import fs from 'node:fs';
import { TenantwallError } from '../errors.ts';
import { ruleInfo } from './rules.ts';
import type { Finding, SuppressedFinding } from './types.ts';

/** One reasoned exception: silences `rule` on `object` (exact name, or a prefix ending with `*`). */
export interface AuditException {
  readonly rule: string;
  readonly object: string;
  readonly reason: string;
}

function invalid(where: string, why: string): TenantwallError {
  return new TenantwallError('config_invalid', `Exception file ${where}: ${why}.`, { hint: AUDIT_HINT, details: { field: 'exceptions' } });
}

/** Validates a parsed exception document: `{ "exceptions": [{ "rule", "object", "reason" }] }`. */
export function parseExceptions(doc: unknown, where = '(inline)'): AuditException[] {
  const list = Array.isArray(doc) ? doc : (doc as { exceptions?: unknown } | null)?.exceptions;
  if (!Array.isArray(list)) throw invalid(where, 'expected {"exceptions": [...]}');
  return list.map((e: unknown, i) => {
    const x = e as Partial<Record<string, unknown>> | null;
    if (typeof x?.rule !== 'string' || typeof x.object !== 'string' || typeof x.reason !== 'string') {
      throw invalid(where, `entry ${i} needs string fields rule, object and reason`);
    }
    try {
      ruleInfo(x.rule);
    } catch {
      throw invalid(where, `entry ${i} names unknown rule ${JSON.stringify(x.rule)}`);
    }
    if (x.object.trim() === '') throw invalid(where, `entry ${i} has an empty object`);
    // An exception without a reason is how holes become permanent: refuse it.
    if (x.reason.trim().length < 10) throw invalid(where, `entry ${i} (${x.rule} on ${x.object}) needs a reason of at least 10 characters`);
    return Object.freeze({ rule: x.rule, object: x.object, reason: x.reason.trim() });
  });
}

/** Reads an audit exceptions file (JSON) and validates it. */
export function loadExceptionsFile(file: string): AuditException[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (cause) {
    throw new TenantwallError('config_invalid', `Cannot read exception file ${file}.`, { cause, hint: AUDIT_HINT, details: { field: 'exceptions' } });
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (cause) {
    throw new TenantwallError('config_invalid', `Exception file ${file} is not valid JSON: ${(cause as Error).message}.`, { cause, hint: AUDIT_HINT, details: { field: 'exceptions' } });
  }
  return parseExceptions(doc, file);
}

function matches(pattern: string, object: string): boolean {
  return pattern.endsWith('*') ? object.startsWith(pattern.slice(0, -1)) : pattern === object;
}

export function applyExceptions(findings: readonly Finding[], exceptions: readonly AuditException[]) {
  const used = new Set<AuditException>();
  const kept: Finding[] = [];
  const suppressed: SuppressedFinding[] = [];
  for (const f of findings) {
    const ex = exceptions.find((e) => e.rule === f.ruleId && matches(e.object, f.object));
    if (ex) {
      used.add(ex);
      suppressed.push({ finding: f, reason: ex.reason });
    } else {
      kept.push(f);
    }
  }
  return { kept, suppressed, unused: exceptions.filter((e) => !used.has(e)) };
}
