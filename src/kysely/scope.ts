import {
  type ColumnType,
  AliasNode,
  AndNode,
  createQueryId,
  BinaryOperationNode,
  ColumnNode,
  type DeleteQueryNode,
  FromNode,
  IdentifierNode,
  type InsertQueryNode,
  JoinNode,
  type KyselyPlugin,
  type MergeQueryNode,
  OnConflictNode,
  OnNode,
  type OperationNode,
  OperationNodeTransformer,
  OperatorNode,
  ParensNode,
  PostgresQueryCompiler,
  RawNode,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  PrimitiveValueListNode,
  type QueryResult,
  ReferenceNode,
  type RootOperationNode,
  SelectAllNode,
  SelectionNode,
  SelectQueryNode,
  TableNode,
  type UnknownRow,
  type UpdateQueryNode,
  ValueListNode,
  ValueNode,
  ValuesNode,
  WhenNode,
  WhereNode,
  type WithNode,
} from 'kysely';

import { TenantwallError } from '../errors.ts';
import type { Schema } from '../schema/declare.ts';

/**
 * The type of the tenant column in a Kysely `DB` interface: selectable, never inserted or updated by
 * application code (the plugin sets it).
 */
export type TenantColumn = ColumnType<string, never, never>;

/**
 * Stands for "the current tenant id" in a compiled query. The plugin puts it where tenant_id is compared or
 * written; the tenantwall driver replaces it with the tenant of the connection that runs the statement, so the
 * SQL text is the same for every tenant (one guard cache entry, one prepared plan shape) and the value always
 * matches the tenant the statement is scoped to. Sent anywhere else, it refuses to serialise.
 */
export const TENANT_PARAMETER: { readonly toPostgres: () => never; readonly toString: () => string } = Object.freeze({
  toPostgres(): never {
    throw new TenantwallError('tenant_context_missing', 'A tenantwall tenant placeholder reached a driver other than the tenantwall Kysely driver.');
  },
  toString: () => '[tenantwall tenant id]',
});

const TENANT_VALUE = ValueNode.create(TENANT_PARAMETER);

// The predicate is written as SQL text around the tenant value, compiled once per name by Kysely's own
// PostgreSQL compiler (the same quoting as before): a handful of nodes per reference otherwise, on every query.
const PREFIX_CACHE_MAX = 1000;

/**
 * A frozen copy of a frozen node with the properties of `props` that are not undefined replaced. One spread of a
 * frozen node, then assignment: spreading a copy that is not frozen yet gives objects that Kysely's compiler reads
 * several times slower (measured: compiling the scoped point lookup went from 4.5 to 9 µs).
 */
function patched<T extends object>(node: T, props: { readonly [K in keyof T]?: T[K] | undefined }, mark?: symbol): T {
  const out = { ...node } as Record<string, unknown>;
  for (const key in props) {
    const value = (props as Record<string, unknown>)[key];
    if (value !== undefined) out[key] = value;
  }
  // Not enumerable: a copy made by Kysely (`{ ...node }`) is not marked.
  if (mark !== undefined) Object.defineProperty(out, mark, { value: true });
  return Object.freeze(out) as T;
}

interface TableRef {
  readonly table: string;
  /** The name the reference is visible as (alias or table name). */
  readonly visible: string;
}

type QueryId = Parameters<OperationNodeTransformer['transformNode']>[1];

/**
 * Marks a query node the scope transformer wrote (non-enumerable, so Kysely's own copies do not carry it). One
 * symbol for every transformer: a symbol per instance would give the marked nodes of each Kysely instance (one
 * per fixed tenant) their own hidden class, and Kysely's compiler, reading nodes of many classes, slows down.
 */
const SCOPED = Symbol('tenantwall.scoped');

/**
 * Nodes the walk does not enter: values (their properties hold application data, where an object with a `kind`
 * is data, not a node) and names, which by Kysely's node types hold only identifiers (a reference is a column or
 * `*` of a table; a table is a schema-qualified identifier): no query can sit below them.
 */
export const LEAF_KINDS: ReadonlySet<string> = new Set([
  'ValueNode',
  'PrimitiveValueListNode',
  'IdentifierNode',
  'SchemableIdentifierNode',
  'TableNode',
  'ColumnNode',
  'ReferenceNode',
  'SelectAllNode',
  'OperatorNode',
  'DefaultInsertValueNode',
]);

/**
 * Adds `<ref>.tenant_id = <tenant>` for every reference to a tenant table and sets tenant_id on inserts. Where a
 * predicate in WHERE or ON would change the meaning of an outer join, the table is replaced by
 * `(select * from t where t.tenant_id = <tenant>) as t`, which PostgreSQL flattens back into the same plan.
 *
 * The walk visits every node (every property that holds a node or a list of nodes, whatever its kind, so a
 * sub-query anywhere is found) but copies only the nodes on the path to a change: Kysely's own transformer
 * deep-copies the whole tree, which cost more than building and compiling the query.
 */
export class TenantScopeTransformer extends OperationNodeTransformer {
  readonly #schema: Schema;
  readonly #column: string;
  readonly #cteScopes: Array<ReadonlySet<string>> = [];
  // Kysely applies plugins when a sub-query builder becomes a node and again to the whole query: scope once.
  // A query a transformer copied carries SCOPED (set before the copy is frozen: cheaper than a WeakSet entry on
  // every query); any other query it returned is remembered in the WeakSet.
  readonly #scopedMark = SCOPED;
  readonly #scoped = new WeakSet<OperationNode>();
  /** `"<name>"."tenant_id" = ` by visible table name. */
  readonly #prefixes = new Map<string, string>();
  readonly #predicates = new Map<string, OperationNode>();

  constructor(schema: Schema) {
    super();
    this.#schema = schema;
    this.#column = schema.tenantColumn;
  }

  override transformNode<T extends OperationNode | undefined>(node: T, _queryId?: QueryId): T {
    return (node === undefined ? node : this.#visit(node)) as T;
  }

  #visit(node: OperationNode): OperationNode {
    switch (node.kind) {
      case 'SelectQueryNode':
        return this.transformSelectQuery(node as SelectQueryNode);
      case 'UpdateQueryNode':
        return this.transformUpdateQuery(node as UpdateQueryNode);
      case 'DeleteQueryNode':
        return this.transformDeleteQuery(node as DeleteQueryNode);
      case 'InsertQueryNode':
        return this.transformInsertQuery(node as InsertQueryNode);
      case 'MergeQueryNode':
        return this.transformMergeQuery(node as MergeQueryNode);
      default:
        return LEAF_KINDS.has(node.kind) ? node : this.#children(node);
    }
  }

  /** `node` with every child visited: the same object when no child changed, else a frozen shallow copy. */
  #children<T extends OperationNode>(node: T): T {
    let out: Record<string, unknown> | undefined;
    for (const key in node) {
      const value = (node as Record<string, unknown>)[key];
      if (typeof value !== 'object' || value === null) continue;
      let next: unknown;
      if (Array.isArray(value)) next = this.#list(value);
      else if (typeof (value as { kind?: unknown }).kind === 'string') next = this.#visit(value as OperationNode);
      else continue;
      if (next !== value) {
        out ??= { ...node } as Record<string, unknown>;
        out[key] = next;
      }
    }
    return out ? (Object.freeze(out) as T) : node;
  }

  #list(list: readonly unknown[]): readonly unknown[] {
    let out: unknown[] | undefined;
    for (let i = 0; i < list.length; i++) {
      const item = list[i];
      if (typeof item !== 'object' || item === null || typeof (item as { kind?: unknown }).kind !== 'string') continue;
      const next = this.#visit(item as OperationNode);
      if (next !== item) {
        out ??= [...list];
        out[i] = next;
      }
    }
    return out ? Object.freeze(out) : list;
  }

  /** `"<visible>"."<tenant column>" = ` as PostgreSQL text. */
  #prefix(visible: string): string {
    let prefix = this.#prefixes.get(visible);
    if (prefix === undefined) {
      const node = BinaryOperationNode.create(ReferenceNode.create(ColumnNode.create(this.#column), TableNode.create(visible)), OperatorNode.create('='), TENANT_VALUE);
      const { sql, parameters } = new PostgresQueryCompiler().compileQuery(node as unknown as RootOperationNode, createQueryId());
      if (!sql.endsWith(' = $1') || parameters.length !== 1) throw new TenantwallError('unscoped_query', `The tenantwall plugin could not write the tenant predicate for ${visible}.`);
      prefix = sql.slice(0, -2);
      if (this.#prefixes.size < PREFIX_CACHE_MAX) this.#prefixes.set(visible, prefix);
    }
    return prefix;
  }

  /** `<visible>.tenant_id = <tenant>`. */
  #pred(visible: string): OperationNode {
    let pred = this.#predicates.get(visible);
    if (pred === undefined) {
      pred = RawNode.create([this.#prefix(visible), ''], [TENANT_VALUE]);
      if (this.#predicates.size < PREFIX_CACHE_MAX) this.#predicates.set(visible, pred);
    }
    return pred;
  }

  /**
   * `<visible>.tenant_id = <tenant> and (<existing>)`, or the predicate alone. The compiler prints AND/OR without
   * parentheses: `a or b` AND pred must not become `a or (b and pred)`.
   */
  #andPred(existing: OperationNode | undefined, visible: string): OperationNode {
    return existing ? RawNode.create([this.#prefix(visible), ' and (', ')'], [TENANT_VALUE, existing]) : this.#pred(visible);
  }

  #pushCtes(withNode: WithNode | undefined): boolean {
    if (!withNode) return false;
    this.#cteScopes.push(new Set(withNode.expressions.map((e) => e.name.table.table.identifier.name)));
    return true;
  }

  #isCte(name: string): boolean {
    return this.#cteScopes.some((s) => s.has(name));
  }

  /** The tenant table behind a FROM/JOIN item, unless it is a CTE, schema-qualified (the guard refuses) or not a tenant table. */
  #tenantRef(node: OperationNode): TableRef | undefined {
    let table: OperationNode = node;
    let alias: string | undefined;
    if (AliasNode.is(node)) {
      table = node.node;
      if (IdentifierNode.is(node.alias)) alias = node.alias.name;
    }
    if (!TableNode.is(table) || table.table.schema) return undefined;
    const name = table.table.identifier.name;
    if (!this.#schema.isTenantTable(name) || this.#isCte(name)) return undefined;
    return { table: name, visible: alias ?? name };
  }

  #wrap(ref: TableRef): OperationNode {
    const inner = SelectQueryNode.cloneWithSelections(SelectQueryNode.createFrom([TableNode.create(ref.table)]), [SelectionNode.create(SelectAllNode.create())]);
    return AliasNode.create(patched(inner, { where: WhereNode.create(this.#pred(ref.table)) }, this.#scopedMark), IdentifierNode.create(ref.visible));
  }

  /** Scopes FROM items and joins of one query level; returns the new pieces and the WHERE predicates to add. */
  #scopeLevel(froms: readonly OperationNode[], joins: readonly JoinNode[] | undefined): { froms: OperationNode[]; joins: JoinNode[] | undefined; where: string[] } {
    const where: string[] = [];
    const js = joins ?? [];
    const lastNullifying = js.reduce((acc, j, i) => (j.joinType === 'RightJoin' || j.joinType === 'FullJoin' ? i : acc), -1);
    const newFroms = froms.map((f) => {
      const ref = this.#tenantRef(f);
      if (!ref) return f;
      if (lastNullifying >= 0) return this.#wrap(ref);
      where.push(ref.visible);
      return f;
    });
    const newJoins = js.map((j, i) => {
      const ref = this.#tenantRef(j.table);
      if (!ref) return j;
      switch (j.joinType) {
        case 'InnerJoin':
        case 'LeftJoin':
        case 'LateralInnerJoin':
        case 'LateralLeftJoin':
          // ON of an inner join filters both sides; ON of a left join filters exactly the joined (optional) side.
          return patched(j, { on: OnNode.create(this.#andPred(j.on?.on, ref.visible)) });
        case 'CrossJoin':
        case 'LateralCrossJoin':
        case 'RightJoin':
          if (i >= lastNullifying) {
            where.push(ref.visible);
            return j;
          }
          return patched(j, { table: this.#wrap(ref) });
        default:
          return patched(j, { table: this.#wrap(ref) });
      }
    });
    return { froms: newFroms, joins: joins ? newJoins : undefined, where };
  }

  #mark<T extends OperationNode>(node: T): T {
    if ((node as unknown as Record<symbol, unknown>)[this.#scopedMark] !== true) this.#scoped.add(node);
    return node;
  }

  #isScoped(node: OperationNode): boolean {
    return (node as unknown as Record<symbol, unknown>)[this.#scopedMark] === true || this.#scoped.has(node);
  }

  #withWhere(where: WhereNode | undefined, preds: readonly string[]): WhereNode | undefined {
    let out = where?.where;
    for (const visible of preds) out = this.#andPred(out, visible);
    return out ? WhereNode.create(out) : undefined;
  }

  protected override transformSelectQuery(node: SelectQueryNode, _queryId?: QueryId): SelectQueryNode {
    if (this.#isScoped(node)) return node;
    return this.#mark(this.#selectQuery(node));
  }

  #selectQuery(node: SelectQueryNode): SelectQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = this.#children(node);
      if (!t.from) return t;
      const s = this.#scopeLevel(t.from.froms, t.joins);
      return patched(t, { from: FromNode.create(s.froms), joins: s.joins, where: this.#withWhere(t.where, s.where) }, this.#scopedMark);
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }

  protected override transformUpdateQuery(node: UpdateQueryNode, _queryId?: QueryId): UpdateQueryNode {
    if (this.#isScoped(node)) return node;
    return this.#mark(this.#updateQuery(node));
  }

  #updateQuery(node: UpdateQueryNode): UpdateQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = this.#children(node);
      this.#refuseTenantAssignment(t.updates);
      const preds: string[] = [];
      const target = t.table ? this.#tenantRef(t.table) : undefined;
      if (target) preds.push(target.visible);
      const s = this.#scopeLevel(t.from?.froms ?? [], t.joins);
      preds.push(...s.where);
      return patched(t, { from: t.from ? FromNode.create(s.froms) : undefined, joins: s.joins, where: this.#withWhere(t.where, preds) }, this.#scopedMark);
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }

  protected override transformDeleteQuery(node: DeleteQueryNode, _queryId?: QueryId): DeleteQueryNode {
    if (this.#isScoped(node)) return node;
    return this.#mark(this.#deleteQuery(node));
  }

  #deleteQuery(node: DeleteQueryNode): DeleteQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = this.#children(node);
      const preds: string[] = [];
      for (const f of t.from.froms) {
        const ref = this.#tenantRef(f);
        if (ref) preds.push(ref.visible);
      }
      const s = this.#scopeLevel(t.using?.tables ?? [], t.joins);
      preds.push(...s.where);
      return patched(t, { using: t.using ? patched(t.using, { tables: s.froms }) : undefined, joins: s.joins, where: this.#withWhere(t.where, preds) }, this.#scopedMark);
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }

  protected override transformInsertQuery(node: InsertQueryNode, _queryId?: QueryId): InsertQueryNode {
    if (this.#isScoped(node)) return node;
    return this.#mark(this.#insertQuery(node));
  }

  #insertQuery(node: InsertQueryNode): InsertQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = this.#children(node);
      const target = t.into ? this.#tenantRef(t.into) : undefined;
      if (!target) return t;
      let out = this.#withTenantColumn(t);
      if (out.onConflict) {
        const oc = out.onConflict;
        this.#refuseTenantAssignment(oc.updates);
        // Every unique index of a tenant table leads with tenant_id, so the conflict target must name it.
        if (oc.columns && !oc.columns.some((c) => c.column.name === this.#column)) {
          out = patched(out, { onConflict: OnConflictNode.cloneWith(oc, { columns: [ColumnNode.create(this.#column), ...oc.columns] }) });
        }
      }
      return out;
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }
  /** Adds tenant_id to the column list and the tenant to every VALUES row (or to the SELECT's output). */
  #withTenantColumn(t: InsertQueryNode): InsertQueryNode {
    const cols = t.columns ?? [];
    if (cols.some((c) => c.column.name === this.#column)) {
      if (t.values && ValuesNode.is(t.values)) {
        throw new TenantwallError('unscoped_query', `Do not set ${this.#column} in inserts: the tenantwall plugin sets it to the current tenant.`);
      }
      return t; // INSERT ... SELECT that names tenant_id itself: the guard checks that it comes from a scoped source.
    }
    const values = t.values;
    if (values && ValuesNode.is(values)) {
      const rows = values.values.map((row) =>
        PrimitiveValueListNode.is(row)
          ? PrimitiveValueListNode.create([TENANT_PARAMETER, ...row.values])
          : ValueListNode.create([ValueNode.create(TENANT_PARAMETER), ...row.values]),
      );
      return patched(t, { columns: [ColumnNode.create(this.#column), ...cols], values: ValuesNode.create(rows) });
    }
    if (values && SelectQueryNode.is(values) && !values.setOperations && values.selections) {
      const sel = patched(values, { selections: [SelectionNode.create(AliasNode.create(TENANT_VALUE, IdentifierNode.create(this.#column))), ...values.selections] });
      return patched(t, { columns: [ColumnNode.create(this.#column), ...cols], values: sel });
    }
    throw new TenantwallError('unscoped_query', `The tenantwall plugin cannot set ${this.#column} on this insert; use VALUES or a plain SELECT.`);
  }

  protected override transformMergeQuery(node: MergeQueryNode, _queryId?: QueryId): MergeQueryNode {
    if (this.#isScoped(node)) return node;
    return this.#mark(this.#mergeQuery(node));
  }

  #mergeQuery(node: MergeQueryNode): MergeQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = this.#children(node);
      const target = this.#tenantRef(t.into);
      let using = t.using;
      if (using) {
        const src = this.#tenantRef(using.table);
        // The source must be scoped on its own: NOT MATCHED rows are not filtered by ON.
        if (src) using = patched(using, { table: this.#wrap(src) });
        if (target) using = patched(using, { on: OnNode.create(this.#andPred(using.on?.on, target.visible)) });
      }
      const whens = t.whens?.map((w) => {
        let out: WhenNode = w;
        const matched = firstMatched(w.condition);
        if (target && matched?.bySource) out = patched(out, { condition: withMatchCondition(w.condition, this.#pred(target.visible)) });
        if (out.result && target && (out.result as InsertQueryNode).kind === 'InsertQueryNode') {
          out = WhenNode.cloneWithResult(out, this.#withTenantColumn(out.result as InsertQueryNode));
        }
        if (out.result && (out.result as UpdateQueryNode).kind === 'UpdateQueryNode') this.#refuseTenantAssignment((out.result as UpdateQueryNode).updates);
        return out;
      });
      return patched(t, { using, whens }, this.#scopedMark);
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }

  #refuseTenantAssignment(updates: UpdateQueryNode['updates']): void {
    for (const u of updates ?? []) {
      if (ColumnNode.is(u.column) && u.column.column.name === this.#column) {
        throw new TenantwallError('unscoped_query', `Updating ${this.#column} would move rows to another tenant.`);
      }
    }
  }
}

/** `when not matched by source [and c]` becomes `... and pred [and (c)]`: the MATCHED keyword must stay first. */
function withMatchCondition(condition: OperationNode, pred: OperationNode): OperationNode {
  if (condition.kind === 'AndNode') {
    const a = condition as AndNode;
    return AndNode.create(a.left, AndNode.create(pred, ParensNode.create(a.right)));
  }
  return AndNode.create(condition, pred);
}

function firstMatched(node: OperationNode): { bySource: boolean } | undefined {
  if (node.kind === 'MatchedNode') return node as unknown as { bySource: boolean };
  if (node.kind === 'AndNode') return firstMatched((node as AndNode).left);
  if (node.kind === 'ParensNode') return firstMatched((node as ParensNode).node);
  return undefined;
}

/** The Kysely plugin: every tenant table reference gets the tenant predicate, every insert the tenant id. */
export class TenantScopePlugin implements KyselyPlugin {
  readonly #transformer: TenantScopeTransformer;

  constructor(schema: Schema) {
    this.#transformer = new TenantScopeTransformer(schema);
  }

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    return this.#transformer.transformNode(args.node, args.queryId);
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    return args.result;
  }
}
