import { quoteIdent } from '../schema/ddl.ts';
import type { Catalog, Relation } from './catalog.ts';
import type { ResolvedCheckOptions } from './options.ts';
import type { ObjectKind } from './types.ts';

/** `schema.name` as printed in findings. */
export const qn = (r: { schema: string; name: string }) => `${r.schema}.${r.name}`;
/** `"schema"."name"` for SQL. */
export const qi = (r: { schema: string; name: string }) => `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;

/** Which relations are tenant tables (roots, plain tables) and tenant partitions. */
export interface TenantSet {
  readonly tables: readonly Relation[];
  readonly partitions: readonly Relation[];
  readonly all: ReadonlyMap<number, Relation>;
  /** Problems of the configured table list (reported by the configuration rules). */
  readonly configProblems: readonly ConfigProblem[];
}

export interface ConfigProblem {
  readonly ruleId: 'tenant-table-not-found' | 'tenant-column-missing';
  readonly kind: ObjectKind;
  readonly object: string;
  readonly message: string;
  readonly fix: string;
}

export function tenantSet(cat: Catalog, opts: ResolvedCheckOptions): TenantSet {
  const problems: ConfigProblem[] = [];
  const children = new Map<number, Relation[]>();
  for (const r of cat.relations) {
    if (r.parent !== null) children.set(r.parent, [...(children.get(r.parent) ?? []), r]);
  }
  let roots: Relation[];
  if (opts.tables) {
    roots = [];
    for (const spec of opts.tables) {
      const [a, b] = spec.includes('.') ? spec.split('.', 2) : [undefined, spec];
      const found = cat.relations.filter((r) => (r.kind === 'r' || r.kind === 'p') && r.name === b && (a === undefined || r.schema === a));
      if (found.length === 0) {
        problems.push({ ruleId: 'tenant-table-not-found', kind: 'table', object: spec, message: `Tenant table ${spec} does not exist in database ${cat.database}.`, fix: `-- fix the table list, or create ${spec}` });
      }
      for (const r of found) {
        if (r.tenantAttnum === null) {
          problems.push({ ruleId: 'tenant-column-missing', kind: 'table', object: qn(r), message: `Tenant table ${qn(r)} has no column ${opts.tenantColumn}.`, fix: `ALTER TABLE ${qi(r)} ADD COLUMN ${quoteIdent(opts.tenantColumn)} uuid NOT NULL; -- backfill first` });
        } else {
          roots.push(r);
        }
      }
    }
  } else {
    roots = cat.relations.filter((r) => (r.kind === 'r' || r.kind === 'p') && r.tenantAttnum !== null && !r.isPartition);
  }
  const all = new Map<number, Relation>();
  const partitions: Relation[] = [];
  const add = (r: Relation, isPart: boolean) => {
    if (all.has(r.oid)) return;
    all.set(r.oid, r);
    if (isPart) partitions.push(r);
    for (const c of children.get(r.oid) ?? []) if (c.isPartition) add(c, true);
  };
  for (const r of roots) add(r, r.isPartition);
  // Detected by column: a partition whose parent lacks the column is still a tenant relation.
  if (!opts.tables) for (const r of cat.relations) if (r.isPartition && r.tenantAttnum !== null && (r.kind === 'r' || r.kind === 'p')) add(r, true);
  return { tables: roots.filter((r) => !r.isPartition), partitions, all, configProblems: problems };
}

/** The partitioned table at the top of `rel`'s partition tree (within the tenant set). */
export function rootOf(rel: Relation, ts: TenantSet): Relation {
  let cur = rel;
  while (cur.isPartition && cur.parent !== null && ts.all.has(cur.parent)) cur = ts.all.get(cur.parent) as Relation;
  return cur;
}

/** Groups `items` by `key` (the catalog is read as flat lists). */
export function groupBy<T, K>(items: Iterable<T>, key: (x: T) => K): Map<K, T[]> {
  const out = new Map<K, T[]>();
  for (const x of items) {
    const k = key(x);
    const list = out.get(k);
    if (list) list.push(x);
    else out.set(k, [x]);
  }
  return out;
}
