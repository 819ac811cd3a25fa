import {
  type ColumnType,
  AliasNode,
  AndNode,
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

function tenantEquals(column: string, table: string): OperationNode {
  return BinaryOperationNode.create(
    ReferenceNode.create(ColumnNode.create(column), TableNode.create(table)),
    OperatorNode.create('='),
    ValueNode.create(TENANT_PARAMETER),
  );
}

function andWith(existing: OperationNode | undefined, pred: OperationNode): OperationNode {
  // The compiler prints AND/OR without parentheses: `a or b` AND pred must not become `a or (b and pred)`.
  return existing ? AndNode.create(pred, ParensNode.create(existing)) : pred;
}

interface TableRef {
  readonly table: string;
  /** The name the reference is visible as (alias or table name). */
  readonly visible: string;
}

/**
 * Adds `<ref>.tenant_id = <tenant>` for every reference to a tenant table and sets tenant_id on inserts. Where a
 * predicate in WHERE or ON would change the meaning of an outer join, the table is replaced by
 * `(select * from t where t.tenant_id = <tenant>) as t`, which PostgreSQL flattens back into the same plan.
 */
export class TenantScopeTransformer extends OperationNodeTransformer {
  readonly #schema: Schema;
  readonly #column: string;
  readonly #cteScopes: Array<ReadonlySet<string>> = [];
  // Kysely applies plugins when a sub-query builder becomes a node and again to the whole query: scope once.
  readonly #scoped = new WeakSet<OperationNode>();

  constructor(schema: Schema) {
    super();
    this.#schema = schema;
    this.#column = schema.tenantColumn;
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
    const scoped: SelectQueryNode = { ...inner, where: WhereNode.create(tenantEquals(this.#column, ref.table)) };
    return AliasNode.create(scoped, IdentifierNode.create(ref.visible));
  }

  /** Scopes FROM items and joins of one query level; returns the new pieces and the WHERE predicates to add. */
  #scopeLevel(froms: readonly OperationNode[], joins: readonly JoinNode[] | undefined): { froms: OperationNode[]; joins: JoinNode[] | undefined; where: OperationNode[] } {
    const where: OperationNode[] = [];
    const js = joins ?? [];
    const lastNullifying = js.reduce((acc, j, i) => (j.joinType === 'RightJoin' || j.joinType === 'FullJoin' ? i : acc), -1);
    const newFroms = froms.map((f) => {
      const ref = this.#tenantRef(f);
      if (!ref) return f;
      if (lastNullifying >= 0) return this.#wrap(ref);
      where.push(tenantEquals(this.#column, ref.visible));
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
          return { ...j, on: OnNode.create(andWith(j.on?.on, tenantEquals(this.#column, ref.visible))) };
        case 'CrossJoin':
        case 'LateralCrossJoin':
        case 'RightJoin':
          if (i >= lastNullifying) {
            where.push(tenantEquals(this.#column, ref.visible));
            return j;
          }
          return { ...j, table: this.#wrap(ref) };
        default:
          return { ...j, table: this.#wrap(ref) };
      }
    });
    return { froms: newFroms, joins: joins ? newJoins : undefined, where };
  }

  #mark<T extends OperationNode>(node: T): T {
    this.#scoped.add(node);
    return node;
  }

  #withWhere(where: WhereNode | undefined, preds: OperationNode[]): WhereNode | undefined {
    let out = where?.where;
    for (const p of preds) out = andWith(out, p);
    return out ? WhereNode.create(out) : undefined;
  }

  protected override transformSelectQuery(node: SelectQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): SelectQueryNode {
    if (this.#scoped.has(node)) return node;
    return this.#mark(this.#selectQuery(node, queryId));
  }

  #selectQuery(node: SelectQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): SelectQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = super.transformSelectQuery(node, queryId);
      if (!t.from) return t;
      const s = this.#scopeLevel(t.from.froms, t.joins);
      const out: SelectQueryNode = { ...t, from: FromNode.create(s.froms), ...(s.joins ? { joins: s.joins } : {}) };
      const where = this.#withWhere(t.where, s.where);
      return where ? { ...out, where } : out;
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }

  protected override transformUpdateQuery(node: UpdateQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): UpdateQueryNode {
    if (this.#scoped.has(node)) return node;
    return this.#mark(this.#updateQuery(node, queryId));
  }

  #updateQuery(node: UpdateQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): UpdateQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = super.transformUpdateQuery(node, queryId);
      this.#refuseTenantAssignment(t.updates);
      const preds: OperationNode[] = [];
      const target = t.table ? this.#tenantRef(t.table) : undefined;
      if (target) preds.push(tenantEquals(this.#column, target.visible));
      const s = this.#scopeLevel(t.from?.froms ?? [], t.joins);
      preds.push(...s.where);
      const out: UpdateQueryNode = { ...t, ...(t.from ? { from: FromNode.create(s.froms) } : {}), ...(s.joins ? { joins: s.joins } : {}) };
      const where = this.#withWhere(t.where, preds);
      return where ? { ...out, where } : out;
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }

  protected override transformDeleteQuery(node: DeleteQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): DeleteQueryNode {
    if (this.#scoped.has(node)) return node;
    return this.#mark(this.#deleteQuery(node, queryId));
  }

  #deleteQuery(node: DeleteQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): DeleteQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = super.transformDeleteQuery(node, queryId);
      const preds: OperationNode[] = [];
      for (const f of t.from.froms) {
        const ref = this.#tenantRef(f);
        if (ref) preds.push(tenantEquals(this.#column, ref.visible));
      }
      const s = this.#scopeLevel(t.using?.tables ?? [], t.joins);
      preds.push(...s.where);
      const out: DeleteQueryNode = { ...t, ...(t.using ? { using: { ...t.using, tables: s.froms } } : {}), ...(s.joins ? { joins: s.joins } : {}) };
      const where = this.#withWhere(t.where, preds);
      return where ? { ...out, where } : out;
    } finally {
      if (pushed) this.#cteScopes.pop();
    }
  }

  protected override transformInsertQuery(node: InsertQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): InsertQueryNode {
    if (this.#scoped.has(node)) return node;
    return this.#mark(this.#insertQuery(node, queryId));
  }

  #insertQuery(node: InsertQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): InsertQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = super.transformInsertQuery(node, queryId);
      const target = t.into ? this.#tenantRef(t.into) : undefined;
      if (!target) return t;
      let out = this.#withTenantColumn(t);
      if (out.onConflict) {
        const oc = out.onConflict;
        this.#refuseTenantAssignment(oc.updates);
        // Every unique index of a tenant table leads with tenant_id, so the conflict target must name it.
        if (oc.columns && !oc.columns.some((c) => c.column.name === this.#column)) {
          out = { ...out, onConflict: OnConflictNode.cloneWith(oc, { ...oc, columns: [ColumnNode.create(this.#column), ...oc.columns] }) };
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
      return { ...t, columns: [ColumnNode.create(this.#column), ...cols], values: ValuesNode.create(rows) };
    }
    if (values && SelectQueryNode.is(values) && !values.setOperations && values.selections) {
      const sel: SelectQueryNode = {
        ...values,
        selections: [SelectionNode.create(AliasNode.create(ValueNode.create(TENANT_PARAMETER), IdentifierNode.create(this.#column))), ...values.selections],
      };
      return { ...t, columns: [ColumnNode.create(this.#column), ...cols], values: sel };
    }
    throw new TenantwallError('unscoped_query', `The tenantwall plugin cannot set ${this.#column} on this insert; use VALUES or a plain SELECT.`);
  }

  protected override transformMergeQuery(node: MergeQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): MergeQueryNode {
    if (this.#scoped.has(node)) return node;
    return this.#mark(this.#mergeQuery(node, queryId));
  }

  #mergeQuery(node: MergeQueryNode, queryId?: Parameters<OperationNodeTransformer['transformNode']>[1]): MergeQueryNode {
    const pushed = this.#pushCtes(node.with);
    try {
      const t = super.transformMergeQuery(node, queryId);
      const target = this.#tenantRef(t.into);
      let using = t.using;
      if (using) {
        const src = this.#tenantRef(using.table);
        // The source must be scoped on its own: NOT MATCHED rows are not filtered by ON.
        if (src) using = { ...using, table: this.#wrap(src) };
        if (target) using = { ...using, on: OnNode.create(andWith(using.on?.on, tenantEquals(this.#column, target.visible))) };
      }
      const whens = t.whens?.map((w) => {
        let out: WhenNode = w;
        const matched = firstMatched(w.condition);
        if (target && matched?.bySource) out = { ...out, condition: withMatchCondition(w.condition, tenantEquals(this.#column, target.visible)) };
        if (out.result && target && (out.result as InsertQueryNode).kind === 'InsertQueryNode') {
          out = WhenNode.cloneWithResult(out, this.#withTenantColumn(out.result as InsertQueryNode));
        }
        if (out.result && (out.result as UpdateQueryNode).kind === 'UpdateQueryNode') this.#refuseTenantAssignment((out.result as UpdateQueryNode).updates);
        return out;
      });
      return { ...t, ...(using ? { using } : {}), ...(whens ? { whens } : {}) };
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
