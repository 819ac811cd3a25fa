import { defineSchema, tableSql, tenantTable, type Migration, type MigrationContext, type PartitionSpec } from 'tenantwall';
import { apiKeysTable } from 'tenantwall/fastify';
import { meteringMigrationSql, meteringTables } from 'tenantwall';
import { jobTables, jobsMigrationSql } from 'tenantwall/jobs';
import { adminTokensSql } from './admin-auth.ts';
import { consoleSessionsMigrationSql, operatorMigrationSql } from './operator.ts';

// Amounts are integer cents in bigint, bounded to what a JS number holds exactly (the API speaks JSON numbers).
const MAX_CENTS = '9007199254740991';

/**
 * Hash buckets of the service's partitioned tables. Each bucket is LIST-partitioned with a DEFAULT partition for
 * its shared tenants, so any tenant can get a dedicated partition (`tenants move <t> --to dedicated`, or the
 * admin API). Fixed once created: changing it is a rewrite (docs/lifecycle.md).
 */
export const HASH_PARTITIONS = 8;

/**
 * The invoicing service's tables. All are tenant tables: tenantwall adds tenant_id, leads every key, foreign key
 * and index with it, and forces row-level security. Timestamps are truncated to milliseconds so the values
 * in keyset cursors (JSON, millisecond ISO strings) compare exactly with the stored ones.
 */
function invoicingTableSpecs(partition: PartitionSpec | undefined) {
  const p = partition ? { partition } : {};
  return [
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
      ...p,
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
      ...p,
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
      ...p,
    }),
  ];
}

/**
 * The three invoicing tables are partitioned (customers, invoices and line items form one foreign-key cluster,
 * which a move handles as a whole). API keys stay unpartitioned: a handful of rows per tenant.
 */
const invoicingTables = [apiKeysTable('api_keys'), ...invoicingTableSpecs({ hashPartitions: HASH_PARTITIONS })];
/** The same tables as versions before partitioning declared them: what migration 1 created. */
const unpartitionedTables = [apiKeysTable('api_keys'), ...invoicingTableSpecs(undefined)];
/** Names of the tables migration 4 converts, parents before children (foreign keys). */
export const PARTITIONED_TABLES = ['customers', 'invoices', 'invoice_line_items'] as const;

/**
 * Rendered invoice documents (PDF), written by the document worker (service/documents.ts) in the invoice's
 * tenant's scope. Unpartitioned and without a foreign key to `invoices`: a handful of rows per issued invoice,
 * and a key into the partitioned invoices would tie the table to every move of the invoicing cluster. Deleting
 * an invoice deletes its document (repo/invoices.ts).
 */
export const invoiceDocumentsTable = tenantTable({
  name: 'invoice_documents',
  columns: {
    invoice_id: { type: 'uuid' },
    content_type: { type: 'text', default: "'application/pdf'", check: "content_type = 'application/pdf'" },
    content: { type: 'bytea', check: 'octet_length(content) BETWEEN 1 AND 10485760' },
    sha256: { type: 'text', check: "sha256 ~ '^[0-9a-f]{64}$'" },
    rendered_at: { type: 'timestamptz', default: "date_trunc('milliseconds', now())" },
  },
  primaryKey: ['invoice_id'],
});

/** Per-tenant concurrency of the service's background jobs (`jobsMigrationSql`, docs/jobs.md). */
export const JOBS_PER_TENANT = 2;

/**
 * Everything tenant-owned the service stores: its own tables, the metering tables (created by migration 2), the
 * rendered documents and the job table of `tenantwall/jobs` (migration 5). Connecting with the whole set makes the
 * guard, export, move and delete cover usage rows, documents and queued jobs too.
 */
export const schema = defineSchema({ tables: [...invoicingTables, ...meteringTables, invoiceDocumentsTable, ...jobTables] });

/**
 * The declaration of versions before partitioning (migrations 1-3 only): what `npm run bench -- http` compares the
 * partitioned service with. Not for new databases.
 */
export const unpartitionedSchema = defineSchema({ tables: [...unpartitionedTables, ...meteringTables] });

export const migrations: Migration[] = [
  // The SQL of migration 1 is exactly what createSchema() gave before the metering tables joined `schema`.
  // It renders the unpartitioned declarations, so databases created before partitioning keep their checksum.
  { version: 1, name: 'invoicing', sql: (ctx) => [ctx.createRegistry(), ...unpartitionedTables.map((t) => tableSql(t, ctx))].join('\n\n') },
  // Usage events, quota counters, plans, outbox and webhook tables (docs/metering.md).
  { version: 2, name: 'metering', sql: (ctx) => meteringMigrationSql(ctx) },
  // Named admin tokens (service/admin-auth.ts): not tenant data, owner-only.
  { version: 3, name: 'admin-tokens', sql: (ctx) => adminTokensSql(ctx.appRole) },
  // The three invoicing tables become hash-partitioned with dedicated placement (docs/service.md, "Partitioning").
  { version: 4, name: 'partition-invoicing', sql: (ctx) => partitionMigrationSql(ctx) },
  // Invoice documents and background jobs (tenantwall/jobs): issuing an invoice enqueues its rendering.
  { version: 5, name: 'invoice-documents-jobs', sql: (ctx) => documentsMigrationSql(ctx) },
  // Admin requests relayed by a web process that holds the application role only (operator.ts).
  { version: 6, name: 'admin-relay', sql: (ctx) => operatorMigrationSql(ctx) },
  // Console sessions in a table, so a login works whichever process serves the console (operator.ts).
  { version: 7, name: 'console-sessions', sql: () => consoleSessionsMigrationSql },
];

/**
 * Migration 5: the `invoice_documents` and `tw_jobs` tenant tables, and the triggers that connect `tw_jobs` to
 * graphile-worker's queue (its own schema is installed by `installJobQueue`, which `buildApp` runs). On Citus the
 * tables are created (distributed) but the queue triggers are not: graphile-worker's tables live on the
 * coordinator, where a trigger of a distributed table's shards cannot reach them, so documents are not rendered
 * there (docs/service.md).
 */
export function documentsMigrationSql(ctx: MigrationContext): string {
  const tables = [ctx.createTable('invoice_documents'), ctx.createTable('tw_jobs')];
  return [...tables, ...(ctx.citus ? [] : [jobsMigrationSql({ perTenantConcurrency: JOBS_PER_TENANT })])].join('\n\n');
}

/**
 * Migration 4: the invoicing tables of a database created before partitioning become partitioned, in ONE
 * transaction (the one `migrate` runs all pending migrations in): the old tables and their indexes are renamed
 * aside, the partitioned tables are created as declared, every row is copied (tenant by tenant it lands in its
 * hash bucket's shared partition), and the old tables are dropped. A failure rolls all of it back.
 *
 * Not online: PostgreSQL cannot turn a table into a partitioned one in place, and the hash-at-the-top layout
 * has no partition that could adopt the old table as it is (a hash partition must satisfy its remainder, and
 * the hash level has no DEFAULT), so every row is rewritten. The three tables are locked (ACCESS EXCLUSIVE)
 * from the first statement to COMMIT: requests on them wait for the copy. docs/service.md gives the figures
 * and the way to run it in a maintenance window.
 */
export function partitionMigrationSql(ctx: MigrationContext): string {
  // On Citus the shards are the partitions (the tables stay distributed, unpartitioned): nothing to convert. The
  // recorded checksum is the single-server rendering's, as for every migration (docs/scale-out.md).
  if (ctx.citus) return 'SELECT 1; -- Citus: the invoicing tables stay distributed by tenant_id';
  const q = (s: string) => `"${s.replaceAll('"', '""')}"`;
  const tc = ctx.schema.tenantColumn;
  const old = (t: string) => `${t}_unpartitioned`;
  const list = PARTITIONED_TABLES.map(q).join(', ');
  const out = [
    `LOCK TABLE ${list} IN ACCESS EXCLUSIVE MODE;`,
    // Index (and primary key / unique constraint) names are per schema: move the old ones aside.
    `DO $$
DECLARE r record;
BEGIN
  FOR r IN SELECT i.indexrelid FROM pg_index i WHERE i.indrelid IN (${PARTITIONED_TABLES.map((t) => `'${q(t)}'::regclass`).join(', ')}) LOOP
    EXECUTE format('ALTER INDEX %s RENAME TO %I', r.indexrelid::regclass, 'tw_unpartitioned_ix_' || r.indexrelid::text);
  END LOOP;
END $$;`,
  ];
  // Children first: the old foreign keys go with the old tables.
  for (const t of PARTITIONED_TABLES) out.push(`ALTER TABLE ${q(t)} RENAME TO ${q(old(t))};`, `ALTER TABLE ${q(old(t))} NO FORCE ROW LEVEL SECURITY;`);
  for (const t of PARTITIONED_TABLES) {
    const decl = ctx.schema.table(t);
    if (!decl) throw new Error(`table ${t} is not declared`);
    const cols = [tc, ...Object.keys(decl.columns)].map(q).join(', ');
    out.push(
      ctx.createTable(t),
      // The migration role owns the new table: without FORCE it is not subject to its policy while it copies.
      `ALTER TABLE ${q(t)} NO FORCE ROW LEVEL SECURITY;`,
      `INSERT INTO ${q(t)} (${cols}) SELECT ${cols} FROM ${q(old(t))};`,
      `ALTER TABLE ${q(t)} FORCE ROW LEVEL SECURITY;`,
    );
  }
  out.push(`DROP TABLE ${[...PARTITIONED_TABLES].reverse().map((t) => q(old(t))).join(', ')};`, `ANALYZE ${list};`);
  return out.join('\n');
}
