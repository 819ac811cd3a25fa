/**
 * `tenantwall adopt` on a legacy database (test/adopt/legacy.ts): adopt writes the migration and declaration and
 * applies nothing; `migrate` killed (kill -9) in the middle of the backfill and run again finishes with every row
 * owned by the tenant its legacy organization was; `audit` then reports no error; two tenants querying through
 * forTenant + guard never see each other's rows.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { type Schema, Tenantwall, TenantwallError, onlineSteps } from '../../src/index.ts';
import { createGuard } from '../../src/guard/guard.ts';
import { CLI } from '../helpers/cli.ts';
import { createTestDatabase, superQuery, type TestDatabase } from '../helpers/db.ts';
import { LEGACY_SQL, OWNERSHIP_SQL, TENANT_OWNERSHIP_SQL } from './legacy.ts';

const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
let database: TestDatabase;
let dir: string;
let env: NodeJS.ProcessEnv;
let before_: { t: string; k: string; org: string }[];

before(async () => {
  database = await createTestDatabase();
  await superQuery(database.name, LEGACY_SQL);
  before_ = (await superQuery(database.name, OWNERSHIP_SQL)).rows;
  // Inside the repository, so the written files' `import ... from 'tenantwall'` resolves to this package.
  dir = path.join(ROOT, '.tmp', `adopt-${randomBytes(4).toString('hex')}`);
  fs.mkdirSync(dir, { recursive: true });
  env = { ...process.env, DATABASE_URL: database.url };
});
after(async () => {
  await database.drop();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('adopt plans the legacy database, writes migration + declaration + config and applies nothing', async () => {
  const { stdout } = await run('node', [...CLI, 'adopt', '--dir', dir, '--batch-size', '100', '--json'], { env, cwd: ROOT });
  const plan = JSON.parse(stdout) as { undecided: unknown[]; tenantTable: string; tenantTables: { table: string; via?: { column: string; parent: string } }[]; globalTables: string[]; written: string[] };
  assert.deepEqual(plan.undecided, []);
  assert.equal(plan.tenantTable, 'organizations');
  assert.deepEqual(plan.globalTables, ['countries']);
  const via = Object.fromEntries(plan.tenantTables.map((t) => [t.table, t.via ? `${t.via.column}->${t.via.parent}` : 'root']));
  assert.deepEqual(via, {
    organizations: 'root',
    invoices: 'org_id->organizations',
    projects: 'org_id->organizations',
    tags: 'org_id->organizations',
    users: 'org_id->organizations',
    // Through their parents only.
    task_tags: 'tag_id->tags',
    tasks: 'project_id->projects',
    comments: 'task_id->tasks',
  });
  assert.deepEqual(plan.written.map((f) => path.relative(dir, f)).sort(), ['migrations/0001_adopt.sql', 'tenantwall.config.ts', 'tenantwall.schema.ts']);
  const sql = fs.readFileSync(path.join(dir, 'migrations/0001_adopt.sql'), 'utf8');
  assert.match(sql, /NOT VALID;/);
  assert.match(sql, /VALIDATE CONSTRAINT/);
  assert.match(sql, /CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "users_tenant_id_email_key" ON "users" \("tenant_id", "email"\)/);
  assert.match(sql, /ALTER TABLE "tasks" FORCE ROW LEVEL SECURITY;/);
  const { rowCount } = await superQuery(database.name, `SELECT 1 FROM pg_attribute WHERE attrelid = 'organizations'::regclass AND attname = 'tenant_id'`);
  assert.equal(rowCount, 0, 'adopt applies nothing');
});

/** Polls `probe` until it returns a value (each poll is one round trip; no timer). */
async function until<T>(what: string, probe: () => Promise<T | undefined>, child?: ChildProcess): Promise<T> {
  for (;;) {
    if (child && child.exitCode !== null) throw new Error(`migrate exited (${child.exitCode}) before: ${what}`);
    const v = await probe().catch((e: { code?: string }) => (e.code === '42P01' ? undefined : Promise.reject(e)));
    if (v !== undefined) return v;
  }
}

test('migrate killed with -9 half-way through the backfill, run again, finishes with every row in its tenant', async () => {
  const sql = fs.readFileSync(path.join(dir, 'migrations/0001_adopt.sql'), 'utf8');
  const steps = onlineSteps(sql) ?? [];
  const commentsStep = steps.findIndex((s) => s.kind === 'batch' && s.sql.startsWith('UPDATE "comments"'));
  assert.ok(commentsStep > 0);
  const watch = new pg.Client({ connectionString: database.url });
  const locker = new pg.Client({ connectionString: database.url });
  await Promise.all([watch.connect(), locker.connect()]);
  const config = path.join(dir, 'tenantwall.config.ts');
  const child = spawn('node', [...CLI, 'migrate', '--config', config], { env, cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => void (stderr += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  try {
    // Once the tenant column exists, hold one comment row: the comments backfill stops at the batch holding it.
    await until('step 0 done', async () => (await watch.query(`SELECT 1 FROM tenantwall_migration_steps WHERE version = 1 AND step = 0 AND done`)).rows[0], child);
    await locker.query('BEGIN');
    await locker.query(`SELECT id FROM comments WHERE id = 3000 FOR UPDATE`);
    await until(
      'the comments backfill is blocked on the held row after some batches',
      async () => {
        const { rows } = await watch.query(
          `SELECT s.rows_done FROM tenantwall_migration_steps s WHERE s.version = 1 AND s.step = $1 AND NOT s.done AND s.rows_done > 0
             AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datname = current_database() AND a.application_name = 'tenantwall-owner' AND a.wait_event_type = 'Lock')`,
          [commentsStep],
        );
        return rows[0];
      },
      child,
    );
    child.kill('SIGKILL');
    await exited;
  } finally {
    await locker.query('ROLLBACK').catch(() => undefined);
    await locker.end();
  }
  // The killed run's backend ends once it notices its client is gone; its open batch is rolled back.
  await until('the killed run left', async () => ((await watch.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tenantwall-owner'`)).rows[0].n === 0 ? true : undefined));
  const partial = (await watch.query(`SELECT count(*) FILTER (WHERE tenant_id IS NULL)::int AS todo, count(*)::int AS n FROM comments`)).rows[0] as { todo: number; n: number };
  assert.ok(partial.todo > 0 && partial.todo < partial.n, `half-way: ${JSON.stringify(partial)}`);
  assert.equal((await watch.query(`SELECT 1 FROM tenantwall_migrations WHERE version = 1`)).rowCount, 0);
  await watch.end();

  const again = await run('node', [...CLI, 'migrate', '--json', '--config', config], { env, cwd: ROOT }).catch((e: Error & { stderr: string }) => assert.fail(`${e.message}\n${e.stderr}\nfirst run: ${stderr}`));
  assert.deepEqual(JSON.parse(again.stdout), { applied: [{ version: 1, name: 'adopt' }], alreadyApplied: 0 });
  assert.match(again.stderr, new RegExp(`migration 1 step ${commentsStep} \\(batch\\): \\d+ rows done`));
  // Same result as an uninterrupted run: every row kept, owned by the tenant of its legacy organization.
  assert.deepEqual((await superQuery(database.name, TENANT_OWNERSHIP_SQL)).rows, before_);
  const registry = await superQuery(database.name, `SELECT t.slug, t.name FROM tenants t JOIN organizations o ON o.tenant_id = t.id ORDER BY slug`);
  assert.deepEqual(registry.rows, [{ slug: 'acme', name: 'Acme' }, { slug: 'globex', name: 'Globex' }, { slug: 'initech', name: 'Initech' }]);
  const invalid = await superQuery(database.name, `SELECT count(*)::int AS n FROM pg_index WHERE NOT indisvalid`);
  assert.equal(invalid.rows[0].n, 0);
  const notValidated = await superQuery(database.name, `SELECT conname FROM pg_constraint WHERE NOT convalidated`);
  assert.deepEqual(notValidated.rows, []);
});

test('after adopt + migrate, audit reports no error-level finding', async () => {
  const res = await run('node', [...CLI, 'audit', '--json', '--app-role', 'tenantwall_app', '--global-tables', 'countries'], { env, cwd: ROOT }).catch((e: { stdout: string; code: number }) => e);
  const report = JSON.parse(res.stdout) as { findings: { severity: string; ruleId: string }[]; stats: Record<string, number> };
  const errors = report.findings.filter((f) => f.severity === 'error');
  assert.deepEqual(errors, []);
  // It did check the adopted tables (not an empty audit).
  assert.ok(!report.findings.some((f) => f.ruleId === 'no-tenant-tables'));
  assert.equal(report.stats.tenantTables, 8);
  assert.equal((res as { code?: number }).code ?? 0, 0);
});

test('two tenants through forTenant + guard see only their own rows; a query without the tenant predicate is refused', async () => {
  const { schema } = (await import(path.join(dir, 'tenantwall.schema.ts'))) as { schema: Schema };
  const db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, guard: createGuard(schema) });
  try {
    const acme = (await db.tenants.getBySlug('acme'))?.id;
    const globex = (await db.tenants.getBySlug('globex'))?.id;
    assert.ok(acme && globex);
    for (const [tenant, slug, other] of [[acme, 'acme', 'globex'], [globex, 'globex', 'acme']] as const) {
      const scope = db.forTenant(tenant);
      const tasks = await scope.query<{ title: string }>('SELECT t.title FROM tasks t JOIN projects p ON p.tenant_id = t.tenant_id AND p.id = t.project_id WHERE t.tenant_id = $1', [tenant]);
      assert.equal(tasks.rows.length, 1000);
      assert.ok(tasks.rows.every((r) => r.title.startsWith(`${slug}-`)));
      const users = await scope.query<{ email: string }>('SELECT email FROM users WHERE tenant_id = $1', [tenant]);
      assert.equal(users.rows.length, 5);
      assert.ok(users.rows.every((r) => r.email.endsWith(`@${slug}.test`)));
      // The other tenant's id as the predicate: RLS still answers nothing.
      const otherId: string = other === 'acme' ? acme : globex;
      const stolen: number = await scope.query('SELECT id FROM comments WHERE tenant_id = $1', [otherId]).then((r) => r.rows.length, (e: unknown) => (e instanceof TenantwallError ? 0 : Promise.reject(e)));
      assert.equal(stolen, 0);
      // Writes: a new task lands in this tenant only, through the serial key and the composite foreign key.
      const project = (await scope.query<{ id: string }>('SELECT id FROM projects WHERE tenant_id = $1 ORDER BY id LIMIT 1', [tenant])).rows[0]?.id;
      await scope.query('INSERT INTO tasks (tenant_id, project_id, title) VALUES ($1, $2, $3)', [tenant, project, `${slug}-new`]);
      // Global lookup table: readable by every tenant.
      assert.equal((await scope.query('SELECT code FROM countries')).rows.length, 3);
      // The legacy query without the tenant predicate gets a precise refusal.
      await assert.rejects(scope.query('SELECT title FROM tasks'), (e: unknown) => e instanceof TenantwallError && /tasks/.test(e.message));
    }
    const counts = await superQuery(database.name, `SELECT o.slug, count(*)::int AS n FROM tasks t JOIN organizations o USING (tenant_id) WHERE t.title LIKE '%-new' GROUP BY 1 ORDER BY 1`);
    assert.deepEqual(counts.rows, [{ slug: 'acme', n: 1 }, { slug: 'globex', n: 1 }]);
  } finally {
    await db.close();
  }
});

test('the written declaration matches the adopted database: migrate generate writes nothing', async () => {
  const r = await run('node', [...CLI, 'migrate', 'generate', '--json', '--config', path.join(dir, 'tenantwall.config.ts'), '--dir', path.join(dir, 'migrations')], { env, cwd: ROOT }).catch((e: { stdout: string; stderr: string }) => assert.fail(`${e.stdout}\n${e.stderr}`));
  assert.deepEqual(JSON.parse(r.stdout), { file: null, changes: [], refused: [] });
});

test('tenantKey bigint: the legacy organizations.id becomes the tenant id; migrate, audit and tenant queries work', async () => {
  const legacy = await createTestDatabase();
  const bigDir = path.join(ROOT, '.tmp', `adopt-bigint-${randomBytes(4).toString('hex')}`);
  const bigEnv = { ...process.env, DATABASE_URL: legacy.url, TENANTWALL_TENANT_KEY: 'bigint' };
  try {
    await superQuery(legacy.name, LEGACY_SQL);
    const owners = (await superQuery(legacy.name, OWNERSHIP_SQL)).rows;
    const adopt = await run('node', [...CLI, 'adopt', '--dir', bigDir, '--json'], { env: bigEnv, cwd: ROOT });
    assert.deepEqual((JSON.parse(adopt.stdout) as { undecided: unknown[] }).undecided, []);
    assert.match(fs.readFileSync(path.join(bigDir, 'tenantwall.config.ts'), 'utf8'), /tenantKey: "bigint"/);
    // The config carries the key type: migrate needs no environment variable for it.
    await run('node', [...CLI, 'migrate', '--config', path.join(bigDir, 'tenantwall.config.ts')], { env: { ...process.env, DATABASE_URL: legacy.url }, cwd: ROOT });
    const same = await superQuery(legacy.name, `SELECT count(*)::int AS n FROM organizations WHERE tenant_id <> id`);
    assert.equal(same.rows[0].n, 0);
    assert.deepEqual((await superQuery(legacy.name, TENANT_OWNERSHIP_SQL)).rows, owners);
    const audit = await run('node', [...CLI, 'audit', '--json', '--app-role', 'tenantwall_app', '--global-tables', 'countries'], { env: bigEnv, cwd: ROOT }).catch((e: { stdout: string }) => e);
    assert.deepEqual((JSON.parse(audit.stdout) as { findings: { severity: string }[] }).findings.filter((f) => f.severity === 'error'), []);
    const { schema } = (await import(path.join(bigDir, 'tenantwall.schema.ts'))) as { schema: Schema };
    const db = await Tenantwall.connect({ schema, databaseUrl: legacy.url, manageRoles: false, tenantKey: 'bigint', guard: createGuard(schema) });
    try {
      const globex = await db.tenants.getBySlug('globex');
      assert.ok(globex);
      const orgId = (await superQuery(legacy.name, `SELECT id::text FROM organizations WHERE slug = 'globex'`)).rows[0].id as string;
      assert.equal(String(globex.id), orgId);
      const users = await db.forTenant(globex.id).query<{ email: string }>('SELECT email FROM users WHERE tenant_id = $1', [globex.id]);
      assert.equal(users.rows.length, 5);
      assert.ok(users.rows.every((r) => r.email.endsWith('@globex.test')));
    } finally {
      await db.close();
    }
  } finally {
    await legacy.drop();
    fs.rmSync(bigDir, { recursive: true, force: true });
  }
});

test('what adopt cannot decide is listed (printed and --json) with the fix, and those tables are left alone', async () => {
  const odd = await createTestDatabase();
  const oddDir = path.join(ROOT, '.tmp', `adopt-odd-${randomBytes(4).toString('hex')}`);
  const oddEnv = { ...process.env, DATABASE_URL: odd.url };
  try {
    await superQuery(odd.name, `
      CREATE TABLE accounts (id serial PRIMARY KEY, name text NOT NULL);
      CREATE TABLE notes (id serial PRIMARY KEY, account_id integer REFERENCES accounts (id), body text);
      CREATE TABLE events (account_id integer NOT NULL REFERENCES accounts (id), payload text);
      CREATE TABLE users (id serial PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts (id), email text NOT NULL);
      CREATE UNIQUE INDEX users_email_lower ON users (lower(email));`);
    const json = await run('node', [...CLI, 'adopt', '--dir', oddDir, '--json'], { env: oddEnv, cwd: ROOT }).catch((e: { code: number; stdout: string }) => e);
    assert.equal((json as { code?: number }).code, 1);
    const plan = JSON.parse(json.stdout) as { undecided: { table: string; reason: string; fix: string }[]; tenantTables: { table: string }[] };
    assert.deepEqual(plan.tenantTables.map((t) => t.table).sort(), ['accounts', 'users']);
    assert.deepEqual(plan.undecided.map((u) => u.table).sort(), ['events', 'notes', 'users']);
    assert.match(plan.undecided.find((u) => u.table === 'notes')?.fix ?? '', /--tenant-key notes=|NOT NULL/);
    assert.match(plan.undecided.find((u) => u.table === 'events')?.reason ?? '', /no primary key/);
    assert.match(plan.undecided.find((u) => u.table === 'users')?.reason ?? '', /users_email_lower/);
    fs.rmSync(oddDir, { recursive: true, force: true });
    const text = await run('node', [...CLI, 'adopt', '--dir', oddDir], { env: oddEnv, cwd: ROOT }).catch((e: { stdout: string }) => e);
    assert.match(text.stdout, /could not decide \(3\):/);
    assert.match(text.stdout, /notes: reaches a tenant only through the nullable column account_id/);
    const sql = fs.readFileSync(path.join(oddDir, 'migrations/0001_adopt.sql'), 'utf8');
    assert.doesNotMatch(sql, /"notes"|"events"/);
  } finally {
    await odd.drop();
    fs.rmSync(oddDir, { recursive: true, force: true });
  }
});
