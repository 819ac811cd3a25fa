import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createGuard, isTenantwallError } from '../../src/index.ts';
import { seedSchema } from '../fixtures/seed.ts';
import { configureTenantKey } from '../../src/tenant/tenant-id.ts';
import { TEST_TENANT_KEY, testTenantId } from '../helpers/tenant-key.ts';
import { bind, corpus } from './corpus.ts';

// The SQL parser loads once per process; every guard below can check synchronously after this.
await createGuard(seedSchema).ready();
// No Tenantwall connects in this file, and check() validates tenant ids with the process's key type, which
// Tenantwall.connect would set: set it as connect does (held for the whole file) for the run's key type.
configureTenantKey(TEST_TENANT_KEY);

const A = testTenantId(0xa);
const B = testTenantId(0xb);


test('the corpus has at least 150 statements, both verdicts, each with a reason', () => {
  assert.ok(corpus.length >= 150, `corpus has ${corpus.length} statements`);
  assert.ok(corpus.filter((e) => e.accept).length >= 60);
  assert.ok(corpus.filter((e) => !e.accept).length >= 60);
  for (const e of corpus) assert.ok(e.why.length > 0, e.sql);
  assert.equal(new Set(corpus.map((e) => e.sql)).size, corpus.length, 'no duplicate statements');
});

test('every corpus statement gets its verdict', () => {
  const guard = createGuard(seedSchema);
  const wrong: string[] = [];
  for (const e of corpus) {
    let refusal: unknown;
    try {
      guard.check(e.sql, bind(e, A, B), A);
    } catch (err) {
      refusal = err;
    }
    if (e.accept) {
      if (refusal !== undefined) wrong.push(`should accept (${e.why}): ${e.sql}\n    -> ${(refusal as Error).message}`);
      continue;
    }
    if (refusal === undefined) {
      wrong.push(`should refuse (${e.why}): ${e.sql}`);
    } else if (!isTenantwallError(refusal, 'unscoped_query')) {
      wrong.push(`refused with the wrong error (${e.why}): ${e.sql}\n    -> ${String(refusal)}`);
    } else if (e.reason && !e.reason.test(String(refusal.details.reason))) {
      wrong.push(`refused for another reason (${e.why}): ${e.sql}\n    -> ${String(refusal.details.reason)}`);
    }
  }
  assert.deepEqual(wrong, []);
});

test('an accepted statement is refused at run time when the tenant parameter is another tenant', () => {
  const guard = createGuard(seedSchema);
  const sql = 'SELECT * FROM invoices WHERE tenant_id = $1';
  guard.check(sql, [A], A);
  assert.throws(() => guard.check(sql, [B], A), (err) => isTenantwallError(err, 'unscoped_query') && /\$1/.test(err.message));
  assert.throws(() => guard.check(sql, [], A), (err) => isTenantwallError(err, 'unscoped_query'));
  // A tenant id in a non-tenant parameter position does not make the statement scoped.
  assert.throws(() => guard.check('SELECT * FROM invoices WHERE customer = $1', [A], A), (err) => isTenantwallError(err, 'unscoped_query'));
});

test('refusals name the table, the reason and the SQL location', () => {
  const guard = createGuard(seedSchema);
  const sql = 'SELECT * FROM invoices i JOIN customers c ON c.id = i.customer_id WHERE i.tenant_id = $1';
  try {
    guard.check(sql, [A], A);
    assert.fail('accepted');
  } catch (err) {
    assert.ok(isTenantwallError(err, 'unscoped_query'));
    assert.equal(err.details.table, 'customers');
    assert.equal(err.details.location, sql.indexOf('customers c'));
    assert.match(err.message, /customers/);
    assert.match(err.message, /offset \d+/);
  }
});

test('results are cached by statement text in a bounded LRU; refusals too', () => {
  const guard = createGuard(seedSchema, { cacheSize: 3 });
  const q = (n: number) => `SELECT ${n} FROM invoices WHERE tenant_id = $1`;
  for (let i = 0; i < 3; i++) guard.check(q(i), [A], A);
  assert.equal(guard.cacheEntries, 3);
  const first = guard.analyze(q(0)); // touch: q(1) is now the least recently used
  guard.check(q(3), [A], A);
  assert.equal(guard.cacheEntries, 3);
  assert.equal(guard.analyze(q(0)), first, 'recently used entry kept (same object)');
  const bad = guard.analyze('SELECT * FROM invoices');
  assert.equal(bad.ok, false);
  assert.equal(guard.analyze('SELECT * FROM invoices'), bad);
});

test('options: extra safe functions and relations', () => {
  const strict = createGuard(seedSchema);
  const relaxed = createGuard(seedSchema, { allowFunctions: ['my_pure_fn'], allowRelations: ['rates_view'] });
  const sql1 = 'SELECT my_pure_fn(amount_cents) FROM invoices WHERE tenant_id = $1';
  const sql2 = 'SELECT * FROM rates_view';
  assert.equal(strict.analyze(sql1).ok, false);
  assert.equal(relaxed.analyze(sql1).ok, true);
  assert.equal(strict.analyze(sql2).ok, false);
  assert.equal(relaxed.analyze(sql2).ok, true);
  // A declared-safe function still cannot be schema-qualified, and set_config stays refused.
  assert.equal(relaxed.analyze('SELECT evil.my_pure_fn(1)').ok, false);
  assert.equal(relaxed.analyze("SELECT set_config('a.b', 'c', true)").ok, false);
});

test('a custom tenant column name is honoured', async () => {
  const { defineSchema, tenantTable } = await import('../../src/index.ts');
  const schema = defineSchema({ tenantColumn: 'org_id', tables: [tenantTable({ name: 'notes', columns: { id: { type: 'uuid' }, body: { type: 'text' } } })] });
  const g = createGuard(schema);
  assert.equal(g.analyze('SELECT * FROM notes WHERE org_id = $1').ok, true);
  assert.equal(g.analyze('SELECT * FROM notes WHERE tenant_id = $1').ok, false);
});

test('refusal hints fit the refusal: statements a tenant predicate cannot fix do not say "constrain"', () => {
  const guard = createGuard(seedSchema);
  const hintOf = (sql: string) => {
    try {
      guard.check(sql, [A], A);
    } catch (err) {
      assert.ok(isTenantwallError(err, 'unscoped_query'), String(err));
      return err.message;
    }
    return assert.fail(`accepted: ${sql}`);
  };
  const cases: [string, RegExp][] = [
    ['TRUNCATE invoices', /DELETE \.\.\. WHERE tenant_id = \$1/],
    ["COPY invoices TO STDOUT", /tenants export/],
    ["SET search_path = evil", /statementTimeoutMs/],
    ["DO $$ BEGIN PERFORM 1; END $$", /procedural code/],
    ['SELECT * FROM invoices WHERE tenant_id = $1; DELETE FROM invoices', /one statement per query call/],
    ['BEGIN', /transaction\(fn\)/],
    ['CREATE TABLE x (a int)', /migrations/],
    ['SELECT * FROM other.invoices WHERE tenant_id = $1', /public\.invoices/],
    ['SELECT * FROM public.invoices WHERE tenant_id = $1 AND public.invoices.id IS NOT NULL', /table\.column or alias\.column/],
  ];
  for (const [sql, hint] of cases) {
    const m = hintOf(sql);
    assert.match(m, hint, sql);
    assert.doesNotMatch(m, /Constrain every tenant table/, sql);
  }
  // A statement that a tenant predicate does fix keeps the general hint.
  assert.match(hintOf('SELECT * FROM invoices'), /Constrain every tenant table reference with tenant_id/);
});

test('the schema option: qualified names are accepted only with the schema the declared tables live in', () => {
  const app = createGuard(seedSchema, { tableSchema: 'app' });
  assert.equal(app.analyze('SELECT * FROM app.invoices WHERE tenant_id = $1').ok, true);
  const pub = app.analyze('SELECT * FROM public.invoices WHERE tenant_id = $1');
  assert.equal(pub.ok, false, 'public.invoices is another relation when the tables live in app');
  assert.throws(() => createGuard(seedSchema, { tableSchema: 'Bad Schema' }), (err: unknown) => isTenantwallError(err, 'config_invalid') && /docs\/guard\.md/.test(err.message) && !/configuration\.md/.test(err.message));
});

test('check() refuses a tenant id that is not a valid id (invalid_tenant_id), even when the parameter matches it', () => {
  const guard = createGuard(seedSchema);
  const sql = 'SELECT * FROM invoices WHERE tenant_id = $1';
  // Invalid for every key type, plus what only the run's type refuses ('x' is a text id, case matters for text).
  const typed = TEST_TENANT_KEY === 'uuid' ? ['x', A.toUpperCase()] : TEST_TENANT_KEY === 'bigint' ? ['x', '-'] : ['-x'];
  for (const bad of ['', ' ' + A, `${A}'`, ...typed]) {
    assert.throws(
      () => guard.check(sql, [bad], bad as typeof A),
      (err: unknown) => isTenantwallError(err, 'invalid_tenant_id'),
      JSON.stringify(bad),
    );
  }
  guard.check(sql, [A], A);
});
