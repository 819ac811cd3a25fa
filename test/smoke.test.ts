import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TenantId } from '../src/index.ts';
import { seedMigrations, seedSchema } from './fixtures/seed.ts';
import { createTestTenantwall } from './helpers/db.ts';

test('smoke', async () => {
  const t = await createTestTenantwall(seedSchema, seedMigrations);
  try {
    const a = await t.db.tenants.create({ slug: 'a', name: 'A' });
    const b = await t.db.tenants.create({ slug: 'b', name: 'B' });
    await t.db.forTenant(a.id).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'x', 5)`, [a.id]);
    await t.db.forTenant(b.id).query(`INSERT INTO invoices (tenant_id, customer, amount_cents) VALUES ($1, 'y', 7)`, [b.id]);
    const r = await t.db.forTenant(a.id).query('SELECT * FROM invoices');
    assert.equal(r.rows.length, 1);
    assert.equal(r.rows[0]?.customer, 'x');
    const raw = await t.db.dangerouslyRawAppPool().query('SELECT * FROM invoices');
    assert.equal(raw.rows.length, 0);
    assert.ok(TenantId.is(a.id));
  } finally {
    await t.close();
  }
});
