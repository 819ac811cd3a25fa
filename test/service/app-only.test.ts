/**
 * A web process with the application role only (issue 13, docs/credentials.md "The reference service without the
 * owner"): it holds no owner credential, serves the tenant routes itself and relays the admin API and the console
 * to an operator process. The service's test files run again this way (TW_TEST_APP_ONLY=1, setup.ts), and the
 * relay's own guarantees are checked here.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import type { FastifyInstance, InjectOptions } from 'fastify';
import { Tenantwall, runAudit } from '../../src/index.ts';
import { buildApp } from '../../examples/invoicing-service/src/app.ts';
import { appJobs } from '../../examples/invoicing-service/src/jobs.ts';
import { serviceGuard } from '../../examples/invoicing-service/src/guard.ts';
import { type Operator, RELAY_TABLES, startOperator } from '../../examples/invoicing-service/src/operator.ts';
import { migrations, schema } from '../../examples/invoicing-service/src/schema.ts';
import { connectAppOnly, createTestTenantwall, superQuery, type TestTenantwall } from '../helpers/db.ts';
import { waitFor } from '../webhooks/receiver.ts';
import { ContractChecker } from './contract.ts';
import { ADMIN_TOKEN, runServiceFiles } from './setup.ts';

test('the service suite passes with a web process that holds the application role only', async () => {
  const r = await runServiceFiles(
    // Every route: the typed client drives every operation of the document (client.test.ts).
    ['api.test.ts', 'isolation.test.ts', 'input.test.ts', 'admin.test.ts', 'admin-lifecycle.test.ts', 'documents.test.ts', 'rules.test.ts', 'client.test.ts', '../observability/service.test.ts'],
    { TW_TEST_APP_ONLY: '1' },
  );
  assert.equal(r.code, 0, `child test run failed with the application role only:\n${r.out}`);
  assert.equal(r.fail, 0, r.out);
  assert.ok(r.pass >= 32, `expected the service tests to run, saw:\n${r.out}`);
});

let t: TestTenantwall;
let web: Tenantwall;
let webApp: FastifyInstance;
let ownerApp: FastifyInstance;
/** A second operator process's app (each process has its own jobs). */
let ownerApp2: FastifyInstance;
const admin = (opts: InjectOptions) => webApp.inject({ ...opts, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...opts.headers } });

before(async () => {
  t = await createTestTenantwall(schema, migrations, { guard: serviceGuard() });
  web = await connectAppOnly({ schema, guard: serviceGuard(), appDatabaseUrl: t.db.options.appDatabaseUrl as string });
  webApp = await buildApp({ db: web, adminToken: ADMIN_TOKEN, relay: { claimTimeoutMs: 2000, operatorFreshMs: 1000 } });
  // Every answer of the web process, relayed or not (the 503s of a missing operator too), is the document's.
  contract.install(webApp);
  ownerApp = await buildApp({ db: t.db, adminToken: ADMIN_TOKEN });
  ownerApp2 = await buildApp({ db: t.db, adminToken: ADMIN_TOKEN });
  await ownerApp.ready();
  await ownerApp2.ready();
});
const contract = new ContractChecker(() => webApp.swagger() as Record<string, unknown>);
after(async () => {
  await webApp?.close();
  await web?.close();
  await ownerApp?.close();
  await ownerApp2?.close();
  await t?.close();
});

async function withOperator<T>(fn: (o: Operator) => Promise<T>): Promise<T> {
  const o = await startOperator(ownerApp, t.db, { heartbeatMs: 100 });
  try {
    return await fn(o);
  } finally {
    await o.stop();
  }
}

test('the web process connects as the application role: no owner pool, and that role cannot read admin tokens or answer requests', async () => {
  assert.equal(web.hasOwner, false);
  assert.equal(web.options.databaseUrl, undefined);
  const app = new pg.Client({ connectionString: web.options.appDatabaseUrl });
  await app.connect();
  try {
    assert.equal((await app.query('SELECT current_user AS u')).rows[0].u, web.options.appRole);
    const refused = async (sql: string) => assert.equal(await app.query(sql).then(() => 'ran', (e: { code?: string }) => e.code), '42501', sql);
    await refused('SELECT * FROM admin_tokens');
    await refused(`UPDATE admin_requests SET status = 'done'`);
    await refused(`UPDATE admin_operators SET seen_at = now()`);
    await refused(`DELETE FROM admin_request_chunks`);
    await refused('SELECT * FROM tenantwall_migrations');
  } finally {
    await app.end();
  }
});

test('without an operator a relayed request answers 503 operator_unavailable with Retry-After, and leaves nothing behind', async () => {
  await superQuery(t.database.name, 'DELETE FROM admin_operators');
  const r = await admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'nobody', name: 'Nobody' } });
  assert.equal(r.statusCode, 503, r.body);
  assert.equal(r.json().error.code, 'operator_unavailable');
  assert.equal(r.headers['retry-after'], '5');
  // An operator that stopped announcing itself (crashed) is not waited for either, and a request it never claimed
  // is withdrawn: it will not run later behind the client's back.
  await superQuery(t.database.name, `INSERT INTO admin_operators (id, seen_at) VALUES (gen_random_uuid(), now())`);
  const late = await admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'late', name: 'Late' } });
  assert.equal(late.statusCode, 503, late.body);
  assert.equal(late.json().error.code, 'operator_unavailable');
  await superQuery(t.database.name, 'DELETE FROM admin_operators');
  assert.deepEqual((await superQuery(t.database.name, 'SELECT id FROM admin_requests')).rows, []);
  await withOperator(async () => {
    assert.equal((await admin({ method: 'GET', url: '/admin/tenants' })).json().data.length, 0, 'neither tenant was created');
  });
  // Tenant routes and health do not need the operator.
  assert.equal((await webApp.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  assert.equal((await webApp.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
});

test('relayed: admin tokens are checked by the operator; a suspension and a key revocation take effect at once in the web process', async () => {
  await withOperator(async () => {
    assert.equal((await webApp.inject({ method: 'GET', url: '/admin/tenants', headers: { authorization: 'Bearer wrong-token-0123456789' } })).statusCode, 401);
    const created = await admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'acme', name: 'Acme' } });
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json().id as string;
    const key = (await admin({ method: 'POST', url: `/admin/tenants/${id}/api-keys`, payload: { name: 'k' } })).json();
    const asAcme = () => webApp.inject({ method: 'GET', url: '/customers', headers: { authorization: `Bearer ${key.key}` } });
    assert.equal((await asAcme()).statusCode, 200);
    assert.equal((await asAcme()).statusCode, 200, 'now cached in the web process');
    assert.equal((await admin({ method: 'POST', url: `/admin/tenants/${id}/suspend` })).statusCode, 200);
    const suspended = await asAcme();
    assert.equal(suspended.statusCode, 403, suspended.body);
    assert.equal(suspended.json().error.code, 'tenant_suspended');
    assert.equal((await admin({ method: 'POST', url: `/admin/tenants/${id}/resume` })).statusCode, 200);
    assert.equal((await asAcme()).statusCode, 200);
    assert.equal((await admin({ method: 'DELETE', url: `/admin/tenants/${id}/api-keys/${key.id}` })).statusCode, 204);
    assert.equal((await asAcme()).statusCode, 401, 'the revoked key is refused at once');
    // A named admin token works for the routes the web process serves itself (/metrics): checked through the
    // SECURITY DEFINER lookup, as the application role.
    const named = (await admin({ method: 'POST', url: '/admin/tokens', payload: { name: 'scraper' } })).json();
    const metrics = await webApp.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${named.token}` } });
    assert.equal(metrics.statusCode, 200);
    assert.match(metrics.body, /tenantwall_pool_connections/);
    assert.equal((await admin({ method: 'DELETE', url: `/admin/tokens/${named.id}` })).statusCode, 204);
    assert.equal((await webApp.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${named.token}` } })).statusCode, 401);
  });
});

test('relayed: the console logs in and lists tenants through the operator; cookies and redirects pass through', async () => {
  await withOperator(async () => {
    const login = await webApp.inject({ method: 'GET', url: '/console/login' });
    assert.equal(login.statusCode, 200);
    assert.match(login.headers['content-type'] as string, /text\/html/);
    const wrong = await webApp.inject({ method: 'POST', url: '/console/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: 'token=wrong' });
    assert.equal(wrong.statusCode, 401);
    const ok = await webApp.inject({ method: 'POST', url: '/console/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${encodeURIComponent(ADMIN_TOKEN)}` });
    assert.equal(ok.statusCode, 303, ok.body);
    assert.equal(ok.headers.location, '/console/');
    const cookie = String(ok.headers['set-cookie']).split(';')[0] as string;
    const home = await webApp.inject({ method: 'GET', url: '/console/', headers: { cookie } });
    assert.equal(home.statusCode, 200, home.body);
    assert.match(home.body, />acme</, 'the tenant created through the relayed admin API is listed');
    assert.equal((await webApp.inject({ method: 'GET', url: '/console/' })).statusCode, 303, 'no session: to the login page');
  });
});

test('two operators share the work: every relayed request runs once', async () => {
  const a = await startOperator(ownerApp, t.db, { heartbeatMs: 100, concurrency: 2 });
  const b = await startOperator(ownerApp, t.db, { heartbeatMs: 100, concurrency: 2 });
  try {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => admin({ method: 'POST', url: '/admin/tenants', payload: { slug: `many-${i}`, name: `Many ${i}` } })));
    assert.deepEqual(answers.map((r) => r.statusCode), Array(20).fill(201));
    const { rows } = await superQuery(t.database.name, `SELECT operator_id, count(*)::int AS n FROM admin_requests GROUP BY 1`);
    assert.deepEqual(rows, [], 'answered requests are removed once served');
    const slugs = (await superQuery(t.database.name, `SELECT count(*)::int AS n FROM tenants WHERE slug LIKE 'many-%'`)).rows[0].n;
    assert.equal(slugs, 20);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test('two operators: a job\'s status and download reach the operator that runs the job; unknown jobs are still 404', async () => {
  const a = await startOperator(ownerApp, t.db, { heartbeatMs: 100 });
  const b = await startOperator(ownerApp2, t.db, { heartbeatMs: 100 });
  try {
    const tenant = (await admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'exported', name: 'Exported' } })).json();
    // Enough rows that the download is several relay chunks (256 KiB each), streamed back a chunk at a time.
    await superQuery(
      t.database.name,
      `INSERT INTO customers (tenant_id, name, email) SELECT $1, 'Customer ' || g || ' ' || repeat('x', 150), 'c' || g || '@example.com' FROM generate_series(1, 4000) g`,
      [tenant.id],
    );
    const jobIds: string[] = [];
    for (let i = 0; i < 4; i++) {
      const started = await admin({ method: 'POST', url: `/admin/tenants/${tenant.id}/export` });
      assert.equal(started.statusCode, 202, started.body);
      jobIds.push(started.json().id);
      await waitFor(async () => (await admin({ method: 'GET', url: `/admin/jobs/${jobIds[i]}` })).json().status === 'succeeded', `export ${i} finished`);
    }
    // Each app holds its own jobs; every status request, whichever operator claimed it first, reached its job's.
    const held = jobIds.map((j) => (appJobs.get(ownerApp)?.get(j) ? 'a' : appJobs.get(ownerApp2)?.get(j) ? 'b' : '-'));
    assert.ok(!held.includes('-'), held.join(''));
    for (const j of jobIds) {
      for (let k = 0; k < 3; k++) assert.equal((await admin({ method: 'GET', url: `/admin/jobs/${j}` })).statusCode, 200);
      const dl = await admin({ method: 'GET', url: `/admin/jobs/${j}/download` });
      assert.equal(dl.statusCode, 200, dl.body);
      assert.match(dl.body.split('\n')[0] as string, /"kind":"tenantwall-export"/);
      assert.ok(dl.rawPayload.length > 2 * 256 * 1024, `a download of ${dl.rawPayload.length} bytes spans several chunks`);
      assert.equal(dl.body.split('\n').filter((l) => l.startsWith('{"table":"customers"')).length, 4000, 'every row arrived once');
    }
    // An operator that looks alive but will never claim (it just died): both live ones pass the request on to it,
    // and take it back once it is no longer fresh. The answer comes, not a hang.
    await superQuery(t.database.name, `INSERT INTO admin_operators (id, seen_at) VALUES (gen_random_uuid(), now() - interval '13 seconds')`);
    const unknown = await admin({ method: 'GET', url: '/admin/jobs/00000000-0000-4000-8000-000000000000' });
    assert.equal(unknown.statusCode, 404, unknown.body);
    await superQuery(t.database.name, `DELETE FROM admin_operators WHERE seen_at < now() - interval '10 seconds'`);
  } finally {
    await a.stop();
    await b.stop();
  }
});

test('two operator processes: a console login works at either, and an operation\'s page and status reach the one that runs it', async () => {
  // A second process: its own Tenantwall (own pools) and app, so its console keeps its own operations.
  const db2 = await Tenantwall.connect({ schema, guard: serviceGuard(), databaseUrl: t.db.options.databaseUrl as string, appDatabaseUrl: t.db.options.appDatabaseUrl as string, manageRoles: false });
  const app2 = await buildApp({ db: db2, adminToken: ADMIN_TOKEN });
  let a: Operator | undefined = await startOperator(ownerApp, t.db, { heartbeatMs: 100 });
  let b: Operator | undefined;
  const sessions = async () => (await superQuery(t.database.name, 'SELECT count(*)::int AS n FROM console_sessions')).rows[0].n as number;
  const before = await sessions();
  try {
    const form = { 'content-type': 'application/x-www-form-urlencoded' };
    const ok = await webApp.inject({ method: 'POST', url: '/console/login', headers: form, payload: `token=${encodeURIComponent(ADMIN_TOKEN)}` });
    assert.equal(ok.statusCode, 303, ok.body);
    const cookie = String(ok.headers['set-cookie']).split(';')[0] as string;
    assert.equal(await sessions(), before + 1);
    const stored = await superQuery(t.database.name, 'SELECT count(*)::int AS n FROM console_sessions WHERE id_hash = $1', [cookie.split('=')[1]]);
    assert.equal(stored.rows[0].n, 0, 'the table holds a hash of the session id, not the cookie');
    // Logged in at the first operator only; the second one, alone now, knows the session (console_sessions).
    await a.stop();
    a = undefined;
    b = await startOperator(app2, db2, { heartbeatMs: 100 });
    const tenant = (await admin({ method: 'POST', url: '/admin/tenants', payload: { slug: 'console-op', name: 'Console op' } })).json();
    const page = await webApp.inject({ method: 'GET', url: `/console/tenants/${tenant.id}`, headers: { cookie } });
    assert.equal(page.statusCode, 200, 'the session of a login at another process');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(page.body)?.[1] as string;
    assert.ok(csrf, 'the page carries the CSRF token');
    // Both operators live: an export started at one of them; its status asked again and again is always found.
    a = await startOperator(ownerApp, t.db, { heartbeatMs: 100 });
    const started = await webApp.inject({ method: 'POST', url: `/console/tenants/${tenant.id}/export`, headers: { ...form, cookie }, payload: `_csrf=${encodeURIComponent(csrf)}` });
    assert.equal(started.statusCode, 303, started.body);
    const opUrl = started.headers.location as string;
    assert.match(opUrl, /^\/console\/operations\/[^/]+$/);
    for (let i = 0; i < 8; i++) {
      const status = await webApp.inject({ method: 'GET', url: `${opUrl}/status`, headers: { cookie } });
      assert.equal(status.statusCode, 200, `status ${i}: ${status.body}`);
    }
    assert.equal((await webApp.inject({ method: 'GET', url: opUrl, headers: { cookie } })).statusCode, 200);
    assert.equal((await webApp.inject({ method: 'GET', url: '/console/operations/no-such-operation/status', headers: { cookie } })).statusCode, 404);
    // Logging out ends the session for every process.
    const out = await webApp.inject({ method: 'POST', url: '/console/logout', headers: { ...form, cookie }, payload: `_csrf=${encodeURIComponent(csrf)}` });
    assert.equal(out.statusCode, 303);
    assert.equal((await webApp.inject({ method: 'GET', url: '/console/', headers: { cookie } })).statusCode, 303, 'logged out: to the login page');
    assert.equal(await sessions(), before, 'the session row is gone');
  } finally {
    await a?.stop();
    await b?.stop();
    await app2.close();
    await db2.close();
  }
});

test('tenantwall audit on the database with the relay tables (declared global): no error or warning', async () => {
  await waitFor(async () => (await superQuery(t.database.name, 'SELECT count(*)::int AS n FROM admin_operators')).rows[0].n === 0, 'operators gone');
  const report = await runAudit({ databaseUrl: t.database.url, appRole: t.db.options.appRole, globalTables: RELAY_TABLES });
  assert.deepEqual(report.findings.filter((f) => f.severity !== 'info').map((f) => `${f.ruleId}: ${f.message}`), []);
});

test('every answer of the web process in this file matched the OpenAPI document (the console is HTML, outside it)', () => {
  assert.deepEqual(contract.violations.filter((v) => !/^[A-Z]+ \/console\b/.test(v)), []);
});
