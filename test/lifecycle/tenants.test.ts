import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TenantwallError, createTenant, listTenants, renameTenant, scopeForActiveTenant, tenantInfo, type TenantId } from '../../src/index.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import { runCli } from './cli.ts';
import { lifecycleMigrations, lifecycleSchema, seedTenant } from './fixture.ts';

let t: TestTenantwall;
let A: TenantId;

before(async () => {
  t = await createTestTenantwall(lifecycleSchema, lifecycleMigrations);
  A = (await createTenant(t.db, { slug: 'a', name: 'A' })).tenant.id;
  await seedTenant(t.db, A, 5);
});
after(() => t.close());

function code(c: string) {
  return (err: unknown) => err instanceof TenantwallError && err.code === c;
}

test('suspend refuses the tenant in the library, data intact; resume restores it', async () => {
  const scope = await scopeForActiveTenant(t.db, 'a');
  assert.equal((await scope.query('SELECT count(*)::int AS n FROM customers WHERE tenant_id = $1', [A])).rows[0]?.n, 5);
  const changes: string[] = [];
  const off = t.db.tenants.onChange((x) => changes.push(`${x.slug}:${x.status}`));
  await t.db.tenants.suspend(A);
  await assert.rejects(scopeForActiveTenant(t.db, 'a'), code('tenant_suspended'));
  await assert.rejects(scopeForActiveTenant(t.db, A), code('tenant_suspended'));
  await t.db.tenants.resume(A);
  const again = await scopeForActiveTenant(t.db, 'a');
  assert.equal((await again.query('SELECT count(*)::int AS n FROM customers WHERE tenant_id = $1', [A])).rows[0]?.n, 5);
  off();
  assert.deepEqual(changes, ['a:suspended', 'a:active']);
  await assert.rejects(scopeForActiveTenant(t.db, 'nobody'), code('tenant_not_found'));
});

test('rename changes the slug only; a taken or invalid slug is refused', async () => {
  await createTenant(t.db, { slug: 'b', name: 'B' });
  await assert.rejects(renameTenant(t.db, 'a', 'b'), code('tenant_exists'));
  await assert.rejects(renameTenant(t.db, 'a', 'Not A Slug'), code('invalid_slug'));
  const r = await renameTenant(t.db, 'a', 'alpha');
  assert.equal(r.id, A);
  assert.equal((await tenantInfo(t.db, 'alpha')).tenant.id, A);
  await assert.rejects(tenantInfo(t.db, 'a'), code('tenant_not_found'));
  await renameTenant(t.db, A, 'a');
});

test('create with dedicated placement makes empty partitions in one transaction; a clash leaves nothing', async () => {
  const r = await createTenant(t.db, { slug: 'big', name: 'Big', placement: 'dedicated' });
  assert.equal(r.placement, 'dedicated');
  await assert.rejects(createTenant(t.db, { slug: 'big', name: 'Again', placement: 'dedicated' }), code('tenant_exists'));
  await assert.rejects(createTenant(t.db, { slug: 'x', name: 'X', id: r.tenant.id, placement: 'dedicated' }), code('tenant_exists'));
  assert.equal(await t.db.tenants.getBySlug('x'), undefined);
  const list = await listTenants(t.db);
  assert.deepEqual(list.map((x) => [x.tenant.slug, x.placement]), [['a', 'shared'], ['b', 'shared'], ['big', 'dedicated']]);
});

test('the CLI: create, list --json, suspend, resume, rename, usage errors', async () => {
  const url = t.database.url;
  const created = await runCli(['create', 'cli-t', '--name', 'CLI tenant', '--placement', 'dedicated', '--json'], url);
  assert.equal(created.code, 0, created.stderr);
  assert.equal((JSON.parse(created.stdout) as { placement: string }).placement, 'dedicated');
  const s = await runCli(['suspend', 'cli-t'], url);
  assert.equal(s.stdout.trim(), 'cli-t is suspended');
  const list = await runCli(['list', '--status', 'suspended', '--json'], url);
  assert.deepEqual((JSON.parse(list.stdout) as Array<{ tenant: { slug: string }; placement: string }>).map((x) => [x.tenant.slug, x.placement]), [['cli-t', 'dedicated']]);
  const r = await runCli(['resume', 'cli-t'], url);
  assert.equal(r.stdout.trim(), 'cli-t is active');
  const rn = await runCli(['rename', 'cli-t', 'cli-u'], url);
  assert.match(rn.stdout, /is now cli-u/);
  const bad = await runCli(['explode', 'x'], url);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /\[config_invalid\] Unknown subcommand "explode"/);
  const noTo = await runCli(['move', 'cli-u'], url);
  assert.match(noTo.stderr, /\[config_invalid\] Missing --to/);
});
