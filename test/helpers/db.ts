import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { Tenantwall, type CreateTenantwallOptions, type Migration, type Schema } from '../../src/index.ts';
import { splitStatements } from '../../src/schema/migrations.ts';
import { createCitusDatabase } from '../citus/cluster.ts';

export function adminUrl(): string {
  const url = process.env.TW_TEST_ADMIN_URL;
  if (!url) throw new Error('Run tests through `npm test` (test/run.ts), which provides TW_TEST_ADMIN_URL.');
  return url;
}

export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${database}`;
  return u.toString();
}

/** Runs SQL as the cluster superuser on `database` (seeding as owner, fixtures). */
export async function superQuery(database: string, sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
  const c = new pg.Client({ connectionString: withDatabase(adminUrl(), database) });
  await c.connect();
  try {
    // Citus forwards some DDL with the whole query string, which a worker refuses when it holds several statements.
    if (params.length === 0 && (await isCitus())) {
      let last: pg.QueryResult | undefined;
      for (const statement of await splitStatements(sql)) last = await c.query(statement);
      return last as pg.QueryResult;
    }
    return await c.query(sql, params);
  } finally {
    await c.end();
  }
}

export interface TestDatabase {
  readonly name: string;
  readonly url: string;
  drop(): Promise<void>;
}

let citus: Promise<boolean> | undefined;

/** True when the test server is a Citus coordinator (CITUS_URL given as DATABASE_URL). */
function isCitus(): Promise<boolean> {
  citus ??= (async () => {
    const c = new pg.Client({ connectionString: withDatabase(adminUrl(), 'postgres') });
    await c.connect();
    try {
      return (await c.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`)).rowCount === 1;
    } finally {
      await c.end();
    }
  })();
  return citus;
}

/**
 * A fresh, empty database for one test file (on a Citus coordinator: a Citus database on every node; `citus`
 * registers only the first workers or sets the shard count there, and is ignored on plain PostgreSQL).
 */
export async function createTestDatabase(citus?: { registerWorkers?: number; shardCount?: number }): Promise<TestDatabase> {
  if (await isCitus()) return createCitusDatabase(adminUrl(), citus);
  const name = `tw_test_${randomBytes(6).toString('hex')}`;
  await superQuery('postgres', `CREATE DATABASE ${name}`);
  return {
    name,
    url: withDatabase(adminUrl(), name),
    async drop() {
      await superQuery('postgres', `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** Under TW_TEST_PGBOUNCER=1 (test/run.ts): the application connections go through PgBouncer in transaction mode. */
export function poolerOptions(database: string): Partial<CreateTenantwallOptions> {
  const url = process.env.TW_TEST_POOLER_URL;
  return url ? { appDatabaseUrl: withDatabase(url, database), pooler: 'transaction' } : {};
}

export interface TestTenantwall {
  readonly db: Tenantwall;
  readonly database: TestDatabase;
  close(): Promise<void>;
}

/** A fresh database, migrated with `migrations`, and a Tenantwall connected to it. */
export async function createTestTenantwall(
  schema: Schema,
  migrations: readonly Migration[],
  options: Partial<CreateTenantwallOptions> = {},
  citus?: { registerWorkers?: number; shardCount?: number },
): Promise<TestTenantwall> {
  const database = await createTestDatabase(citus);
  const db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, ...poolerOptions(database.name), ...options });
  await db.migrate(migrations);
  return {
    db,
    database,
    async close() {
      await db.close();
      await database.drop();
    },
  };
}

/**
 * A Tenantwall with the application role's URL only, also where DATABASE_URL is set in the environment (the
 * PostgreSQL 15 and Citus runs set it, and `Tenantwall.connect` would take it as the owner's URL). The options
 * are read synchronously when `connect` is called, so the variable is hidden for that moment only.
 */
export function connectAppOnly(options: CreateTenantwallOptions & { appDatabaseUrl: string }): Promise<Tenantwall> {
  const saved = process.env.DATABASE_URL;
  delete process.env.DATABASE_URL;
  try {
    return Tenantwall.connect(options);
  } finally {
    if (saved !== undefined) process.env.DATABASE_URL = saved;
  }
}
