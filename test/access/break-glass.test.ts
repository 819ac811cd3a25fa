import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { accessLogMigrationSql, accessLogTables, dangerouslyBreakGlass, readAccessLog } from '../../src/access/index.ts';
import { accessLogRoutes } from '../../src/fastify/index.ts';
import { ApiKeyStore, apiKeysTable, tenantwallPlugin } from '../../src/fastify/index.ts';
import { createGuard, defineSchema, isTenantwallError, tenantTable, type Migration, type TenantId } from '../../src/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

const schema = defineSchema({
  tables: [apiKeysTable(), tenantTable({ name: 'notes', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, body: { type: 'text' } } }), ...accessLogTables],
});
const migrations: Migration[] = [
  { version: 1, name: 'init', sql: (ctx) => ctx.createSchema() },
  { version: 2, name: 'access log', sql: (ctx) => accessLogMigrationSql(ctx) },
];
const NOTES = 'SELECT body FROM notes WHERE tenant_id = $1 ORDER BY body';

describe('break-glass access', () => {
  let t: TestTenantwall;
  let A: TenantId;
  let B: TenantId;
  before(async () => {
    t = await createTestTenantwall(schema, migrations, { guard: createGuard(schema) });
    A = (await t.db.tenants.create({ slug: 'a', name: 'A' })).id;
    B = (await t.db.tenants.create({ slug: 'b', name: 'B' })).id;
    await t.db.forTenant(A).query(`INSERT INTO notes (tenant_id, body) VALUES ($1, 'a-note')`, [A]);
    await t.db.forTenant(B).query(`INSERT INTO notes (tenant_id, body) VALUES ($1, 'b-note')`, [B]);
  });
  after(() => t.close());

  test("a one-tenant grant reads that tenant only, and every statement lands in that tenant's log", async () => {
    const grant = await dangerouslyBreakGlass(t.db, { actor: 'alice@support', reason: 'TICKET-1: missing invoice', tenant: A, ttlMs: 60_000 });
    assert.deepEqual((await grant.query(NOTES, [A])).rows, [{ body: 'a-note' }]);
    // The grant runs in A's scope: the guard refuses B's id, and row-level security hides B's rows.
    await assert.rejects(grant.query(NOTES, [B]), (e: unknown) => isTenantwallError(e, 'unscoped_query'));
    assert.deepEqual((await grant.query('SELECT body FROM notes WHERE tenant_id = $1 AND body = $2', [A, 'b-note'])).rows, []);
    const log = (await readAccessLog(t.db.forTenant(A))).filter((e) => e.grant_id === grant.id);
    assert.deepEqual(
      log.map((e) => [e.kind, e.actor, e.reason, e.rows, e.statement]).reverse(),
      [
        ['open', 'alice@support', 'TICKET-1: missing invoice', null, null],
        ['statement', 'alice@support', 'TICKET-1: missing invoice', 1, NOTES],
        ['failed', 'alice@support', 'TICKET-1: missing invoice', null, NOTES],
        ['statement', 'alice@support', 'TICKET-1: missing invoice', 0, 'SELECT body FROM notes WHERE tenant_id = $1 AND body = $2'],
      ],
    );
    assert.match(log[0]?.fingerprint ?? '', /^[0-9a-f]{16}$/);
    assert.equal(log[0]?.expires_at.getTime(), grant.expiresAt.getTime());
    assert.equal((await readAccessLog(t.db.forTenant(B))).some((e) => e.grant_id === grant.id), false);
  });

  test('a tenant reads exactly its own entries', async () => {
    const gb = await dangerouslyBreakGlass(t.db, { actor: 'bob@support', reason: 'TICKET-2', tenant: B, ttlMs: 60_000 });
    await gb.query(NOTES, [B]);
    const all = (await t.db.dangerouslyCrossTenant().query<{ tenant_id: string; id: string }>('SELECT tenant_id, id FROM tw_access_log')).rows;
    for (const tenant of [A, B]) {
      const own = await readAccessLog(t.db.forTenant(tenant), { limit: 1000 });
      assert.deepEqual(own.map((e) => e.id).sort(), all.filter((r) => r.tenant_id === tenant).map((r) => r.id).sort());
      assert.ok(own.length > 0);
    }
  });

  test('the application role cannot UPDATE, DELETE or TRUNCATE the log, nor touch the all-tenant log', async () => {
    const client = await t.db.dangerouslyRawAppPool().connect();
    try {
      for (const sql of [
        `UPDATE tw_access_log SET reason = 'nothing to see' WHERE tenant_id = '${A}'`,
        `DELETE FROM tw_access_log WHERE tenant_id = '${A}'`,
        'TRUNCATE tw_access_log',
        'SELECT * FROM tw_access_log_all',
        `INSERT INTO tw_access_log_all (grant_id, actor, reason, kind, expires_at) VALUES (gen_random_uuid(), 'x', 'y', 'open', now())`,
        'DELETE FROM tw_access_log_all',
      ]) {
        // In A's scope, as the application would be: privileges refuse, not just RLS filtering.
        await client.query('BEGIN');
        await client.query(`SELECT set_config('tenantwall.tenant_id', $1, true)`, [A]);
        await assert.rejects(client.query(sql), (e: { code?: string }) => e.code === '42501', sql);
        await client.query('ROLLBACK');
      }
    } finally {
      client.release();
    }
    // The owner is refused by the trigger: entries are never edited.
    await assert.rejects(t.db.dangerouslyCrossTenant().query(`UPDATE tw_access_log SET reason = 'x'`), /append-only/);
    await assert.rejects(t.db.dangerouslyCrossTenant().query('TRUNCATE tw_access_log'), /append-only/);
  });

  test('a grant expires, and a closed grant runs nothing more; both are recorded', async () => {
    const grant = await dangerouslyBreakGlass(t.db, { actor: 'carol', reason: 'TICKET-3', tenant: A, ttlMs: 1000 });
    while (Date.now() < grant.expiresAt.getTime()) await new Promise((r) => setTimeout(r, 50));
    await assert.rejects(grant.query(NOTES, [A]), (e: unknown) => isTenantwallError(e, 'break_glass_expired') && e.status === 403);
    const g2 = await dangerouslyBreakGlass(t.db, { actor: 'carol', reason: 'TICKET-3b', tenant: A, ttlMs: 60_000 });
    await g2.close();
    await assert.rejects(g2.query(NOTES, [A]), (e: unknown) => isTenantwallError(e, 'break_glass_expired'));
    const kinds = (await readAccessLog(t.db.forTenant(A))).filter((e) => e.grant_id === g2.id || e.grant_id === grant.id).map((e) => `${e.reason}:${e.kind}`);
    assert.deepEqual(kinds.sort(), ['TICKET-3:open', 'TICKET-3b:close', 'TICKET-3b:open']);
  });

  test('a failing statement is recorded after its rollback, with its error code', async () => {
    const grant = await dangerouslyBreakGlass(t.db, { actor: 'dave', reason: 'TICKET-4', tenant: A, ttlMs: 60_000 });
    await assert.rejects(grant.query('SELECT 1 / 0 AS x FROM notes WHERE tenant_id = $1', [A]));
    const entry = (await readAccessLog(t.db.forTenant(A))).find((e) => e.grant_id === grant.id && e.kind === 'failed');
    assert.equal(entry?.error_code, '22012');
    assert.equal(entry?.statement, 'SELECT $2 / $3 AS x FROM notes WHERE tenant_id = $1');
  });

  test("an 'all' grant sees every tenant and is logged apart, out of the tenants' logs", async () => {
    const grant = await dangerouslyBreakGlass(t.db, { actor: 'erin@oncall', reason: 'INC-9 data repair', tenant: 'all', ttlMs: 60_000 });
    assert.deepEqual((await grant.query('SELECT body FROM notes ORDER BY body')).rows, [{ body: 'a-note' }, { body: 'b-note' }]);
    const rows = (await t.db.dangerouslyCrossTenant().query('SELECT kind, rows FROM tw_access_log_all WHERE grant_id = $1 ORDER BY at', [grant.id])).rows;
    assert.deepEqual(rows, [{ kind: 'open', rows: null }, { kind: 'statement', rows: '2' }]);
    for (const tenant of [A, B]) assert.equal((await readAccessLog(t.db.forTenant(tenant))).some((e) => e.grant_id === grant.id), false);
  });

  test('a grant needs a person, a reason, a tenant and a bounded ttl', async () => {
    const ok = { actor: 'x', reason: 'y', tenant: A, ttlMs: 60_000 };
    for (const [bad, field] of [
      [{ actor: '' }, 'actor'],
      [{ reason: '  ' }, 'reason'],
      [{ ttlMs: 9 * 3600_000 }, 'ttlMs'],
      [{ ttlMs: 1.5 }, 'ttlMs'],
      [{ tenant: undefined }, 'tenant'],
    ] as const) {
      await assert.rejects(dangerouslyBreakGlass(t.db, { ...ok, ...bad } as never), (e: unknown) => isTenantwallError(e, 'break_glass_invalid') && e.details.field === field);
    }
    await assert.rejects(dangerouslyBreakGlass(t.db, { ...ok, tenant: 'nope' }), (e: unknown) => isTenantwallError(e, 'invalid_tenant_id'));
  });

  test('GET /access-log answers the calling tenant its own entries over HTTP', async () => {
    const keys = new ApiKeyStore(t.db);
    const keyA = await keys.create(A, { name: 'a' });
    const keyB = await keys.create(B, { name: 'b' });
    const app = Fastify();
    await app.register(tenantwallPlugin, { db: t.db, errorHandler: true });
    await app.register(accessLogRoutes, { db: t.db });
    const base = await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      for (const [tenant, key] of [[A, keyA.key], [B, keyB.key]] as const) {
        const r = await fetch(`${base}/access-log?limit=1000`, { headers: { authorization: `Bearer ${key}` } });
        assert.equal(r.status, 200);
        const body = (await r.json()) as { entries: { id: string }[] };
        const own = await readAccessLog(t.db.forTenant(tenant), { limit: 1000 });
        assert.deepEqual(body.entries.map((e) => e.id), own.map((e) => e.id));
      }
      const bad = await fetch(`${base}/access-log?limit=abc`, { headers: { authorization: `Bearer ${keyA.key}` } });
      assert.equal(bad.status, 400);
      assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'validation_failed');
      assert.equal((await fetch(`${base}/access-log`)).status, 401);
    } finally {
      await app.close();
    }
  });
});
