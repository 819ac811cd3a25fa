import {
  type CompiledQuery,
  type ConnectionProvider,
  type DatabaseConnection,
  type DatabaseIntrospector,
  type Dialect,
  type DialectAdapter,
  type Driver,
  DefaultConnectionProvider,
  DefaultQueryExecutor,
  Kysely,
  type KyselyPlugin,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type QueryCompiler,
  type QueryResult,
  type TransactionSettings,
  type KyselyProps,
  type UnknownRow,
} from 'kysely';
import type { Params, QueryOptions, Tenantwall, TenantTransaction } from '../db/tenantwall.ts';
import { HeldTransaction } from '../db/held-transaction.ts';
import { TenantwallError } from '../errors.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { requireTenantId } from '../tenant/context.ts';
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

/**
 * One statement outside a transaction: the scoped query of the target's tenant (what `forTenant(tenant).query`
 * runs, without a scope object per statement: the fixed tenant was parsed once, the implicit one by runWithTenant).
 */
async function runStatement<R>(target: Target, compiled: CompiledQuery): Promise<QueryResult<R>> {
  const tenantId = target.tenantId ?? requireTenantId();
  const options = (compiled as { [QUERY_OPTIONS]?: QueryOptions })[QUERY_OPTIONS];
  return toResult<R>(await target.db.runScoped(tenantId, compiled.sql, bindTenant(compiled.parameters, tenantId) as Params, options));
}

class TenantwallConnection implements DatabaseConnection {
  readonly #target: Target;
  readonly #held = new HeldTransaction();

  constructor(target: Target) {
    this.#target = target;
  }

  #tenant(): TenantId {
    return this.#target.tenantId ?? requireTenantId();
  }

  async executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const tx = this.#held.tx;
    if (tx) return toResult<R>(await tx.query(compiled.sql, bindTenant(compiled.parameters, tx.tenantId) as Params));
    return runStatement<R>(this.#target, compiled);
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

  /** A transaction was begun and not yet ended. */
  get held(): boolean {
    return this.#held.held || this.#held.tx !== undefined;
  }
}

/** Idle connection handles kept for reuse (a handle holds no database connection while idle). */
const IDLE_HANDLES_MAX = 64;

class TenantwallDriver implements Driver {
  readonly #target: Target;
  readonly #idle: TenantwallConnection[] = [];

  constructor(target: Target) {
    this.#target = target;
  }

  async init(): Promise<void> {}

  async acquireConnection(): Promise<DatabaseConnection> {
    // A connection is a handle, not a pool client: each statement (or transaction) borrows one inside tenantwall.
    return this.#idle.pop() ?? new TenantwallConnection(this.#target);
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

  async releaseConnection(connection: DatabaseConnection): Promise<void> {
    // Only a handle with no transaction held open is reused (Kysely ends its transactions before releasing).
    const c = connection as TenantwallConnection;
    if (!c.held && this.#idle.length < IDLE_HANDLES_MAX) this.#idle.push(c);
  }

  async destroy(): Promise<void> {}
}

async function savepointCommand(connection: DatabaseConnection, sql: string): Promise<void> {
  const tx = (connection as TenantwallConnection).transaction;
  if (!tx) throw new TenantwallError('query_failed', 'Savepoints need an open transaction.');
  await tx.query(sql);
}

const identityResult = TenantScopePlugin.prototype.transformResult;

/**
 * One compiler for every createTenantKysely instance: compiling is synchronous and starts from a clean state,
 * and an instance per tenant (`tenantId`) would otherwise give Kysely's compiler code as many objects to read
 * (measured: one instance per tenant of 50 cost more CPU per query than one instance).
 */
const SHARED_COMPILER = new PostgresQueryCompiler();

/** One tenant plugin per schema, shared by the instances of createTenantKysely (its transform is synchronous). */
const PLUGINS = new WeakMap<object, TenantScopePlugin>();

function scopePluginFor(db: Tenantwall): TenantScopePlugin {
  let plugin = PLUGINS.get(db.schema);
  if (!plugin) PLUGINS.set(db.schema, (plugin = new TenantScopePlugin(db.schema)));
  return plugin;
}

/**
 * The executor of `createTenantKysely`: a statement outside a transaction goes straight to the tenant's scoped
 * query. Kysely's own executor borrows a connection handle from the driver around every statement, with a chain
 * of async calls (acquire, execute, every plugin's transformResult, release) that cost more CPU per point
 * lookup than the guard's check and the scoped query's own work in Node.js (docs/guard.md, Performance).
 * Everything else is Kysely's: compiling, plugins (a plugin's transformResult still runs, unless it is the
 * tenant plugin's, which returns the result as it is), and transactions and `connection()`, whose executor
 * (`withConnectionProvider`) is Kysely's own on the connection handle they hold.
 */
class TenantwallQueryExecutor extends DefaultQueryExecutor {
  readonly #target: Target;
  readonly #compiler: QueryCompiler;
  readonly #adapter: DialectAdapter;
  readonly #provider: ConnectionProvider;
  readonly #resultPlugins: readonly KyselyPlugin[];

  constructor(target: Target, compiler: QueryCompiler, adapter: DialectAdapter, provider: ConnectionProvider, plugins: readonly KyselyPlugin[]) {
    super(compiler, adapter, provider, [...plugins]);
    this.#target = target;
    this.#compiler = compiler;
    this.#adapter = adapter;
    this.#provider = provider;
    this.#resultPlugins = plugins.filter((p) => p.transformResult !== identityResult);
  }

  override executeQuery<R>(compiled: CompiledQuery): Promise<QueryResult<R>> {
    const result = runStatement<R>(this.#target, compiled);
    return this.#resultPlugins.length === 0 ? result : this.#transformResult(result, compiled);
  }

  async #transformResult<R>(pending: Promise<QueryResult<R>>, compiled: CompiledQuery): Promise<QueryResult<R>> {
    let result = (await pending) as QueryResult<UnknownRow>;
    for (const plugin of this.#resultPlugins) result = await plugin.transformResult({ result, queryId: compiled.queryId });
    return result as QueryResult<R>;
  }

  #with(plugins: readonly KyselyPlugin[]): TenantwallQueryExecutor {
    return new TenantwallQueryExecutor(this.#target, this.#compiler, this.#adapter, this.#provider, plugins);
  }

  override withPlugins(plugins: readonly KyselyPlugin[]): DefaultQueryExecutor {
    return this.#with([...this.plugins, ...plugins]);
  }

  override withPlugin(plugin: KyselyPlugin): DefaultQueryExecutor {
    return this.#with([...this.plugins, plugin]);
  }

  override withPluginAtFront(plugin: KyselyPlugin): DefaultQueryExecutor {
    return this.#with([plugin, ...this.plugins]);
  }

  override withoutPlugins(): DefaultQueryExecutor {
    return this.#with([]);
  }

  // A transaction or connection() runs its statements on the handle it holds: Kysely's executor.
  override withConnectionProvider(provider: ConnectionProvider): DefaultQueryExecutor {
    return new DefaultQueryExecutor(this.#compiler, this.#adapter, provider, [...this.plugins]);
  }
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

  /** @internal The construction arguments of createTenantKysely's Kysely instance (its executor, see above). */
  kyselyProps(plugins: readonly KyselyPlugin[]): KyselyProps {
    const driver = this.createDriver();
    const executor = new TenantwallQueryExecutor(this.#target, SHARED_COMPILER, this.createAdapter(), new DefaultConnectionProvider(driver), plugins);
    return { config: { dialect: this, plugins: [...plugins] }, driver, executor, dialect: this };
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
  const dialect = new TenantwallDialect(db, options.tenantId);
  return new Kysely<DB>(dialect.kyselyProps([scopePluginFor(db), ...(options.plugins ?? [])]));
}
