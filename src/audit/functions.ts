import { parsePlPgSQLSync, parseSync } from 'libpg-query';
import type { Catalog, FunctionInfo, Relation } from './catalog.ts';
import { type TenantSet, groupBy, qn } from './tenant-set.ts';

type Node = Record<string, any>;

/** What a function body does, from PostgreSQL's own parsers (SQL and PL/pgSQL). */
export interface BodyAnalysis {
  /** Relations named anywhere in the body (`name` or `schema.name`, lowercase unless quoted). */
  readonly names: ReadonlySet<string>;
  /** Relations it INSERTs into, UPDATEs, DELETEs from or MERGEs into. */
  readonly writes: ReadonlySet<string>;
  /** Relations it INSERTs into or MERGEs into (the writes that may take a sequence's next value for a default). */
  readonly inserts: ReadonlySet<string>;
  /** Functions it calls (`name` or `schema.name`). */
  readonly calls: ReadonlySet<string>;
  /** EXECUTE of a computed string, or a function that runs SQL given as text (query_to_xml, dblink...). */
  readonly dynamic: boolean;
  /** NOTIFY / pg_notify. */
  readonly notifies: boolean;
  /**
   * Settings (lowercase names) set for the rest of the session: `SET x = ...` / `SET SESSION x` without LOCAL,
   * `set_config('x', ..., <not the constant true>)`. `?` stands for a set_config whose name is computed.
   */
  readonly sessionSettings: ReadonlySet<string>;
  /** False when a body could not be parsed (then `names` comes from a scan of the text). */
  readonly parsed: boolean;
}

/** Functions that run SQL passed to them as text, or reach outside the transaction. */
const DYNAMIC_CALLS = new Set(['query_to_xml', 'query_to_xml_and_xmlschema', 'query_to_xmlschema', 'cursor_to_xml', 'table_to_xml', 'table_to_xml_and_xmlschema', 'dblink', 'dblink_exec', 'dblink_send_query', 'dblink_open']);
const IDENT_TOKEN = /"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*)/g;

function walk(n: unknown, visit: (node: Node) => void): void {
  if (Array.isArray(n)) {
    for (const x of n) walk(x, visit);
    return;
  }
  if (n === null || typeof n !== 'object') return;
  visit(n as Node);
  for (const v of Object.values(n as Node)) walk(v, visit);
}

const rangeName = (rv: Node) => (rv.schemaname ? `${rv.schemaname}.${rv.relname}` : (rv.relname as string));
const funcName = (call: Node) => ((call.funcname as Node[] | undefined) ?? []).map((p) => p.String?.sval as string).join('.').toLowerCase().replace(/^pg_catalog\./, '');

type Scan = { names: Set<string>; writes: Set<string>; inserts: Set<string>; calls: Set<string>; dynamic: boolean; notifies: boolean; sessionSettings: Set<string> };

function scanSql(sql: Node, out: Scan) {
  walk(sql, (node) => {
    if (node.RangeVar) out.names.add(rangeName(node.RangeVar as Node));
    for (const k of ['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']) {
      const rel = (node[k] as Node | undefined)?.relation as Node | undefined;
      if (rel) out.writes.add(rangeName(rel));
      if (rel && k !== 'UpdateStmt' && k !== 'DeleteStmt') out.inserts.add(rangeName(rel));
    }
    if (node.NotifyStmt) out.notifies = true;
    const set = node.VariableSetStmt as Node | undefined;
    if (set && set.kind === 'VAR_SET_VALUE' && !set.is_local && typeof set.name === 'string') out.sessionSettings.add(set.name.toLowerCase());
    if (node.FuncCall) {
      const name = funcName(node.FuncCall as Node);
      out.calls.add(name);
      if (DYNAMIC_CALLS.has(name.replace(/^.*\./, ''))) out.dynamic = true;
      if (name === 'pg_notify') out.notifies = true;
      if (name === 'set_config') {
        const args = ((node.FuncCall as Node).args ?? []) as Node[];
        const local = args[2]?.A_Const?.boolval?.boolval === true;
        const setting = args[0]?.A_Const?.sval?.sval as string | undefined;
        if (!local) out.sessionSettings.add(setting === undefined ? '?' : setting.toLowerCase());
      }
    }
  });
}

/** One embedded PL/pgSQL expression or statement, parsed as PostgreSQL would (parseMode of PLpgSQL_expr). */
function parseEmbedded(query: string, mode: number): Node | undefined {
  // 0 a statement, 2 an expression, 3-5 an assignment `target := expression` (target of 1, 2 or 3 names).
  const attempts = mode === 0 ? [query] : mode >= 3 && mode <= 5 ? [`SELECT ${query.replace(/^[^:]*:=/, '')}`] : [`SELECT ${query}`, query];
  for (const q of attempts) {
    try {
      return parseSync(q) as Node;
    } catch {
      // try the next reading
    }
  }
  return undefined;
}

const cache = new Map<string, BodyAnalysis>();

/** Analyses the body of `fn` (cached by its text). Call `loadParser()` once first. */
export function analyzeBody(fn: FunctionInfo): BodyAnalysis {
  const key = `${fn.language}\u0000${fn.definition ?? fn.source}`;
  const hit = cache.get(key);
  if (hit) return hit;
  const out: Scan = { names: new Set<string>(), writes: new Set<string>(), inserts: new Set<string>(), calls: new Set<string>(), dynamic: false, notifies: false, sessionSettings: new Set<string>() };
  let parsed = true;
  try {
    if (fn.language === 'plpgsql' && fn.definition) {
      const tree = parsePlPgSQLSync(fn.definition) as Node;
      walk(tree, (node) => {
        if (node.PLpgSQL_stmt_dynexecute || node.PLpgSQL_stmt_dynfors) out.dynamic = true;
        if ((node.PLpgSQL_stmt_return_query as Node | undefined)?.dynquery || (node.PLpgSQL_stmt_open as Node | undefined)?.dynquery) out.dynamic = true;
        const expr = node.PLpgSQL_expr as Node | undefined;
        if (expr && typeof expr.query === 'string') {
          const sql = parseEmbedded(expr.query, Number(expr.parseMode ?? 0));
          if (sql) scanSql(sql, out);
          else parsed = false;
        }
      });
    } else if (fn.language === 'sql' && fn.source.trim() !== '') {
      scanSql(parseSync(fn.source) as Node, out);
    } else {
      parsed = false;
    }
  } catch {
    parsed = false;
  }
  if (!parsed) {
    // Unknown language or unparseable body: every identifier may name a relation, every name( a call.
    for (const m of fn.source.matchAll(IDENT_TOKEN)) out.names.add(m[1] !== undefined ? m[1].replace(/""/g, '"') : (m[2] ?? '').toLowerCase());
    for (const m of fn.source.matchAll(/([A-Za-z_][A-Za-z0-9_$.]*)\s*\(/g)) out.calls.add((m[1] ?? '').toLowerCase());
    if (/\bexecute\b/i.test(fn.source) || [...out.calls].some((c) => DYNAMIC_CALLS.has(c.replace(/^.*\./, '')))) out.dynamic = true;
    if (/\bnotify\b|pg_notify\s*\(/i.test(fn.source)) out.notifies = true;
    // Setting names in a SET that is not SET LOCAL, or in a set_config that is not (..., true).
    for (const m of fn.source.matchAll(/\bset\s+(?!local\b)(?:session\s+)?([a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*)/gi)) out.sessionSettings.add((m[1] ?? '').toLowerCase());
    for (const m of fn.source.matchAll(/set_config\s*\(\s*'([^']*)'[^;]*?,\s*(\w+)\s*\)/gi)) if ((m[2] ?? '').toLowerCase() !== 'true') out.sessionSettings.add((m[1] ?? '').toLowerCase());
  }
  const result = Object.freeze({ ...out, parsed });
  cache.set(key, result);
  return result;
}

export interface FunctionReach {
  readonly fn: FunctionInfo;
  readonly body: BodyAnalysis;
  /** Tenant relations the body names or depends on (`schema.name`), directly or through views. */
  readonly tables: readonly string[];
  /** The views through which it reaches tenant relations (`schema.name`). */
  readonly throughViews: readonly string[];
  /** Relations (not views) it writes (`schema.name`). */
  readonly writes: readonly Relation[];
}

/** Resolves the relation names of function bodies against the catalog, following views to tenant tables. */
export function functionReach(cat: Catalog, ts: TenantSet): FunctionReach[] {
  const byName = groupBy(cat.relations, (r) => r.name.toLowerCase());
  const byOid = new Map(cat.relations.map((r) => [r.oid, r]));
  const resolve = (name: string): Relation[] => {
    const dot = name.lastIndexOf('.');
    const rel = dot < 0 ? name : name.slice(dot + 1);
    const schema = dot < 0 ? undefined : name.slice(0, dot);
    return (byName.get(rel.toLowerCase()) ?? []).filter((r) => r.name === rel && (schema === undefined || r.schema === schema));
  };
  const viewDeps = groupBy(cat.viewDeps, (d) => d.view);
  // Inside a SECURITY DEFINER function the invoker is the owner, so every view is followed (security_invoker too).
  const viewTenants = (oid: number, seen: Set<number>): string[] => {
    if (seen.has(oid)) return [];
    seen.add(oid);
    return (viewDeps.get(oid) ?? []).flatMap(({ ref }) => {
      const t = ts.all.get(ref);
      return t ? [qn(t)] : viewTenants(ref, seen);
    });
  };
  const fnDeps = groupBy(cat.functionDeps, (d) => d.fn);
  return cat.functions.map((fn) => {
    const body = analyzeBody(fn);
    const tables = new Set<string>();
    const views = new Set<string>();
    const reached = [...(fnDeps.get(fn.oid) ?? []).map((d) => byOid.get(d.ref)).filter((r): r is Relation => r !== undefined), ...[...body.names].flatMap(resolve)];
    for (const r of reached) {
      if (ts.all.has(r.oid)) tables.add(qn(r));
      else if (r.kind === 'v' || r.kind === 'm') {
        const via = viewTenants(r.oid, new Set());
        if (via.length > 0) views.add(qn(r));
        for (const t of via) tables.add(t);
      }
    }
    const writes = [...body.writes].flatMap(resolve).filter((r) => r.kind === 'r' || r.kind === 'p' || r.kind === 'f');
    return { fn, body, tables: [...tables], throughViews: [...views], writes };
  });
}
