import type { Schema, TableDecl } from '../schema/declare.ts';

/** The parse tree is the parser's JSON: nodes are `{ KindName: body }` wrappers. */
type Node = Record<string, any>;

/**
 * How PostgreSQL should plan a verified statement that runs from the statement cache (QueryOptions `plan:
 * 'auto'`, the default with a guard):
 * - `generic` when its best plan cannot depend on the tenant's data: an INSERT of VALUES into a tenant table,
 *   and a SELECT, UPDATE or DELETE of ONE tenant table with no join, sub-query, grouping or set operation whose
 *   WHERE pins, by equality to a parameter or constant, tenant_id and every column of a primary or unique key
 *   (at most one row, for every tenant, found through that key's index);
 * - `custom` for everything else: planned afresh for each execution, so each tenant gets estimates for its
 *   own data (the generic-plan trap, docs/architecture.md).
 */
export type PlanMode = 'generic' | 'custom';

/** Per tenant table: the column sets (without tenant_id) that identify at most one row within a tenant. */
export type UniqueKeys = ReadonlyMap<string, ReadonlyArray<readonly string[]>>;

export function uniqueKeysOf(schema: Schema): UniqueKeys {
  const keys = new Map<string, string[][]>();
  for (const t of schema.tables as readonly TableDecl[]) {
    if (t.kind !== 'tenant') continue;
    const sets: string[][] = [[...t.primaryKey]];
    for (const [name, col] of Object.entries(t.columns)) if ((col as { unique?: boolean }).unique) sets.push([name]);
    for (const ix of t.indexes ?? []) if (ix.unique && ix.columns.every((c) => c in t.columns)) sets.push([...ix.columns]);
    keys.set(t.name, sets);
  }
  return keys;
}

// Anything that can make the work depend on data beyond one keyed row.
const WIDENING = /"(SubLink|RangeSubselect|RangeFunction|JoinExpr|withClause|groupClause|havingClause|windowClause|larg|fromClause|usingClause|WindowDef|sortClause)"/;

/** The plan mode of one statement (the `stmt` of a parse result), see PlanMode. */
export function planModeOf(stmt: Node, keys: UniqueKeys, tenantColumn: string): PlanMode {
  const kind = Object.keys(stmt)[0] as string;
  const body = stmt[kind] as Node;
  if (kind === 'InsertStmt') {
    const rel = body.relation as Node;
    if (rel.schemaname !== undefined || !keys.has(rel.relname) || body.withClause) return 'custom';
    const source = body.selectStmt?.SelectStmt as Node | undefined;
    if (source !== undefined && source.valuesLists === undefined) return 'custom'; // INSERT ... SELECT
    return WIDENING.test(JSON.stringify(body)) ? 'custom' : 'generic';
  }
  let rel: Node | undefined;
  let rest: Node;
  if (kind === 'SelectStmt') {
    const from = body.fromClause as Node[] | undefined;
    if (from?.length !== 1 || !('RangeVar' in (from[0] as Node))) return 'custom';
    rel = (from[0] as Node).RangeVar as Node;
    const { fromClause: _from, ...others } = body;
    rest = others;
  } else if (kind === 'UpdateStmt' || kind === 'DeleteStmt') {
    rel = body.relation as Node;
    rest = body;
  } else {
    return 'custom';
  }
  if (rel.schemaname !== undefined || body.op !== undefined && body.op !== 'SETOP_NONE') return 'custom';
  const unique = keys.get(rel.relname as string);
  if (!unique || WIDENING.test(JSON.stringify(rest))) return 'custom';
  const names = new Set<string>([rel.relname as string, ...(rel.alias?.aliasname ? [rel.alias.aliasname as string] : [])]);
  const pinned = pinnedColumns(body.whereClause as Node | undefined, names);
  if (!pinned.has(tenantColumn)) return 'custom';
  return unique.some((key) => key.every((c) => pinned.has(c))) ? 'generic' : 'custom';
}

/** Columns of the relation (named by `names`) that the WHERE's top-level AND sets equal to a parameter or constant. */
function pinnedColumns(where: Node | undefined, names: ReadonlySet<string>): Set<string> {
  const out = new Set<string>();
  if (!where) return out;
  const conjuncts: Node[] = [];
  const flatten = (n: Node) => (n.BoolExpr?.boolop === 'AND_EXPR' ? (n.BoolExpr.args as Node[]).forEach(flatten) : conjuncts.push(n));
  flatten(where);
  for (const c of conjuncts) {
    const e = c.A_Expr as Node | undefined;
    if (!e || e.kind !== 'AEXPR_OP' || e.name?.length !== 1 || e.name[0]?.String?.sval !== '=') continue;
    const col = columnOf(e.lexpr, names) ?? columnOf(e.rexpr, names);
    const other = columnOf(e.lexpr, names) !== undefined ? e.rexpr : e.lexpr;
    if (col !== undefined && isValue(other)) out.add(col);
  }
  return out;
}

function columnOf(n: Node | undefined, names: ReadonlySet<string>): string | undefined {
  const fields = n?.ColumnRef?.fields as Node[] | undefined;
  if (!fields) return undefined;
  const parts = fields.map((f) => f.String?.sval as string | undefined);
  if (parts.some((p) => p === undefined)) return undefined;
  if (parts.length === 1) return parts[0];
  if (parts.length === 2 && names.has(parts[0] as string)) return parts[1];
  return undefined;
}

function isValue(n: Node | undefined): boolean {
  if (!n) return false;
  if ('ParamRef' in n || 'A_Const' in n) return true;
  return 'TypeCast' in n && isValue(n.TypeCast.arg as Node);
}
