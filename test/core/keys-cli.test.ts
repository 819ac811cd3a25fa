// `tenantwall keys create|list|revoke` (docs/cli.md): a tenant by id or slug, the key printed once, --json.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { isTenantwallError, type Tenant } from '../../src/index.ts';
import { ApiKeyStore } from '../../src/fastify/index.ts';
import { migrations, schema } from '../fixtures/keys-config.ts';
import { cli } from '../helpers/cli.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';

const CONFIG = 'test/fixtures/keys-config.ts';
let t: TestTenantwall;
let acme: Tenant;
let args: string[];

before(async () => {
  t = await createTestTenantwall(schema, migrations);
  acme = await t.db.tenants.create({ slug: 'keys-acme', name: 'Acme' });
  await t.db.tenants.create({ slug: 'keys-other', name: 'Other' });
  args = ['--config', CONFIG, '--database-url', t.database.url];
});
after(() => t.close());

test('keys create prints the key once; it verifies for its tenant; list never shows a secret', async () => {
  const json = await cli('keys', 'create', 'keys-acme', '--name', 'ci', '--json', ...args);
  assert.equal(json.code, 0, json.err);
  const created = JSON.parse(json.out) as { tenant_id: string; id: string; name: string; key: string };
  assert.equal(created.tenant_id, acme.id);
  assert.equal(created.name, 'ci');
  assert.deepEqual(await new ApiKeyStore(t.db).verify(created.key), { tenantId: acme.id, keyId: created.id });

  const human = await cli('keys', 'create', acme.id, '--name', 'deploy', ...args);
  assert.equal(human.code, 0, human.err);
  const key = human.out.split('\n')[0] ?? '';
  assert.equal((await new ApiKeyStore(t.db).verify(key)).tenantId, acme.id);
  assert.match(human.out, /Shown once/);

  const list = await cli('keys', 'list', 'keys-acme', '--json', ...args);
  assert.equal(list.code, 0, list.err);
  const keys = JSON.parse(list.out) as Array<Record<string, unknown>>;
  assert.deepEqual(keys.map((k) => k.name).sort(), ['ci', 'deploy']);
  for (const k of keys) assert.deepEqual(Object.keys(k).sort(), ['created_at', 'id', 'name', 'revoked_at']);
  for (const secret of [created.key, key]) assert.ok(!list.out.includes(secret.slice(-43)), 'no secret in the listing');
  assert.equal(JSON.parse((await cli('keys', 'list', 'keys-other', '--json', ...args)).out).length, 0, 'another tenant sees none of them');
});

test('keys revoke by tenant id or slug; the key stops verifying; unknown tenants and bad input are refused', async () => {
  const created = JSON.parse((await cli('keys', 'create', 'keys-acme', '--name', 'to-revoke', '--json', ...args)).out) as { id: string; key: string };
  const other = await cli('keys', 'revoke', 'keys-other', created.id, '--json', ...args);
  assert.equal(other.code, 1, 'another tenant cannot revoke it');
  assert.equal(JSON.parse(other.out).revoked, false);
  const r = await cli('keys', 'revoke', 'keys-acme', created.id, '--json', ...args);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual(JSON.parse(r.out), { tenant_id: acme.id, id: created.id, revoked: true });
  await assert.rejects(new ApiKeyStore(t.db).verify(created.key), (err) => isTenantwallError(err, 'unauthenticated'));
  const listed = (JSON.parse((await cli('keys', 'list', acme.id, '--json', ...args)).out) as Array<{ id: string; revoked_at: string | null }>).find((k) => k.id === created.id);
  assert.notEqual(listed?.revoked_at, null);

  const unknown = await cli('keys', 'list', 'no-such-tenant', ...args);
  assert.equal(unknown.code, 1);
  assert.match(unknown.err, /^tenantwall keys: \[tenant_not_found\]/);
  const noName = await cli('keys', 'create', 'keys-acme', ...args);
  assert.equal(noName.code, 1);
  assert.match(noName.err, /\[config_invalid\].*--name/);
  const badId = await cli('keys', 'revoke', 'keys-acme', 'nope', ...args);
  assert.equal(badId.code, 1);
  assert.match(badId.err, /\[config_invalid\]/);
  assert.equal((await cli('keys', ...args)).code, 2, 'no subcommand: usage, exit 2');
});
