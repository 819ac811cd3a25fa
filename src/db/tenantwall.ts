import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { type ResolvedOptions, type TenantwallOptions, parseDatabaseUrl, resolveOptions } from '../config/options.ts';
import { TenantwallError } from '../errors.ts';
import type { Schema } from '../schema/declare.ts';
import { type DdlContext, quoteIdent, quoteLiteral } from '../schema/ddl.ts';
import { type MigrateResult, type Migration, type MigrationProgress, applyMigrations, renderMigrations, type RenderedMigration } from '../schema/migrations.ts';
import { currentTenantContext, requireTenantId, runWithTenant } from '../tenant/context.ts';
import { TenantId, configureTenantKey } from '../tenant/tenant-id.ts';
import { checkCitusSettings, detectCitus } from './citus.ts';
import { type EmbeddedServer, startEmbeddedPostgres } from './embedded.ts';
import { type DbLimits, LimitCounter, type LimitExceeded, type LimitName, type LimitsProvider, LimitSteps, NO_LIMITS, type ResolvedLimits, limitOf, resolveLimits, resolveLimitsOnce } from './limits.ts';
import { isConnectionError, mapCheckoutError, mapPgError, watchPool } from './pg-errors.ts';
import { type StatementObserver, endObservers, rowsOf, startObservers } from './observer.ts';
import { type PreparedStep, queryShaped, runPipelined } from './pipelined-query.ts';
import { detectPooler, poolerStartupError, type PoolerDetection } from './pooler.ts';
import { StatementCache } from './statement-cache.ts';
import { TenantRegistry } from './tenant-registry.ts';
import { withTransaction } from './transaction.ts';

export type Row = Record<string, any>;
/** Bind parameters of a statement. */
export type Params = readonly unknown[];

/** Options of one tenant-scoped statement (`forTenant(id).query`, `db.query`). */
export interface QueryOptions {
  /**
   * How PostgreSQL plans the statement when it runs from the statement cache.
   * - `auto` (default): `generic` where the guard proved that the plan cannot depend on the tenant's data (an
   *   equality lookup on a primary or unique key led by tenant_id, an INSERT of VALUES: see docs/guard.md),
   *   `custom` otherwise and whenever no guard is configured.
   * - `custom`: planned afresh for every execution with its parameter values, so each tenant gets
   *   estimates for its own data (docs/architecture.md, the generic-plan trap).
   * - `generic`: one plan per cached statement, reused for every tenant. Only for statements whose best plan
   *   cannot depend on the tenant's data, i.e. lookups by a primary or unique key that starts with tenant_id
   *   (at most one row for every tenant). It saves the planning of every execution, which is most of the
   *   server's time for such a lookup. No effect with `statementCacheSize: 0` (unnamed statements are always
   *   planned for their values) or inside `transaction()`.
   */
  plan?: 'auto' | 'custom' | 'generic' | undefined;
  /** `'array'`: rows as arrays in column order (query builders that map columns by position, e.g. Drizzle). */
  rowMode?: 'array' | undefined;
  /** Type parsers for this statement's result instead of pg's global ones (e.g. Drizzle keeps dates as text). */
  types?: pg.CustomTypesConfig | undefined;
}

/**
 * Checks a statement before it is sent in tenant scope. The guard part (tenantwall's SQL verifier) implements
 * it; it throws to refuse the statement.
 */
export interface StatementGuard {
  /** Throws to refuse the statement; may return what it proved about it (see StatementVerdict). */
  check(sql: string, params: Params, tenantId: TenantId): StatementVerdict | void;
  /** Resolves when `check` can run (the SQL parser is loaded); awaited by `Tenantwall.connect`. */
  ready?(): Promise<void>;
}

/** What a guard proved about a statement it accepted. */
export interface StatementVerdict {
  /**
   * `generic` when the statement's best plan cannot depend on the tenant's data (an equality lookup on a
   * tenant-led unique key, an INSERT of VALUES): `plan: 'auto'` then reuses one plan for every tenant.
   */
  readonly plan?: 'generic' | 'custom';
}

/** Anything that runs SQL in one tenant's scope. */
export interface TenantQueryable {
  readonly tenantId: TenantId;
  query<R extends Row = Row>(sql: string, params?: Params, options?: QueryOptions): Promise<pg.QueryResult<R>>;
}

/** An interactive transaction in one tenant's scope. */
export interface TenantTransaction extends TenantQueryable {
  readonly active: boolean;
}

/** Options of `Tenantwall.connect`: the schema, an optional guard, and every `TenantwallOptions` field. */
export interface CreateTenantwallOptions extends TenantwallOptions {
  /** The declared tables. */
  schema: Schema;
  /** Optional statement guard run on every tenant-scoped statement. */
  guard?: StatementGuard | undefined;
  /** Server settings of the embedded cluster (e.g. `{ fsync: 'off' }` for throwaway clusters). */
  embeddedSettings?: Record<string, string> | undefined;
  /** Delete the embedded data folder on close (tests). Default false. */
  embeddedThrowaway?: boolean | undefined;
  /** Database limits per tenant (e.g. of its plan: `planLimits(metering)`), consulted when a scope has none of its own. */
  limits?: LimitsProvider | undefined;
  /** Called when a tenant's limit cancels a statement (after it is counted in `limitsExceeded`). */
  onLimitExceeded?: ((e: LimitExceeded) => void) | undefined;
  /** Observers of every tenant-scoped statement (metrics, traces); more can be added with `db.observe`. */
  observers?: readonly StatementObserver[] | undefined;
}

/** Options of `forTenant`. */
export interface ForTenantOptions {
  /** Database limits of this scope's statements and transactions, instead of the `limits` provider's. */
  limits?: DbLimits | undefined;
}

/** A unit of work for one tenant. Immutable: derive a new one with `db.forTenant(other)`. */
export class TenantScope implements TenantQueryable {
  readonly tenantId: TenantId;
  readonly #db: Tenantwall;
  readonly #limits: ResolvedLimits | undefined;

  constructor(db: Tenantwall, tenantId: TenantId, limits?: ResolvedLimits) {
    this.#db = db;
    this.tenantId = tenantId;
    this.#limits = limits;
    Object.freeze(this);
  }

  /** One statement, scoped to this tenant for its own transaction only, in one network round trip. */
  query<R extends Row = Row>(sql: string, params: Params = [], options?: QueryOptions): Promise<pg.QueryResult<R>> {
    return this.#db.runScoped<R>(this.tenantId, sql, params, options, this.#limits);
  }

  /** An interactive transaction with the tenant set first; commits when `fn` resolves, rolls back when it throws. */
  transaction<T>(fn: (tx: TenantTransaction) => Promise<T>): Promise<T> {
    return this.#db.runTransaction(this.tenantId, fn, this.#limits);
  }

  /** Runs `fn` with this tenant as the implicit (AsyncLocalStorage) tenant. */
  run<T>(fn: () => T): T {
    return runWithTenant(this.tenantId, fn);
  }
}

class Transaction implements TenantTransaction {
  readonly tenantId: TenantId;
  #client: pg.PoolClient | undefined;
  readonly #guard: StatementGuard | undefined;
  readonly #mapError: (err: unknown, idleMs: number) => unknown;
  readonly #observers: () => readonly StatementObserver[];
  /** When the last statement ended (or the transaction began): how long the transaction was idle before the next. */
  #lastDone = performance.now();

  constructor(tenantId: TenantId, client: pg.PoolClient, guard: StatementGuard | undefined, mapError: (err: unknown, idleMs: number) => unknown, observers: () => readonly StatementObserver[]) {
    this.tenantId = tenantId;
    this.#client = client;
    this.#guard = guard;
    this.#mapError = mapError;
    this.#observers = observers;
  }

  get active(): boolean {
    return this.#client !== undefined;
  }

  async query<R extends Row = Row>(sql: string, params: Params = [], options?: QueryOptions): Promise<pg.QueryResult<R>> {
    const client = this.#client;
    if (!client) {
      // The connection went back to the pool: using it now could run in another tenant's transaction.
      throw new TenantwallError('tenant_context_missing', 'This transaction has ended; its handle can no longer run queries.');
    }
    const observers = this.#observers();
    if (observers.length === 0) {
      this.#guard?.check(sql, params, this.tenantId);
      return this.#send<R>(client, sql, params, options);
    }
    // Observed in this async function itself (no wrapper promise per statement): see startObservers.
    const ends = startObservers(observers, { tenantId: this.tenantId, sql, inTransaction: true });
    try {
      this.#guard?.check(sql, params, this.tenantId);
    } catch (error) {
      endRefused(ends, error);
      throw error;
    }
    const t0 = performance.now();
    try {
      const result = await this.#send<R>(client, sql, params, options);
      endSent(ends, this.#guard !== undefined, t0, result, undefined);
      return result;
    } catch (error) {
      endSent(ends, this.#guard !== undefined, t0, undefined, error);
      throw error;
    }
  }

  async #send<R extends Row>(client: pg.PoolClient, sql: string, params: Params, options: QueryOptions | undefined): Promise<pg.QueryResult<R>> {
    const idleMs = this.idleMs();
    try {
      if (options?.rowMode || options?.types) return await queryShaped<R>(client, sql, params, options);
      return await client.query<R>(sql, params as unknown[]);
    } catch (err) {
      throw this.#mapError(err, idleMs);
    } finally {
      this.#lastDone = performance.now();
    }
  }

  /** @internal How long the transaction has been idle (since its last statement ended, or it began), ms. */
  idleMs(): number {
    return performance.now() - this.#lastDone;
  }

  end(): pg.PoolClient {
    const c = this.#client as pg.PoolClient;
    this.#client = undefined;
    return c;
  }
}

/** Cross-tenant access for migrations and lifecycle work. Every use is greppable: `dangerouslyCrossTenant`. */
export interface CrossTenantHandle {
  query<R extends Row = Row>(sql: string, params?: Params): Promise<pg.QueryResult<R>>;
  /** A dedicated owner connection inside BEGIN ... COMMIT. */
  transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  /**
   * A dedicated owner session outside the pool (lifecycle work needs session locks, its own transactions and
   * cursors). The caller ends it (`client.end()`).
   */
  session(applicationName: string): Promise<pg.Client>;
}

const SET_GENERIC_PLAN: PreparedStep = { name: 'tenantwall_generic_plan', text: 'SET LOCAL plan_cache_mode = force_generic_plan', values: [], returnsRow: false };
// 0A000 "cached plan must not change result type", 26000 "prepared statement does not exist".
const STALE_STATEMENT = new Set(['0A000', '26000']);
/**
 * Citus, when a concurrent shard split (tenant isolation) switched the statement's shard under it: a write gets
 * "shard for the given value does not exist" (40001, "Retry the query"), a read "could not find valid entry for
 * shard N". Nothing ran: the statement's own transaction is rolled back and it is sent again (docs/scale-out.md).
 */
const CITUS_SHARD_GONE = /^(shard for the given value does not exist|could not find valid entry for shard \d+)$/;
const BEGIN: PreparedStep = { name: 'tenantwall_begin', text: 'BEGIN', values: [], returnsRow: false };
const COMMIT: PreparedStep = { name: 'tenantwall_commit', text: 'COMMIT', values: [], returnsRow: false };

export class Tenantwall {
  readonly options: ResolvedOptions;
  /** How the pooler mode in `options.pooler` was chosen: the option, or detection when it was `auto` (docs/poolers.md). */
  readonly pooler: PoolerDetection;
  readonly schema: Schema;
  readonly tenants: TenantRegistry;
  /** The Citus version when the database is a Citus coordinator (explicit scope mode, plain policies, distributed DDL). */
  readonly citusVersion: string | undefined;
  readonly #appPool: pg.Pool;
  readonly #ownerPool: pg.Pool | undefined;
  #releaseKey: (() => void) | undefined;
  readonly #embedded: EmbeddedServer | undefined;
  readonly #guard: StatementGuard | undefined;
  readonly #statements: StatementCache | undefined;
  readonly #limitSteps: LimitSteps;
  readonly #limitsProvider: LimitsProvider | undefined;
  readonly #limitCounter: LimitCounter;
  readonly #begin: PreparedStep;
  readonly #commit: PreparedStep;
  readonly #setGenericPlan: PreparedStep;
  readonly #baseLimits: DbLimits | undefined;
  readonly #sentLimits = new WeakMap<ResolvedLimits, ResolvedLimits>();
  #observers: readonly StatementObserver[] = [];
  #closed = false;

  private constructor(
    options: ResolvedOptions,
    schema: Schema,
    appPool: pg.Pool,
    ownerPool: pg.Pool | undefined,
    embedded: EmbeddedServer | undefined,
    guard: StatementGuard | undefined,
    input: CreateTenantwallOptions,
    citusVersion: string | undefined,
    pooler: PoolerDetection,
  ) {
    this.pooler = pooler;
    this.options = options;
    this.citusVersion = citusVersion;
    this.schema = schema;
    this.#appPool = appPool;
    this.#ownerPool = ownerPool;
    this.#embedded = embedded;
    this.#guard = guard;
    // Behind a transaction-mode pooler consecutive transactions may run on different server connections, where
    // a named statement prepared on another one does not exist: unnamed statements only (docs/poolers.md).
    const pooled = options.pooler === 'transaction';
    this.#statements = options.statementCacheSize > 0 && !pooled ? new StatementCache(options.statementCacheSize) : undefined;
    const step = (s: PreparedStep) => (pooled ? Object.freeze({ ...s, name: '' }) : s);
    this.#begin = step(BEGIN);
    this.#commit = step(COMMIT);
    this.#setGenericPlan = step(SET_GENERIC_PLAN);
    // The pooler forwards no startup parameters: the connection's statement timeout travels with every transaction.
    this.#baseLimits = pooled && options.statementTimeoutMs > 0 ? { statementTimeoutMs: options.statementTimeoutMs } : undefined;
    this.tenants = new TenantRegistry(this);
    this.#limitSteps = new LimitSteps(!pooled);
    this.#limitsProvider = input.limits;
    this.#limitCounter = new LimitCounter(input.onLimitExceeded);
    this.#observers = Object.freeze([...(input.observers ?? [])]);
  }

  /**
   * Adds an observer of every tenant-scoped statement (metrics, traces); returns the function that removes it.
   * Without observers the data path does no observation work at all.
   */
  observe(observer: StatementObserver): () => void {
    this.#observers = Object.freeze([...this.#observers, observer]);
    return () => {
      this.#observers = Object.freeze(this.#observers.filter((o) => o !== observer));
    };
  }

  /** Connections of the application and owner pools right now (for metrics): open, idle, callers waiting, max. */
  poolStats(): { app: PoolStats; owner: PoolStats } {
    // An app-only instance (no owner URL) has no owner pool: it reports an empty one.
    const stats = (p: pg.Pool | undefined, max: number): PoolStats => ({ total: p?.totalCount ?? 0, idle: p?.idleCount ?? 0, waiting: p?.waitingCount ?? 0, max: p ? max : 0 });
    return { app: stats(this.#appPool, this.options.poolSize), owner: stats(this.#ownerPool, this.options.adminPoolSize) };
  }

  /**
   * Connects (starting an embedded PostgreSQL when no databaseUrl is given), creates the application role when
   * `manageRoles`, and refuses to start when the application role could bypass row-level security.
   */
  static async connect(input: CreateTenantwallOptions): Promise<Tenantwall> {
    const options = resolveOptions(input);
    const releaseKey = configureTenantKey(options.tenantKey);
    // Only the application role's URL: a serving process that holds no owner credential (docs/credentials.md).
    const appOnly = options.databaseUrl === undefined && options.appDatabaseUrl !== undefined;
    let embedded: EmbeddedServer | undefined;
    let databaseUrl = options.databaseUrl;
    let appPassword = options.appPassword;
    let embeddedAppPassword: EmbeddedAppPassword | undefined;
    if (databaseUrl === undefined && !appOnly) {
      try {
        embedded = await startEmbeddedPostgres({
          dataDir: options.embeddedDataDir,
          port: options.embeddedPort,
          persistent: !input.embeddedThrowaway,
          ...(input.embeddedSettings ? { settings: input.embeddedSettings } : {}),
        });
      } catch (err) {
        releaseKey();
        throw err;
      }
      databaseUrl = embedded.url;
      if (appPassword === undefined) {
        embeddedAppPassword = readEmbeddedAppPassword(options.embeddedDataDir);
        appPassword = embeddedAppPassword.password;
      }
    }
    let ownerPool: pg.Pool | undefined;
    if (databaseUrl !== undefined) {
      ownerPool = new pg.Pool({
        connectionString: databaseUrl,
        max: options.adminPoolSize,
        connectionTimeoutMillis: options.connectTimeoutMs,
        application_name: 'tenantwall-owner',
      });
      ownerPool.on('error', () => undefined); // idle client errors surface on the next checkout
      watchPool(ownerPool, options.adminPoolSize);
      ownerPool.on('connect', (client) => client.on('error', () => undefined)); // checked-out ones: on the next query
    }
    let appPool: pg.Pool | undefined;
    try {
      if (ownerPool) {
        await checkServer(ownerPool);
        if (options.manageRoles) await ensureRoles(ownerPool, options, appPassword, embeddedAppPassword);
      }
      const appUrl = options.appDatabaseUrl ?? deriveAppUrl(databaseUrl as string, options.appRole, appPassword);
      // `auto`: one probe connection tells a pooler from the server (docs/poolers.md#detection).
      const detection: PoolerDetection =
        options.pooler === 'auto'
          ? await detectPooler(appUrl, options.connectTimeoutMs).catch((err: unknown) => {
              throw loginError(err, options.appRole);
            })
          : { mode: options.pooler, source: 'option' };
      const pooler = detection.mode;
      appPool = new pg.Pool({
        connectionString: appUrl,
        max: options.poolSize,
        connectionTimeoutMillis: options.connectTimeoutMs,
        statement_timeout: options.statementTimeoutMs === 0 || pooler !== 'none' ? undefined : options.statementTimeoutMs,
        application_name: 'tenantwall-app',
        // Prepared statements must not fall back to one generic plan shared by every tenant (docs/architecture.md).
        ...(options.statementCacheSize > 0 && pooler === 'none' ? { options: '-c plan_cache_mode=force_custom_plan' } : {}),
      } as pg.PoolConfig);
      appPool.on('error', () => undefined);
      watchPool(appPool, options.poolSize);
      // A backend can end while its client is checked out but between queries (pg_terminate_backend, an idle
      // timeout, a failover): pg then emits 'error' on the client, which would crash the process without a listener.
      // The next query on that client fails and is mapped (database_unreachable), so the event itself is ignored.
      appPool.on('connect', (client) => client.on('error', () => undefined));
      await checkAppLogin(appPool, options.appRole);
      if (!ownerPool) await checkServer(appPool);
      const citusVersion = await detectCitus(ownerPool ?? appPool);
      await checkAppRole(appPool);
      if (citusVersion !== undefined) await checkCitusSettings(appPool);
      // On Citus only SET LOCAL inside an explicit transaction reaches the workers (docs/scale-out.md).
      const resolved = Object.freeze({ ...options, pooler, databaseUrl, appDatabaseUrl: appUrl, appPassword, ...(citusVersion !== undefined ? { scopeMode: 'explicit' as const } : {}) });
      await input.guard?.ready?.();
      const db = new Tenantwall(resolved, input.schema, appPool, ownerPool, embedded, input.guard, input, citusVersion, detection);
      db.#releaseKey = releaseKey;
      return db;
    } catch (err) {
      releaseKey();
      await appPool?.end().catch(() => undefined);
      await ownerPool?.end().catch(() => undefined);
      await embedded?.stop().catch(() => undefined);
      throw poolerStartupError(err) ?? mapPgError(err);
    }
  }

  /** True when this instance holds an owner connection (false when connected with `appDatabaseUrl` alone). */
  get hasOwner(): boolean {
    return this.#ownerPool !== undefined;
  }

  get ddlContext(): DdlContext {
    return { schema: this.schema, appRole: this.options.appRole, settingName: this.options.settingName, citus: this.citusVersion !== undefined, tenantKey: this.options.tenantKey };
  }

  /** A scoped handle for `tenantId` (validated; throws `invalid_tenant_id`), optionally with its own database limits. */
  forTenant(tenantId: TenantId | string, options?: ForTenantOptions): TenantScope {
    const limits = options?.limits === undefined ? undefined : resolveLimitsOnce(options.limits, 'forTenant limits');
    return new TenantScope(this, TenantId.parse(tenantId), limits);
  }

  /** How many statements of `tenantId` its database limits cancelled in this process, per limit. */
  limitsExceeded(tenantId: TenantId | string): Readonly<Record<LimitName, number>> {
    return this.#limitCounter.counts(TenantId.parse(tenantId));
  }

  /** A statement in the implicit tenant's scope; `tenant_context_missing` outside a tenant context. */
  async query<R extends Row = Row>(sql: string, params: Params = [], options?: QueryOptions): Promise<pg.QueryResult<R>> {
    return this.runScoped<R>(requireTenantId(), sql, params, options);
  }

  /** A transaction in the implicit tenant's scope. */
  async transaction<T>(fn: (tx: TenantTransaction) => Promise<T>): Promise<T> {
    return this.runTransaction(requireTenantId(), fn);
  }

  /** The implicit tenant's scope, or `tenant_context_missing`. */
  current(): TenantScope {
    return new TenantScope(this, requireTenantId());
  }

  /** The implicit tenant id if a context is active. */
  currentTenantId(): TenantId | undefined {
    return currentTenantContext()?.tenantId;
  }

  /** @internal used by TenantScope and the Kysely executor (src/kysely/dialect.ts) */
  async runScoped<R extends Row>(tenantId: TenantId, sql: string, params: Params, options?: QueryOptions, scopeLimits?: ResolvedLimits): Promise<pg.QueryResult<R>> {
    this.#assertOpen();
    const observers = this.#observers;
    if (observers.length === 0) return this.#sendScoped<R>(tenantId, sql, params, options, scopeLimits, this.#check(tenantId, sql, params));
    // Observed in this async function itself (no wrapper promise per statement): the check (guard) and the
    // send, each outcome reported once.
    const ends = startObservers(observers, { tenantId, sql, inTransaction: false });
    let verdict: StatementVerdict | void;
    try {
      verdict = this.#check(tenantId, sql, params);
    } catch (error) {
      endRefused(ends, error);
      throw error;
    }
    const t0 = performance.now();
    try {
      const result = await this.#sendScoped<R>(tenantId, sql, params, options, scopeLimits, verdict);
      endSent(ends, this.#guard !== undefined, t0, result, undefined);
      return result;
    } catch (error) {
      endSent(ends, this.#guard !== undefined, t0, undefined, error);
      throw error;
    }
  }

  #check(tenantId: TenantId, sql: string, params: Params): StatementVerdict | void {
    if (sql.trim() === '') throw new TenantwallError('unscoped_query', 'Empty statement.');
    return this.#guard?.check(sql, params, tenantId);
  }

  async #sendScoped<R extends Row>(tenantId: TenantId, sql: string, params: Params, options: QueryOptions | undefined, scopeLimits: ResolvedLimits | undefined, verdict: StatementVerdict | void): Promise<pg.QueryResult<R>> {
    const plan = options?.plan;
    const generic = plan === 'generic' || ((plan === undefined || plan === 'auto') && verdict?.plan === 'generic');
    if (plan !== undefined && !generic && plan !== 'custom' && plan !== 'auto') {
      throw new TenantwallError('config_invalid', `Unknown plan option ${JSON.stringify(plan)}: use 'auto', 'custom' or 'generic'.`, { details: { field: 'plan' } });
    }
    const explicit = this.options.scopeMode === 'explicit';
    const limits = scopeLimits ?? (this.#limitsProvider ? await this.#providedLimits(tenantId) : NO_LIMITS);
    const before = this.#scopeSteps(tenantId, limits, generic);
    const client = await this.#checkout(this.#appPool);
    const after = explicit ? [this.#commit] : [];
    const cache = this.#statements;
    for (let attempt = 0; ; attempt++) {
      const statement = cache?.acquire(client, sql);
      try {
        const result = await runPipelined<R>(client, sql, params, before, after, statement, options);
        if (statement) cache?.confirm(client, sql, statement);
        client.release();
        return result;
      } catch (err) {
        if (statement && (statement.parse || STALE_STATEMENT.has((err as { code?: string }).code ?? ''))) cache?.discard(client, sql, statement);
        // A cached statement whose tables changed shape (a migration ran): prepare it afresh, once. Nothing ran.
        if (attempt === 0 && statement && !statement.parse && STALE_STATEMENT.has((err as { code?: string }).code ?? '')) {
          if (!explicit || (await client.query('ROLLBACK').then(() => true, () => false))) continue;
        }
        // Citus moved the statement's shard away while it was planned (online split): its transaction is rolled back
        // whole, so sending it again runs it exactly once, on the new shard.
        if (attempt < 3 && this.citusVersion !== undefined && CITUS_SHARD_GONE.test((err as Error).message ?? '')) {
          if (!explicit || (await client.query('ROLLBACK').then(() => true, () => false))) continue;
        }
        await releaseAfterError(client, err, explicit);
        throw this.#mapError(err, tenantId, limits);
      }
    }
  }

  /**
   * The steps that open the tenant's scope before a statement, in its pipeline. A generic plan is chosen per
   * statement: the setting is local to this pipeline's transaction, like the tenant and the limits.
   */
  #scopeSteps(tenantId: TenantId, limits: ResolvedLimits, generic: boolean): PreparedStep[] {
    const sent = this.#withBase(limits);
    if (this.options.scopeMode !== 'explicit') return [this.#limitSteps.tenantStep(this.options.settingName, tenantId, sent, generic)];
    const steps = [this.#begin, setLocalStep(this.options.settingName, tenantId)];
    const limitsStep = this.#limitSteps.limitsStep(sent);
    if (limitsStep) steps.push(limitsStep);
    if (generic) steps.push(this.#setGenericPlan);
    return steps;
  }

  /** The tenant's limits over the connection-wide ones a pooler does not carry (errors are still mapped by the tenant's). */
  #withBase(limits: ResolvedLimits): ResolvedLimits {
    if (!this.#baseLimits) return limits;
    let sent = this.#sentLimits.get(limits);
    if (!sent) this.#sentLimits.set(limits, (sent = resolveLimits({ ...this.#baseLimits, ...limits.limits }, 'limits')));
    return sent;
  }

  async #providedLimits(tenantId: TenantId): Promise<ResolvedLimits> {
    const limits = await (this.#limitsProvider as LimitsProvider)(tenantId);
    return limits === undefined ? NO_LIMITS : resolveLimitsOnce(limits, 'limits provider');
  }

  #mapError(err: unknown, tenantId: TenantId, limits: ResolvedLimits, idleMs?: number): unknown {
    const limit = limitOf(err, limits, { pooled: this.options.pooler !== 'none', idleMs });
    return limit === undefined ? mapPgError(err) : this.#limitCounter.exceeded(tenantId, limit, limits, err);
  }

  /** @internal used by TenantScope */
  async runTransaction<T>(tenantId: TenantId, fn: (tx: TenantTransaction) => Promise<T>, scopeLimits?: ResolvedLimits): Promise<T> {
    this.#assertOpen();
    const limits = scopeLimits ?? (this.#limitsProvider ? await this.#providedLimits(tenantId) : NO_LIMITS);
    const client = await this.#checkout(this.#appPool);
    // The server may end the session while the transaction is idle on our side (idle_in_transaction_session_timeout,
    // pg_terminate_backend): pg then emits 'error' on the checked-out client, which has no listener of its own.
    let lost: unknown;
    const onLost = (err: unknown) => (lost ??= err);
    client.on('error', onLost);
    const fail = async (err: unknown, map: (err: unknown) => unknown) => {
      // The listener stays until the client is released: the ROLLBACK may meet the same end of the session.
      await releaseAfterError(client, lost ?? err, true);
      client.removeListener('error', onLost);
      return map(err);
    };
    const mapError = (err: unknown, idleMs?: number) => this.#mapError(lost ?? err, tenantId, limits, idleMs);
    try {
      // BEGIN, the tenant setting and the limits in one round trip (the last step is sent as the statement).
      const steps = this.#scopeSteps(tenantId, limits, false);
      if (steps[0] !== this.#begin) steps.unshift(this.#begin);
      const last = steps.pop() as PreparedStep;
      await runPipelined(client, last.text, last.values, steps);
    } catch (err) {
      throw await fail(err, mapPgError);
    }
    const tx = new Transaction(tenantId, client, this.#guard, mapError, () => this.#observers);
    let result: T;
    try {
      result = await runWithTenant(tenantId, () => fn(tx));
    } catch (err) {
      tx.end();
      throw await fail(err, mapPgError);
    }
    const idleMs = tx.idleMs();
    tx.end();
    try {
      await client.query('COMMIT');
    } catch (err) {
      throw await fail(err, (e) => mapError(e, idleMs));
    }
    client.removeListener('error', onLost);
    client.release();
    return result;
  }

  /**
   * The cross-tenant admin handle: owner connection, no tenant scope, no RLS when the owner is superuser or
   * BYPASSRLS. For migrations, lifecycle work and the admin API, never for request handling.
   */
  dangerouslyCrossTenant(): CrossTenantHandle {
    this.#assertOpen();
    const pool = this.#requireOwner('dangerouslyCrossTenant()');
    return {
      query: async <R extends Row = Row>(sql: string, params: Params = []) => {
        try {
          return await pool.query<R>(sql, params as unknown[]);
        } catch (err) {
          throw mapCheckoutError(err, pool);
        }
      },
      transaction: async <T>(fn: (client: pg.PoolClient) => Promise<T>) => {
        const client = await this.#checkout(pool);
        try {
          const result = await withTransaction(client, () => fn(client));
          client.release();
          return result;
        } catch (err) {
          await releaseAfterError(client, err, true);
          throw mapPgError(err);
        }
      },
      session: async (applicationName: string) => {
        const client = new pg.Client({ connectionString: this.options.databaseUrl, application_name: applicationName, connectionTimeoutMillis: this.options.connectTimeoutMs });
        client.on('error', () => undefined); // surfaced by the next query
        try {
          await client.connect();
        } catch (err) {
          throw mapPgError(err);
        }
        return client;
      },
    };
  }

  /** Renders migrations with this instance's roles and setting name (checksums cover the rendered SQL). */
  renderMigrations(migrations: readonly Migration[]): RenderedMigration[] {
    return renderMigrations(migrations, this.ddlContext);
  }

  /**
   * Applies pending migrations as the owner, in one transaction under an advisory lock (an online migration
   * runs step by step; `onProgress` hears about each step and batch).
   */
  async migrate(migrations: readonly Migration[], options: { onProgress?: (p: MigrationProgress) => void } = {}): Promise<MigrateResult> {
    const rendered = this.renderMigrations(migrations);
    const client = await this.#checkout(this.#requireOwner('migrate()'));
    try {
      return await applyMigrations(client, rendered, { ownerRole: this.options.ownerRole, citus: this.citusVersion !== undefined, onProgress: options.onProgress });
    } finally {
      client.release();
    }
  }

  /** True when the application role can reach the database right now (readiness). */
  async ping(): Promise<boolean> {
    try {
      await this.#appPool.query('SELECT 1');
      return true;
    } catch {
      return false;
    }
  }

  /** The application pool, for benchmarks and tests that need the bare driver. Bypasses every tenantwall check. */
  dangerouslyRawAppPool(): pg.Pool {
    return this.#appPool;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#releaseKey?.();
    await this.#appPool.end().catch(() => undefined);
    await this.#ownerPool?.end().catch(() => undefined);
    await this.#embedded?.stop();
  }

  #assertOpen(): void {
    if (this.#closed) throw new TenantwallError('config_invalid', 'This tenantwall instance is closed.');
  }

  #requireOwner(operation: string): pg.Pool {
    if (this.#ownerPool) return this.#ownerPool;
    throw new TenantwallError('owner_connection_required', `${operation} needs the owner connection, and this instance was connected with the application role only (appDatabaseUrl without databaseUrl).`, {
      details: { operation },
    });
  }

  /**
   * @internal A read of the tenant registry through the application role (it holds SELECT on the registry,
   * granted by the first migration): request-time lookups need no owner connection.
   */
  async readRegistry<R extends Row = Row>(sql: string, params: Params): Promise<pg.QueryResult<R>> {
    this.#assertOpen();
    try {
      return await this.#appPool.query<R>(sql, params as unknown[]);
    } catch (err) {
      throw mapCheckoutError(err, this.#appPool);
    }
  }

  async #checkout(pool: pg.Pool): Promise<pg.PoolClient> {
    try {
      return await pool.connect();
    } catch (err) {
      throw mapCheckoutError(err, pool);
    }
  }
}

/** Connections of one pool (`db.poolStats()`). */
export interface PoolStats {
  readonly total: number;
  readonly idle: number;
  readonly waiting: number;
  readonly max: number;
}

/** The guard refused a statement (never sent): its observers end with verdict `refused`. */
function endRefused(ends: ReturnType<typeof startObservers>, error: unknown): void {
  if (ends.length > 0) endObservers(ends, { verdict: 'refused', rows: 0, durationMs: 0, error });
}

/** A sent statement ended (`result`, or `error`): its observers get the verdict, rows and time since `t0`. */
function endSent(ends: ReturnType<typeof startObservers>, guarded: boolean, t0: number, result: unknown, error: unknown): void {
  if (ends.length === 0) return;
  endObservers(ends, { verdict: guarded ? 'allowed' : 'unchecked', rows: error === undefined ? rowsOf(result) : 0, durationMs: performance.now() - t0, error });
}

function setLocalStep(settingName: string, tenantId: TenantId): PreparedStep {
  // SET takes no parameters; tenantId is a validated UUID and settingName a validated identifier pair.
  return { name: '', text: `SET LOCAL ${settingName} = ${quoteLiteral(tenantId)}`, values: [], returnsRow: false };
}

/**
 * After an error the connection may sit in an open (aborted) transaction. Roll back; if even that fails, the
 * connection is destroyed instead of going back to the pool, so no later borrower can inherit its state.
 */
async function releaseAfterError(client: pg.PoolClient, err: unknown, mayBeInTransaction: boolean): Promise<void> {
  if (isConnectionError(err)) {
    client.release(err as Error);
    return;
  }
  if (mayBeInTransaction) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackErr) {
      client.release(rollbackErr as Error);
      return;
    }
  }
  client.release();
}

async function checkServer(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ v: string }>(`SELECT current_setting('server_version_num') AS v`);
  const version = Number(rows[0]?.v);
  if (version < 150000) {
    throw new TenantwallError('server_version_unsupported', `The server runs PostgreSQL ${Math.floor(version / 10000)}.`);
  }
}

function deriveAppUrl(databaseUrl: string, appRole: string, appPassword: string | undefined): string {
  const url = parseDatabaseUrl(databaseUrl);
  url.username = encodeURIComponent(appRole);
  // No configured password: trust or peer authentication (or a .pgpass / PGPASSWORD the driver reads).
  url.password = appPassword === undefined ? '' : encodeURIComponent(appPassword);
  return url.toString();
}

/** The application role's password of an embedded data folder, kept beside it (`<dataDir>.app-password`). */
interface EmbeddedAppPassword {
  readonly password: string;
  /** Written just now: a role left by an older tenantwall (which set a random one per start) is given it once. */
  readonly fresh: boolean;
}

function readEmbeddedAppPassword(dataDir: string): EmbeddedAppPassword {
  const file = `${path.resolve(dataDir)}.app-password`;
  if (fs.existsSync(file)) return { password: fs.readFileSync(file, 'utf8').trim(), fresh: false };
  const password = randomBytes(18).toString('base64url');
  fs.writeFileSync(file, password, { mode: 0o600 });
  return { password, fresh: true };
}

async function createRoleIfMissing(client: pg.PoolClient, name: string, attributes: string): Promise<boolean> {
  const exists = await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [name]);
  if (exists.rowCount !== 0) return false;
  try {
    await client.query(`CREATE ROLE ${quoteIdent(name)} ${attributes}`);
    return true;
  } catch (err) {
    // Another process created it at the same moment.
    if (!['42710', '23505'].includes((err as { code?: string }).code ?? '')) throw err;
    return false;
  }
}

/**
 * Creates the application login role if missing, with no privilege that bypasses RLS and the configured
 * password (none for trust/peer setups); an existing role is used as it is: its password is never changed, so
 * other processes and CLI runs keep logging in. Creates the NOLOGIN owner role (when configured) that the
 * migrating login may SET ROLE to.
 */
async function ensureRoles(pool: pg.Pool, options: ResolvedOptions, appPassword: string | undefined, embedded: EmbeddedAppPassword | undefined): Promise<void> {
  const client = await pool.connect();
  try {
    const password = appPassword === undefined ? '' : ` PASSWORD ${quoteLiteral(appPassword)}`;
    const created = await createRoleIfMissing(client, options.appRole, `LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOINHERIT${password}`);
    // The embedded server is tenantwall's own: a role an older version left with a per-start random password
    // gets the stored one, once, when the password file is first written.
    if (!created && embedded?.fresh) await client.query(`ALTER ROLE ${quoteIdent(options.appRole)}${password}`);
    if (options.ownerRole !== undefined) {
      const owner = quoteIdent(options.ownerRole);
      await createRoleIfMissing(client, options.ownerRole, 'NOLOGIN NOSUPERUSER NOBYPASSRLS');
      await client.query(`GRANT ${owner} TO CURRENT_USER`);
      await client.query(`GRANT USAGE, CREATE ON SCHEMA public TO ${owner}`);
    }
  } finally {
    client.release();
  }
}

/** The application role's first login; a refused one is `app_login_failed` naming the role (never a password). */
async function checkAppLogin(pool: pg.Pool, appRole: string): Promise<void> {
  let client: pg.PoolClient;
  try {
    client = await pool.connect();
  } catch (err) {
    throw loginError(err, appRole);
  }
  client.release();
}

/** A refused login of the application role is `app_login_failed` (naming the role, never the password). */
function loginError(err: unknown, appRole: string): unknown {
  const e = err as { code?: string; message?: string };
  if (/^28/.test(e.code ?? '') || /SASL|password/i.test(e.message ?? '')) {
    return new TenantwallError('app_login_failed', `The application role could not log in (${e.message ?? String(err)}).`, {
      cause: err,
      details: { role: appRole },
    });
  }
  return err;
}

/** Refuses to run when the application role could see other tenants' rows. */
async function checkAppRole(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean; owned: number; owner_member: string | null }>(`
    SELECT r.rolname, r.rolsuper, r.rolbypassrls,
      (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relowner = r.oid AND n.nspname NOT IN ('pg_catalog', 'information_schema')) AS owned,
      (SELECT min(o.rolname) FROM pg_class c JOIN pg_roles o ON o.oid = c.relowner
        WHERE c.relrowsecurity AND o.oid <> r.oid AND pg_has_role(r.oid, o.oid, 'USAGE')) AS owner_member
    FROM pg_roles r WHERE r.rolname = current_user`);
  const r = rows[0];
  if (!r) throw new TenantwallError('app_role_unsafe', 'The application role was not found.');
  const problems: string[] = [];
  if (r.rolsuper) problems.push('is SUPERUSER');
  if (r.rolbypassrls) problems.push('has BYPASSRLS');
  if (r.owned > 0) problems.push(`owns ${r.owned} relation(s) (owners are exempt from RLS unless FORCEd)`);
  if (r.owner_member) problems.push(`inherits the privileges of table owner ${r.owner_member}`);
  if (problems.length > 0) {
    throw new TenantwallError('app_role_unsafe', `Refusing to start: application role ${r.rolname} ${problems.join(', ')}.`, {
      details: { role: r.rolname, problems },
    });
  }
}
