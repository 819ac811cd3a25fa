import type pg from 'pg';
import { NodePgDatabase, NodePgSession, NodePgTransaction } from 'drizzle-orm/node-postgres';
import { type Column, DefaultLogger, DrizzleQueryError, type SQL, createTableRelationsHelpers, eq, extractTablesRelationalConfig, getTableColumns, sql, type Table } from 'drizzle-orm';
import { PgDialect, type PgPreparedQuery, type PgTransactionConfig, type PreparedQueryConfig } from 'drizzle-orm/pg-core';
import { HeldTransaction } from '../db/held-transaction.ts';
import type { QueryOptions, Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError, isTenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';

/**
 * Stands for "the current tenant id" in a Drizzle statement's parameters: as a column default
 * (`$defaultFn(tenantPlaceholder)`) and in `tenantIs(table)`. The tenantwall Drizzle client replaces it with the
 * tenant of the scope that runs the statement, so the SQL text is the same for every tenant and the value always
 * matches the scope. Sent through any other driver, it refuses to serialise.
 */
export const TENANT_PLACEHOLDER: { readonly toPostgres: () => never; readonly toString: () => string } = Object.freeze({
  toPostgres(): never {
    throw new TenantwallError('tenant_context_missing', 'A tenantwall tenant placeholder reached a driver other than the tenantwall Drizzle client.');
  },
  toString: () => '[tenantwall tenant id]',
});

/**
 * The tenant placeholder typed as a column value, for Drizzle column defaults:
 * `tenantId: uuid('tenant_id').notNull().$defaultFn(tenantPlaceholder)` makes every insert write the scope's tenant.
 */
export function tenantPlaceholder<T = string>(): T {
  return TENANT_PLACEHOLDER as unknown as T;
}

/**
 * `<table>.tenant_id = <the scope's tenant>`: the predicate the guard requires on every tenant table a statement
 * reads or changes (`.where(and(tenantIs(invoices), eq(invoices.id, id)))`). `column` is the SQL name of the
 * tenant column (default `tenant_id`).
 */
export function tenantIs(table: Table, column = 'tenant_id'): SQL {
  const col = Object.values(getTableColumns(table)).find((c: Column) => c.name === column);
  if (!col) throw new TenantwallError('unscoped_query', `The Drizzle table has no column named ${column}: it is not a tenant table.`);
  return eq(col, TENANT_PLACEHOLDER);
}

function bindTenant(params: readonly unknown[] | undefined, tenantId: TenantId): unknown[] {
  return (params ?? []).map((p) => (p === TENANT_PLACEHOLDER ? tenantId : p));
}

/** What Drizzle's node-postgres session hands its client: a pg query config (it may carry rowMode and types). */
interface DrizzleQueryConfig {
  readonly text: string;
  readonly name?: string | undefined;
  readonly rowMode?: 'array' | undefined;
  readonly types?: pg.CustomTypesConfig | undefined;
}

function shapeOf(config: DrizzleQueryConfig | string): QueryOptions | undefined {
  if (typeof config === 'string') return undefined;
  return { rowMode: config.rowMode, types: config.types };
}

function textOf(config: DrizzleQueryConfig | string): string {
  return typeof config === 'string' ? config : config.text;
}

/** Where statements go: the implicit (AsyncLocalStorage) tenant, or one fixed tenant. */
interface Target {
  readonly db: Tenantwall;
  readonly tenantId: TenantId | undefined;
}

function tenantOf(target: Target): TenantId {
  return target.tenantId ?? target.db.current().tenantId;
}

/**
 * The client a Drizzle transaction runs on. Drizzle sends `begin`, the statements, then `commit` or `rollback`
 * as queries; tenantwall's transaction is a callback, held open on a promise until Drizzle commits or rolls back.
 */
class TenantwallDrizzleTransactionClient {
  readonly #target: Target;
  readonly #held = new HeldTransaction();

  constructor(target: Target) {
    this.#target = target;
  }

  async query(config: DrizzleQueryConfig | string, values?: readonly unknown[]): Promise<pg.QueryResult> {
    const text = textOf(config).trim();
    const word = /^[a-z]+/i.exec(text)?.[0]?.toLowerCase();
    if (word === 'begin') {
      if (text.toLowerCase() !== 'begin') {
        throw new TenantwallError('config_invalid', 'Transaction isolation levels and access modes are not supported by tenantwall transactions yet.');
      }
      await this.#begin();
      return emptyResult('BEGIN');
    }
    if ((word === 'commit' || word === 'rollback') && /^(commit|rollback)$/i.test(text)) {
      await this.#end(word === 'commit');
      return emptyResult(word.toUpperCase());
    }
    const tx = this.#held.tx;
    if (!tx) throw new TenantwallError('query_failed', 'No tenantwall transaction is open on this Drizzle client.');
    return tx.query(text, bindTenant(values, tx.tenantId), shapeOf(config));
  }

  async #begin(): Promise<void> {
    if (this.#held.held) throw new TenantwallError('query_failed', 'A tenantwall transaction is already open on this Drizzle client.');
    await this.#held.begin(this.#target.db, tenantOf(this.#target));
  }

  async #end(commit: boolean): Promise<void> {
    await this.#held.end(commit, 'No tenantwall transaction is open on this Drizzle client.');
  }

  /** Drizzle releases the client after COMMIT/ROLLBACK; one still open (a bug upstream) is rolled back. */
  release(): void {
    if (this.#held.held) void this.#end(false).catch(() => undefined);
  }
}

function emptyResult(command: string): pg.QueryResult {
  return { command, rowCount: null, oid: 0, fields: [], rows: [] };
}

/**
 * The client behind a tenantwall Drizzle database (`db.$client`). Each statement runs through `forTenant(...)
 * .query` (one round trip, guard verified); `connect()` gives Drizzle a transaction client. Drizzle treats it as
 * a pool (its class name ends in `Pool`), which is what makes `db.transaction()` call `connect()`.
 */
export class TenantwallDrizzlePool {
  readonly #target: Target;

  constructor(db: Tenantwall, tenantId?: TenantId | string) {
    this.#target = { db, tenantId: tenantId === undefined ? undefined : TenantId.parse(tenantId) };
  }

  /** One statement in the tenant's scope (the fixed tenant, or the implicit one). */
  async query(config: DrizzleQueryConfig | string, values?: readonly unknown[]): Promise<pg.QueryResult> {
    const text = textOf(config);
    if (/^\s*(begin|start\s+transaction|commit|rollback|savepoint|release)\b/i.test(text)) {
      throw new TenantwallError('unscoped_query', 'Transaction control statements outside db.transaction() would not stay on one connection; use db.transaction().');
    }
    const tenantId = tenantOf(this.#target);
    return this.#target.db.forTenant(tenantId).query(text, bindTenant(values, tenantId), shapeOf(config));
  }

  /** A client for one Drizzle transaction. */
  async connect(): Promise<TenantwallDrizzleTransactionClient> {
    return new TenantwallDrizzleTransactionClient(this.#target);
  }
}

type AnySession = NodePgSession<Record<string, unknown>, any>;
type RelationalSchema = ConstructorParameters<typeof NodePgSession>[2];

/** Drizzle wraps every driver error in DrizzleQueryError (its message lists the parameters): tenantwall's own errors keep their code. */
function unwrap(err: unknown): unknown {
  return err instanceof DrizzleQueryError && isTenantwallError(err.cause) ? err.cause : err;
}

/**
 * Drizzle's node-postgres session with tenantwall's errors passed through as they are, and transactions on a
 * tenantwall transaction client (Drizzle's own would start an unpatched session).
 */
class TenantwallDrizzleSession extends NodePgSession<Record<string, unknown>, any> {
  readonly #client: TenantwallDrizzlePool | TenantwallDrizzleTransactionClient;
  readonly #dialect: PgDialect;
  readonly #schema: RelationalSchema;

  constructor(client: TenantwallDrizzlePool | TenantwallDrizzleTransactionClient, dialect: PgDialect, schema: RelationalSchema, options: ConstructorParameters<typeof NodePgSession>[3]) {
    super(client as unknown as pg.Pool, dialect, schema, options);
    this.#client = client;
    this.#dialect = dialect;
    this.#schema = schema;
    this.#options = options;
  }

  readonly #options: ConstructorParameters<typeof NodePgSession>[3];

  override prepareQuery<T extends PreparedQueryConfig = PreparedQueryConfig>(...args: Parameters<AnySession['prepareQuery']>): PgPreparedQuery<T> {
    const prepared = (super.prepareQuery as (...a: unknown[]) => PgPreparedQuery<T>).apply(this, args);
    const internal = prepared as unknown as { queryWithCache: (...a: unknown[]) => Promise<unknown> };
    const run = internal.queryWithCache.bind(prepared);
    internal.queryWithCache = async (...a: unknown[]) => {
      try {
        return await run(...a);
      } catch (err) {
        throw unwrap(err);
      }
    };
    return prepared;
  }

  override async transaction<T>(fn: (tx: NodePgTransaction<Record<string, unknown>, any>) => Promise<T>, config?: PgTransactionConfig): Promise<T> {
    if (!(this.#client instanceof TenantwallDrizzlePool)) throw new TenantwallError('query_failed', 'Nested transactions run through tx.transaction() (a savepoint).');
    if (config && Object.keys(config).length > 0) {
      throw new TenantwallError('config_invalid', 'Transaction isolation levels and access modes are not supported by tenantwall transactions yet.');
    }
    const client = await this.#client.connect();
    const session = new TenantwallDrizzleSession(client, this.#dialect, this.#schema, this.#options);
    const tx = new NodePgTransaction<Record<string, unknown>, any>(this.#dialect, session, this.#schema);
    await tx.execute(sql`begin`);
    try {
      const result = await fn(tx);
      await tx.execute(sql`commit`);
      return result;
    } catch (err) {
      await tx.execute(sql`rollback`);
      throw err;
    } finally {
      client.release();
    }
  }
}

/** Options of `createTenantDrizzle`. */
export interface TenantDrizzleOptions<TSchema extends Record<string, unknown>> {
  /** Run every statement for this tenant. Default: the implicit tenant (runWithTenant / request context). */
  tenantId?: TenantId | string | undefined;
  /** The Drizzle schema (tables and relations), for `db.query.<table>` relational queries. */
  schema?: TSchema | undefined;
  /** Drizzle's `casing` option. */
  casing?: 'snake_case' | 'camelCase' | undefined;
  /** Drizzle's `logger` option. */
  logger?: boolean | { logQuery(query: string, params: unknown[]): void } | undefined;
}

/**
 * A Drizzle node-postgres database whose statements run through tenantwall: each one in the scope of the implicit
 * tenant (or `tenantId`), in one round trip, verified by the guard when `Tenantwall.connect` got one; Drizzle
 * transactions as tenantwall transactions. Inserts get the tenant from columns declared with
 * `$defaultFn(tenantPlaceholder)`; reads and writes name it with `tenantIs(table)` (docs/drizzle.md).
 */
export function createTenantDrizzle<TSchema extends Record<string, unknown> = Record<string, never>>(
  db: Tenantwall,
  options: TenantDrizzleOptions<TSchema> = {},
): NodePgDatabase<TSchema> & { $client: TenantwallDrizzlePool } {
  const client = new TenantwallDrizzlePool(db, options.tenantId);
  const dialect = new PgDialect(options.casing ? { casing: options.casing } : {});
  let schema: RelationalSchema;
  if (options.schema) {
    const tables = extractTablesRelationalConfig(options.schema, createTableRelationsHelpers);
    schema = { fullSchema: options.schema, schema: tables.tables, tableNamesMap: tables.tableNamesMap };
  }
  const logger = options.logger === true ? new DefaultLogger() : options.logger === false ? undefined : options.logger;
  const session = new TenantwallDrizzleSession(client, dialect, schema, logger ? { logger } : {});
  const database = new NodePgDatabase(dialect, session, schema as never) as NodePgDatabase<TSchema> & { $client: TenantwallDrizzlePool };
  database.$client = client;
  return database;
}
