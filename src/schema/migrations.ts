import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
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

/** Progress of an online migration's step (`-- tenantwall:online`, docs/schema.md), reported while it runs. */
export interface MigrationProgress {
  readonly version: number;
  readonly step: number;
  readonly kind: OnlineStepKind;
  /** Rows changed so far by a batch step (0 for other kinds). */
  readonly rows: number;
  readonly done: boolean;
}

/** Options of `applyMigrations`. */
export interface ApplyMigrationsOptions {
  ownerRole?: string | undefined;
  citus?: boolean | undefined;
  /** Called after every step and every batch of an online migration. */
  onProgress?: ((p: MigrationProgress) => void) | undefined;
}

/** What `db.migrate` did: applied and already applied migrations. */
export interface MigrateResult {
  readonly applied: readonly RenderedMigration[];
  readonly alreadyApplied: number;
}

const TABLE = 'tenantwall_migrations';
const STEPS = 'tenantwall_migration_steps';
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
 * are checked against their recorded checksum first; an edited applied migration stops everything. An online
 * migration (`-- tenantwall:online`) ends the transaction before it and runs step by step outside it,
 * resumable after a crash (`applyOnlineMigration`); the migrations after it then run as usual.
 */
export async function applyMigrations(
  client: pg.ClientBase,
  migrations: readonly RenderedMigration[],
  options: ApplyMigrationsOptions = {},
): Promise<MigrateResult> {
  const first = await applyTransactional(client, migrations, options);
  if (first.online === undefined) return { applied: first.applied, alreadyApplied: first.alreadyApplied };
  await applyOnlineMigration(client, first.online, options);
  const rest = await applyMigrations(client, migrations, options);
  return { applied: [...first.applied, first.online, ...rest.applied], alreadyApplied: first.alreadyApplied };
}

async function applyTransactional(
  client: pg.ClientBase,
  migrations: readonly RenderedMigration[],
  options: ApplyMigrationsOptions,
): Promise<{ applied: RenderedMigration[]; alreadyApplied: number; online?: RenderedMigration }> {
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
    const onlineAt = pending.findIndex((m) => onlineSteps(m.sql) !== undefined);
    const now = onlineAt === -1 ? pending : pending.slice(0, onlineAt);
    for (const m of now) {
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
    const online = onlineAt === -1 ? undefined : pending[onlineAt];
    return { applied: now, alreadyApplied: rows.length, ...(online ? { online } : {}) };
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}

/** How a step of an online migration runs (docs/schema.md, "Online migrations"). */
export type OnlineStepKind = 'transaction' | 'concurrently' | 'batch';

/** One step of an online migration. */
export interface OnlineStep {
  readonly kind: OnlineStepKind;
  readonly sql: string;
}

const STEP_RE = /^-- tenantwall:step (transaction|concurrently|batch)[^\n]*$/gm;

/**
 * The steps of an online migration: SQL starting with the line `-- tenantwall:online`, cut into steps by lines
 * `-- tenantwall:step transaction|concurrently|batch`. undefined for an ordinary migration.
 */
export function onlineSteps(sql: string): OnlineStep[] | undefined {
  if (!/^-- tenantwall:online\b/.test(sql)) return undefined;
  const marks = [...sql.matchAll(STEP_RE)];
  return marks.map((m, i) => {
    const start = (m.index ?? 0) + m[0].length;
    const end = marks[i + 1]?.index ?? sql.length;
    return { kind: m[1] as OnlineStepKind, sql: sql.slice(start, end).trim() };
  }).filter((s) => s.sql !== '');
}

/**
 * Runs one online migration step by step under a session advisory lock, recording each finished step (and each
 * batch's progress) in `tenantwall_migration_steps`, so a run killed at any point resumes where it stopped:
 * - `transaction`: the step's statements in one transaction, committed with its done mark;
 * - `concurrently`: each statement on its own outside a transaction (`CREATE INDEX CONCURRENTLY IF NOT EXISTS`;
 *   an invalid index left by a killed run is dropped and built again);
 * - `batch`: one statement (an UPDATE of at most N rows) repeated, one transaction per batch, until it changes
 *   no row.
 */
export async function applyOnlineMigration(client: pg.ClientBase, m: RenderedMigration, options: ApplyMigrationsOptions = {}): Promise<void> {
  const steps = onlineSteps(m.sql) ?? [];
  await client.query('SELECT pg_advisory_lock(hashtext($1))', [LOCK_KEY]);
  try {
    if (options.ownerRole !== undefined) await client.query(`SET ROLE ${quoteIdent(options.ownerRole)}`);
    const applied = await client.query(`SELECT 1 FROM ${TABLE} WHERE version = $1`, [m.version]);
    if (applied.rowCount !== 0) return; // another process finished it while this one waited
    await client.query(`CREATE TABLE IF NOT EXISTS ${STEPS} (
      version integer NOT NULL,
      step integer NOT NULL,
      checksum text NOT NULL,
      rows_done bigint NOT NULL DEFAULT 0,
      batches integer NOT NULL DEFAULT 0,
      done boolean NOT NULL DEFAULT false,
      updated_at timestamptz NOT NULL DEFAULT now(),
      PRIMARY KEY (version, step)
    )`);
    const { rows } = await client.query<{ step: number; checksum: string; rows_done: string; done: boolean }>(
      `SELECT step, checksum, rows_done, done FROM ${STEPS} WHERE version = $1`,
      [m.version],
    );
    for (const r of rows) {
      if (r.checksum !== m.checksum) {
        throw new TenantwallError('migration_checksum_mismatch', `Online migration ${m.version} (${m.name}) was edited after it started (step ${r.step} ran with checksum ${r.checksum.slice(0, 12)}).`, { details: { version: m.version } });
      }
    }
    const state = new Map(rows.map((r) => [r.step, r]));
    const mark = (step: number, rowsDone: number, done: boolean) =>
      client.query(
        `INSERT INTO ${STEPS} (version, step, checksum, rows_done, batches, done) VALUES ($1, $2, $3, $4, 1, $5)
         ON CONFLICT (version, step) DO UPDATE SET rows_done = ${STEPS}.rows_done + excluded.rows_done,
           batches = ${STEPS}.batches + 1, done = excluded.done, updated_at = now()`,
        [m.version, step, m.checksum, rowsDone, done],
      );
    for (const [i, step] of steps.entries()) {
      const prior = state.get(i);
      if (prior?.done) continue;
      let rowsTotal = Number(prior?.rows_done ?? 0);
      try {
        if (step.kind === 'transaction') {
          await client.query('BEGIN');
          await client.query(step.sql);
          await mark(i, 0, true);
          await client.query('COMMIT');
        } else if (step.kind === 'concurrently') {
          for (const statement of await splitStatements(step.sql)) {
            const ix = /INDEX\s+CONCURRENTLY\s+IF\s+NOT\s+EXISTS\s+("(?:[^"]|"")+"|\w+)/i.exec(statement)?.[1];
            if (ix !== undefined) {
              const name = ix.startsWith('"') ? ix.slice(1, -1).replace(/""/g, '"') : ix;
              const invalid = await client.query(
                `SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE NOT i.indisvalid AND c.relname = $1 AND pg_table_is_visible(c.oid)`,
                [name],
              );
              if (invalid.rowCount !== 0) await client.query(`DROP INDEX CONCURRENTLY IF EXISTS ${quoteIdent(name)}`);
            }
            await client.query(statement);
          }
          await mark(i, 0, true);
        } else {
          for (;;) {
            await client.query('BEGIN');
            const r = await client.query(step.sql);
            const n = r.rowCount ?? 0;
            await mark(i, n, n === 0);
            await client.query('COMMIT');
            rowsTotal += n;
            if (n === 0) break;
            options.onProgress?.({ version: m.version, step: i, kind: step.kind, rows: rowsTotal, done: false });
          }
        }
      } catch (cause) {
        await client.query('ROLLBACK').catch(() => undefined);
        throw new TenantwallError('migration_failed', `Migration ${m.version} (${m.name}) failed at step ${i} (${step.kind}): ${(cause as Error).message}. Finished steps are kept: run migrate again after fixing the cause.`, {
          cause,
          details: { version: m.version, step: i },
        });
      }
      options.onProgress?.({ version: m.version, step: i, kind: step.kind, rows: rowsTotal, done: true });
    }
    await client.query(`INSERT INTO ${TABLE} (version, name, checksum) VALUES ($1, $2, $3)`, [m.version, m.name, m.checksum]);
  } finally {
    if (options.ownerRole !== undefined) await client.query('RESET ROLE').catch(() => undefined);
    await client.query('SELECT pg_advisory_unlock(hashtext($1))', [LOCK_KEY]).catch(() => undefined);
  }
}

const FILE_RE = /^(\d+)_([A-Za-z0-9_-]+)\.sql$/;

/**
 * Reads the migrations of a folder: files `<version>_<name>.sql` (`0002_adopt.sql`), in version order. The
 * files `tenantwall adopt` and `tenantwall migrate generate` write; pass the result (with any migrations
 * declared in code) as the config's `migrations`.
 */
export function loadMigrations(dir: string | URL): Migration[] {
  const folder = dir instanceof URL ? dir.pathname : dir;
  if (!fs.existsSync(folder)) return [];
  return fs
    .readdirSync(folder)
    .map((f) => ({ f, m: FILE_RE.exec(f) }))
    .filter((x): x is { f: string; m: RegExpExecArray } => x.m !== null)
    .map(({ f, m }) => ({ version: Number(m[1]), name: m[2] as string, sql: fs.readFileSync(path.join(folder, f), 'utf8') }))
    .sort((a, b) => a.version - b.version);
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
