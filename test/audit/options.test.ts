import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveCheckOptions } from '../../src/audit/options.ts';

test('audit/verify options: explicit value, then environment, then default, validated in one place', () => {
  const env = { DATABASE_URL: 'postgres://o@h/db', TENANTWALL_APP_DATABASE_URL: 'postgres://app@h/db', TENANTWALL_APP_ROLE: 'svc' };
  const fromEnv = resolveCheckOptions({}, env);
  assert.equal(fromEnv.appDatabaseUrl, 'postgres://app@h/db');
  assert.equal(fromEnv.appRole, 'svc');
  assert.equal(fromEnv.tenantColumn, 'tenant_id');
  assert.equal(resolveCheckOptions({ appDatabaseUrl: 'postgres://x@h/db' }, env).appDatabaseUrl, 'postgres://x@h/db');
  // An empty value counts as not given (a CI variable set to '').
  assert.equal(resolveCheckOptions({ appDatabaseUrl: '' }, {}).appDatabaseUrl, undefined);
  assert.throws(() => resolveCheckOptions({}, { TENANTWALL_APP_DATABASE_URL: 'not a url' }), /appDatabaseUrl/);
  assert.ok(Object.isFrozen(fromEnv));
});
