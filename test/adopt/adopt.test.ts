/**
 * `tenantwall adopt` on a legacy database (test/adopt/legacy.ts): adopt writes the migration and declaration and
 * applies nothing; `migrate` killed (kill -9) in the middle of the backfill and run again finishes with every row
 * owned by the tenant its legacy organization was; `audit` then reports no error; two tenants querying through
 * forTenant + guard never see each other's rows; the legacy Fastify + Kysely app (test/fixtures/legacy-app.ts),
 * adopted, serves both tenants over HTTP without a cross-tenant row on any route.
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
import { buildLegacyApp } from '../fixtures/legacy-app.ts';
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
  const plan = JSON.parse(stdout) as { undecided: unknown[]; notes: { table: string; note: string }[]; tenantTable: string; tenantTables: { table: string; schema?: string; via?: { column: string; columns: string[]; parent: string } }[]; globalTables: string[]; written: string[] };
  assert.deepEqual(plan.undecided, []);
  assert.equal(plan.tenantTable, 'organizations');
  assert.deepEqual(plan.globalTables, ['countries']);
  const via = Object.fromEntries(plan.tenantTables.map((t) => [`${t.schema ?? 'public'}.${t.table}`, t.via ? `${t.via.columns.join('+')}->${t.via.parent}` : 'root']));
  assert.deepEqual(via, {
    'public.organizations': 'root',
    'billing.invoices': 'org_id->organizations',
    'public.projects': 'org_id->organizations',
    'public.tags': 'org_id->organizations',
    'public.users': 'org_id->organizations',
    // Through their parents only (invoice_lines: a two-column foreign key, in another schema).
    'billing.invoice_lines': 'invoice_org_id+invoice_number->invoices',
    'public.task_tags': 'tag_id->tags',
    'public.tasks': 'project_id->projects',
    'public.comments': 'task_id->tasks',
  });
  assert.ok(plan.notes.some((n) => n.table === 'invoice_lines' && /schema billing/.test(n.note)));
  assert.deepEqual(plan.written.map((f) => path.relative(dir, f)).sort(), ['migrations/0001_adopt.sql', 'tenantwall.config.ts', 'tenantwall.schema.ts']);
  const sql = fs.readFileSync(path.join(dir, 'migrations/0001_adopt.sql'), 'utf8');
  assert.match(sql, /NOT VALID;/);
  assert.match(sql, /VALIDATE CONSTRAINT/);
  assert.match(sql, /CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS "users_tenant_id_email_key" ON "public"."users" \("tenant_id", "email"\)/);
  assert.match(sql, /ALTER TABLE "public"."tasks" FORCE ROW LEVEL SECURITY;/);
  // Another schema and a multi-column link: qualified names, the backfill joins on both columns, the foreign key
  // becomes (tenant_id, a, b) -> (tenant_id, x, y) on the tenant-led unique.
  assert.match(sql, /UPDATE "billing"."invoice_lines" c SET "tenant_id" = p."tenant_id" FROM "billing"."invoices" p WHERE p."org_id" = c."invoice_org_id" AND p."number" = c."invoice_number"/);
  assert.match(sql, /FOREIGN KEY \("tenant_id", "invoice_org_id", "invoice_number"\) REFERENCES "billing"."invoices" \("tenant_id", "org_id", "number"\)/);
  assert.match(sql, /GRANT USAGE ON SCHEMA "billing" TO "tenantwall_app";/);
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
  const commentsStep = steps.findIndex((s) => s.kind === 'batch' && s.sql.startsWith('UPDATE "public"."comments"'));
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
  assert.equal(report.stats.tenantTables, 9);
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

test('the adopted fixture app: its Fastify routes (Kysely and Drizzle) as two tenants never see, reach or write the other tenant\'s rows', async () => {
  // Adoption step 5 (docs/adopting.md): the app's API keys. Add apiKeysTable() to the written declaration,
  // let migrate generate write its table, migrate, and issue one key per tenant with the CLI.
  const schemaFile = path.join(dir, 'tenantwall.schema.ts');
  const config = path.join(dir, 'tenantwall.config.ts');
  const migrations = path.join(dir, 'migrations');
  fs.writeFileSync(schemaFile, fs.readFileSync(schemaFile, 'utf8')
    .replace(/^import \{ defineSchema/m, "import { apiKeysTable } from 'tenantwall/fastify';\nimport { defineSchema")
    .replace(/^ {2}tables: \[$/m, '  tables: [\n    apiKeysTable(),'));
  const gen = await run('node', [...CLI, 'migrate', 'generate', '--json', '--config', config, '--dir', migrations], { env, cwd: ROOT }).catch((e: { stdout: string; stderr: string }) => assert.fail(`${e.stdout}\n${e.stderr}`));
  assert.deepEqual((JSON.parse(gen.stdout) as { changes: string[] }).changes, ['create tenant table api_keys']);
  await run('node', [...CLI, 'migrate', '--config', config], { env, cwd: ROOT });
  const again = await run('node', [...CLI, 'migrate', 'generate', '--json', '--config', config, '--dir', migrations], { env, cwd: ROOT });
  assert.deepEqual(JSON.parse(again.stdout), { file: null, changes: [], refused: [] });
  const key = async (slug: string) => (JSON.parse((await run('node', [...CLI, 'keys', 'create', slug, '--name', 'app', '--json', '--config', config], { env, cwd: ROOT })).stdout) as { key: string }).key;
  const keys = { acme: await key('acme'), globex: await key('globex') };

  const { schema } = (await import(`${schemaFile}?app`)) as { schema: Schema };
  const db = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false, guard: createGuard(schema) });
  const app = await buildLegacyApp(db);
  try {
    const as = async (slug: 'acme' | 'globex', method: 'GET' | 'POST', url: string, payload?: object) => {
      const res = await app.inject({ method, url, headers: { authorization: `Bearer ${keys[slug]}` }, ...(payload ? { payload } : {}) });
      return { status: res.statusCode, body: res.json() as unknown };
    };
    type Row = Record<string, unknown>;
    const ids = async (slug: 'acme' | 'globex', url: string) => ((await as(slug, 'GET', url)).body as Row[]).map((r) => String(r.id));
    // What each tenant owns, read as the owner (the legacy org_id and the adopted tenant_id must agree).
    const owned = async (table: string, slug: string) => (await superQuery(database.name, `SELECT x.id::text AS id FROM ${table} x JOIN organizations o ON o.tenant_id = x.tenant_id WHERE o.slug = $1 ORDER BY x.id`, [slug])).rows.map((r: { id: string }) => r.id);

    // The app's own root handlers are still in place, and non-API routes need no key.
    assert.deepEqual((await app.inject({ url: '/health' })).json(), { ok: true });
    const lost = await app.inject({ url: '/nowhere' });
    assert.equal(lost.statusCode, 404);
    assert.equal((lost.json() as Row).code, 'no_route');
    // The API needs a key: refused through the app's own error handler, in its shape.
    const anonymous = await app.inject({ url: '/api/projects' });
    assert.equal(anonymous.statusCode, 401);
    assert.equal((anonymous.json() as Row).ok, false);

    for (const [me, other] of [['acme', 'globex'], ['globex', 'acme']] as const) {
      // Lists: exactly the tenant's rows, on every table.
      for (const table of ['users', 'projects', 'invoices']) {
        const mine = await ids(me, `/api/${table}`);
        assert.deepEqual([...mine].sort(), [...(await owned(table, me))].sort(), `${me} GET /api/${table}`);
        assert.ok(mine.length > 0);
      }
      const emails = ((await as(me, 'GET', '/api/users')).body as Row[]).map((r) => String(r.email));
      assert.ok(emails.every((e) => e.endsWith(`@${me}.test`)));
      assert.deepEqual(((await as(me, 'GET', '/api/tags')).body as Row[]).map((r) => r.label), ['bug', 'chore', 'feature']);
      // The global lookup table: every tenant reads all of it.
      assert.equal(((await as(me, 'GET', '/api/countries')).body as Row[]).length, 3);

      // Get by id: the own row answers, the other tenant's row is 404 (as if it did not exist).
      const myProject = (await owned('projects', me))[0] as string;
      const theirProject = (await owned('projects', other))[0] as string;
      assert.equal((await as(me, 'GET', `/api/projects/${myProject}`)).status, 200);
      const peek = await as(me, 'GET', `/api/projects/${theirProject}`);
      assert.equal(peek.status, 404);
      assert.equal((peek.body as Row).code, 'not_found');
      const theirTask = (await owned('tasks', other))[0] as string;
      assert.equal((await as(me, 'GET', `/api/tasks/${theirTask}`)).status, 404);

      // Child tables reached only through their parent: the other tenant's parent id gives nothing.
      const myTasks = (await as(me, 'GET', `/api/projects/${myProject}/tasks`)).body as Row[];
      const projectTasks = await superQuery(database.name, `SELECT id::text FROM tasks WHERE project_id = $1 ORDER BY tasks.id`, [myProject]);
      assert.deepEqual(myTasks.map((t) => String(t.id)), projectTasks.rows.map((r: { id: string }) => r.id));
      assert.ok(myTasks.length >= 250);
      assert.deepEqual((await as(me, 'GET', `/api/projects/${theirProject}/tasks`)).body, []);
      const myTask = String(myTasks[0]?.id);
      const myComments = (await as(me, 'GET', `/api/tasks/${myTask}/comments`)).body as Row[];
      assert.equal(myComments.length, 2);
      assert.ok(myComments.every((c) => String(c.body).startsWith(`${me}-`)));
      assert.deepEqual((await as(me, 'GET', `/api/tasks/${theirTask}/comments`)).body, []);

      const myInvoice = (await owned('invoices', me))[0] as string;
      const lines = (await as(me, 'GET', `/api/invoices/${myInvoice}/lines`)).body as Row[];
      assert.deepEqual(lines.map((l) => l.line_no), [1, 2]);
      assert.ok(lines.every((l) => String(l.description).startsWith(`${me}-inv-`)));
      assert.deepEqual((await as(me, 'GET', `/api/invoices/${(await owned('invoices', other))[0] as string}/lines`)).body, []);

      // Writes: a new row lands in the request's tenant; a foreign id of the other tenant is refused.
      const created = await as(me, 'POST', '/api/tasks', { project_id: myProject, title: `${me}-via-app` });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const createdOwner = await superQuery(database.name, `SELECT o.slug FROM tasks t JOIN organizations o USING (tenant_id) WHERE t.id = $1`, [String((created.body as Row).id)]);
      assert.deepEqual(createdOwner.rows, [{ slug: me }]);
      for (const [url, payload] of [
        ['/api/tasks', { project_id: theirProject, title: 'planted' }], // parent of the other tenant
        ['/api/projects', { name: 'planted', owner_id: Number((await owned('users', other))[0]) }], // nullable foreign key
        [`/api/tasks/${theirTask}/comments`, { body: 'planted' }], // child through the other tenant's parent
      ] as const) {
        const refused = await as(me, 'POST', url, payload);
        assert.equal(refused.status, 409, `${me} POST ${url}: ${JSON.stringify(refused.body)}`);
        assert.equal((refused.body as Row).code, 'conflict');
      }
      // Drizzle routes: a tag of the other tenant is not found; the same label is free in each tenant (the
      // legacy unique (org_id, label) is now led by tenant_id).
      assert.equal((await as(me, 'GET', '/api/tags/bug')).status, 200);
      const tag = await as(me, 'POST', '/api/tags', { label: 'shared-label' });
      assert.equal(tag.status, 201, JSON.stringify(tag.body));
      assert.equal((await as(me, 'GET', '/api/tags/shared-label')).status, 200);
      assert.equal((await as(me, 'POST', '/api/tags', { label: 'shared-label' })).status, 409);
      if (me === 'acme') assert.equal((await as(other, 'GET', '/api/tags/shared-label')).status, 404);

      const ownProject = await as(me, 'POST', '/api/projects', { name: `${me}-new-project`, owner_id: Number((await owned('users', me))[0]) });
      assert.equal(ownProject.status, 201, JSON.stringify(ownProject.body));

      // The legacy raw-SQL report that never named its organization: refused by the guard, naming the predicate.
      const report = await as(me, 'GET', '/api/reports/open-tasks');
      assert.equal(report.status, 500);
      assert.equal((report.body as Row).code, 'unscoped_query');
      assert.match(String((report.body as Row).message), /tasks is not constrained to the tenant: add tasks\.tenant_id = \$n as a conjunct of its WHERE/);
    }
    const planted = await superQuery(database.name, `SELECT count(*)::int AS n FROM (SELECT title AS t FROM tasks UNION ALL SELECT name FROM projects UNION ALL SELECT body FROM comments) x WHERE t = 'planted'`);
    assert.equal(planted.rows[0].n, 0);
  } finally {
    await app.close();
    await db.close();
  }
});

test('docs/adopting.md step 5 runs as written against the adopted fixture database', async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/adopting.md'), 'utf8');
  const code = /## 5\. The app[\s\S]*?```ts no-run\n([\s\S]*?)```/.exec(doc)?.[1];
  assert.ok(code, 'docs/adopting.md has a ts block in step 5');
  // The page's `schema` is the declaration adopt wrote (with apiKeysTable() added by the app test above).
  const file = path.join(dir, 'step-5.ts');
  fs.writeFileSync(file, `import { schema } from './tenantwall.schema.ts';\n${code}`);
  const config = path.join(dir, 'tenantwall.config.ts');
  const created = await run('node', [...CLI, 'keys', 'create', 'acme', '--name', 'docs', '--json', '--config', config], { env, cwd: ROOT });
  const r = await run('node', ['--import', 'tsx', file], { env: { ...env, ACME_API_KEY: (JSON.parse(created.stdout) as { key: string }).key }, cwd: ROOT })
    .catch((e: Error & { stdout: string; stderr: string }) => assert.fail(`${e.message}\n${e.stdout}\n${e.stderr}`));
  const acmeProjects = (await superQuery(database.name, `SELECT count(*)::int AS n FROM projects p JOIN organizations o USING (tenant_id) WHERE o.slug = 'acme'`)).rows[0].n as number;
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines[0], `projects 200 ${acmeProjects}`);
  const [, status, body] = /^report (\d+) (.*)$/.exec(lines[1] ?? '') ?? [];
  assert.equal(status, '500');
  const refusal = JSON.parse(body as string) as { ok: boolean; code: string; message: string };
  assert.equal(refusal.code, 'unscoped_query');
  assert.match(refusal.message, /tasks is not constrained to the tenant: add tasks\.tenant_id = \$n as a conjunct of its WHERE/);
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
      CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
      ALTER TABLE users ADD UNIQUE (account_id, id);
      CREATE TABLE user_links (id serial PRIMARY KEY, account_id integer, user_id integer NOT NULL, FOREIGN KEY (account_id, user_id) REFERENCES users (account_id, id));
      CREATE SCHEMA archive;
      CREATE TABLE archive.notes_2019 (id serial PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts (id));
      CREATE SCHEMA shadow;
      CREATE TABLE shadow.users (id serial PRIMARY KEY, account_id integer NOT NULL REFERENCES accounts (id));
      DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET search_path = public, shadow', current_database()); END $$;`);
    const json = await run('node', [...CLI, 'adopt', '--dir', oddDir, '--json'], { env: oddEnv, cwd: ROOT }).catch((e: { code: number; stdout: string }) => e);
    assert.equal((json as { code?: number }).code, 1);
    const plan = JSON.parse(json.stdout) as { undecided: { table: string; reason: string; fix: string }[]; tenantTables: { table: string }[] };
    assert.deepEqual(plan.tenantTables.map((t) => t.table).sort(), ['accounts', 'users']);
    assert.deepEqual(plan.undecided.map((u) => u.table).sort(), ['archive.notes_2019', 'events', 'notes', 'shadow.users', 'user_links', 'users']);
    // Other schemas: one off the search_path, one whose name is taken there (declared tables are unqualified).
    assert.match(plan.undecided.find((u) => u.table === 'archive.notes_2019')?.reason ?? '', /schema archive is not on the search_path/);
    assert.match(plan.undecided.find((u) => u.table === 'shadow.users')?.reason ?? '', /taken on the search_path by public\.users/);
    // A two-column foreign key with a nullable column links nothing (MATCH SIMPLE).
    assert.match(plan.undecided.find((u) => u.table === 'user_links')?.reason ?? '', /through the foreign key \(account_id, user_id\) with a nullable column/);
    assert.match(plan.undecided.find((u) => u.table === 'notes')?.fix ?? '', /--tenant-key notes=|NOT NULL/);
    assert.match(plan.undecided.find((u) => u.table === 'events')?.reason ?? '', /no primary key/);
    assert.match(plan.undecided.find((u) => u.table === 'users')?.reason ?? '', /users_email_lower/);
    fs.rmSync(oddDir, { recursive: true, force: true });
    const text = await run('node', [...CLI, 'adopt', '--dir', oddDir], { env: oddEnv, cwd: ROOT }).catch((e: { stdout: string }) => e);
    assert.match(text.stdout, /could not decide \(6\):/);
    assert.match(text.stdout, /notes: reaches a tenant only through the nullable column account_id/);
    const sql = fs.readFileSync(path.join(oddDir, 'migrations/0001_adopt.sql'), 'utf8');
    assert.doesNotMatch(sql, /"notes"|"events"|"user_links"|"archive"|"shadow"/);
    // --schemas public: the other schemas are not read at all.
    fs.rmSync(oddDir, { recursive: true, force: true });
    const only = await run('node', [...CLI, 'adopt', '--dir', oddDir, '--json', '--schemas', 'public'], { env: oddEnv, cwd: ROOT }).catch((e: { stdout: string }) => e);
    assert.deepEqual((JSON.parse(only.stdout) as { undecided: { table: string }[] }).undecided.map((u) => u.table).sort(), ['events', 'notes', 'user_links', 'users']);
  } finally {
    await odd.drop();
    fs.rmSync(oddDir, { recursive: true, force: true });
  }
});
