import type { Catalog } from '../catalog.ts';
import { analyzeBody } from '../functions.ts';
import { type TenantSet, qn, rootOf } from '../tenant-set.ts';

const SEQUENCE_CALLS = new Set(['nextval', 'setval']);

/**
 * Triggers on tenant tables whose effects outlive a rollback: a sequence advanced (nextval/setval) or work done
 * over dblink. NOTIFY is reported too, but PostgreSQL drops the notifications of a rolled-back transaction, so it
 * does not stop the writes. Returns the reasons by root table oid, and one note per trigger.
 */
export function sideEffects(cat: Catalog, ts: TenantSet): { unsafe: Map<number, string>; notes: string[] } {
  const unsafe = new Map<number, string>();
  const notes: string[] = [];
  const fns = new Map(cat.functions.map((f) => [f.oid, f]));
  for (const t of cat.triggers) {
    const rel = ts.all.get(t.rel);
    const fn = fns.get(t.fn);
    if (!rel || !fn) continue;
    const body = analyzeBody(fn);
    const calls = [...body.calls].map((c) => c.replace(/^.*\./, ''));
    const effects = [
      ...(calls.some((c) => SEQUENCE_CALLS.has(c)) ? ['advances a sequence'] : []),
      ...(calls.some((c) => c.startsWith('dblink')) ? ['writes over dblink'] : []),
    ];
    const root = rootOf(rel, ts);
    const what = `trigger ${t.name} on ${qn(rel)} (${fn.schema}.${fn.name})`;
    if (effects.length > 0) {
      const reason = `${what} ${effects.join(' and ')}, which a rollback does not undo`;
      unsafe.set(root.oid, reason);
      notes.push(`${reason}: write attacks on ${qn(root)} skipped`);
    } else if (body.notifies) {
      notes.push(`${what} sends NOTIFY; notifications of the rolled-back transaction are never delivered, so write attacks still ran`);
    }
  }
  return { unsafe, notes };
}
