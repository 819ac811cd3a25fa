import {
  type CompiledQuery,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  Kysely,
  type KyselyPlugin,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
} from 'kysely';
import type { Params, QueryOptions, Tenantwall, TenantTransaction } from '../db/tenantwall.ts';
import { HeldTransaction } from '../db/held-transaction.ts';
import { TenantwallError } from '../errors.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { TENANT_PARAMETER, TenantScopePlugin } from './scope.ts';

// Dialect and driver: Kysely runs its statements through tenantwall's scoped query path.

/**
 * A compiled query may carry tenantwall statement options under this key (prepareQuery sets it); the driver
 * passes them to the scoped query. Kysely hands the same compiled object to the driver.
 */
export const QUERY_OPTIONS: unique symbol = Symbol('tenantwall.queryOptions');

function bindTenant(params: readonly unknown[], tenantId: TenantId): unknown[] {
  return params.map((p) => (p === TENANT_PARAMETER ? tenantId : p));
}

function toResult<R>(r: { rows: unknown[]; command: string; rowCount: number | null }): QueryResult<R> {
  const affects = r.command === 'INSERT' || r.command === 'UPDATE' || r.command === 'DELETE' || r.command === 'MERGE';
  return affects && r.rowCount !== null ? { rows: r.rows as R[], numAffectedRows: BigInt(r.rowCount) } : { rows: r.rows as R[] };
}

/** Where statements go: the implicit (AsyncLocalStorage) tenant, or one fixed tenant. */
interface Target {
  readonly db: Tenantwall;
  readonly tenantId: TenantId | undefined;
}

class TenantwallConnection implements DatabaseConnection {
  readonly #target: Target;
  readonly #held = new HeldTransaction();

  constructor(target: Target) {
    this.#target = target;
  }

  #tenant(): TenantId {
    return this.#target.tenantId ?? this.#target.db.current().tenantId;
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const tx = this.#held.tx;
    if (tx) return toResult<R>(await tx.query(compiled.sql, bindTenant(compiled.parameters, tx.tenantId) as Params));
    const tenantId = this.#tenant();
    const options = (compiled as { [QUERY_OPTIONS]?: QueryOptions })[QUERY_OPTIONS];
    return toResult<R>(await this.#target.db.forTenant(tenantId).query(compiled.sql, bindTenant(compiled.parameters, tenantId), options));
  }

  // eslint-disable-next-line require-yield
  async *streamQuery<R>(): AsyncIterableIterator<QueryResult<R>> {
    throw new TenantwallError('query_failed', 'Streaming is not supported by the tenantwall Kysely driver; page with limit/offset or keyset instead.');
  }

  /**
   * Kysely drives a transaction as begin / queries / commit-or-rollback calls; tenantwall's transaction is a
   * callback. The callback is held open on a promise until Kysely commits (resolve) or rolls back (throw).
   */
  async begin(): Promise<void> {
    await this.#held.begin(this.#target.db, this.#tenant());
  }

  async end(commit: boolean): Promise<void> {
    await this.#held.end(commit, 'No tenantwall transaction is open on this connection.');
  }

  get transaction(): TenantTransaction | undefined {
    return this.#held.tx;
  }
}

class TenantwallDriver implements Driver {
  readonly #target: Target;

  constructor(target: Target) {
    this.#target = target;
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    // A connection is a handle, not a pool client: each statement (or transaction) borrows one inside tenantwall.
    return new TenantwallConnection(this.#target);
  }

  async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    if (settings.isolationLevel || settings.accessMode) {
      throw new TenantwallError('config_invalid', 'Transaction isolation levels and access modes are not supported by tenantwall transactions yet.');
    }
    await (connection as TenantwallConnection).begin();
  }

  async commitTransaction(connection: DatabaseConnection): Promise<void> {
    await (connection as TenantwallConnection).end(true);
  }

  async rollbackTransaction(connection: DatabaseConnection): Promise<void> {
    await (connection as TenantwallConnection).end(false);
  }

  async savepoint(connection: DatabaseConnection, name: string, _compile: QueryCompiler['compileQuery']): Promise<void> {
    await savepointCommand(connection, `SAVEPOINT ${quoteIdent(name)}`);
  }

  async rollbackToSavepoint(connection: DatabaseConnection, name: string, _compile: QueryCompiler['compileQuery']): Promise<void> {
    await savepointCommand(connection, `ROLLBACK TO SAVEPOINT ${quoteIdent(name)}`);
  }

  async releaseSavepoint(connection: DatabaseConnection, name: string, _compile: QueryCompiler['compileQuery']): Promise<void> {
    await savepointCommand(connection, `RELEASE SAVEPOINT ${quoteIdent(name)}`);
  }

  async releaseConnection(): Promise<void> {}

  async destroy(): Promise<void> {}
}

async function savepointCommand(connection: DatabaseConnection, sql: string): Promise<void> {
  const tx = (connection as TenantwallConnection).transaction;
  if (!tx) throw new TenantwallError('query_failed', 'Savepoints need an open transaction.');
  await tx.query(sql);
}

/** A Kysely dialect whose statements run through tenantwall (scoped, guarded when a guard is configured). */
export class TenantwallDialect implements Dialect {
  readonly #target: Target;

  constructor(db: Tenantwall, tenantId?: TenantId | string) {
    this.#target = { db, tenantId: tenantId === undefined ? undefined : TenantId.parse(tenantId) };
  }

  createDriver(): Driver {
    return new TenantwallDriver(this.#target);
  }

  createQueryCompiler(): QueryCompiler {
    return new PostgresQueryCompiler();
  }

  createAdapter(): DialectAdapter {
    return new PostgresAdapter();
  }

  createIntrospector(db: Kysely<any>): DatabaseIntrospector {
    return new PostgresIntrospector(db);
  }
}

/** Options of `createTenantKysely`. */
export interface TenantKyselyOptions {
  /** Run every statement for this tenant. Default: the implicit tenant (runWithTenant / request context). */
  tenantId?: TenantId | string | undefined;
  /** More Kysely plugins, applied after the tenant plugin. */
  plugins?: readonly KyselyPlugin[] | undefined;
}

/**
 * A Kysely instance whose queries are scoped by the tenant plugin and run through tenantwall: `db.query` for the
 * implicit tenant (or the scope of `tenantId`), Kysely transactions as tenantwall transactions.
 */
export function createTenantKysely<DB>(db: Tenantwall, options: TenantKyselyOptions = {}): Kysely<DB> {
  return new Kysely<DB>({
    dialect: new TenantwallDialect(db, options.tenantId),
    plugins: [new TenantScopePlugin(db.schema), ...(options.plugins ?? [])],
  });
}
