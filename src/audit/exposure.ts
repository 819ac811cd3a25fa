import type { Catalog, Relation } from './catalog.ts';
import type { ResolvedCheckOptions } from './options.ts';
import { type TenantSet, groupBy, qn } from './tenant-set.ts';

export type ExposureClass = 'tenant' | 'global' | 'unknown';

export interface Classified {
  readonly rel: Relation;
  readonly cls: ExposureClass;
  /** Why: `tenant column`, `declared`, `tenant registry`, `foreign key to public.invoices`, `column owner_tenant_id`... */
  readonly reason: string;
}

/** What the application role can do with `r` (sequences: USAGE/SELECT as select, UPDATE as setval). */
export function appAccess(r: Relation): string[] {
  if (!r.app) return [];
  const a = r.app;
  if (a.ownerMember) return ['owner'];
  return (['select', 'insert', 'update', 'delete', 'truncate'] as const).filter((k) => a[k]);
}

const matches = (spec: string, r: Relation) => (spec.includes('.') ? spec === qn(r) : spec === r.name);

/**
 * Classifies every relation of the catalog: tenant-owned (tenant column, declared with `tables`, a column
 * ending in `_<tenant column>`, or a foreign-key path to a tenant relation), global (declared with
 * `globalTables`, the tenant registry, views and sequences over global relations only), or unknown.
 */
export function classifyRelations(cat: Catalog, ts: TenantSet, opts: Pick<ResolvedCheckOptions, 'tenantColumn' | 'tables' | 'globalTables'>): Map<number, Classified> {
  const out = new Map<number, Classified>();
  const byOid = new Map(cat.relations.map((r) => [r.oid, r]));
  const set = (r: Relation, cls: ExposureClass, reason: string) => out.set(r.oid, { rel: r, cls, reason });
  // The registry: what the tenant column of the tenant tables references.
  const registry = new Set<number>();
  for (const c of cat.constraints) {
    const t = ts.all.get(c.rel);
    if (t && c.type === 'f' && c.keys.length === 1 && c.keys[0] === t.tenantAttnum && !ts.all.has(c.refRel)) registry.add(c.refRel);
  }
  const likeCols = groupBy(cat.tenantLikeColumns, (x) => x.rel);
  const fks = groupBy(
    cat.constraints.filter((c) => c.type === 'f'),
    (c) => c.rel,
  );
  for (const r of cat.relations) {
    if (ts.all.has(r.oid)) set(r, 'tenant', opts.tables ? 'declared tenant table' : `${opts.tenantColumn} column`);
    else if (opts.globalTables.some((g) => matches(g, r))) set(r, 'global', 'declared global');
    else if (registry.has(r.oid)) set(r, 'global', 'tenant registry');
    else if (r.kind === 'f' && r.tenantAttnum !== null) set(r, 'tenant', `${opts.tenantColumn} column`);
    else if ((r.kind === 'r' || r.kind === 'p' || r.kind === 'f') && likeCols.has(r.oid)) set(r, 'tenant', `column ${likeCols.get(r.oid)?.[0]?.column}`);
  }
  // Foreign-key paths (tables only), to a fixpoint: a row pointing at a tenant's row (or at the registry) is that tenant's.
  for (let changed = true; changed; ) {
    changed = false;
    for (const [rel, list] of fks) {
      const r = byOid.get(rel);
      if (!r || out.has(rel)) continue;
      const hit = list.find((c) => out.get(c.refRel)?.cls === 'tenant' || registry.has(c.refRel));
      if (hit) {
        const target = byOid.get(hit.refRel);
        set(r, 'tenant', `foreign key ${hit.name} to ${target ? qn(target) : hit.refRel}`);
        changed = true;
      }
    }
  }
  // Partitions follow their root.
  const rootClass = (r: Relation, depth = 0): Classified | undefined => {
    const own = out.get(r.oid);
    if (own || r.parent === null || depth > 64) return own;
    const parent = byOid.get(r.parent);
    return parent ? rootClass(parent, depth + 1) : undefined;
  };
  for (const r of cat.relations) {
    if (out.has(r.oid) || !r.isPartition) continue;
    const root = rootClass(r);
    if (root) set(r, root.cls, `partition of a ${root.cls} table (${root.reason})`);
  }
  // Views and materialized views: tenant if they read a tenant relation, global if they read only global ones.
  const deps = groupBy(cat.viewDeps, (d) => d.view);
  const viewClass = (oid: number, seen: Set<number>): ExposureClass => {
    const known = out.get(oid);
    if (known) return known.cls;
    if (seen.has(oid)) return 'global';
    seen.add(oid);
    const classes = (deps.get(oid) ?? []).map(({ ref }) => (byOid.get(ref) ? viewClass(ref, seen) : 'global'));
    return classes.includes('tenant') ? 'tenant' : classes.includes('unknown') ? 'unknown' : 'global';
  };
  for (const r of cat.relations) {
    if (out.has(r.oid) || (r.kind !== 'v' && r.kind !== 'm')) continue;
    const cls = viewClass(r.oid, new Set());
    set(r, cls, cls === 'tenant' ? 'reads tenant relations' : cls === 'global' ? 'reads global relations only' : 'reads unclassified relations');
  }
  // Sequences follow the table that owns them.
  for (const r of cat.relations) {
    if (out.has(r.oid)) continue;
    const owner = r.kind === 'S' && r.ownedBy !== null ? out.get(r.ownedBy) : undefined;
    if (owner) set(r, owner.cls, `owned by ${qn(owner.rel)}`);
    else set(r, 'unknown', 'not declared');
  }
  return out;
}
