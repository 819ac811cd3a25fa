import { loadModule, parseSync } from 'libpg-query';

/**
 * How a policy expression isolates tenants:
 * - `tight`: one of its top-level AND terms is `<tenant column> = <expression of the tenant setting>`;
 * - `loose`: it reads the tenant setting but some OR branch (or other construct) lets rows through without it;
 * - `no-setting`: it never reads the tenant setting;
 * - `true`: constant true;
 * - `absent`: no expression (PostgreSQL then refuses, or falls back to USING for writes).
 */
export type PolicyClass = 'tight' | 'loose' | 'no-setting' | 'true' | 'absent';

export interface ExprAnalysis {
  readonly cls: PolicyClass;
  /** Functions called outside any sub-select: evaluated once per row instead of once per statement. */
  readonly perRowCalls: readonly string[];
}

type Node = Record<string, any>;

let loaded: Promise<void> | undefined;

/** The parser is WebAssembly: load it once before the first (synchronous) parse. */
export function loadParser(): Promise<void> {
  loaded ??= loadModule().then(() => undefined);
  return loaded;
}

function funcName(call: Node): string {
  const parts = (call.funcname as Node[] | undefined)?.map((p) => p.String?.sval as string) ?? [];
  return parts.join('.');
}

function stripCasts(n: Node | undefined): Node | undefined {
  let cur = n;
  while (cur?.TypeCast) cur = cur.TypeCast.arg as Node;
  return cur;
}

function constString(n: Node | undefined): string | undefined {
  const c = stripCasts(n);
  return c?.A_Const?.sval?.sval as string | undefined;
}

/** Depth-first visit of every object node; `inSub` tells whether the node sits inside a sub-select. */
function walk(n: unknown, visit: (node: Node, inSub: boolean) => void, inSub = false): void {
  if (Array.isArray(n)) {
    for (const x of n) walk(x, visit, inSub);
    return;
  }
  if (n === null || typeof n !== 'object') return;
  const node = n as Node;
  visit(node, inSub);
  const sub = inSub || 'SubLink' in node;
  for (const v of Object.values(node)) walk(v, visit, sub);
}

/** Functions (name or schema.name, lowercase) whose body reads the tenant setting, e.g. `app.current_tenant()`. */
let helpers: ReadonlySet<string> = new Set();

function readsSetting(n: Node | undefined, settingName: string): boolean {
  let found = false;
  const wanted = settingName.toLowerCase();
  walk(n, (node) => {
    const call = node.FuncCall as Node | undefined;
    if (!call) return;
    const name = funcName(call).toLowerCase().replace(/^pg_catalog\./, '');
    // Setting names are case-insensitive in PostgreSQL.
    if (name === 'current_setting' && constString((call.args as Node[] | undefined)?.[0])?.toLowerCase() === wanted) found = true;
    else if (helpers.has(name)) found = true;
  });
  return found;
}

function isColumn(n: Node | undefined, column: string): boolean {
  const c = stripCasts(n);
  const fields = c?.ColumnRef?.fields as Node[] | undefined;
  return fields !== undefined && fields[fields.length - 1]?.String?.sval === column;
}

function conjuncts(n: Node | undefined): Node[] {
  const b = n?.BoolExpr as Node | undefined;
  if (b?.boolop === 'AND_EXPR') return (b.args as Node[]).flatMap(conjuncts);
  return n ? [n] : [];
}

function isTenantEquality(n: Node, column: string, settingName: string): boolean {
  const e = n.A_Expr as Node | undefined;
  if (!e || e.kind !== 'AEXPR_OP' || (e.name as Node[])[0]?.String?.sval !== '=') return false;
  const l = e.lexpr as Node | undefined;
  const r = e.rexpr as Node | undefined;
  return (isColumn(l, column) && readsSetting(r, settingName)) || (isColumn(r, column) && readsSetting(l, settingName));
}

const cache = new Map<string, ExprAnalysis>();

/**
 * Declares the helper functions that read the tenant setting (from the catalog being audited); a policy calling
 * one counts as reading the setting. Clears the cache when the set changes.
 */
export function setSettingHelpers(names: Iterable<string>): void {
  const next = new Set([...names].map((n) => n.toLowerCase()));
  if (next.size !== helpers.size || [...next].some((n) => !helpers.has(n))) {
    helpers = next;
    cache.clear();
  }
}

/** Classifies a policy expression as printed by pg_get_expr. Call `loadParser()` once first. */
export function analyzePolicyExpr(expr: string | null, column: string, settingName: string): ExprAnalysis {
  if (expr === null) return { cls: 'absent', perRowCalls: [] };
  const key = `${column}\u0000${settingName}\u0000${expr}`;
  const hit = cache.get(key);
  if (hit) return hit;
  let root: Node | undefined;
  try {
    const parsed = parseSync(`SELECT (${expr})`) as Node;
    root = parsed.stmts?.[0]?.stmt?.SelectStmt?.targetList?.[0]?.ResTarget?.val as Node | undefined;
  } catch {
    root = undefined;
  }
  const perRow = new Set<string>();
  walk(root, (node, inSub) => {
    if (!node.FuncCall || inSub) return;
    // A call on the row's columns (lower(email)) must run per row; one that does not (current_setting(...),
    // a helper returning the tenant) could run once per statement if wrapped in a sub-select.
    let readsColumn = false;
    walk(node.FuncCall, (inner) => {
      if (inner.ColumnRef) readsColumn = true;
    });
    if (!readsColumn) perRow.add(funcName(node.FuncCall as Node));
  });
  let cls: PolicyClass;
  const bare = stripCasts(root);
  if (root === undefined) cls = 'no-setting';
  else if (bare?.A_Const?.boolval?.boolval === true || constString(bare) === 'true') cls = 'true';
  else if (!readsSetting(root, settingName)) cls = 'no-setting';
  else if (conjuncts(root).some((c) => isTenantEquality(c, column, settingName))) cls = 'tight';
  else cls = 'loose';
  const result = Object.freeze({ cls, perRowCalls: [...perRow] });
  cache.set(key, result);
  return result;
}
