/**
 * Issue 13, "living inside someone else's Fastify app": the plugin takes over no root handler unless asked,
 * works registered inside a prefix, and names the real source of a refused value (params.id, querystring.limit,
 * body.x) without pointing at a document of the reference service.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import Fastify, { type FastifyInstance } from 'fastify';
import { Type } from '@sinclair/typebox';
import { type Tenant, isTenantwallError } from '../../src/index.ts';
import { ApiKeyStore, type CreatedApiKey, tenantwallFrameworkErrors, tenantwallPlugin, toHttpError } from '../../src/fastify/index.ts';
import { typeboxValidatorCompiler } from '../../src/fastify/typebox.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { pluginMigrations, pluginSchema } from './app.ts';

let t: TestTenantwall;
let a: Tenant;
let keyA: CreatedApiKey;
let noteId: string;

before(async () => {
  t = await createTestTenantwall(pluginSchema, pluginMigrations);
  a = await t.db.tenants.create({ slug: 'alpha', name: 'Alpha' });
  keyA = await new ApiKeyStore(t.db).create(a.id, { name: 'k' });
  const { rows } = await t.db.forTenant(a.id).query<{ id: string }>(`INSERT INTO notes (tenant_id, body) VALUES ($1, 'a-note') RETURNING id`, [a.id]);
  noteId = (rows[0] as { id: string }).id;
});
after(async () => {
  await t.close();
});

const auth = () => ({ authorization: `Bearer ${keyA.key}` });

/** The routes of a small app: a path uuid read by the database only (no schema), and schema-checked ones. */
async function thingRoutes(app: FastifyInstance): Promise<void> {
  const db = t.db;
  app.get('/things/:id', async (req) => {
    const { rows } = await db.query<{ body: string }>(`SELECT body FROM notes WHERE tenant_id = $1 AND id = $2`, [db.currentTenantId(), (req.params as { id: string }).id]);
    return rows[0] ?? {};
  });
  app.get('/list', async (req) => {
    const { rows } = await db.query(`SELECT body FROM notes WHERE tenant_id = $1 ORDER BY body LIMIT $2`, [db.currentTenantId(), (req.query as { limit?: string }).limit ?? '10']);
    return rows;
  });
  app.get('/typed/:id', { schema: { params: Type.Object({ id: Type.String({ format: 'uuid' }) }), querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1 })) }) } }, async () => ({}));
  app.post('/typed', { schema: { body: Type.Object({ x: Type.Integer() }) } }, async () => ({}));
  app.post('/stored', async (req) => {
    const { rows } = await db.query(`INSERT INTO notes (tenant_id, id, body) VALUES ($1, $2, 'x') RETURNING id`, [db.currentTenantId(), (req.body as { meta: { id: string } }).meta.id]);
    return rows[0];
  });
}

describe('an app with its own root handlers, the plugin at the root with the defaults', () => {
  let app: FastifyInstance;
  const seen: string[] = [];
  before(async () => {
    app = Fastify({ logger: false });
    app.setValidatorCompiler(typeboxValidatorCompiler);
    app.setNotFoundHandler((_req, reply) => void reply.code(404).send({ mine: 'not found' }));
    app.setErrorHandler((err, req, reply) => {
      seen.push((err as { code?: string }).code ?? 'none');
      // The app keeps its own handler and uses tenantwall's mapping inside it.
      const h = toHttpError(err, req);
      return reply.code(h.statusCode).send({ mine: true, ...h.body, tw: isTenantwallError(err) });
    });
    // Before issue 13 this threw "Not found handler already set for Fastify instance with prefix: '/'".
    await app.register(tenantwallPlugin, { db: t.db });
    await thingRoutes(app);
    await app.ready();
  });
  after(() => app.close());

  test('boots and keeps the app not-found and error handlers', async () => {
    const nf = await app.inject({ method: 'GET', url: '/nope' });
    assert.equal(nf.statusCode, 404);
    assert.deepEqual(nf.json(), { mine: 'not found' });
    const unauth = await app.inject({ method: 'GET', url: `/things/${noteId}` });
    assert.equal(unauth.statusCode, 401);
    assert.equal(unauth.json().mine, true);
    assert.equal(unauth.json().error.code, 'unauthenticated');
    assert.ok(seen.includes('unauthenticated'));
    const ok = await app.inject({ method: 'GET', url: `/things/${noteId}`, headers: auth() });
    assert.deepEqual(ok.json(), { body: 'a-note' });
  });

  test('GET /things/abc (a uuid column, no route schema) answers 400 naming params.id', async () => {
    const r = await app.inject({ method: 'GET', url: '/things/abc', headers: auth() });
    assert.equal(r.statusCode, 400);
    const { error } = r.json();
    assert.equal(error.code, 'validation_failed');
    assert.match(error.message, /params\.id/);
    assert.deepEqual(error.details, { field: 'id', location: 'params' });
    assert.doesNotMatch(error.message, /openapi|\(body\)/i);
  });

  test('tenantwallFrameworkErrors: a URL Fastify cannot decode answers the error shape', async () => {
    const f = Fastify({ logger: false, frameworkErrors: tenantwallFrameworkErrors });
    f.get('/x/:id', async () => ({}));
    try {
      const r = await f.inject({ method: 'GET', url: '/x/%FF' });
      assert.equal(r.statusCode, 400);
      assert.equal(r.json().error.code, 'bad_request');
    } finally {
      await f.close();
    }
  });

  test('TenantwallErrors carry statusCode, so Fastify\'s own error handler answers their status', async () => {
    const plain = Fastify({ logger: false });
    await plain.register(tenantwallPlugin, { db: t.db });
    plain.get('/x', async () => ({}));
    try {
      const r = await plain.inject({ method: 'GET', url: '/x' });
      assert.equal(r.statusCode, 401);
      assert.equal(r.json().code, 'unauthenticated');
    } finally {
      await plain.close();
    }
  });
});

describe('the plugin encapsulated under a prefix, with its handlers asked for there', () => {
  let app: FastifyInstance;
  before(async () => {
    app = Fastify({ logger: false });
    app.setValidatorCompiler(typeboxValidatorCompiler);
    app.setErrorHandler((_err, _req, reply) => void reply.code(500).send({ mine: 'error' }));
    app.setNotFoundHandler((_req, reply) => void reply.code(404).send({ mine: 'not found' }));
    app.get('/outside', async () => ({ outside: true }));
    app.get('/outside-boom', async () => {
      throw new Error('x');
    });
    await app.register(
      async (api) => {
        await api.register(tenantwallPlugin, { db: t.db, errorHandler: true, notFoundHandler: true });
        await thingRoutes(api);
      },
      { prefix: '/api' },
    );
    await app.ready();
  });
  after(() => app.close());

  test('routes outside the prefix need no credentials and keep the app handlers', async () => {
    assert.deepEqual((await app.inject({ method: 'GET', url: '/outside' })).json(), { outside: true });
    assert.deepEqual((await app.inject({ method: 'GET', url: '/outside-boom' })).json(), { mine: 'error' });
    assert.deepEqual((await app.inject({ method: 'GET', url: '/elsewhere' })).json(), { mine: 'not found' });
    assert.equal(app.hasDecorator('tenantwall'), false, 'the decorator stays inside the prefix');
  });

  test('inside the prefix: tenant resolution, the tenantwall 404 and error shape', async () => {
    const nf = await app.inject({ method: 'GET', url: '/api/nope' });
    assert.equal(nf.statusCode, 404);
    assert.equal(nf.json().error.code, 'not_found');
    const unauth = await app.inject({ method: 'GET', url: `/api/things/${noteId}` });
    assert.equal(unauth.statusCode, 401);
    assert.equal(unauth.json().error.code, 'unauthenticated');
    assert.deepEqual((await app.inject({ method: 'GET', url: `/api/things/${noteId}`, headers: auth() })).json(), { body: 'a-note' });
  });

  test('messages name params.id, querystring.limit and body.x, whether a schema or the database refused the value', async () => {
    const cases: Array<[{ method: 'GET' | 'POST'; url: string; payload?: unknown }, string, { field: string; location: string }]> = [
      [{ method: 'GET', url: '/api/things/abc' }, 'params.id', { field: 'id', location: 'params' }],
      [{ method: 'GET', url: '/api/list?limit=lots' }, 'querystring.limit', { field: 'limit', location: 'querystring' }],
      [{ method: 'POST', url: '/api/stored', payload: { meta: { id: 'not-a-uuid' } } }, 'body.meta.id', { field: 'meta.id', location: 'body' }],
      [{ method: 'GET', url: '/api/typed/abc' }, 'params.id', { field: 'id', location: 'params' }],
      [{ method: 'GET', url: `/api/typed/${noteId}?limit=0` }, 'querystring.limit', { field: 'limit', location: 'querystring' }],
      [{ method: 'POST', url: '/api/typed', payload: { x: 'one' } }, 'body.x', { field: 'x', location: 'body' }],
    ];
    for (const [req, name, where] of cases) {
      const r = await app.inject({ ...req, headers: auth() } as never);
      assert.equal(r.statusCode, 400, req.url);
      const { error } = r.json();
      assert.equal(error.code, 'validation_failed', req.url);
      assert.ok(error.message.includes(name), `${req.url}: ${error.message}`);
      assert.equal(error.details.field, where.field, req.url);
      assert.equal(error.details.location, where.location, req.url);
      assert.doesNotMatch(error.message, /openapi/i, req.url);
    }
  });
});
