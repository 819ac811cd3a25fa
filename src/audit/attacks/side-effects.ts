import type { Catalog, FunctionInfo } from '../catalog.ts';
import { analyzeBody } from '../functions.ts';
import { type TenantSet, qn, rootOf } from '../tenant-set.ts';

const SEQUENCE_CALLS = new Set(['nextval', 'setval']);

/**
 * What a function does that a rollback does not undo, following the user functions it calls (by name): a
 * sequence advanced (nextval/setval, or an INSERT into a table whose column defaults to a sequence's next value,
 * e.g. graphile-worker's add_job) or work done over dblink. Empty when nothing. NOTIFY is not among them:
 * PostgreSQL drops the notifications of a rolled-back transaction.
 */
export function lastingEffects(cat: Catalog): (fn: FunctionInfo) => string[] {
  const byName = new Map<string, FunctionInfo[]>();
  for (const f of cat.functions) for (const k of [f.name.toLowerCase(), `${f.schema}.${f.name}`.toLowerCase()]) byName.set(k, [...(byName.get(k) ?? []), f]);
  // Tables with a serial or identity column, by `name` and `schema.name`: inserting there advances a sequence.
  const relNames = new Map(cat.relations.map((r) => [r.oid, `${r.schema}.${r.name}`]));
  const sequenced = new Set<string>();
  for (const c of cat.sequenceColumns) {
    const full = relNames.get(c.rel);
    if (full) for (const k of [full, full.replace(/^.*\./, '')]) sequenced.add(k.toLowerCase());
  }
  const memo = new Map<number, string[]>();
  const visit = (fn: FunctionInfo, seen: Set<number>): string[] => {
    const hit = memo.get(fn.oid);
    if (hit) return hit;
    if (seen.has(fn.oid)) return [];
    seen.add(fn.oid);
    const calls = [...analyzeBody(fn).calls];
    const base = calls.map((c) => c.replace(/^.*\./, ''));
    const inserts = [...analyzeBody(fn).inserts].filter((r) => sequenced.has(r.toLowerCase()));
    const own = [
      ...(base.some((c) => SEQUENCE_CALLS.has(c)) ? ['advances a sequence'] : []),
      ...(inserts.length > 0 ? [`advances a sequence (inserts into ${[...new Set(inserts)].sort().join(', ')})`] : []),
      ...(base.some((c) => c.startsWith('dblink')) ? ['works over dblink'] : []),
    ];
    const nested = calls.flatMap((c) => (byName.get(c) ?? []).filter((f) => f.oid !== fn.oid).flatMap((f) => visit(f, seen).map((e) => (e.includes(' (through ') ? e : `${e} (through ${f.schema}.${f.name})`))));
    const out = [...new Set([...own, ...nested])];
    memo.set(fn.oid, out);
    return out;
  };
  return (fn) => visit(fn, new Set());
}

/**
 * Triggers on tenant tables and functions the application can call whose effects outlive a rollback (see
 * `lastingEffects`). Returns the reasons by root table oid (their write attacks are skipped), by function oid
 * (they are not called), and one note per trigger or function.
 */
export function sideEffects(cat: Catalog, ts: TenantSet): { unsafe: Map<number, string>; unsafeFunctions: Map<number, string>; notes: string[] } {
  const unsafe = new Map<number, string>();
  const unsafeFunctions = new Map<number, string>();
  const notes: string[] = [];
  const effectsOf = lastingEffects(cat);
  const fns = new Map(cat.functions.map((f) => [f.oid, f]));
  for (const t of cat.triggers) {
    const rel = ts.all.get(t.rel);
    const fn = fns.get(t.fn);
    if (!rel || !fn) continue;
    const effects = effectsOf(fn);
    const root = rootOf(rel, ts);
    const what = `trigger ${t.name} on ${qn(rel)} (${fn.schema}.${fn.name})`;
    if (effects.length > 0) {
      const reason = `${what} ${effects.join(' and ')}, which a rollback does not undo`;
      unsafe.set(root.oid, reason);
      notes.push(`${reason}: write attacks on ${qn(root)} skipped`);
    } else if (analyzeBody(fn).notifies) {
      notes.push(`${what} sends NOTIFY; notifications of the rolled-back transaction are never delivered, so write attacks still ran`);
    }
  }
  for (const fn of cat.functions) {
    if (fn.appExecute === false || fn.returnsTrigger || fn.kind !== 'f') continue;
    const effects = effectsOf(fn);
    if (effects.length === 0) continue;
    const reason = `${fn.schema}.${fn.name}(${fn.args}) ${effects.join(' and ')}, which a rollback does not undo`;
    unsafeFunctions.set(fn.oid, reason);
    notes.push(`${reason}: not called by the function attacks (tenantwall audit still checks it)`);
  }
  return { unsafe, unsafeFunctions, notes };
}
