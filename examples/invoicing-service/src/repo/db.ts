import type { ColumnType, Compilable, Generated, Kysely, Transaction } from 'kysely';
import { type QueryOptions, type TenantId, type Tenantwall } from 'tenantwall';
import { type Param, type PreparedQuery, type PreparedValue, type TenantColumn, createTenantKysely, prepareQuery } from 'tenantwall/kysely';

/**
 * The service's tables as Kysely sees them (service/schema.ts declares them). `tenant_id` is a TenantColumn:
 * readable, never written by the service. tenantwall's Kysely plugin adds `tenant_id = <current tenant>` to every
 * reference and sets it on every insert, and the statement guard verifies the result before it is sent.
 *
 * Types are what the pg driver returns: bigint as string, timestamptz as Date. Inserts take numbers for bigint
 * columns and ISO strings (or Dates) for timestamps.
 */
type Bigint = ColumnType<string, number, number>;
type Timestamp = ColumnType<Date, never, never>;
type Stamp = ColumnType<Date, never, Date | string>;
type MaybeTimestamp = ColumnType<Date | null, string | null | undefined, string | null>;

export interface CustomersTable {
  tenant_id: TenantColumn;
  id: Generated<string>;
  name: string;
  email: string | null;
  created_at: Timestamp;
  updated_at: Stamp;
}

export interface InvoicesTable {
  tenant_id: TenantColumn;
  id: Generated<string>;
  customer: string;
  customer_id: string | null;
  amount_cents: Bigint;
  currency: string;
  status: 'draft' | 'issued' | 'paid' | 'void';
  issued_at: MaybeTimestamp;
  created_at: Timestamp;
  updated_at: Stamp;
}

export interface InvoiceLineItemsTable {
  tenant_id: TenantColumn;
  id: Generated<string>;
  invoice_id: string;
  position: number;
  description: string;
  quantity: number;
  unit_amount_cents: Bigint;
  amount_cents: Bigint;
  created_at: Timestamp;
}

export interface InvoiceDocumentsTable {
  tenant_id: TenantColumn;
  invoice_id: string;
  content_type: Generated<string>;
  content: Buffer;
  sha256: string;
  rendered_at: Timestamp;
}

/** The job table of tenantwall/jobs: inserting a row in the tenant's scope is the enqueue (docs/jobs.md). */
export interface TwJobsTable {
  tenant_id: TenantColumn;
  id: Generated<string>;
  task: string;
  payload: ColumnType<unknown, string, string>;
  status: Generated<'queued' | 'done'>;
  run_at: MaybeTimestamp;
  max_attempts: number | null;
  created_at: Timestamp;
  finished_at: MaybeTimestamp;
}

export interface DB {
  customers: CustomersTable;
  invoices: InvoicesTable;
  invoice_line_items: InvoiceLineItemsTable;
  invoice_documents: InvoiceDocumentsTable;
  tw_jobs: TwJobsTable;
}

/** A query handle of the service: the tenant-scoped Kysely instance or one of its transactions. */
export type K = Kysely<DB> | Transaction<DB>;

/**
 * The service's query builder: statements run for the implicit tenant (the request's, set by the tenantwall
 * Fastify plugin, or runWithTenant) or for `tenantId` when given; Kysely transactions are tenantwall transactions.
 */
export function serviceKysely(db: Tenantwall, tenantId?: TenantId | string): Kysely<DB> {
  return createTenantKysely<DB>(db, tenantId === undefined ? {} : { tenantId });
}

/**
 * A read the service runs on every request of a route, compiled once per query handle (`prepareQuery`): the
 * builder, the tenant plugin and the compiler run on the first call only. Same SQL, same scoping, same guard.
 */
export function prepared<P extends Record<string, PreparedValue>, O>(build: (db: Kysely<DB>, param: Param<P>) => Compilable<O>, options?: QueryOptions): (k: K) => PreparedQuery<P, O> {
  const byHandle = new WeakMap<K, PreparedQuery<P, O>>();
  return (k) => {
    let q = byHandle.get(k);
    if (!q) {
      q = prepareQuery(k, build, options);
      byHandle.set(k, q);
    }
    return q;
  };
}
