/**
 * Issue 16, HTTP defects found from outside: duplicate JSON keys, non-UTF-8 charsets, client aborts logged as
 * database outages, parser refusals in Fastify's own shape, personal data and credentials in logs, cache and
 * sniffing headers on tenant data, security headers with a CSP the docs page works under.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { type Tenant, isTenantwallError } from '../../src/index.ts';
import { ApiKeyStore, type CreatedApiKey, duplicateKeyPath, installStrictJsonParser, redactUrl } from '../../src/fastify/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { type PluginApp, pluginApp, pluginMigrations, pluginSchema } from './app.ts';

let t: TestTenantwall;
let a: Tenant;
let keyA: CreatedApiKey;

before(async () => {
  t = await createTestTenantwall(pluginSchema, pluginMigrations);
  a = await t.db.tenants.create({ slug: 'alpha', name: 'Alpha' });
  keyA = await new ApiKeyStore(t.db).create(a.id, { name: 'k' });
});
after(async () => {
  await t.close();
});

const auth = () => ({ authorization: `Bearer ${keyA.key}` });

/** Polls `cond` until it holds: the test waits for the condition, not for a duration (the cap only ends a hang). */
async function waitFor(what: string, cond: () => boolean): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A raw connection: write bytes step by step; `closed` resolves with what came back once the connection closed. */
function openRaw(port: number): { write(s: string): void; destroy(): void; closed: Promise<string> } {
  let got = '';
  const s = net.connect(port, '127.0.0.1');
  s.on('data', (d) => (got += String(d)));
  s.on('error', () => undefined);
  const closed = new Promise<string>((resolve) => s.on('close', () => resolve(got)));
  return { write: (x) => void s.write(x), destroy: () => void s.destroy(), closed };
}

/** Writes raw bytes to the server; resolves with what came back once the server closed the connection. */
function rawExchange(port: number, chunks: string[]): Promise<string> {
  const c = openRaw(port);
  for (const x of chunks) c.write(x);
  return c.closed;
}

describe('JSON bodies', () => {
  let p: PluginApp;
  before(async () => (p = await pluginApp(t.db)));
  after(() => p.app.close());
  const post = (payload: string, contentType = 'application/json') => p.app.inject({ method: 'POST', url: '/any', headers: { ...auth(), 'content-type': contentType }, payload });

  test('a key repeated in one object is refused with 400 duplicate_json_key naming it, at any depth and in any spelling', async () => {
    const cases: Array<[string, string]> = [
      ['{"n":1,"n":2}', 'n'],
      ['{"amount": 1 , "x": {"y": "a:b"}, "amount" : 2}', 'amount'],
      ['{"a":1,"\\u0061":2}', 'a'],
      ['{"items":[{"q":1},{"q":2,"d":"t","q":3}]}', 'items.1.q'],
      ['[{"a":{"b":[1,{"c":1,"c":1}]}}]', '0.a.b.1.c'],
      // An escaped colon in the lost member's value must not hide the lost member's own colon.
      ['{"a":"x","a":"\\u003a"}', 'a'],
      ['{"a":"\\u003A","b":1,"a":2}', 'a'],
    ];
    for (const [body, field] of cases) {
      const r = await post(body);
      assert.equal(r.statusCode, 400, body);
      assert.equal(r.json().error.code, 'duplicate_json_key', body);
      assert.equal(r.json().error.details.field, field, body);
      assert.match(r.json().error.message, new RegExp(`body\\.${field.replaceAll('.', '\\.')}`), body);
    }
    // The same key in different objects, colons in strings and keys, escaped quotes: all accepted.
    for (const ok of ['{"x":"\\u003a"}', '{"x":"\\\\u003a","y":"a\\u003ab"}']) assert.equal((await post(ok)).statusCode, 200, ok);
    const fine = '{"items":[{"q":1,"at":"2026-01-01T00:00:00Z"},{"q":2}],"k:ey":"\\":\\"","q":{"q":{"q":1}}}';
    const r = await post(fine);
    assert.equal(r.statusCode, 200, r.body);
    assert.deepEqual(r.json().body, JSON.parse(fine));
  });

  test('duplicateKeyPath finds every injected duplicate and never flags what JSON.stringify writes', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => duplicateKeyPath(JSON.stringify(v)) === undefined && duplicateKeyPath(JSON.stringify(v, null, 2)) === undefined),
      { numRuns: 300 },
    );
    const obj = fc.dictionary(fc.string(), fc.jsonValue({ maxDepth: 2 }), { minKeys: 1 });
    fc.assert(
      fc.property(obj, fc.nat(), fc.jsonValue({ maxDepth: 1 }), (o, i, extra) => {
        const keys = Object.keys(o);
        const key = keys[i % keys.length] as string;
        const text = JSON.stringify({ wrap: [1, o] });
        const at = text.indexOf('[1,{') + 4;
        const injected = `${text.slice(0, at)}${JSON.stringify(key)}:${JSON.stringify(extra)},${text.slice(at)}`;
        return duplicateKeyPath(injected) === `wrap.1.${key}`;
      }),
      { numRuns: 300 },
    );
  });

  test('the strict parser refuses exactly the bodies with a repeated key (colons and \\u escapes in strings included)', () => {
    // The parser function the plugin installs, captured from a stand-in instance and called directly.
    type Parser = (req: unknown, body: Buffer, done: (err: Error | null, value?: unknown) => void) => void;
    let parser: Parser | undefined;
    installStrictJsonParser({
      getDefaultJsonParser: p.app.getDefaultJsonParser.bind(p.app),
      hasContentTypeParser: () => false,
      addContentTypeParser: (_t: string, _o: unknown, fn: Parser) => void (parser = fn),
    } as never);
    const parse = (text: string) => {
      let out: { err: Error | null; value?: unknown } | undefined;
      (parser as Parser)({ headers: { 'content-type': 'application/json' } }, Buffer.from(text), (err, value) => (out = { err, value }));
      return out as { err: Error | null; value?: unknown };
    };
    const str = fc.string({ unit: 'binary', maxLength: 8 }).map((x) => x.replaceAll('\u0000', ':').replaceAll('\u0002', '\u0001'));
    const value = fc.letrec((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, str, fc.integer(), fc.constant(null), fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(str, tie('v'), { maxKeys: 3 })),
    })).v;
    const obj = fc.dictionary(str, value, { minKeys: 1, maxKeys: 4 });
    fc.assert(
      fc.property(obj, fc.nat(), value, fc.boolean(), (o, i, extra, inject) => {
        const text = JSON.stringify({ wrap: [1, o] });
        fc.pre(!/__proto__|constructor|prototype/.test(text) && !/[\ud800-\udfff]/.test(text));
        const keys = Object.keys(o);
        const key = keys[i % keys.length] as string;
        const at = text.indexOf('[1,{') + 4;
        const raw = inject ? `${text.slice(0, at)}${JSON.stringify(key)}:${JSON.stringify(extra)},${text.slice(at)}` : text;
        // U+0001 (written \u0001 by JSON.stringify) becomes an escaped colon: \u003a.
        const body = raw.replaceAll('\\u0001', '\\u003a');
        const r = parse(body);
        if (inject) return isTenantwallError(r.err, 'duplicate_json_key') && r.err.details.field === `wrap.1.${key.replaceAll('\u0001', ':')}`;
        return r.err === null && JSON.stringify(r.value) === JSON.stringify(JSON.parse(body));
      }),
      { numRuns: 500 },
    );
  });

  test('charset: UTF-8 is honoured, any other is refused with 415; invalid UTF-8 bytes, NUL and __proto__ are refused', async () => {
    assert.equal((await post('{"n":1}', 'application/json; charset=UTF-8')).statusCode, 200);
    assert.equal((await post('{"n":1}', 'application/json; charset="utf8"')).statusCode, 200);
    for (const cs of ['iso-8859-1', 'utf-16', 'windows-1252']) {
      const r = await post('{"n":1}', `application/json; charset=${cs}`);
      assert.equal(r.statusCode, 415, cs);
      assert.equal(r.json().error.code, 'unsupported_media_type', cs);
    }
    const latin1 = await p.app.inject({ method: 'POST', url: '/any', headers: { ...auth(), 'content-type': 'application/json' }, payload: Buffer.from([0x7b, 0x22, 0x6e, 0x22, 0x3a, 0x22, 0xe9, 0x22, 0x7d]) });
    assert.equal(latin1.statusCode, 400);
    assert.equal(latin1.json().error.code, 'invalid_json');
    const nul = await post('{"note":{"text":"a\\u0000b"}}');
    assert.equal(nul.statusCode, 400);
    assert.equal(nul.json().error.code, 'validation_failed');
    assert.equal(nul.json().error.details.field, 'note.text');
    assert.match(nul.json().error.message, /body\.note\.text/);
    const proto = await post('{"__proto__":{"admin":true}}');
    assert.equal(proto.statusCode, 400);
    assert.equal(proto.json().error.code, 'invalid_json');
  });
});

test('413 names the limit of the route (its own bodyLimit), not the server\'s', async () => {
  const { app } = await pluginApp(t.db, {}, async (instance) => {
    instance.post('/small', { bodyLimit: 100 }, async () => ({}));
  });
  try {
    const r = await app.inject({ method: 'POST', url: '/small', headers: { ...auth(), 'content-type': 'application/json' }, payload: JSON.stringify({ pad: 'x'.repeat(200) }) });
    assert.equal(r.statusCode, 413);
    assert.equal(r.json().error.details.limit_bytes, 100);
    assert.match(r.json().error.message, /exceeds 100 bytes/);
    const server = await app.inject({ method: 'POST', url: '/any', headers: { ...auth(), 'content-type': 'application/json' }, payload: JSON.stringify({ pad: 'x'.repeat(2000) }) });
    assert.equal(server.json().error.details.limit_bytes, 1024);
  } finally {
    await app.close();
  }
});

describe('over a real socket: client aborts, parser refusals, logs', () => {
  let p: PluginApp;
  let port: number;
  /** Request ids whose body Fastify started reading. */
  const reading = new Set<string>();
  before(async () => {
    p = await pluginApp(t.db, {}, async (app) => {
      app.addHook('preParsing', async (request) => {
        reading.add(String(request.headers['x-test-id']));
      });
    });
    await p.app.listen({ host: '127.0.0.1', port: 0 });
    port = (p.app.server.address() as net.AddressInfo).port;
  });
  after(() => p.app.close());

  const serverErrors = () => p.logs.filter((l) => (l.level as number) >= 50 || l.code === 'database_unreachable');

  test('a client that aborts mid-body, or sends a malformed chunk, is logged at info as client_aborted, never as a server error', async () => {
    const head = (id: string) => `POST /any HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${keyA.key}\r\nX-Test-Id: ${id}\r\nContent-Type: application/json\r\n`;
    const before = p.logs.length;
    // Aborts after part of the body, once the server is reading it.
    const aborting = openRaw(port);
    aborting.write(`${head('abort')}Content-Length: 100\r\n\r\n{"n":`);
    await waitFor('the server to read the body', () => reading.has('abort'));
    aborting.destroy();
    await waitFor('the aborted request to be logged', () => p.logs.slice(before).some((l) => l.code === 'client_aborted'));
    // A valid chunk, then a malformed one.
    const mid = p.logs.length;
    const malformed = openRaw(port);
    malformed.write(`${head('chunk')}Transfer-Encoding: chunked\r\n\r\n3\r\n{"n\r\n`);
    await waitFor('the server to read the chunked body', () => reading.has('chunk'));
    malformed.write('zz\r\n');
    const answer = await malformed.closed;
    await waitFor('the malformed chunk to be logged', () => p.logs.slice(mid).some((l) => l.code === 'client_aborted'));
    for (const l of p.logs.slice(before).filter((x) => x.code === 'client_aborted')) assert.equal(l.level, 30, JSON.stringify(l));
    assert.deepEqual(serverErrors(), []);
    // The malformed chunk itself was answered by the parser refusal, in the documented shape.
    assert.match(answer, /^HTTP\/1\.1 400 /);
    assert.equal(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).error.code, 'bad_request');
  });

  test('requests Node\'s HTTP parser refuses (431, bad framing) answer the tenantwall error shape', async () => {
    const big = await rawExchange(port, [`GET /whoami HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]);
    assert.match(big, /^HTTP\/1\.1 431 /);
    const bigBody = JSON.parse(big.slice(big.indexOf('\r\n\r\n') + 4));
    assert.equal(bigBody.error.code, 'bad_request');
    assert.equal(bigBody.error.details.reason, 'HPE_HEADER_OVERFLOW');
    const framing = await rawExchange(port, ['POST /any HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n']);
    assert.match(framing, /^HTTP\/1\.1 400 /);
    assert.equal(JSON.parse(framing.slice(framing.indexOf('\r\n\r\n') + 4)).error.code, 'bad_request');
    assert.deepEqual(serverErrors(), []);
  });

  test('logs hold no query-string values and no credentials (Authorization, X-API-Key, cookies), on any path', async () => {
    const secrets = ['alice@example.com', keyA.key, 'cookie-secret-value', 'xapikey-secret-value'];
    const headers = { authorization: `Bearer ${keyA.key}`, cookie: 'session=cookie-secret-value', 'x-api-key': 'xapikey-secret-value' };
    const before = p.logs.length;
    for (const path of ['/whoami', '/nope', '/boom', '/public']) {
      const r = await fetch(`http://127.0.0.1:${port}${path}?email=alice@example.com&flag`, { headers });
      await r.arrayBuffer();
    }
    await fetch(`http://127.0.0.1:${port}/whoami?email=alice@example.com`, { headers: { ...headers, authorization: `Bearer ${keyA.key.slice(0, -3)}abc` } }).then((r) => r.arrayBuffer());
    await rawExchange(port, [`GET /whoami?email=alice@example.com HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${keyA.key}\r\nCookie: s=cookie-secret-value\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`]);
    await waitFor('the completion lines', () => p.logs.slice(before).filter((l) => l.msg === 'request completed').length >= 5);
    const lines = p.logs.slice(before).map((l) => JSON.stringify(l));
    for (const s of secrets) for (const line of lines) assert.ok(!line.includes(s), `${s} logged: ${line}`);
    assert.ok(lines.some((l) => l.includes('/whoami?email=[redacted]&flag=[redacted]')), lines.join('\n'));
  });

  test('logQueryValues: true logs them', async () => {
    const q = await pluginApp(t.db, { logQueryValues: true });
    try {
      await q.app.inject({ method: 'GET', url: '/whoami?email=bob@example.com', headers: auth() });
      assert.ok(q.logs.some((l) => l.url === '/whoami?email=bob@example.com'));
    } finally {
      await q.app.close();
    }
    assert.equal(redactUrl('/a?x=1&y=&z'), '/a?x=[redacted]&y=[redacted]&z=[redacted]');
    assert.equal(redactUrl('/a'), '/a');
  });
});

describe('headers', () => {
  test('tenant answers carry Cache-Control: no-store and X-Content-Type-Options: nosniff, errors on tenant routes too', async () => {
    const { app } = await pluginApp(t.db);
    try {
      for (const url of ['/whoami', '/boom']) {
        const r = await app.inject({ method: 'GET', url, headers: auth() });
        assert.equal(r.headers['cache-control'], 'no-store', url);
        assert.equal(r.headers['x-content-type-options'], 'nosniff', url);
      }
    } finally {
      await app.close();
    }
  });

  test('securityHeaders registers @fastify/helmet; the swagger-ui docs page loads everything it needs under the CSP', async () => {
    const { app } = await pluginApp(t.db, { securityHeaders: true }, async (instance) => {
      instance.addHook('onRoute', (route) => {
        if (route.url.startsWith('/docs')) route.config = { ...(route.config as object), tenant: false };
      });
      await instance.register(swagger, { openapi: { openapi: '3.1.0', info: { title: 't', version: '1' } } });
      await instance.register(swaggerUi, { routePrefix: '/docs' });
      instance.get('/openapi.json', { config: { tenant: false } }, async () => instance.swagger());
    });
    try {
      const api = await app.inject({ method: 'GET', url: '/whoami', headers: auth() });
      assert.equal(api.statusCode, 200);
      const csp = String(api.headers['content-security-policy']);
      assert.match(csp, /default-src 'self'/);
      assert.match(csp, /script-src 'self'/);
      assert.doesNotMatch(csp, /upgrade-insecure-requests/);
      assert.equal(api.headers['x-frame-options'], 'SAMEORIGIN');
      assert.equal(api.headers['cache-control'], 'no-store');
      // The docs page: every script is an external file of the same origin (script-src 'self' allows it; no inline
      // script, which the CSP would block), styles are same-origin files, and each one is served.
      const page = await app.inject({ method: 'GET', url: '/docs/' });
      assert.equal(page.statusCode, 200);
      assert.ok(page.headers['content-security-policy']);
      const html = page.body;
      const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
      assert.ok(scripts.length >= 2);
      for (const [, attrs, inline] of scripts) {
        assert.equal((inline as string).trim(), '', 'no inline script');
        const src = /src="([^"]+)"/.exec(attrs as string)?.[1] as string;
        assert.ok(src && !/^[a-z]+:|^\/\//i.test(src), `same-origin script ${src}`);
        const js = await app.inject({ method: 'GET', url: new URL(src, 'http://x/docs/').pathname });
        assert.equal(js.statusCode, 200, src);
        assert.match(String(js.headers['content-type']), /javascript/);
      }
      assert.doesNotMatch(html, /\son[a-z]+="/i, 'no inline event handlers (script-src-attr none)');
      for (const [, href] of html.matchAll(/<link[^>]*href="([^"]+)"/g)) {
        assert.ok(!/^[a-z]+:|^\/\//i.test(href as string), `same-origin ${href}`);
        assert.equal((await app.inject({ method: 'GET', url: new URL(href as string, 'http://x/docs/').pathname })).statusCode, 200, href);
      }
      const init = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' });
      assert.equal(init.statusCode, 200);
      const spec = await app.inject({ method: 'GET', url: '/docs/json' });
      assert.equal(spec.statusCode, 200);
    } finally {
      await app.close();
    }
  });
});
