import assert from 'node:assert/strict';
import { before, test } from 'node:test';
import { type OperationNode, sql } from 'kysely';
import { type Guard, createGuard } from '../../src/index.ts';
import { TENANT_PARAMETER, TenantScopeTransformer } from '../../src/kysely/index.ts';
import { LEAF_KINDS } from '../../src/kysely/scope.ts';
import { seedSchema } from '../fixtures/seed.ts';
import { type SeedDB, kyselyShapes, offlineKysely } from './kysely-shapes.ts';

// The scope transformer walks the whole tree but copies only the path to a change, and writes the predicate as
// SQL text compiled once per table name. These tests pin what that must not change: every query shape gets the
// predicate for every tenant table reference, once, with the tenant in a parameter.

let guard: Guard;

before(async () => {
  guard = createGuard(seedSchema);
  await guard.ready();
});

const isQuery = (n: OperationNode) => ['SelectQueryNode', 'InsertQueryNode', 'UpdateQueryNode', 'DeleteQueryNode', 'MergeQueryNode'].includes(n.kind);

/** Every node below `node` (values' contents excluded), with its parent chain. */
function* nodes(node: OperationNode, parents: readonly OperationNode[] = []): Generator<[OperationNode, readonly OperationNode[]]> {
  yield [node, parents];
  if (node.kind === 'ValueNode' || node.kind === 'PrimitiveValueListNode') return;
  for (const value of Object.values(node)) {
    for (const child of Array.isArray(value) ? value : [value]) {
      if (child && typeof child === 'object' && typeof (child as OperationNode).kind === 'string') yield* nodes(child as OperationNode, [...parents, node]);
    }
  }
}

test('every query shape compiles to SQL the guard accepts, every tenant parameter being the placeholder', () => {
  const shapes = kyselyShapes(offlineKysely<SeedDB>(true));
  assert.ok(Object.keys(shapes).length >= 40);
  for (const [name, q] of Object.entries(shapes)) {
    const c = q.compile();
    const a = guard.analyze(c.sql);
    assert.ok(a.ok, `${name}: ${c.sql}\n${a.ok ? '' : a.reason}`);
    for (const n of a.tenantParams) assert.equal(c.parameters[n - 1], TENANT_PARAMETER, `${name}: $${n} is the tenant placeholder`);
  }
});

test('without the plugin the same shapes are refused (all but the global-table one)', () => {
  for (const [name, q] of Object.entries(kyselyShapes(offlineKysely<SeedDB>(false)))) {
    assert.equal(guard.analyze(q.compile().sql).ok, name === 'global', name);
  }
});

test('each tenant table reference gets its predicate exactly once, sub-queries built by a scoped builder included', () => {
  const shapes = kyselyShapes(offlineKysely<SeedDB>(true));
  const count = (name: string) => {
    const c = (shapes[name] as (typeof shapes)[string]).compile();
    return { preds: (c.sql.match(/"tenant_id" = \$\d+/g) ?? []).length, placeholders: c.parameters.filter((p) => p === TENANT_PARAMETER).length };
  };
  // [shape, predicates in the SQL, placeholders (an insert also writes the tenant as a value)]
  const expected: Array<[string, number, number]> = [
    ['pointLookup', 1, 1],
    ['global', 0, 0],
    ['innerJoin', 2, 2],
    ['selfJoin', 2, 2],
    ['twoFroms', 2, 2],
    ['subqueryIn', 2, 2],
    ['nested', 3, 3],
    ['cte', 1, 1],
    ['cteShadowing', 1, 1],
    ['union', 2, 2],
    ['rawAroundBuilder', 2, 2],
    ['insertRows', 0, 2],
    ['updateSubquery', 2, 2],
    ['deleteUsing', 2, 2],
  ];
  for (const [name, preds, placeholders] of expected) assert.deepEqual(count(name), { preds, placeholders }, name);
});

test('different values give the same SQL text for a shape; different shapes never share one', () => {
  const a = kyselyShapes(offlineKysely<SeedDB>(true), 1);
  const b = kyselyShapes(offlineKysely<SeedDB>(true), 2);
  const texts = new Map<string, string>();
  for (const name of Object.keys(a)) {
    const sa = (a[name] as (typeof a)[string]).compile();
    const sb = (b[name] as (typeof b)[string]).compile();
    assert.equal(sa.sql, sb.sql, name);
    assert.equal(sa.parameters.length, sb.parameters.length, name);
    assert.ok(!texts.has(sa.sql), `${name} and ${texts.get(sa.sql)} compile to the same text`);
    texts.set(sa.sql, name);
  }
});

test('scoping is idempotent: the transformer returns a scoped tree as it is', () => {
  const t = new TenantScopeTransformer(seedSchema);
  for (const [name, q] of Object.entries(kyselyShapes(offlineKysely<SeedDB>(false)))) {
    const once = t.transformNode(q.toOperationNode());
    assert.equal(t.transformNode(once), once, name);
  }
});

test('nodes of the kinds the walk does not enter never hold a query (checked over every shape)', () => {
  for (const [name, q] of Object.entries(kyselyShapes(offlineKysely<SeedDB>(false)))) {
    for (const [node, parents] of nodes(q.toOperationNode())) {
      if (!isQuery(node)) continue;
      const leaf = parents.find((p) => LEAF_KINDS.has(p.kind));
      assert.equal(leaf, undefined, `${name}: a ${node.kind} below a ${leaf?.kind}`);
    }
  }
});

test('values that look like nodes are data: passed through untouched, never scoped', () => {
  const lookalike = { kind: 'SelectQueryNode', from: { kind: 'FromNode', froms: [{ kind: 'TableNode', table: { kind: 'SchemableIdentifierNode', identifier: { kind: 'IdentifierNode', name: 'invoices' } } }] } };
  const c = offlineKysely<SeedDB>(true)
    .selectFrom('invoices')
    .select('id')
    .where('customer', '=', lookalike as never)
    .where('customer', 'in', [lookalike, lookalike] as never)
    .where(sql<boolean>`customer = ${lookalike}`)
    .compile();
  assert.equal(c.sql, 'select "id" from "invoices" where "invoices"."tenant_id" = $1 and ("customer" = $2 and "customer" in ($3, $4) and customer = $5)');
  assert.equal(c.parameters[0], TENANT_PARAMETER);
  for (const p of c.parameters.slice(1)) assert.equal(p, lookalike);
});

test('untouched parts of the tree are shared with the original, the original is never modified', () => {
  const node = offlineKysely<SeedDB>(false).selectFrom('invoices').select(['id', 'customer']).where('id', '=', 'x').toOperationNode();
  const before = JSON.stringify(node);
  const scoped = new TenantScopeTransformer(seedSchema).transformNode(node);
  assert.notEqual(scoped, node);
  assert.equal(scoped.selections, node.selections);
  assert.equal(JSON.stringify(node), before);
  assert.ok(Object.isFrozen(scoped) && Object.isFrozen(scoped.where));
});
