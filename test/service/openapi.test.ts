import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { ERROR_CODES } from '../../src/index.ts';
import { ContractChecker } from './contract.ts';
import { type ServiceFixture, startService } from './setup.ts';

/**
 * The published contract (/openapi.json, issue 18): linted by Redocly (recommended) and Spectral (spectral:oas)
 * with nothing reported; every operation described; error statuses and codes from the one registry; and the
 * run-time check that the rest of the suite relies on catches undocumented statuses, fields and headers.
 */
const run = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');
const bin = (name: string) => path.join(ROOT, 'node_modules/.bin', name);
let s: ServiceFixture;
let dir: string;
let doc: Record<string, unknown> & { paths: Record<string, Record<string, Record<string, unknown>>>; components: Record<string, Record<string, unknown>> };

before(async () => {
  s = await startService({}, { metering: true });
  doc = (await s.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tw-openapi-'));
  fs.writeFileSync(path.join(dir, 'openapi.json'), JSON.stringify(doc));
});
after(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  await s.close();
});

const env = { ...process.env, REDOCLY_TELEMETRY: 'off', REDOCLY_SUPPRESS_UPDATE_NOTICE: 'true', NO_COLOR: '1' };

async function redocly(file: string): Promise<{ code: number; out: string }> {
  const args = ['lint', file, '--config', path.join(ROOT, 'examples/invoicing-service/src/redocly.yaml'), '--format', 'json'];
  return run(bin('redocly'), args, { cwd: dir, env, maxBuffer: 64 << 20 }).then(
    (r) => ({ code: 0, out: r.stdout }),
    (e: { code: number; stdout: string }) => ({ code: e.code, out: e.stdout }),
  );
}

async function spectral(file: string): Promise<Array<{ code: string; message: string; path: string[] }>> {
  const out = path.join(dir, `spectral-${path.basename(file)}`);
  await run(bin('spectral'), ['lint', file, '-r', path.join(ROOT, 'examples/invoicing-service/src/.spectral.yaml'), '-f', 'json', '-o', out, '--fail-severity', 'hint'], { cwd: dir, env }).catch(() => undefined);
  return JSON.parse(fs.readFileSync(out, 'utf8'));
}

const problems = (out: string) => (JSON.parse(out) as { problems: Array<{ ruleId: string; severity: string; message: string }> }).problems;

test('Redocly (recommended) and Spectral (spectral:oas) report nothing on /openapi.json', async () => {
  const [r, sp] = await Promise.all([redocly('openapi.json'), spectral('openapi.json')]);
  assert.deepEqual(problems(r.out).map((p) => `${p.severity} ${p.ruleId}: ${p.message}`), []);
  assert.equal(r.code, 0);
  assert.deepEqual(sp.map((p) => `${p.code}: ${p.message} at ${p.path.join('.')}`), []);
  // The linters do find what issue 18 found: no servers, a public route without `security: []`, no operationId.
  const bad = structuredClone(doc);
  delete bad.servers;
  delete bad.paths['/healthz']?.get?.security;
  delete bad.paths['/healthz']?.get?.operationId;
  fs.writeFileSync(path.join(dir, 'bad.json'), JSON.stringify(bad));
  const [rb, sb] = await Promise.all([redocly('bad.json'), spectral('bad.json')]);
  assert.notEqual(rb.code, 0);
  assert.ok(problems(rb.out).some((p) => p.ruleId === 'no-empty-servers' || p.ruleId.includes('servers')), rb.out.slice(0, 2000));
  assert.ok(problems(rb.out).some((p) => p.ruleId === 'security-defined'), rb.out.slice(0, 2000));
  assert.ok(sb.some((p) => p.code === 'operation-operationId'));
});

test('every operation: operationId, summary, description, declared tag, security; errors by status with the codes of the registry', async () => {
  const declared = new Set((doc.tags as Array<{ name: string; description: string }>).map((t) => t.name));
  const ids = new Set<string>();
  let count = 0;
  for (const [p, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      count++;
      const label = `${method.toUpperCase()} ${p}`;
      assert.equal(typeof op.operationId, 'string', label);
      assert.ok(!ids.has(op.operationId as string), `${label}: operationId repeated`);
      ids.add(op.operationId as string);
      assert.ok(op.summary && op.description, label);
      for (const t of op.tags as string[]) assert.ok(declared.has(t) && !/\s/.test(t), `${label}: tag ${t}`);
      assert.ok(Array.isArray(op.security), `${label}: security stated`);
      const responses = op.responses as Record<string, { content?: Record<string, { schema: { allOf?: Array<{ properties?: { error?: { properties?: { code?: { enum?: string[] } } } } }> } }> }>;
      assert.ok(!('4XX' in responses) && !('5XX' in responses), `${label}: ranges instead of statuses`);
      for (const [status, r] of Object.entries(responses)) {
        if (Number(status) < 400) continue;
        const codes = r.content?.['application/json']?.schema.allOf?.[1]?.properties?.error?.properties?.code?.enum ?? [];
        assert.ok(codes.length > 0, `${label} ${status}: no codes`);
        for (const c of codes) assert.equal(ERROR_CODES[c as keyof typeof ERROR_CODES]?.status, Number(status), `${label}: ${c} under ${status}`);
      }
    }
  }
  assert.equal(count, 43, 'every route of the service, usage, admin and observability included');
  assert.deepEqual((doc.paths['/healthz']?.get?.security as unknown[]) ?? null, []);
  assert.deepEqual(Object.keys(doc.paths['/readyz']?.get?.responses as object), ['200', '400', '500', '503']);
  for (const name of ['Customer', 'Invoice', 'LineItem', 'Tenant', 'ApiKey', 'UsageReport', 'UsageQuotas', 'Error']) assert.ok(doc.components.schemas?.[name], name);
  for (const h of ['RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset', 'X-Quota-Remaining', 'X-Quota-Warning', 'Retry-After']) assert.ok(doc.components.headers?.[h], h);
  // customer or customer_id, in the schema; one pagination shape; NUL-free text.
  const create = doc.components.schemas?.InvoiceCreate as { anyOf?: unknown[] };
  assert.equal(create.anyOf?.length, 2);
  const tenantsList = doc.paths['/admin/tenants']?.get as { parameters: Array<{ name: string }>; responses: Record<string, { content: Record<string, { schema: { $ref: string } }> }> };
  assert.deepEqual(tenantsList.parameters.map((x) => x.name).sort(), ['cursor', 'limit', 'status']);
  assert.equal(tenantsList.responses['200']?.content['application/json']?.schema.$ref, '#/components/schemas/TenantPage');
  assert.match(JSON.stringify(doc.components.schemas?.CustomerCreate), /\\\\u0000/);
});

test('the run-time check fails on an undocumented field, status or header', async () => {
  // A response mutated after the handler, before the check: an extra field, then a status, then a header.
  const c = new ContractChecker(doc);
  const real = await s.as(s.a, { method: 'POST', url: '/customers', payload: { name: 'Checked' } });
  assert.equal(real.statusCode, 201);
  const headers = { 'content-type': 'application/json; charset=utf-8' };
  c.check({ method: 'POST', url: '/customers', status: 201, headers, body: real.body });
  assert.equal(c.violations.length, 0, c.violations.join("\n"));
  c.check({ method: 'POST', url: '/customers', status: 201, headers, body: JSON.stringify({ ...real.json(), internal_note: 'x' }) });
  c.check({ method: 'POST', url: '/customers', status: 202, headers, body: real.body });
  c.check({ method: 'POST', url: '/customers', status: 201, headers: { ...headers, 'x-debug': '1' }, body: real.body });
  c.check({ method: 'POST', url: '/customers', status: 404, headers, body: JSON.stringify({ error: { code: 'not_found', message: 'm', details: {} } }) });
  assert.equal(c.violations.length, 4, c.violations.join('\n'));
  assert.match(String(c.violations[0]), /internal_note|additional/);
  assert.match(String(c.violations[1]), /status not documented/);
  assert.match(String(c.violations[2]), /header x-debug/);
  assert.match(String(c.violations[3]), /status not documented/, 'createCustomer never answers 404');

  // The same through a live app: a hook that adds a field makes the fixture's check record a violation.
  const mutated = await startService({}, {
    beforeCheck: (app) =>
      app.addHook('onSend', async (req, _reply, payload) => (req.url === '/healthz' ? JSON.stringify({ status: 'ok', uptime: 1 }) : payload)),
  });
  assert.equal((await mutated.app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  assert.equal(mutated.contract.violations.length, 1);
  assert.match(mutated.contract.violations[0] as string, /GET \/healthz -> 200: body does not match/);
  mutated.contract.violations.length = 0;
  await mutated.close();
  assert.ok(s.contract.seen.has('createCustomer 201'), 'the fixture checks the responses of encapsulated (tenant) routes too');
  assert.ok(s.contract.seen.has('getOpenApiDocument 200'));
});
