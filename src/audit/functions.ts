import type { Catalog, FunctionInfo } from './catalog.ts';
import { type TenantSet, groupBy, qn } from './tenant-set.ts';

const IDENT_TOKEN = /"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*)/g;

export interface FunctionReach {
  readonly fn: FunctionInfo;
  /** Tenant relations the body names or depends on (`schema.name`). */
  readonly tables: readonly string[];
}

/** Functions whose body names a tenant relation (text scan) or depends on one (BEGIN ATOMIC). */
export function functionsTouchingTenants(cat: Catalog, ts: TenantSet): { all: FunctionReach[]; definers: FunctionReach[] } {
  const byName = new Map<string, string>();
  for (const r of ts.all.values()) byName.set(r.name.toLowerCase(), qn(r));
  const fnDeps = groupBy(cat.functionDeps, (d) => d.fn);
  const all: FunctionReach[] = [];
  for (const fn of cat.functions) {
    const tables = new Set<string>();
    for (const d of fnDeps.get(fn.oid) ?? []) {
      const t = ts.all.get(d.ref);
      if (t) tables.add(qn(t));
    }
    for (const m of fn.source.matchAll(IDENT_TOKEN)) {
      const word = m[1] !== undefined ? m[1].replace(/""/g, '"') : (m[2] ?? '').toLowerCase();
      const hit = byName.get(word);
      if (hit) tables.add(hit);
    }
    all.push({ fn, tables: [...tables] });
  }
  return { all, definers: all.filter((x) => x.fn.securityDefiner) };
}
