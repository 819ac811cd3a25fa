import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TenantwallError, dedicatedPartitionName, defineSchema, schemaSql, tenantTable } from '../../src/index.ts';

const ctx = (partition: { hashPartitions: number; dedicated?: boolean }) => ({
  schema: defineSchema({ tables: [tenantTable({ name: 'x', columns: { id: { type: 'uuid' } }, partition })] }),
  appRole: 'app',
  settingName: 'tenantwall.tenant_id',
});

test('hybrid layout DDL: hash buckets LIST-partitioned with a DEFAULT, RLS forced on each relation', () => {
  const sql = schemaSql(ctx({ hashPartitions: 2 }));
  assert.match(sql, /CREATE TABLE "x_p1" PARTITION OF "x" FOR VALUES WITH \(MODULUS 2, REMAINDER 1\) PARTITION BY LIST \("tenant_id"\);/);
  assert.match(sql, /CREATE TABLE "x_p1_shared" PARTITION OF "x_p1" DEFAULT;/);
  for (const rel of ['x', 'x_p0', 'x_p0_shared', 'x_p1', 'x_p1_shared']) {
    assert.match(sql, new RegExp(`ALTER TABLE "${rel}" FORCE ROW LEVEL SECURITY;`), rel);
    assert.match(sql, new RegExp(`CREATE POLICY "tenant_isolation" ON "${rel}" `), rel);
  }
  // Grants on the parent only: a partition named directly is refused to the application role.
  assert.deepEqual(sql.match(/GRANT [^;]+ ON "x[^"]*"/g), ['GRANT SELECT, INSERT, UPDATE, DELETE ON "x"']);
});

test('dedicated: false keeps plain hash partitions; declarations that cannot be named are refused', () => {
  const sql = schemaSql(ctx({ hashPartitions: 2, dedicated: false }));
  assert.match(sql, /CREATE TABLE "x_p1" PARTITION OF "x" FOR VALUES WITH \(MODULUS 2, REMAINDER 1\);/);
  assert.doesNotMatch(sql, /DEFAULT;|PARTITION BY LIST/);
  assert.throws(
    () => tenantTable({ name: 'a'.repeat(55), columns: { id: { type: 'uuid' } }, partition: { hashPartitions: 16 } }),
    (e: unknown) => e instanceof TenantwallError && e.code === 'schema_invalid',
  );
  assert.throws(() => tenantTable({ name: 'x', columns: { id: { type: 'uuid' } }, partition: { hashPartitions: 0 } }), TenantwallError);
  // Long table names still give distinct, valid dedicated partition names.
  const id = '0b6f9a3e-3c1d-4a8e-9a51-2f0c6d1e7b42';
  const a = dedicatedPartitionName('a'.repeat(40) + 'x', id);
  const b = dedicatedPartitionName('a'.repeat(40) + 'y', id);
  assert.ok(a.length <= 63 && b.length <= 63 && a !== b, `${a} ${b}`);
  assert.equal(dedicatedPartitionName('invoices', id), 'invoices_t_0b6f9a3e3c1d4a8e9a512f0c6d1e7b42');
});
