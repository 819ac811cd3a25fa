import { defineSchema, tenantTable, type Migration } from 'tenantwall';
import { apiKeysTable } from 'tenantwall/fastify';
import { meteringMigrationSql, meteringTables } from 'tenantwall';
import { adminTokensSql } from './admin-auth.ts';

// Amounts are integer cents in bigint, bounded to what a JS number holds exactly (the API speaks JSON numbers).
const MAX_CENTS = '9007199254740991';

/**
 * The invoicing service's tables. All are tenant tables: tenantwall adds tenant_id, leads every key, foreign key
 * and index with it, and forces row-level security. Timestamps are truncated to milliseconds so the values
 * in keyset cursors (JSON, millisecond ISO strings) compare exactly with the stored ones.
 */
const invoicingTables = [
    apiKeysTable('api_keys'),
    tenantTable({
      name: 'customers',
      columns: {
        id: { type: 'uuid', default: 'gen_random_uuid()' },
        name: { type: 'text', check: 'length(name) BETWEEN 1 AND 200' },
        email: { type: 'text', nullable: true, check: 'length(email) <= 320' },
        created_at: { type: 'timestamptz', default: "date_trunc('milliseconds', now())" },
        updated_at: { type: 'timestamptz', default: "date_trunc('milliseconds', now())" },
      },
      indexes: [{ columns: ['email'], unique: true }, { columns: ['created_at', 'id'] }, { columns: ['name', 'id'] }],
    }),
    tenantTable({
      name: 'invoices',
      columns: {
        id: { type: 'uuid', default: 'gen_random_uuid()' },
        customer: { type: 'text', check: 'length(customer) BETWEEN 1 AND 200' },
        customer_id: { type: 'uuid', nullable: true },
        amount_cents: { type: 'bigint', check: `amount_cents BETWEEN 0 AND ${MAX_CENTS}` },
        currency: { type: 'text', default: "'EUR'", check: "currency ~ '^[A-Z]{3}$'" },
        status: { type: 'text', default: "'draft'", check: "status IN ('draft', 'issued', 'paid', 'void')" },
        issued_at: { type: 'timestamptz', nullable: true },
        created_at: { type: 'timestamptz', default: "date_trunc('milliseconds', now())" },
        updated_at: { type: 'timestamptz', default: "date_trunc('milliseconds', now())" },
      },
      foreignKeys: [{ columns: ['customer_id'], references: 'customers' }],
      indexes: [
        { columns: ['created_at', 'id'] },
        { columns: ['amount_cents', 'id'] },
        { columns: ['status', 'created_at', 'id'] },
        { columns: ['customer_id'] },
        { columns: ['issued_at'] },
      ],
    }),
    tenantTable({
      name: 'invoice_line_items',
      columns: {
        id: { type: 'uuid', default: 'gen_random_uuid()' },
        invoice_id: { type: 'uuid' },
        position: { type: 'integer', check: 'position BETWEEN 1 AND 1000' },
        description: { type: 'text', check: 'length(description) BETWEEN 1 AND 500' },
        quantity: { type: 'integer', check: 'quantity BETWEEN 1 AND 1000000' },
        unit_amount_cents: { type: 'bigint', check: `unit_amount_cents BETWEEN 0 AND ${MAX_CENTS}` },
        amount_cents: { type: 'bigint', check: `amount_cents BETWEEN 0 AND ${MAX_CENTS}` },
        created_at: { type: 'timestamptz', default: "date_trunc('milliseconds', now())" },
      },
      foreignKeys: [{ columns: ['invoice_id'], references: 'invoices', onDelete: 'cascade' }],
      indexes: [{ columns: ['invoice_id', 'position'], unique: true }],
    }),
];

/**
 * Everything tenant-owned the service stores: its own tables and the metering tables (created by migration 2).
 * Connecting with the whole set makes the guard, export, move and delete cover usage rows too.
 */
export const schema = defineSchema({ tables: [...invoicingTables, ...meteringTables] });

export const migrations: Migration[] = [
  // The SQL of migration 1 is exactly what createSchema() gave before the metering tables joined `schema`.
  { version: 1, name: 'invoicing', sql: (ctx) => [ctx.createRegistry(), ...invoicingTables.map((t) => ctx.createTable(t.name))].join('\n\n') },
  // Usage events, quota counters, plans, outbox and webhook tables (docs/metering.md).
  { version: 2, name: 'metering', sql: (ctx) => meteringMigrationSql(ctx) },
  // Named admin tokens (service/admin-auth.ts): not tenant data, owner-only.
  { version: 3, name: 'admin-tokens', sql: (ctx) => adminTokensSql(ctx.appRole) },
];
