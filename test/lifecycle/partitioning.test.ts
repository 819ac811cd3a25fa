import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { TenantId, createTenant, dedicatedPartitionName, sharedPartitionName, type TenantId as Tid } from '../../src/index.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { lifecycleMigrations, lifecycleSchema, seedTenant } from './fixture.ts';
import { TEST_TENANT_KEY } from '../helpers/tenant-key.ts';

let t: TestTenantwall;
let A: Tid; // shared, same hash bucket as B
let B: Tid; // shared
let D: Tid; // dedicated
let bucket: number;

async function bucketOf(id: string): Promise<number> {
  const { rows } = await t.db
    .dangerouslyCrossTenant()
    .query(`SELECT r FROM generate_series(0, 3) r WHERE satisfies_hash_partition('customers'::regclass::oid, 4, r, $1::${TEST_TENANT_KEY})`, [id]);
  return rows[0]?.r as number;
}

before(async () => {
  t = await createTestTenantwall(lifecycleSchema, lifecycleMigrations);
  // Two shared tenants in the same bucket make "a direct query on the shared partition" a real test.
  A = TenantId.generate();
  bucket = await bucketOf(A);
  do B = TenantId.generate();
  while ((await bucketOf(B)) !== bucket);
  await t.db.tenants.create({ slug: 'a', name: 'A', id: A });
  await t.db.tenants.create({ slug: 'b', name: 'B', id: B });
  D = (await createTenant(t.db, { slug: 'd', name: 'D', placement: 'dedicated' })).tenant.id;
  for (const id of [A, B, D]) await seedTenant(t.db, id, 30);
  await t.db.dangerouslyCrossTenant().query('ANALYZE');
});
after(() => t.close());

/** Every relation name a JSON plan touches. */
function relations(plan: unknown): string[] {
  const out: string[] = [];
  const walk = (n: unknown): void => {
    if (Array.isArray(n)) n.forEach(walk);
    else if (n && typeof n === 'object') {
      for (const [k, v] of Object.entries(n)) {
        if (k === 'Relation Name') out.push(v as string);
        else walk(v);
      }
    }
  };
  walk(plan);
  return out;
}

async function explain(sql: string): Promise<{ rels: string[]; plan: unknown }> {
  const { rows } = await t.db.dangerouslyCrossTenant().query(`EXPLAIN (FORMAT JSON) ${sql}`);
  const plan = rows[0]?.['QUERY PLAN'];
  return { rels: relations(plan), plan };
}

test('the layout: hash buckets, each LIST with a shared DEFAULT, and the dedicated tenant in a LIST partition of its bucket', async () => {
  const { rows } = await t.db.dangerouslyCrossTenant().query(`
    SELECT c.relname, p.relname AS parent, pg_get_expr(c.relpartbound, c.oid) AS bound, c.relkind
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent
    WHERE p.relname LIKE 'customers%' ORDER BY 1`);
  const byName = new Map(rows.map((r) => [r.relname as string, r]));
  for (let i = 0; i < 4; i++) {
    assert.match(byName.get(`customers_p${i}`)?.bound, new RegExp(`modulus 4, remainder ${i}\\)`, "i"));
    assert.equal(byName.get(`customers_p${i}`)?.relkind, 'p');
    assert.equal(byName.get(`customers_p${i}_shared`)?.bound, 'DEFAULT');
  }
  const ded = byName.get(dedicatedPartitionName('customers', D));
  assert.equal(ded?.parent, `customers_p${await bucketOf(D)}`);
  assert.equal(ded?.bound, `FOR VALUES IN ('${D}')`);
});

test('RLS is ENABLEd and FORCEd with the same policy on every relation of every partition tree', async () => {
  const { rows } = await t.db.dangerouslyCrossTenant().query(`
    SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
      (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
      (SELECT pg_get_expr(p.polqual, p.polrelid) || ' / ' || pg_get_expr(p.polwithcheck, p.polrelid) FROM pg_policy p WHERE p.polrelid = c.oid) AS expr
    FROM pg_partition_tree('customers') pt JOIN pg_class c ON c.oid = pt.relid
    UNION ALL
    SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity,
      (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),
      (SELECT pg_get_expr(p.polqual, p.polrelid) || ' / ' || pg_get_expr(p.polwithcheck, p.polrelid) FROM pg_policy p WHERE p.polrelid = c.oid)
    FROM pg_partition_tree('invoices') pt JOIN pg_class c ON c.oid = pt.relid`);
  // parent + 4 buckets + 4 shared + 1 dedicated, for each of the two tables
  assert.equal(rows.length, 20);
  const expr = rows.find((r) => r.relname === 'customers')?.expr as string;
  assert.match(expr, /current_setting\('tenantwall\.tenant_id'/);
  for (const r of rows) {
    assert.equal(r.relrowsecurity, true, `${r.relname} ENABLE`);
    assert.equal(r.relforcerowsecurity, true, `${r.relname} FORCE`);
    assert.equal(Number(r.policies), 1, `${r.relname} policy`);
    assert.equal(r.expr, expr, `${r.relname} has the same policy`);
  }
});

test('every key, foreign key and index of every partition starts with tenant_id', async () => {
  const { rows } = await t.db.dangerouslyCrossTenant().query(`
    WITH rels AS (SELECT relid FROM pg_partition_tree('customers') UNION ALL SELECT relid FROM pg_partition_tree('invoices'))
    SELECT c.conrelid::regclass::text AS rel, c.conname AS name, a.attname AS first
      FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
      WHERE c.conrelid IN (SELECT relid FROM rels) AND c.contype IN ('p', 'u', 'f')
    UNION ALL
    SELECT i.indrelid::regclass::text, i.indexrelid::regclass::text, a.attname
      FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
      WHERE i.indrelid IN (SELECT relid FROM rels)`);
  assert.ok(rows.length > 40, `${rows.length} keys and indexes`);
  for (const r of rows) assert.equal(r.first, 'tenant_id', `${r.rel} ${r.name}`);
  // The dedicated partitions got the indexes and foreign keys too.
  const ded = rows.filter((r) => r.rel === dedicatedPartitionName('invoices', D)).map((r) => r.name as string);
  assert.ok(ded.some((n) => n.endsWith('_pkey')) && ded.some((n) => n.includes('fkey')), ded.join(','));
});

test('a guarded query (tenant_id = literal) scans only the shared tenant\'s bucket partition at plan time', async () => {
  const { rels } = await explain(`SELECT * FROM invoices WHERE tenant_id = '${A}' AND id = 1`);
  assert.deepEqual(rels, [sharedPartitionName('invoices', bucket)]);
  const list = await explain(`SELECT * FROM invoices WHERE tenant_id = '${A}' ORDER BY created_at DESC LIMIT 20`);
  assert.deepEqual([...new Set(list.rels)], [sharedPartitionName('invoices', bucket)]);
  const join = await explain(`SELECT * FROM invoices i JOIN customers c ON c.tenant_id = i.tenant_id AND c.id = i.customer_id WHERE i.tenant_id = '${A}' AND c.tenant_id = '${A}'`);
  assert.deepEqual(join.rels.sort(), [sharedPartitionName('customers', bucket), sharedPartitionName('invoices', bucket)]);
});

test('a guarded query scans only the dedicated tenant\'s own partition, also as a custom plan of a prepared statement', async () => {
  const { rels } = await explain(`SELECT * FROM invoices WHERE tenant_id = '${D}' AND id = 1`);
  assert.deepEqual(rels, [dedicatedPartitionName('invoices', D)]);
  const c = await t.db.dangerouslyCrossTenant().transaction(async (client) => {
    await client.query('SET LOCAL plan_cache_mode = force_custom_plan');
    await client.query(`PREPARE tw_q(${TEST_TENANT_KEY}, bigint) AS SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2`);
    const custom = await client.query(`EXPLAIN (FORMAT JSON) EXECUTE tw_q('${D}', 1)`);
    await client.query('SET LOCAL plan_cache_mode = force_generic_plan');
    const generic = await client.query(`EXPLAIN (FORMAT JSON) EXECUTE tw_q('${D}', 1)`);
    await client.query('DEALLOCATE tw_q');
    return { custom: custom.rows[0]?.['QUERY PLAN'], generic: generic.rows[0]?.['QUERY PLAN'] };
  });
  assert.deepEqual(relations(c.custom), [dedicatedPartitionName('invoices', D)]);
  // A generic plan still prunes, at executor start ("Subplans Removed"), to the same one partition.
  assert.deepEqual(relations(c.generic), [dedicatedPartitionName('invoices', D)]);
  assert.match(JSON.stringify(c.generic), /"Subplans Removed":\s*[1-9]/);
});

test('RLS alone (no tenant_id predicate) does not prune at plan time: the guard predicate is what makes it one partition', async () => {
  const plan = await t.db.dangerouslyCrossTenant().transaction(async (client) => {
    await client.query(`SET LOCAL ROLE tenantwall_app`);
    await client.query(`SELECT set_config('tenantwall.tenant_id', $1, true)`, [A]);
    return (await client.query('EXPLAIN (FORMAT JSON) SELECT * FROM invoices WHERE id = 1')).rows[0]?.['QUERY PLAN'];
  });
  assert.ok(relations(plan).length >= 5, relations(plan).join(','));
});

async function asApp(tenant: string | null, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const pool = t.db.dangerouslyRawAppPool();
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    if (tenant) await c.query(`SELECT set_config('tenantwall.tenant_id', $1, true)`, [tenant]);
    return await c.query(sql, params);
  } finally {
    await c.query('ROLLBACK').catch(() => undefined);
    c.release();
  }
}

test('direct queries on a partition as the application role are isolated', async () => {
  const shared = sharedPartitionName('customers', bucket);
  const ded = dedicatedPartitionName('customers', D);
  // No grant on partitions: naming one directly is refused outright.
  await assert.rejects(asApp(A, `SELECT * FROM ${shared}`), (e: { code?: string }) => e.code === '42501');
  // Even with a grant (a mistake an operator could make), RLS on the partition itself keeps tenants apart.
  await superQuery(t.database.name, `GRANT SELECT, INSERT, UPDATE, DELETE ON ${shared}, ${ded} TO tenantwall_app`);
  try {
    const own = await asApp(A, `SELECT DISTINCT tenant_id FROM ${shared}`);
    assert.deepEqual(own.rows, [{ tenant_id: A }]);
    const viaOwner = await superQuery(t.database.name, `SELECT count(DISTINCT tenant_id)::int AS n FROM ${shared}`);
    assert.equal(viaOwner.rows[0]?.n, 2, 'A and B share this partition');
    assert.equal((await asApp(null, `SELECT * FROM ${shared}`)).rowCount, 0);
    assert.equal((await asApp(A, `SELECT * FROM ${ded}`)).rowCount, 0);
    assert.equal((await asApp(D, `SELECT * FROM ${ded}`)).rowCount, 30);
    assert.equal((await asApp(A, `UPDATE ${shared} SET email = email || 'x' WHERE tenant_id = $1`, [B])).rowCount, 0);
    assert.equal((await asApp(A, `DELETE FROM ${ded}`)).rowCount, 0);
    await assert.rejects(asApp(A, `INSERT INTO ${shared} (tenant_id, id, email) VALUES ($1, 999, 'x')`, [B]), (e: { code?: string }) => e.code === '42501');
  } finally {
    await superQuery(t.database.name, `REVOKE ALL ON ${shared}, ${ded} FROM tenantwall_app`);
  }
});
