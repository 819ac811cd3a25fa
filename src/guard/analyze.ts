import { parseSql as parseSync, scanSql as scanSync } from './parser.ts';
import type { Schema } from '../schema/declare.ts';

/** The parse tree is the parser's JSON: nodes are `{ KindName: body }` wrappers; bodies are plain objects. */
type Node = Record<string, any>;

/** What the verifier found out about one statement text. Cached by text; independent of the tenant. */
export type Analysis =
  | {
      readonly ok: true;
      /** 1-based numbers of the `$n` parameters that must equal the current tenant id at run time. */
      readonly tenantParams: readonly number[];
      readonly kind: string;
    }
  | {
      readonly ok: false;
      readonly reason: string;
      /** The tenant table the refusal is about, when there is one. */
      readonly table?: string;
      /** 0-based character offset in the statement text. */
      readonly location?: number;
    };

export interface AnalyzerConfig {
  readonly schema: Schema;
  readonly safeFunctions: ReadonlySet<string>;
  readonly safeOperators: ReadonlySet<string>;
  /** Extra relations (views with security_invoker, reference tables) treated like global tables. */
  readonly globalRelations: ReadonlySet<string>;
}

class Refusal extends Error {
  readonly table: string | undefined;
  readonly location: number | undefined;
  constructor(reason: string, location?: number, table?: string) {
    super(reason);
    this.location = location;
    this.table = table;
  }
}

/** Which values a column of a derived relation always carries: the current tenant (given these params hold). */
interface Pin {
  readonly params: readonly number[];
}

interface OutCol {
  readonly name: string;
  readonly pin: Pin | undefined;
}

/** The columns a query produces, or null when they cannot be known (SELECT * over a function, ...). */
type Output = OutCol[] | null;

type RteKind = 'tenant' | 'global' | 'derived' | 'function' | 'pseudo';

interface Rte {
  readonly id: number;
  readonly name: string;
  readonly kind: RteKind;
  readonly relname: string;
  readonly location: number;
  /** Column names; null = unknown. */
  columns: Map<string, Pin | undefined> | null;
  /** Ordered output, for `*` expansion; null = unknown. */
  ordered: string[] | null;
  /** Set by the solver for tenant relations; pseudo relations (excluded, old/new) are born constrained. */
  constrained: boolean;
  /** A lateral subquery or function whose analysis waits until the level's constraints are known. */
  deferred?: () => void;
}

interface Level {
  readonly rtes: Rte[];
  readonly parent: Level | null;
}

interface CteInfo {
  output: Output;
}

interface CteScope {
  readonly names: Map<string, CteInfo>;
  readonly parent: CteScope | null;
}

/** A place where a qualifier filters rows: the WHERE clause, a join's ON, a MERGE clause condition. */
interface Position {
  readonly conjuncts: Atom[];
  /** The qualifier itself, walked for allow-lists and sub-queries. */
  readonly source: Node | undefined;
  /** The relations whose every visible row satisfies the qualifier. */
  readonly constrainable: ReadonlySet<number>;
  /** Extra tenant-column equalities from JOIN ... USING (tenant_id). */
  readonly usingEdges: Array<[number, number]>;
}

// The tenant key types (uuid, bigint = int8, text) and varchar: a cast of the canonical id that keeps its value.
const PARAM_CAST_TYPES = new Set(['uuid', 'int8', 'text', 'varchar']);
const CANONICAL_IDENT = /^[a-z_][a-z0-9_$]*$/;
const SETTING_FUNCTIONS = new Set(['set_config', 'current_setting']);

function kindOf(node: Node): string {
  for (const k in node) return k;
  throw new Refusal('empty parse node');
}

function bodyOf(node: Node): Node {
  return node[kindOf(node)] as Node;
}

function str(node: Node | undefined): string | undefined {
  return node && 'String' in node ? (node.String.sval as string) : undefined;
}

function names(list: Node[] | undefined): string[] {
  return (list ?? []).map((n) => str(n) ?? '');
}

export class Analyzer {
  readonly #config: AnalyzerConfig;
  readonly #tenantColumn: string;
  #nextId = 0;
  #params = new Set<number>();

  constructor(config: AnalyzerConfig) {
    this.#config = config;
    this.#tenantColumn = config.schema.tenantColumn;
  }

  analyze(sql: string): Analysis {
    this.#params = new Set();
    this.#nextId = 0;
    try {
      let parsed: Node;
      try {
        parsed = parseSync(sql) as unknown as Node;
      } catch (err) {
        const pos = (err as { sqlDetails?: { cursorPosition?: number } }).sqlDetails?.cursorPosition;
        throw new Refusal(`the statement does not parse: ${(err as Error).message}`, pos);
      }
      const stmts = (parsed.stmts ?? []) as Node[];
      if (stmts.length === 0) throw new Refusal('empty statement');
      if (stmts.length > 1) {
        throw new Refusal(`${stmts.length} statements in one string; send one statement at a time`, stmts[1]?.stmt_location ?? undefined);
      }
      if (/u&"/i.test(sql)) this.#checkUnicodeIdentifiers(sql);
      const stmt = stmts[0]?.stmt as Node;
      const kind = kindOf(stmt);
      this.#statement(stmt, null, null);
      return Object.freeze({ ok: true as const, tenantParams: Object.freeze([...this.#params].sort((a, b) => a - b)), kind });
    } catch (caught) {
      // A tree shape the verifier did not expect is a refusal too (fail closed), not a crash.
      const err = caught instanceof Refusal ? caught : new Refusal(`the verifier could not analyse this statement (${(caught as Error)?.message ?? String(caught)})`);
      const a: { ok: false; reason: string; table?: string; location?: number } = { ok: false, reason: err.message };
      if (err.table !== undefined) a.table = err.table;
      if (err.location !== undefined) a.location = err.location;
      return Object.freeze(a);
    }
  }

  /**
   * Names are compared exactly as PostgreSQL folds them, so quoting cannot make the verifier see another table or
   * column. Quoted names that no unquoted name folds to ("Invoices", "a b") are refused where they name objects
   * found through the catalog (relations, functions, types); as column names and aliases they are harmless
   * (query builders emit "camelCase" aliases). Unicode escapes are refused outright: nobody needs them.
   */
  #checkUnicodeIdentifiers(sql: string): void {
    for (const t of scanSync(sql).tokens) {
      if (/^u&"/i.test(t.text)) throw new Refusal('Unicode-escaped identifiers (U&"...") are refused', t.start);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // statements

  #statement(stmt: Node, outer: Level | null, ctes: CteScope | null): Output {
    const kind = kindOf(stmt);
    const body = bodyOf(stmt);
    switch (kind) {
      case 'SelectStmt':
        return this.#select(body, outer, ctes);
      case 'InsertStmt':
        return this.#insert(body, outer, ctes);
      case 'UpdateStmt':
        return this.#update(body, outer, ctes);
      case 'DeleteStmt':
        return this.#delete(body, outer, ctes);
      case 'MergeStmt':
        return this.#merge(body, outer, ctes);
      case 'TransactionStmt': {
        // Savepoints are what query builders send for nested transactions; they cannot widen the scope.
        const k = body.kind as string;
        if (outer === null && (k === 'TRANS_STMT_SAVEPOINT' || k === 'TRANS_STMT_RELEASE' || k === 'TRANS_STMT_ROLLBACK_TO')) return [];
        throw new Refusal('transaction control (BEGIN/COMMIT/ROLLBACK) is managed by tenantwall, not by statements', body.location);
      }
      default:
        throw new Refusal(refusedStatement(kind), body?.location);
    }
  }

  #with(withClause: Node | undefined, outer: Level | null, ctes: CteScope | null): CteScope | null {
    if (!withClause) return ctes;
    const scope: CteScope = { names: new Map(), parent: ctes };
    const list = (withClause.ctes ?? []) as Node[];
    if (withClause.recursive) {
      // Every name is visible in every body; until analysed, a reference knows nothing (no pinned column).
      for (const c of list) scope.names.set(c.CommonTableExpr.ctename, { output: null });
    }
    for (const c of list) {
      const cte = c.CommonTableExpr as Node;
      if (cte.search_clause || cte.cycle_clause) throw new Refusal('SEARCH/CYCLE clauses are not supported', cte.location);
      const colnames = names(cte.aliascolnames);
      if (withClause.recursive && this.#recursiveCte(cte, colnames, outer, scope)) continue;
      // Non-recursive: `scope` holds only the CTEs before this one, so the body's own name means the table.
      const out = renameOutput(this.#statement(cte.ctequery, outer, scope), colnames);
      scope.names.set(cte.ctename, { output: out });
    }
    return scope;
  }

  /**
   * `base UNION [ALL] step`: assume the self-reference carries the tenant in the columns where `base` does, and
   * keep the assumption only if `step` then produces the tenant in those same columns. By induction over the
   * iterations every row of the CTE has them. Returns false (nothing assumed) when that cannot be shown.
   */
  #recursiveCte(cte: Node, colnames: string[], outer: Level | null, scope: CteScope): boolean {
    const sel = cte.ctequery?.SelectStmt as Node | undefined;
    if (!sel || !sel.op || sel.op === 'SETOP_NONE' || sel.withClause) return false;
    const params = new Set(this.#params);
    let base: Output;
    try {
      base = renameOutput(this.#select(sel.larg, outer, scope), colnames);
    } catch (err) {
      if (err instanceof Refusal) return false;
      throw err;
    }
    if (!base?.some((c) => c.pin)) {
      this.#params = params;
      return false;
    }
    scope.names.set(cte.ctename, { output: base });
    try {
      const out = renameOutput(this.#statement(cte.ctequery, outer, scope), colnames);
      if (out && base.every((c, i) => !c.pin || out[i]?.pin)) {
        scope.names.set(cte.ctename, { output: out });
        return true;
      }
    } catch (err) {
      if (!(err instanceof Refusal)) throw err;
    }
    this.#params = params;
    scope.names.set(cte.ctename, { output: null });
    return false;
  }

  #select(sel: Node, outer: Level | null, ctesIn: CteScope | null): Output {
    const ctes = this.#with(sel.withClause, outer, ctesIn);
    if (sel.intoClause) throw new Refusal('SELECT ... INTO creates a table (DDL)', sel.intoClause.rel?.location);
    const op = sel.op as string | undefined;
    if (op && op !== 'SETOP_NONE') {
      // Every arm of UNION/INTERSECT/EXCEPT is a query of its own and is checked on its own.
      const l = this.#select(sel.larg, outer, ctes);
      const r = this.#select(sel.rarg, outer, ctes);
      const empty: Level = { rtes: [], parent: outer };
      for (const s of sel.sortClause ?? []) this.#expr(s.SortBy.node, empty, ctes);
      this.#expr(sel.limitCount, empty, ctes);
      this.#expr(sel.limitOffset, empty, ctes);
      if (l === null || r === null) return null;
      return l.map((c, i) => ({ name: c.name, pin: c.pin && r[i]?.pin ? { params: [...c.pin.params, ...r[i].pin.params] } : undefined }));
    }
    if (sel.valuesLists) {
      const level: Level = { rtes: [], parent: outer };
      const rows = (sel.valuesLists as Node[]).map((l) => l.List.items as Node[]);
      for (const row of rows) for (const e of row) this.#expr(e, level, ctes);
      const width = rows[0]?.length ?? 0;
      return Array.from({ length: width }, (_, i) => {
        const params = rows.map((row) => this.#tenantParam(row[i]));
        const pinned = params.every((p) => p !== undefined);
        return { name: `column${i + 1}`, pin: pinned ? { params: params as number[] } : undefined };
      });
    }
    const level: Level = { rtes: [], parent: outer };
    const positions: Position[] = [];
    for (const item of sel.fromClause ?? []) this.#fromItem(item, level, outer, ctes, positions);
    if (sel.whereClause) positions.push(this.#position(sel.whereClause, allIds(level)));
    this.#solve(level, positions);
    this.#requireConstrained(level);
    for (const r of level.rtes) r.deferred?.();
    // Now every expression: function and operator allow-lists, and sub-queries (which may use this level).
    for (const p of positions) this.#expr(p.source, level, ctes);
    for (const t of sel.targetList ?? []) this.#expr(t.ResTarget.val, level, ctes);
    for (const g of sel.groupClause ?? []) this.#expr(g, level, ctes);
    this.#expr(sel.havingClause, level, ctes);
    for (const d of sel.distinctClause ?? []) if (d && Object.keys(d).length > 0) this.#expr(d, level, ctes);
    for (const w of sel.windowClause ?? []) this.#windowDef(w.WindowDef, level, ctes);
    for (const s of sel.sortClause ?? []) this.#expr(s.SortBy.node, level, ctes);
    this.#expr(sel.limitCount, level, ctes);
    this.#expr(sel.limitOffset, level, ctes);
    for (const l of sel.lockingClause ?? []) {
      for (const r of l.LockingClause.lockedRels ?? []) if (r.RangeVar?.schemaname) throw new Refusal('schema-qualified name in FOR UPDATE OF', r.RangeVar.location);
    }
    return this.#output(sel.targetList ?? [], level);
  }

  #insert(ins: Node, outer: Level | null, ctesIn: CteScope | null): Output {
    const ctes = this.#with(ins.withClause, outer, ctesIn);
    const target = this.#targetRte(ins.relation);
    const cols = ((ins.cols ?? []) as Node[]).map((c) => {
      const rt = c.ResTarget as Node;
      if (rt.indirection?.length) throw new Refusal('assignment to a sub-field or array element in INSERT', rt.location);
      return rt.name as string;
    });
    const tenantIdx = cols.indexOf(this.#tenantColumn);
    const isTenant = target.kind === 'tenant';
    if (isTenant) {
      if (cols.length === 0) {
        throw new Refusal(`INSERT INTO ${target.relname} needs an explicit column list including ${this.#tenantColumn}`, target.location, target.relname);
      }
      if (tenantIdx < 0) throw new Refusal(`INSERT INTO ${target.relname} does not set ${this.#tenantColumn}`, target.location, target.relname);
      if (cols.lastIndexOf(this.#tenantColumn) !== tenantIdx) throw new Refusal(`${this.#tenantColumn} is listed twice`, target.location, target.relname);
    }
    const src = ins.selectStmt as Node | undefined;
    if (!src) {
      if (isTenant) throw new Refusal(`INSERT ... DEFAULT VALUES cannot set ${this.#tenantColumn}`, target.location, target.relname);
    } else {
      const sel = src.SelectStmt as Node;
      const isPlainValues = sel.valuesLists && !sel.withClause && (!sel.op || sel.op === 'SETOP_NONE');
      if (isPlainValues && isTenant) {
        const level: Level = { rtes: [], parent: outer };
        for (const l of sel.valuesLists as Node[]) {
          const row = l.List.items as Node[];
          const v = row[tenantIdx];
          const p = this.#tenantParam(v);
          if (p === undefined) {
            throw new Refusal(`${this.#tenantColumn} must be given as the tenant parameter ($n)`, locationOf(v) ?? target.location, target.relname);
          }
          this.#params.add(p);
          for (const e of row) this.#expr(e, level, ctes);
        }
      } else {
        const out = this.#select(sel, null, ctes);
        if (isTenant) {
          const col = out?.[tenantIdx];
          if (!col?.pin) {
            throw new Refusal(
              `INSERT ... SELECT must take ${this.#tenantColumn} from the tenant parameter or from a tenant-constrained ${this.#tenantColumn}`,
              target.location,
              target.relname,
            );
          }
          for (const p of col.pin.params) this.#params.add(p);
        }
      }
    }
    target.constrained = true; // the inserted rows carry the tenant (checked above)
    const level: Level = { rtes: [target], parent: outer };
    const oc = ins.onConflictClause as Node | undefined;
    if (oc) {
      if (oc.infer?.whereClause) this.#expr(oc.infer.whereClause, level, ctes);
      if (oc.action === 'ONCONFLICT_UPDATE') {
        if (isTenant) {
          const elems = ((oc.infer?.indexElems ?? []) as Node[]).map((e) => e.IndexElem?.name as string | undefined);
          // Only a conflict on an index that includes tenant_id guarantees the existing row is this tenant's.
          if (oc.infer?.conname || !elems.includes(this.#tenantColumn)) {
            throw new Refusal(
              `ON CONFLICT ... DO UPDATE on ${target.relname} must name its conflict columns including ${this.#tenantColumn}`,
              oc.location,
              target.relname,
            );
          }
        }
        const excluded = this.#pseudo('excluded', target, target.location);
        const ocLevel: Level = { rtes: [target, excluded], parent: outer };
        this.#assignments(oc.targetList ?? [], ocLevel, ctes, target);
        this.#expr(oc.whereClause, ocLevel, ctes);
      }
    }
    return this.#returning(ins.returningClause ?? { exprs: ins.returningList }, target, level, ctes);
  }

  #update(upd: Node, outer: Level | null, ctesIn: CteScope | null): Output {
    const ctes = this.#with(upd.withClause, outer, ctesIn);
    const target = this.#targetRte(upd.relation);
    const level: Level = { rtes: [target], parent: outer };
    const positions: Position[] = [];
    for (const item of upd.fromClause ?? []) this.#fromItem(item, level, outer, ctes, positions);
    if (upd.whereClause) positions.push(this.#position(upd.whereClause, allIds(level)));
    this.#solve(level, positions);
    this.#requireConstrained(level);
    for (const r of level.rtes) r.deferred?.();
    for (const p of positions) this.#expr(p.source, level, ctes);
    this.#assignments(upd.targetList ?? [], level, ctes, target);
    return this.#returning(upd.returningClause ?? { exprs: upd.returningList }, target, level, ctes);
  }

  #delete(del: Node, outer: Level | null, ctesIn: CteScope | null): Output {
    const ctes = this.#with(del.withClause, outer, ctesIn);
    const target = this.#targetRte(del.relation);
    const level: Level = { rtes: [target], parent: outer };
    const positions: Position[] = [];
    for (const item of del.usingClause ?? []) this.#fromItem(item, level, outer, ctes, positions);
    if (del.whereClause) positions.push(this.#position(del.whereClause, allIds(level)));
    this.#solve(level, positions);
    this.#requireConstrained(level);
    for (const r of level.rtes) r.deferred?.();
    for (const p of positions) this.#expr(p.source, level, ctes);
    return this.#returning(del.returningClause ?? { exprs: del.returningList }, target, level, ctes);
  }

  /**
   * MERGE joins target and source like an outer join whose shape depends on the WHEN clauses, so each action is
   * checked on its own: MATCHED sees both sides through ON and its condition, NOT MATCHED [BY TARGET] sees only
   * source rows (ON filters nothing there), NOT MATCHED BY SOURCE sees only target rows.
   */
  #merge(m: Node, outer: Level | null, ctesIn: CteScope | null): Output {
    const ctes = this.#with(m.withClause, outer, ctesIn);
    const target = this.#targetRte(m.relation);
    const level: Level = { rtes: [target], parent: outer };
    const innerPositions: Position[] = [];
    const sourceIds = this.#fromItem(m.sourceRelation, level, outer, ctes, innerPositions);
    const all = allIds(level);
    const srcSet = new Set(sourceIds);
    const tgtSet = new Set([target.id]);
    const on = this.#position(m.joinCondition, all);
    const clauses = (m.mergeWhenClauses ?? []) as Node[];
    const constrainedIn = new Set<number>();
    for (const c of clauses) {
      const w = c.MergeWhenClause as Node;
      if (w.commandType === 'CMD_NOTHING') continue;
      let positions: Position[];
      let involved: Set<number>;
      if (w.matchKind === 'MERGE_WHEN_MATCHED') {
        positions = [...innerPositions, on, ...(w.condition ? [this.#position(w.condition, all)] : [])];
        involved = new Set(all);
      } else if (w.matchKind === 'MERGE_WHEN_NOT_MATCHED_BY_SOURCE') {
        positions = [...innerPositions, ...(w.condition ? [this.#position(w.condition, tgtSet)] : [])];
        involved = tgtSet;
      } else {
        positions = [...innerPositions, ...(w.condition ? [this.#position(w.condition, srcSet)] : [])];
        involved = srcSet;
      }
      for (const r of level.rtes) if (r.kind === 'tenant') r.constrained = false;
      this.#solve(level, positions);
      for (const r of level.rtes) {
        if (r.kind === 'tenant' && involved.has(r.id) && !r.constrained) {
          const what = w.matchKind === 'MERGE_WHEN_MATCHED' ? 'WHEN MATCHED' : w.matchKind === 'MERGE_WHEN_NOT_MATCHED_BY_SOURCE' ? 'WHEN NOT MATCHED BY SOURCE' : 'WHEN NOT MATCHED';
          throw new Refusal(`${r.relname} (as ${r.name}) is not constrained to the tenant for the ${what} action`, r.location, r.relname);
        }
        if (r.constrained) constrainedIn.add(r.id);
      }
      if (w.commandType === 'CMD_INSERT' && target.kind === 'tenant') {
        const cols = ((w.targetList ?? []) as Node[]).map((t) => t.ResTarget.name as string);
        const idx = cols.indexOf(this.#tenantColumn);
        if (idx < 0) throw new Refusal(`MERGE ... INSERT into ${target.relname} does not set ${this.#tenantColumn}`, target.location, target.relname);
        const v = (w.values ?? [])[idx] as Node | undefined;
        const p = this.#tenantParam(v);
        if (p !== undefined) this.#params.add(p);
        else {
          const pin = this.#pinnedColumn(v, level);
          if (!pin) throw new Refusal(`MERGE ... INSERT must take ${this.#tenantColumn} from the tenant parameter`, locationOf(v) ?? target.location, target.relname);
          for (const q of pin.params) this.#params.add(q);
        }
      }
    }
    // Anything the clauses established holds for the rows that RETURNING and expressions can see.
    for (const r of level.rtes) if (r.kind === 'tenant') r.constrained = constrainedIn.has(r.id);
    for (const r of level.rtes) r.deferred?.();
    for (const p of innerPositions) this.#expr(p.source, level, ctes);
    this.#expr(m.joinCondition, level, ctes);
    for (const c of clauses) {
      const w = c.MergeWhenClause as Node;
      this.#expr(w.condition, level, ctes);
      if (w.commandType === 'CMD_UPDATE') this.#assignments(w.targetList ?? [], level, ctes, target);
      for (const v of w.values ?? []) this.#expr(v, level, ctes);
    }
    return this.#returning(m.returningClause ?? { exprs: m.returningList }, target, level, ctes);
  }

  #assignments(targetList: Node[], level: Level, ctes: CteScope | null, target: Rte): void {
    for (const t of targetList) {
      const rt = t.ResTarget as Node;
      if (rt.name === this.#tenantColumn && target.kind === 'tenant') {
        const p = rt.indirection?.length ? undefined : this.#tenantParam(rt.val);
        if (p === undefined) throw new Refusal(`assignment to ${this.#tenantColumn} would move rows to another tenant`, rt.location, target.relname);
        this.#params.add(p);
      }
      this.#expr(rt.val, level, ctes);
    }
  }

  #returning(clause: Node | undefined, target: Rte, level: Level, ctes: CteScope | null): Output {
    const exprs = (clause?.exprs ?? []) as Node[];
    if (clause?.options?.length) throw new Refusal('RETURNING WITH (OLD/NEW AS ...) is not supported', target.location);
    if (exprs.length === 0) return [];
    // PostgreSQL 18: old.* and new.* name the target row before and after the change.
    const rl: Level = { rtes: [...level.rtes, this.#pseudo('old', target, target.location), this.#pseudo('new', target, target.location)], parent: level.parent };
    for (const e of exprs) this.#expr(e.ResTarget.val, rl, ctes);
    return this.#output(exprs, level);
  }

  // ---------------------------------------------------------------------------------------------------------
  // relations

  #relationRte(rv: Node, ctes: CteScope | null, allowCte: boolean): Rte {
    const alias = rv.alias as Node | undefined;
    const relname = rv.relname as string;
    if (rv.catalogname || rv.schemaname) {
      throw new Refusal(
        `schema-qualified name ${[rv.catalogname, rv.schemaname, relname].filter(Boolean).join('.')} is refused: tenantwall resolves only the declared, unqualified table names`,
        rv.location,
        this.#config.schema.isTenantTable(relname) ? relname : undefined,
      );
    }
    if (!CANONICAL_IDENT.test(relname)) {
      throw new Refusal(`quoted identifier "${relname}" is refused as a relation name: only names that mean the same unquoted are allowed`, rv.location);
    }
    const name = (alias?.aliasname as string | undefined) ?? relname;
    if (allowCte) {
      const cte = lookupCte(ctes, relname);
      if (cte) {
        const out = renameOutput(cte.output, names(alias?.colnames));
        return this.#derivedRte(name, out, rv.location, 'derived', relname);
      }
    }
    const decl = this.#config.schema.table(relname);
    if (alias?.colnames?.length && (decl || this.#config.globalRelations.has(relname))) {
      // FROM invoices AS i(tenant_id) would rename the first column to tenant_id.
      throw new Refusal(`column aliases on table ${relname} are refused (they can rename another column to ${this.#tenantColumn})`, rv.location, relname);
    }
    if (decl?.kind === 'tenant') {
      const cols = new Map<string, Pin | undefined>([[this.#tenantColumn, undefined]]);
      for (const c of Object.keys(decl.columns)) cols.set(c, undefined);
      return { id: this.#nextId++, name, kind: 'tenant', relname, location: rv.location, columns: cols, ordered: [...cols.keys()], constrained: false };
    }
    if (decl || this.#config.globalRelations.has(relname)) {
      const cols = decl ? new Map(Object.keys(decl.columns).map((c) => [c, undefined] as [string, undefined])) : null;
      return { id: this.#nextId++, name, kind: 'global', relname, location: rv.location, columns: cols, ordered: cols ? [...cols.keys()] : null, constrained: false };
    }
    throw new Refusal(
      `relation ${relname} is not declared in the schema (views, partitions and undeclared tables might expose other tenants' rows)`,
      rv.location,
      relname,
    );
  }

  /** INSERT/UPDATE/DELETE/MERGE targets are real tables: a CTE of the same name does not shadow them. */
  #targetRte(rv: Node): Rte {
    return this.#relationRte(rv, null, false);
  }

  #derivedRte(name: string, out: Output, location: number, kind: RteKind, relname: string): Rte {
    const columns = out === null ? null : new Map(out.map((c) => [c.name, c.pin] as [string, Pin | undefined]));
    return { id: this.#nextId++, name, kind, relname, location, columns, ordered: out ? out.map((c) => c.name) : null, constrained: false };
  }

  #pseudo(name: string, target: Rte, location: number): Rte {
    const cols = new Map<string, Pin | undefined>();
    for (const c of target.columns?.keys() ?? []) cols.set(c, c === this.#tenantColumn && target.kind === 'tenant' ? { params: [] } : undefined);
    return { id: this.#nextId++, name, kind: 'pseudo', relname: target.relname, location, columns: target.columns ? cols : null, ordered: target.ordered, constrained: true };
  }

  /** Adds the relations of one FROM item to `level`; returns their ids. */
  #fromItem(item: Node, level: Level, outer: Level | null, ctes: CteScope | null, positions: Position[]): number[] {
    const kind = kindOf(item);
    const b = item[kind] as Node;
    switch (kind) {
      case 'RangeVar': {
        const rte = this.#relationRte(b, ctes, true);
        this.#add(level, rte);
        return [rte.id];
      }
      case 'RangeTableSample': {
        const ids = this.#fromItem(b.relation, level, outer, ctes, positions);
        const method = names(b.method).join('.');
        if (method !== 'bernoulli' && method !== 'system') throw new Refusal(`TABLESAMPLE method ${method} is not allowed`, b.location);
        for (const a of b.args ?? []) this.#expr(a, { rtes: [], parent: outer }, ctes);
        this.#expr(b.repeatable, { rtes: [], parent: outer }, ctes);
        return ids;
      }
      case 'RangeSubselect': {
        const aliasName = (b.alias?.aliasname as string | undefined) ?? '';
        const colnames = names(b.alias?.colnames);
        if (b.lateral) {
          const rte = this.#derivedRte(aliasName, null, locationOf(b.subquery) ?? 0, 'derived', aliasName);
          rte.deferred = () => {
            const out = renameOutput(this.#statement(b.subquery, level, ctes), colnames);
            rte.columns = out === null ? null : new Map(out.map((c) => [c.name, c.pin]));
            rte.ordered = out ? out.map((c) => c.name) : null;
          };
          this.#add(level, rte);
          return [rte.id];
        }
        const out = renameOutput(this.#statement(b.subquery, outer, ctes), colnames);
        const rte = this.#derivedRte(aliasName, out, locationOf(b.subquery) ?? 0, 'derived', aliasName);
        this.#add(level, rte);
        return [rte.id];
      }
      case 'RangeFunction': {
        const colnames = names(b.alias?.colnames);
        const coldefs = ((b.coldeflist ?? []) as Node[]).map((c) => c.ColumnDef?.colname as string);
        const cols = colnames.length > 0 ? colnames : coldefs.length > 0 ? coldefs : null;
        const aliasName = (b.alias?.aliasname as string | undefined) ?? '';
        const rte: Rte = {
          id: this.#nextId++,
          name: aliasName,
          kind: 'function',
          relname: aliasName,
          location: 0,
          columns: cols ? new Map(cols.map((c) => [c, undefined])) : null,
          ordered: cols,
          constrained: false,
        };
        const fnLevel: Level = b.lateral ? level : { rtes: [], parent: outer };
        rte.deferred = () => {
          for (const f of b.functions ?? []) for (const e of f.List?.items ?? []) if (e && Object.keys(e).length > 0 && kindOf(e) !== 'List') this.#expr(e, fnLevel, ctes);
        };
        this.#add(level, rte);
        return [rte.id];
      }
      case 'JoinExpr': {
        if (b.alias || b.join_using_alias) throw new Refusal('an alias on a JOIN hides the names inside it; remove it', locationOf(b.quals) ?? 0);
        const l = this.#fromItem(b.larg, level, outer, ctes, positions);
        const r = this.#fromItem(b.rarg, level, outer, ctes, positions);
        const jt = b.jointype as string;
        const constrainable =
          jt === 'JOIN_INNER' ? [...l, ...r] : jt === 'JOIN_LEFT' ? r : jt === 'JOIN_RIGHT' ? l : jt === 'JOIN_FULL' ? [] : null;
        if (constrainable === null) throw new Refusal(`unsupported join type ${jt}`);
        const set = new Set(constrainable);
        const pos = this.#position(b.quals, set);
        for (const u of names(b.usingClause)) {
          if (u !== this.#tenantColumn) continue;
          const a = uniqueWithColumn(level, l, u);
          const c = uniqueWithColumn(level, r, u);
          if (a !== undefined && c !== undefined) pos.usingEdges.push([a, c]);
        }
        positions.push(pos);
        return [...l, ...r];
      }
      default:
        throw new Refusal(`${kind} in FROM is not supported`, b?.location);
    }
  }

  #add(level: Level, rte: Rte): void {
    if (rte.name !== '' && level.rtes.some((r) => r.name === rte.name)) {
      throw new Refusal(`table name ${rte.name} is used twice at one level; give each reference its own alias`, rte.location, rte.kind === 'tenant' ? rte.relname : undefined);
    }
    level.rtes.push(rte);
  }

  #requireConstrained(level: Level): void {
    for (const r of level.rtes) {
      if (r.kind === 'tenant' && !r.constrained) {
        const as = r.name !== r.relname ? ` (as ${r.name})` : '';
        throw new Refusal(
          `${r.relname}${as} is not constrained to the tenant: add ${r.name}.${this.#tenantColumn} = $n as a conjunct of its WHERE (or of the ON of the join that makes it optional)`,
          r.location,
          r.relname,
        );
      }
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // constraints

  #position(qual: Node | undefined, constrainable: ReadonlySet<number>): Position {
    const conjuncts: Atom[] = [];
    if (qual) collectConjuncts(qual, false, conjuncts);
    return { conjuncts, source: qual, constrainable, usingEdges: [] };
  }

  /**
   * Marks tenant relations of `level` constrained: a conjunct `x.tenant_id = $n` where x's rows are filtered by
   * the position, then equalities `x.tenant_id = y.tenant_id` with y constrained, up to a fixpoint.
   */
  #solve(level: Level, positions: Position[]): void {
    const edges: Array<{ x: Rte; src: Rte | Pin; srcRte: Rte | undefined; at: Position }> = [];
    for (const p of positions) {
      for (const atom of p.conjuncts) {
        const l = this.#operand(atom.l, level);
        const r = this.#operand(atom.r, level);
        for (const [a, b] of [
          [l, r],
          [r, l],
        ] as const) {
          if (a?.type !== 'col' || a.depth !== 0 || a.rte.kind !== 'tenant' || !p.constrainable.has(a.rte.id)) continue;
          if (b?.type === 'param') {
            this.#params.add(b.n);
            a.rte.constrained = true;
          } else if (b?.type === 'col') {
            if (b.pin) edges.push({ x: a.rte, src: b.pin, srcRte: undefined, at: p });
            else if (b.rte.kind === 'tenant') edges.push({ x: a.rte, src: b.rte, srcRte: b.rte, at: p });
          }
        }
      }
      for (const [a, b] of p.usingEdges) {
        const ra = level.rtes.find((r) => r.id === a) as Rte;
        const rb = level.rtes.find((r) => r.id === b) as Rte;
        for (const [x, y] of [
          [ra, rb],
          [rb, ra],
        ] as const) {
          if (x.kind !== 'tenant' || !p.constrainable.has(x.id)) continue;
          const pin = y.columns?.get(this.#tenantColumn);
          if (y.kind === 'tenant') edges.push({ x, src: y, srcRte: y, at: p });
          else if (pin) edges.push({ x, src: pin, srcRte: undefined, at: p });
        }
      }
    }
    let changed = true;
    while (changed) {
      changed = false;
      for (const e of edges) {
        if (e.x.constrained) continue;
        const ok = e.srcRte ? e.srcRte.constrained : true;
        if (!ok) continue;
        if (!e.srcRte) for (const q of (e.src as Pin).params) this.#params.add(q);
        e.x.constrained = true;
        changed = true;
      }
    }
  }

  /** Classifies one side of an equality: the tenant parameter, or a tenant column of a relation in scope. */
  #operand(node: Node, level: Level): { type: 'param'; n: number } | { type: 'col'; rte: Rte; depth: number; pin: Pin | undefined } | undefined {
    const n = this.#tenantParam(node);
    if (n !== undefined) return { type: 'param', n };
    const ref = this.#resolveColumn(node, level);
    if (!ref) return undefined;
    const { rte, depth } = ref;
    if (rte.kind === 'tenant') {
      if (ref.column !== this.#tenantColumn) return undefined;
      // An outer relation counts only once its own level proved it constrained.
      if (depth > 0 && !rte.constrained) return undefined;
      return { type: 'col', rte, depth, pin: depth > 0 ? { params: [] } : undefined };
    }
    // A derived column that always carries the tenant counts whatever it is called (SELECT tenant_id AS t ...).
    const pin = rte.columns?.get(ref.column);
    if (pin) return { type: 'col', rte, depth, pin };
    return undefined;
  }

  /** `$n`, optionally cast to uuid/bigint/text/varchar (no typmod: `$1::varchar(1)` would compare a prefix). */
  #tenantParam(node: Node | undefined): number | undefined {
    let cur = node;
    while (cur && 'TypeCast' in cur) {
      const tc = cur.TypeCast as Node;
      const tn = names(tc.typeName?.names);
      const t = tn.length === 2 && tn[0] === 'pg_catalog' ? tn[1] : tn.length === 1 ? tn[0] : undefined;
      if (!t || !PARAM_CAST_TYPES.has(t) || tc.typeName?.typmods?.length || tc.typeName?.arrayBounds?.length) return undefined;
      cur = tc.arg;
    }
    if (cur && 'ParamRef' in cur) return cur.ParamRef.number as number;
    return undefined;
  }

  #pinnedColumn(node: Node | undefined, level: Level): Pin | undefined {
    const o = node ? this.#operand(node, level) : undefined;
    if (o?.type !== 'col') return undefined;
    if (o.pin) return o.pin;
    return o.rte.constrained ? { params: [] } : undefined;
  }

  /**
   * PostgreSQL's name resolution, fail-closed: `q.col` finds the innermost level with a relation named q;
   * a bare `col` is resolved only at the innermost level and only when exactly one relation there certainly has
   * it (if another might have it too, PostgreSQL raises "ambiguous", which is harmless).
   */
  #resolveColumn(node: Node, level: Level): { rte: Rte; depth: number; column: string } | undefined {
    if (!node || !('ColumnRef' in node)) return undefined;
    const f = node.ColumnRef.fields as Node[];
    if (f.length === 2) {
      const q = str(f[0]);
      const col = str(f[1]);
      if (q === undefined || col === undefined) return undefined;
      let depth = 0;
      for (let l: Level | null = level; l; l = l.parent, depth++) {
        const hits = l.rtes.filter((r) => r.name === q);
        if (hits.length > 1) return undefined;
        const hit = hits[0];
        if (hit) return hit.columns === null || hit.columns.has(col) ? { rte: hit, depth, column: col } : undefined;
      }
      return undefined;
    }
    if (f.length === 1) {
      const col = str(f[0]);
      if (col === undefined) return undefined;
      const certain = level.rtes.filter((r) => r.columns?.has(col));
      if (certain.length === 1) return { rte: certain[0] as Rte, depth: 0, column: col };
    }
    return undefined;
  }

  #output(targetList: Node[], level: Level): Output {
    const out: OutCol[] = [];
    for (const t of targetList) {
      const rt = t.ResTarget as Node;
      const v = rt.val as Node;
      if ('ColumnRef' in v) {
        const f = v.ColumnRef.fields as Node[];
        const last = f[f.length - 1] as Node;
        if ('A_Star' in last) {
          const rtes = f.length === 1 ? level.rtes : level.rtes.filter((r) => r.name === str(f[0]));
          for (const r of rtes) {
            if (r.ordered === null) return null;
            for (const c of r.ordered) out.push({ name: c, pin: this.#pinOf(r, c) });
          }
          continue;
        }
        const ref = this.#resolveColumn(v, level);
        const name = (rt.name as string | undefined) ?? str(last) ?? '?column?';
        out.push({ name, pin: ref && ref.depth === 0 ? this.#pinOf(ref.rte, ref.column) : undefined });
        continue;
      }
      const p = this.#tenantParam(v);
      out.push({ name: (rt.name as string | undefined) ?? defaultName(v), pin: p !== undefined ? { params: [p] } : undefined });
    }
    return out;
  }

  #pinOf(r: Rte, column: string): Pin | undefined {
    if (r.kind === 'tenant') return column === this.#tenantColumn && r.constrained ? { params: [] } : undefined;
    if (r.kind === 'function') return undefined;
    return r.columns?.get(column);
  }

  // ---------------------------------------------------------------------------------------------------------
  // expressions: allow-lists, sub-queries, and a closed set of node kinds (anything unknown is refused)

  #expr(node: Node | undefined | null, level: Level, ctes: CteScope | null): void {
    if (!node) return;
    if (Array.isArray(node)) {
      for (const n of node) this.#expr(n, level, ctes);
      return;
    }
    const kind = kindOf(node);
    const b = node[kind] as Node;
    switch (kind) {
      case 'A_Const':
      case 'ParamRef':
      case 'SQLValueFunction':
      case 'SetToDefault':
      case 'A_Star':
      case 'String':
      case 'Integer':
      case 'Float':
      case 'Boolean':
        return;
      case 'ColumnRef': {
        const f = b.fields as Node[];
        if (f.length > 2) throw new Refusal('column references qualified with a schema are refused', b.location);
        return;
      }
      case 'A_Expr': {
        const op = names(b.name);
        if (op.length === 2 && op[0] !== 'pg_catalog') throw new Refusal(`operator OPERATOR(${op.join('.')}) is not allowed`, b.location);
        const sym = op[op.length - 1] ?? '';
        const fixedMeaning = b.kind === 'AEXPR_NULLIF' || (b.kind as string).startsWith('AEXPR_BETWEEN') || (b.kind as string).startsWith('AEXPR_NOT_BETWEEN');
        if (!fixedMeaning && !this.#config.safeOperators.has(sym)) throw new Refusal(`operator ${sym} is not allowed`, b.location);
        this.#expr(b.lexpr, level, ctes);
        this.#expr(b.rexpr, level, ctes);
        return;
      }
      case 'BoolExpr':
      case 'CoalesceExpr':
      case 'MinMaxExpr':
      case 'RowExpr':
      case 'GroupingFunc':
        this.#expr(b.args, level, ctes);
        return;
      case 'List':
        this.#expr(b.items, level, ctes);
        return;
      case 'A_ArrayExpr':
        this.#expr(b.elements, level, ctes);
        return;
      case 'NullTest':
      case 'BooleanTest':
      case 'NamedArgExpr':
        this.#expr(b.arg, level, ctes);
        return;
      case 'CollateClause':
        this.#expr(b.arg, level, ctes);
        return;
      case 'TypeCast': {
        const tn = names(b.typeName?.names);
        if (tn.length > 1 && tn[0] !== 'pg_catalog') throw new Refusal(`cast to ${tn.join('.')} is refused (schema-qualified type)`, b.location);
        for (const t of tn) if (!CANONICAL_IDENT.test(t)) throw new Refusal(`quoted identifier "${t}" is refused as a type name`, b.location);
        this.#expr(b.arg, level, ctes);
        return;
      }
      case 'CaseExpr':
        this.#expr(b.arg, level, ctes);
        for (const w of b.args ?? []) {
          this.#expr(w.CaseWhen.expr, level, ctes);
          this.#expr(w.CaseWhen.result, level, ctes);
        }
        this.#expr(b.defresult, level, ctes);
        return;
      case 'A_Indirection':
        this.#expr(b.arg, level, ctes);
        for (const i of b.indirection ?? []) {
          if ('A_Indices' in i) {
            this.#expr(i.A_Indices.lidx, level, ctes);
            this.#expr(i.A_Indices.uidx, level, ctes);
          }
        }
        return;
      case 'FuncCall':
        this.#checkFunctionName(b.funcname, b.location);
        this.#expr(b.args, level, ctes);
        for (const s of b.agg_order ?? []) this.#expr(s.SortBy.node, level, ctes);
        this.#expr(b.agg_filter, level, ctes);
        if (b.over) this.#windowDef(b.over, level, ctes);
        return;
      case 'SubLink':
        this.#expr(b.testexpr, level, ctes);
        this.#statement(b.subselect, level, ctes);
        return;
      case 'MultiAssignRef':
        this.#expr(b.source, level, ctes);
        return;
      case 'ResTarget':
        this.#expr(b.val, level, ctes);
        return;
      case 'SortBy':
        this.#expr(b.node, level, ctes);
        return;
      case 'GroupingSet':
        this.#expr(b.content, level, ctes);
        return;
      default:
        throw new Refusal(`${kind} expressions are not supported by the verifier`, b?.location);
    }
  }

  #windowDef(w: Node, level: Level, ctes: CteScope | null): void {
    this.#expr(w.partitionClause, level, ctes);
    for (const s of w.orderClause ?? []) this.#expr(s.SortBy.node, level, ctes);
    this.#expr(w.startOffset, level, ctes);
    this.#expr(w.endOffset, level, ctes);
  }

  #checkFunctionName(funcname: Node[] | undefined, location: number | undefined): void {
    const n = names(funcname);
    const name = n[n.length - 1] ?? '';
    if (n.length > 2 || (n.length === 2 && n[0] !== 'pg_catalog')) {
      throw new Refusal(`function ${n.join('.')} is refused (schema-qualified; only pg_catalog builtins may be qualified)`, location);
    }
    if (!CANONICAL_IDENT.test(name)) throw new Refusal(`quoted identifier "${name}" is refused as a function name`, location);
    if (SETTING_FUNCTIONS.has(name) && !this.#config.safeFunctions.has(name)) {
      throw new Refusal(`${name}() reads or changes settings such as the tenant setting and is refused in tenant scope`, location);
    }
    if (!this.#config.safeFunctions.has(name)) {
      throw new Refusal(`function ${name}() is not declared safe (functions can run SQL or bypass checks); add it to allowFunctions if it is`, location);
    }
  }
}

interface Atom {
  l: Node;
  r: Node;
}

/** Conjuncts as equality atoms, looking through AND, NOT(a <> b), NOT(a OR b) (De Morgan) and IN ($1). */
function collectConjuncts(node: Node, negated: boolean, out: Atom[]): void {
  if ('BoolExpr' in node) {
    const b = node.BoolExpr as Node;
    if (b.boolop === 'NOT_EXPR') return collectConjuncts(b.args[0], !negated, out);
    if ((b.boolop === 'AND_EXPR' && !negated) || (b.boolop === 'OR_EXPR' && negated)) {
      for (const a of b.args) collectConjuncts(a, negated, out);
    }
    return;
  }
  if ('A_Expr' in node) {
    const e = node.A_Expr as Node;
    const op = names(e.name);
    if (op.length !== 1) return;
    const sym = op[0];
    let atom: Atom | undefined;
    if (e.kind === 'AEXPR_OP' && ((sym === '=' && !negated) || (sym === '<>' && negated))) atom = { l: e.lexpr, r: e.rexpr };
    else if ((e.kind === 'AEXPR_NOT_DISTINCT' && !negated) || (e.kind === 'AEXPR_DISTINCT' && negated)) atom = { l: e.lexpr, r: e.rexpr };
    else if (e.kind === 'AEXPR_IN' && ((sym === '=' && !negated) || (sym === '<>' && negated))) {
      const items = e.rexpr?.List?.items as Node[] | undefined;
      if (items?.length === 1) atom = { l: e.lexpr, r: items[0] as Node };
    }
    if (atom) out.push(atom);
  }
}

function allIds(level: Level): Set<number> {
  return new Set(level.rtes.map((r) => r.id));
}

function uniqueWithColumn(level: Level, ids: number[], column: string): number | undefined {
  const hits = level.rtes.filter((r) => ids.includes(r.id) && r.columns?.has(column));
  return hits.length === 1 ? hits[0]?.id : undefined;
}

function lookupCte(scope: CteScope | null, name: string): CteInfo | undefined {
  for (let s = scope; s; s = s.parent) {
    const hit = s.names.get(name);
    if (hit) return hit;
  }
  return undefined;
}

function renameOutput(out: Output, colnames: string[]): Output {
  if (out === null || colnames.length === 0) return out;
  return out.map((c, i) => ({ name: colnames[i] ?? c.name, pin: c.pin }));
}

function defaultName(v: Node): string {
  if ('FuncCall' in v) {
    const n = names(v.FuncCall.funcname);
    return n[n.length - 1] ?? '?column?';
  }
  if ('TypeCast' in v) return defaultName(v.TypeCast.arg);
  return '?column?';
}

function locationOf(node: Node | undefined): number | undefined {
  if (!node) return undefined;
  const b = bodyOf(node);
  return typeof b?.location === 'number' ? b.location : undefined;
}

function refusedStatement(kind: string): string {
  const what: Record<string, string> = {
    CopyStmt: 'COPY (COPY bypasses row-level security and the guard)',
    TruncateStmt: 'TRUNCATE (it removes every tenant\'s rows and bypasses row-level security)',
    VariableSetStmt: 'SET/RESET (settings, including the tenant setting, are managed by tenantwall)',
    VariableShowStmt: 'SHOW',
    DoStmt: 'DO blocks (procedural code cannot be verified)',
    ExplainStmt: 'EXPLAIN (EXPLAIN ANALYZE runs the statement unverified)',
    PrepareStmt: 'PREPARE',
    ExecuteStmt: 'EXECUTE (a prepared statement cannot be verified)',
    CallStmt: 'CALL',
    DeclareCursorStmt: 'DECLARE CURSOR',
    LockStmt: 'LOCK',
    NotifyStmt: 'NOTIFY',
    ListenStmt: 'LISTEN',
  };
  const label = what[kind] ?? (/^(Create|Alter|Drop|Grant|Revoke|Comment|Rename|Index|Vacuum|Cluster|Reindex|Refresh|Define|Composite|CreateTableAs|ViewStmt|Rule|Sec)/.test(kind) ? `DDL and maintenance (${kind})` : kind);
  return `${label} is refused in tenant scope`;
}
