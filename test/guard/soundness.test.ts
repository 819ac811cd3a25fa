/**
 * Layer independence: with row-level security DISABLED, everything the guard accepts, run as tenant A, returns
 * exactly what the RLS-protected database returns for A, never a value of tenant B or C, and leaves B's and
 * C's rows untouched. Two databases seeded alike: one with RLS (the reference), one without (the guard alone).
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { createGuard, type Guard, isTenantwallError } from '../../src/index.ts';
import { seedMigrations, seedSchema } from '../fixtures/seed.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { bind, corpus } from './corpus.ts';
import { TEST_TENANT_KEY } from '../helpers/tenant-key.ts';
import { OTHER_TENANTS_CHECKSUM, type Outcome, TENANTS, inRolledBackTransaction, leakedTokens, runStatement, seedTenants } from './fixture.ts';

const A = TENANTS.a;
const B = TENANTS.b;
let withRls: TestTenantwall;
let withoutRls: TestTenantwall;
let guard: Guard;
let baseline: string;
let serverMajor: number;

before(async () => {
  [withRls, withoutRls] = await Promise.all([createTestTenantwall(seedSchema, seedMigrations), createTestTenantwall(seedSchema, seedMigrations)]);
  await Promise.all([seedTenants(withRls.db, withRls.database.name), seedTenants(withoutRls.db, withoutRls.database.name)]);
  await superQuery(withoutRls.database.name, 'ALTER TABLE invoices DISABLE ROW LEVEL SECURITY; ALTER TABLE customers DISABLE ROW LEVEL SECURITY;');
  guard = createGuard(seedSchema);
  await guard.ready();
  const v = await superQuery('postgres', `SELECT current_setting('server_version_num')::int / 10000 AS v`);
  serverMajor = Number(v.rows[0]?.v);
  baseline = await inRolledBackTransaction(withoutRls.db, A, async (tx) => (await tx.query<{ sum: string }>(OTHER_TENANTS_CHECKSUM, [A])).rows[0]?.sum ?? '');
});

after(async () => {
  await withRls?.close();
  await withoutRls?.close();
});

test('the unprotected database really has RLS off (otherwise this file would prove nothing)', async () => {
  const off = await inRolledBackTransaction(withoutRls.db, A, (tx) => tx.query('SELECT count(*)::int AS n FROM invoices'));
  const on = await inRolledBackTransaction(withRls.db, A, (tx) => tx.query('SELECT count(*)::int AS n FROM invoices'));
  assert.equal(off.rows[0]?.n, 12);
  assert.equal(on.rows[0]?.n, 4);
});

function describe(o: Outcome): string {
  return o.error ? `error ${o.error}` : `${o.rows?.length} rows`;
}

async function checkSound(sql: string, params: unknown[], compareRows: boolean, mayFail = false): Promise<Outcome> {
  const [off, on] = await Promise.all([runStatement(withoutRls.db, A, sql, params, true), runStatement(withRls.db, A, sql, params, false)]);
  if (mayFail && off.error !== undefined) {
    // Generated SQL can be invalid (a qualifier that is not in scope): then both databases must refuse it alike.
    assert.equal(on.error, off.error, sql);
    return off;
  }
  assert.equal(off.error, undefined, `accepted statement failed without RLS (${describe(off)}): ${sql}`);
  assert.deepEqual(leakedTokens(off.rows ?? []), [], `leak: ${sql}`);
  assert.equal(off.others, baseline, `changed another tenant's rows: ${sql}`);
  assert.equal(on.error, undefined, `accepted statement failed with RLS (${describe(on)}): ${sql}`);
  if (compareRows) {
    assert.deepEqual(off.rows, on.rows, `rows differ from the RLS reference: ${sql}`);
    assert.equal(off.rowCount, on.rowCount, `row count differs from the RLS reference: ${sql}`);
  }
  return off;
}

test('every accepted corpus statement is sound with RLS disabled', async () => {
  let ran = 0;
  for (const e of corpus) {
    if (!e.accept || e.run === false || (e.minVersion ?? 0) > serverMajor) continue;
    const params = bind(e, A, B);
    guard.check(e.sql, params, A);
    await checkSound(e.sql, params, !e.volatile);
    ran++;
  }
  assert.ok(ran >= 100, `ran ${ran} statements`);
});

test('refused statements that would have leaked: the guard is what stops them (they do leak without it)', async () => {
  // Shows the oracle can fail: these run fine without RLS and expose or change other tenants' rows.
  const leaky = [
    'SELECT * FROM invoices WHERE tenant_id = $1 OR true',
    'SELECT i.id, c.email FROM invoices i LEFT JOIN customers c ON c.id = i.customer_id AND i.tenant_id = $1 AND c.tenant_id = $1',
    'SELECT * FROM invoices WHERE tenant_id = $1 UNION SELECT * FROM invoices',
    'UPDATE invoices SET amount_cents = 1 WHERE tenant_id = $1 OR amount_cents > 0',
  ];
  for (const sql of leaky) {
    assert.throws(() => guard.check(sql, [A], A), (err) => isTenantwallError(err, 'unscoped_query'), sql);
    const off = await runStatement(withoutRls.db, A, sql, [A], true);
    assert.ok(leakedTokens(off.rows ?? []).length > 0 || off.others !== baseline, `expected a leak without the guard: ${sql}`);
  }
});

// ---- generated statements

type Alias = 'i' | 'c' | 's';
const PREDICATES = (x: Alias, y: Alias): string[] => [
  `${x}.tenant_id = $1`,
  `${x}.tenant_id = $2`,
  `${x}.tenant_id <> $1`,
  `NOT (${x}.tenant_id <> $1)`,
  `(${x}.tenant_id = $1 OR ${x}.id IS NOT NULL)`,
  `${x}.tenant_id = ${y}.tenant_id`,
  `${x}.tenant_id IN ($1)`,
  `(${x}.tenant_id = $1) IS NOT FALSE`,
  `${x}.tenant_id = $1::${TEST_TENANT_KEY}`,
  `NOT (${x}.tenant_id = $1 AND true)`,
  `true`,
];
const JOINS = ['JOIN', 'LEFT JOIN', 'RIGHT JOIN', 'FULL JOIN'] as const;

// Half the time the canonical predicate, so that enough generated statements are accepted.
const predicate = (x: Alias, y: Alias) =>
  fc.oneof({ arbitrary: fc.constant(`${x}.tenant_id = $1`), weight: 3 }, { arbitrary: fc.constantFrom(...PREDICATES(x, y)), weight: 3 });
const conj = (x: Alias, y: Alias) => fc.array(predicate(x, y), { minLength: 0, maxLength: 2 });
const shape = fc.record({
  kind: fc.constantFrom('select', 'select-agg', 'update', 'delete'),
  join: fc.constantFrom(...JOINS, 'comma', 'none'),
  onI: conj('i', 'c'),
  onC: conj('c', 'i'),
  whereI: conj('i', 'c'),
  whereC: conj('c', 'i'),
  sub: fc.option(fc.record({ preds: conj('s', 'i'), negate: fc.boolean() }), { nil: undefined }),
});

function build(s: typeof shape extends fc.Arbitrary<infer S> ? S : never): string {
  const and = (xs: string[]) => (xs.length === 0 ? 'true' : xs.join(' AND '));
  const sub = s.sub ? ` AND ${s.sub.negate ? 'NOT ' : ''}EXISTS (SELECT 1 FROM customers s WHERE ${and(s.sub.preds)} AND s.id = i.customer_id)` : '';
  // Both parameters always appear, so their types are known whatever the generated predicates use.
  const where = `${and([...s.whereI, ...(s.join === 'none' ? [] : s.whereC)])}${sub} AND $1::${TEST_TENANT_KEY} IS NOT NULL AND $2::${TEST_TENANT_KEY} IS NOT NULL`;
  const on = `c.id = i.customer_id AND ${and([...s.onI, ...s.onC])}`;
  if (s.kind === 'update' || s.kind === 'delete') {
    const head = s.kind === 'update' ? 'UPDATE invoices i SET amount_cents = i.amount_cents + 1' : 'DELETE FROM invoices i';
    const from = s.join === 'none' ? '' : s.kind === 'update' ? ' FROM customers c' : ' USING customers c';
    const link = s.join === 'none' ? '' : ` AND ${on}`;
    return `${head}${from} WHERE ${where}${link} RETURNING i.id, i.tenant_id, i.amount_cents`;
  }
  const list = s.kind === 'select-agg' ? 'count(*) AS n, sum(i.amount_cents) AS total' : s.join === 'none' ? 'i.id, i.tenant_id, i.customer' : 'i.id, i.tenant_id, c.id AS cid, c.email, c.tenant_id AS ct';
  const from =
    s.join === 'none' ? 'invoices i' : s.join === 'comma' ? 'invoices i, customers c' : `invoices i ${s.join} customers c ON ${on}`;
  const extra = s.join === 'comma' ? ` AND c.id = i.customer_id` : '';
  return `SELECT ${list} FROM ${from} WHERE ${where}${extra}`;
}

/**
 * Property: every statement `build` makes from `arb` that the guard accepts for tenant A is sound with RLS
 * disabled. The generator must exercise both verdicts at least `minEach` times, or the property says little.
 */
async function assertGeneratedSound<S>(arb: fc.Arbitrary<S>, build: (s: S) => string, numRuns: number, minEach: number): Promise<void> {
  let accepted = 0;
  let refused = 0;
  await fc.assert(
    fc.asyncProperty(arb, async (s) => {
      const sql = build(s);
      const params = [A, B];
      try {
        guard.check(sql, params, A);
      } catch (err) {
        if (!isTenantwallError(err, 'unscoped_query')) throw err;
        refused++;
        return;
      }
      accepted++;
      // The RLS database refuses foreign rows in writes (WITH CHECK): a difference there is a leak here.
      await checkSound(sql, params, true, true);
    }),
    { numRuns, seed: Number(process.env.TW_FC_SEED ?? 20261126) },
  );
  assert.ok(accepted >= minEach, `only ${accepted} generated statements accepted`);
  assert.ok(refused >= minEach, `only ${refused} generated statements refused`);
}

test('generated statements (fast-check): whatever the guard accepts is sound with RLS disabled', () => assertGeneratedSound(shape, build, 400, 40));

// ---- generated statements that carry the tenant through derived tables, CTEs, set operations, INSERT ... SELECT
// and MERGE (the "pinned column" reasoning)

const PINS = (x: Alias) => [`${x}.tenant_id`, `$1::${TEST_TENANT_KEY}`, `$2::${TEST_TENANT_KEY}`, `${x}.id`, 'gen_random_uuid()', `coalesce(${x}.tenant_id, $1)`];
const carried = fc.record({
  form: fc.constantFrom('insert-select', 'derived-join', 'cte-join', 'union-join', 'merge'),
  pinI: fc.constantFrom(...PINS('i')),
  pinC: fc.constantFrom(...PINS('c')),
  predI: conj('i', 'c'),
  predC: conj('c', 'i'),
  joinPred: fc.constantFrom('d.tenant_id = x.t', 'd.tenant_id = x.t AND d.tenant_id = $1', 'd.id IS NOT NULL', 'd.tenant_id = $1'),
});

function buildCarried(s: typeof carried extends fc.Arbitrary<infer S> ? S : never): string {
  const and = (xs: string[]) => [...xs, `$1::${TEST_TENANT_KEY} IS NOT NULL`, `$2::${TEST_TENANT_KEY} IS NOT NULL`].join(' AND ');
  const inner = `SELECT ${s.pinI} AS t, i.id AS iid FROM invoices i WHERE ${and(s.predI)}`;
  switch (s.form) {
    case 'insert-select':
      return `INSERT INTO customers (tenant_id, email) SELECT ${s.pinI}, 'gen-' || i.id FROM invoices i WHERE ${and(s.predI)} RETURNING tenant_id, email`;
    case 'derived-join':
      return `SELECT d.email, x.iid FROM (${inner}) x JOIN customers d ON ${s.joinPred}`;
    case 'cte-join':
      return `WITH x AS (${inner}) SELECT d.email, x.iid FROM x JOIN customers d ON ${s.joinPred}`;
    case 'union-join':
      return `SELECT d.email FROM (SELECT ${s.pinI} AS t FROM invoices i WHERE ${and(s.predI)} UNION ALL SELECT ${s.pinC} FROM customers c WHERE ${and(s.predC)}) x JOIN customers d ON ${s.joinPred}`;
    case 'merge':
      return `MERGE INTO invoices t USING (SELECT ${s.pinC} AS tid, c.id, c.email FROM customers c WHERE ${and(s.predC)}) s ON t.tenant_id = s.tid AND t.customer_id = s.id
        WHEN MATCHED THEN UPDATE SET amount_cents = t.amount_cents + 1
        WHEN NOT MATCHED THEN INSERT (tenant_id, customer, amount_cents) VALUES (s.tid, s.email, 5)`;
  }
}

test('generated statements carrying the tenant through sub-queries, CTEs, unions, INSERT ... SELECT, MERGE', () =>
  assertGeneratedSound(carried, buildCarried, 300, 30));
