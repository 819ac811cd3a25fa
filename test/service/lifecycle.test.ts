/**
 * The service's whole tenant-owned data, metering included, goes through the lifecycle operations: a deleted
 * tenant leaves no row in any table that has a tenant column, and an export holds its usage rows too.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Metering, type TenantId, deleteTenant, exportTenant } from '../../src/index.ts';
import { serviceGuard } from '../../examples/invoicing-service/src/guard.ts';
import { meteringSpec } from '../../examples/invoicing-service/src/metering.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';

let t: TestTenantwall;
let metering: Metering;
let A: TenantId;
let B: TenantId;

/** Rows of `tenant` in every table of the database that has a tenant_id column (found in the catalog). */
async function rowsEverywhere(tenant: string): Promise<Record<string, number>> {
  const { rows } = await superQuery(
    t.database.name,
    `SELECT c.relname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE a.attname = 'tenant_id' AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = 'public' ORDER BY 1`,
  );
  const out: Record<string, number> = {};
  for (const r of rows as Array<{ relname: string }>) {
    const n = (await superQuery(t.database.name, `SELECT count(*)::int AS n FROM "${r.relname}" WHERE tenant_id = $1`, [tenant])).rows[0]?.n as number;
    if (n > 0) out[r.relname] = n;
  }
  return out;
}

before(async () => {
  t = await createTestTenantwall(schema, migrations, { guard: serviceGuard() });
  metering = new Metering(t.db, { spec: meteringSpec });
  A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
  B = (await t.db.tenants.create({ slug: 'b', name: 'B' })).id;
  const meter = meteringSpec.meters[0]?.name ?? 'api_requests';
  for (const id of [A, B]) {
    await t.db.forTenant(id).query('INSERT INTO customers (tenant_id, name) VALUES ($1, $2)', [id, 'Customer']);
    await metering.record(id, { event_id: `e-${id}`, meter });
  }
});
after(async () => {
  await metering.close();
  await t.close();
});

test('the service schema covers the metering tables', () => {
  assert.ok(schema.isTenantTable('tw_usage_events'));
});

test('an export of a tenant holds its usage events', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-export-'));
  try {
    const result = await exportTenant(t.db, A, { dir: path.join(dir, 'a'), format: 'ndjson' });
    const usage = result.manifest.tables.find((x) => x.table === 'tw_usage_events');
    assert.equal(usage?.rows, 1);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a deleted tenant leaves no row anywhere, metering included; the other tenant keeps all of its rows', async () => {
  const before = await rowsEverywhere(A);
  assert.ok((before.tw_usage_events ?? 0) > 0 && (before.customers ?? 0) > 0, JSON.stringify(before));
  const bBefore = await rowsEverywhere(B);
  await deleteTenant(t.db, A, { confirm: 'a' });
  assert.deepEqual(await rowsEverywhere(A), {});
  assert.deepEqual(await rowsEverywhere(B), bBefore);
});
