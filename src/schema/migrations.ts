import { createHash } from 'node:crypto';
import { loadModule, parseSync } from 'libpg-query';
import type pg from 'pg';
import { TenantwallError } from '../errors.ts';
import { type DdlContext, quoteIdent, registrySql, schemaSql, tableSql } from './ddl.ts';

/** Helpers a migration's SQL function receives. */
export interface MigrationContext extends DdlContext {
  /** DDL of the registry and all declared tables. */
  createSchema(): string;
  /** DDL of the tenants registry alone (for migrations that create a chosen subset of the tables). */
  createRegistry(): string;
  /** DDL of one declared table. */
  createTable(name: string): string;
}

export interface Migration {
  /** Positive integer; migrations apply in increasing order. */
  readonly version: number;
  readonly name: string;
  readonly sql: string | ((ctx: MigrationContext) => string);
}

/** A migration rendered to SQL with its checksum. */
export interface RenderedMigration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
  readonly checksum: string;
}

/** What `db.migrate` did: applied and already applied migrations. */
export interface MigrateResult {
  readonly applied: readonly RenderedMigration[];
  readonly alreadyApplied: number;
}

const TABLE = 'tenantwall_migrations';
// Same key in every process: concurrent `migrate` runs serialize on it.
const LOCK_KEY = 'tenantwall.migrate';

export function checksum(sql: string): string {
  return createHash('sha256').update(sql).digest('hex');
}

/**
 * Renders each migration for `ctx`. The checksum covers the migration as rendered for a single PostgreSQL
 * server, also on Citus, where the executed SQL adds the distribution calls: a database that moves from one
 * server to Citus keeps matching checksums (docs/scale-out.md), and an edited migration is still caught.
 */
export function renderMigrations(migrations: readonly Migration[], ctx: DdlContext): RenderedMigration[] {
  const portable = ctx.citus ? render(migrations, { ...ctx, citus: false }) : undefined;
  return render(migrations, ctx).map((m, i) => (portable ? Object.freeze({ ...m, checksum: (portable[i] as RenderedMigration).checksum }) : m));
}

function render(migrations: readonly Migration[], ctx: DdlContext): RenderedMigration[] {
  const mctx: MigrationContext = {
    ...ctx,
    createSchema: () => schemaSql(ctx),
    createRegistry: () => registrySql(ctx),
    createTable: (name) => {
      const t = ctx.schema.table(name);
      if (!t) throw new TenantwallError('migration_invalid', `Migration refers to undeclared table ${name}.`);
      return tableSql(t, ctx);
    },
  };
  let previous = 0;
  return migrations.map((m) => {
    if (!Number.isInteger(m.version) || m.version <= previous) {
      throw new TenantwallError('migration_invalid', `Migration version ${m.version} (${m.name}) is not above ${previous}.`);
    }
    previous = m.version;
    const sql = (typeof m.sql === 'function' ? m.sql(mctx) : m.sql).trim();
    if (sql === '') throw new TenantwallError('migration_invalid', `Migration ${m.version} (${m.name}) has no SQL.`);
    return Object.freeze({ version: m.version, name: m.name, sql, checksum: checksum(sql) });
  });
}

/**
 * Applies pending migrations in ONE transaction under an advisory lock: all pending ones or none. Applied ones
 * are checked against their recorded checksum first; an edited applied migration stops everything.
 */
export async function applyMigrations(
  client: pg.ClientBase,
  migrations: readonly RenderedMigration[],
  options: { ownerRole?: string | undefined; citus?: boolean | undefined } = {},
): Promise<MigrateResult> {
  await client.query('BEGIN');
  try {
    await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [LOCK_KEY]);
    // Citus: DDL on distributed and reference tables in one transaction must not open parallel connections
    // per shard (a later statement on a reference table could not see their uncommitted work).
    if (options.citus) await client.query(`SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`);
    // Objects created from here on belong to the owner role; SET LOCAL ends with the transaction.
    if (options.ownerRole !== undefined) await client.query(`SET LOCAL ROLE ${quoteIdent(options.ownerRole)}`);
    await client.query(`CREATE TABLE IF NOT EXISTS ${TABLE} (
      version integer PRIMARY KEY,
      name text NOT NULL,
      checksum text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: number; name: string; checksum: string }>(
      `SELECT version, name, checksum FROM ${TABLE} ORDER BY version`,
    );
    const known = new Map(migrations.map((m) => [m.version, m]));
    for (const row of rows) {
      const m = known.get(row.version);
      if (!m) {
        throw new TenantwallError(
          'migration_invalid',
          `The database has migration ${row.version} (${row.name}) that this code does not know; deploy the code that wrote it.`,
        );
      }
      if (m.checksum !== row.checksum) {
        throw new TenantwallError(
          'migration_checksum_mismatch',
          `Migration ${row.version} (${row.name}) was edited after it was applied (checksum ${row.checksum.slice(0, 12)} in the database, ${m.checksum.slice(0, 12)} in code).`,
          { details: { version: row.version } },
        );
      }
    }
    const done = new Set(rows.map((r) => r.version));
    const pending = migrations.filter((m) => !done.has(m.version));
    for (const m of pending) {
      try {
        // Citus forwards some DDL to the workers with the text of the whole query string, which a worker
        // refuses when it holds several statements: on Citus each statement is sent on its own.
        for (const statement of options.citus ? await splitStatements(m.sql) : [m.sql]) await client.query(statement);
      } catch (cause) {
        throw new TenantwallError('migration_failed', `Migration ${m.version} (${m.name}) failed: ${(cause as Error).message}.`, {
          cause,
          details: { version: m.version },
        });
      }
      await client.query(`INSERT INTO ${TABLE} (version, name, checksum) VALUES ($1, $2, $3)`, [m.version, m.name, m.checksum]);
    }
    await client.query('COMMIT');
    return { applied: pending, alreadyApplied: rows.length };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** The statements of `sql`, split by PostgreSQL's own parser (locations are byte offsets). */
export async function splitStatements(sql: string): Promise<string[]> {
  await loadModule();
  const bytes = Buffer.from(sql, 'utf8');
  return (parseSync(sql).stmts ?? []).map((s) => {
    const start = s.stmt_location ?? 0;
    return bytes.subarray(start, s.stmt_len ? start + s.stmt_len : undefined).toString('utf8').trim();
  });
}
