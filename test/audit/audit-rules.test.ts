import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AUDIT_RULES, runAudit, type AuditOptions } from '../../src/index.ts';
import { type Baseline, GLOBALS, TENANT_A, TIGHT, createBaseline } from './baseline.ts';

let base: Baseline;
before(async () => {
  base = await createBaseline();
});
after(async () => {
  await base?.close();
});

/** A well-formed extra tenant table whose only defect is whatever `cols`/`extra` introduce. */
const notes = (cols: string, extra = '') => `
CREATE TABLE notes (${cols});
ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON notes USING (${TIGHT}) WITH CHECK (${TIGHT});
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO :app; ${extra}`;
const replacePolicy = (table: string, create: string) => `DROP POLICY tenant_isolation ON ${table}; ${create}`;

interface Fixture {
  readonly name: string;
  /** SQL applying exactly one hole to the clean baseline; `:app` is the application role, `:db` the database. */
  readonly sql: (b: Baseline) => string;
  readonly options?: (b: Baseline) => Partial<AuditOptions>;
  /** The findings expected: the rule under test, plus any other rule the hole implies by construction. */
  readonly expect: readonly string[];
}

let idle = '';
const FIXTURES: Fixture[] = [
  { name: 'rls-disabled', sql: () => 'ALTER TABLE customers DISABLE ROW LEVEL SECURITY', expect: ['rls-disabled'] },
  { name: 'rls-not-forced', sql: () => 'ALTER TABLE customers NO FORCE ROW LEVEL SECURITY', expect: ['rls-not-forced'] },
  { name: 'rls-no-policy', sql: () => 'DROP POLICY tenant_isolation ON customers', expect: ['rls-no-policy'] },
  { name: 'partition-rls-disabled', sql: () => 'ALTER TABLE invoices_p0 DISABLE ROW LEVEL SECURITY', expect: ['partition-rls-disabled'] },
  { name: 'partition-rls-not-forced', sql: () => 'ALTER TABLE invoices_p1 NO FORCE ROW LEVEL SECURITY', expect: ['partition-rls-not-forced'] },
  { name: 'partition-no-policy', sql: () => 'DROP POLICY tenant_isolation ON invoices_p1', expect: ['partition-no-policy'] },
  { name: 'policy-always-true', sql: () => replacePolicy('customers', 'CREATE POLICY open ON customers USING (true) WITH CHECK (true)'), expect: ['policy-always-true'] },
  {
    name: 'policy-always-true (extra permissive policy for SELECT)',
    sql: () => 'CREATE POLICY peek ON invoices FOR SELECT USING (true)',
    expect: ['policy-always-true'],
  },
  {
    name: 'policy-no-tenant-setting',
    sql: () => replacePolicy('customers', 'CREATE POLICY mine ON customers USING (email = current_user) WITH CHECK (email = current_user)'),
    expect: ['policy-no-tenant-setting'],
  },
  {
    name: 'policy-permissive-or-bypass (second permissive policy)',
    sql: () => `CREATE POLICY marketing ON customers FOR SELECT USING (email LIKE '%@example.com')`,
    expect: ['policy-permissive-or-bypass'],
  },
  {
    name: 'policy-permissive-or-bypass (OR inside the policy)',
    sql: () => replacePolicy('customers', `CREATE POLICY p ON customers USING ((${TIGHT}) OR email = 'shared') WITH CHECK (${TIGHT})`),
    expect: ['policy-permissive-or-bypass'],
  },
  { name: 'policy-missing-with-check', sql: () => replacePolicy('customers', `CREATE POLICY p ON customers USING (${TIGHT})`), expect: ['policy-missing-with-check'] },
  {
    name: 'policy-per-row-call',
    sql: () => {
      const plain = `tenant_id = nullif(current_setting('tenantwall.tenant_id', true), '')::uuid`;
      return replacePolicy('customers', `CREATE POLICY p ON customers USING (${plain}) WITH CHECK (${plain})`);
    },
    expect: ['policy-per-row-call'],
  },
  {
    name: 'policy-not-for-app-role',
    sql: (b) => {
      const other = b.role('other');
      return `CREATE ROLE ${other}; ${replacePolicy('customers', `CREATE POLICY p ON customers TO ${other} USING (${TIGHT}) WITH CHECK (${TIGHT})`)}`;
    },
    expect: ['policy-not-for-app-role'],
  },
  { name: 'app-role-missing', sql: () => '', options: () => ({ appRole: 'tw_no_such_role_anywhere' }), expect: ['app-role-missing'] },
  { name: 'app-role-superuser', sql: () => 'ALTER ROLE :app SUPERUSER', expect: ['app-role-superuser'] },
  { name: 'app-role-bypassrls', sql: () => 'ALTER ROLE :app BYPASSRLS', expect: ['app-role-bypassrls'] },
  { name: 'app-role-replication', sql: () => 'ALTER ROLE :app REPLICATION', expect: ['app-role-replication'] },
  { name: 'app-role-server-files', sql: () => 'GRANT pg_read_server_files TO :app', expect: ['app-role-server-files'] },
  {
    name: 'app-role-member-of-privileged',
    sql: (b) => {
      const r = b.role('priv');
      return `CREATE ROLE ${r} BYPASSRLS; GRANT ${r} TO :app`;
    },
    expect: ['app-role-member-of-privileged'],
  },
  { name: 'app-role-owns-tenant-table', sql: () => 'ALTER TABLE customers OWNER TO :app', expect: ['app-role-owns-tenant-table'] },
  {
    name: 'app-role-member-of-owner',
    sql: (b) => {
      const r = b.role('owner');
      return `CREATE ROLE ${r}; ALTER TABLE customers OWNER TO ${r}; GRANT ${r} TO :app`;
    },
    expect: ['app-role-member-of-owner'],
  },
  { name: 'app-role-createrole', sql: () => 'ALTER ROLE :app CREATEROLE', expect: ['app-role-createrole'] },
  // The table it owns is also a relation it reaches that nothing classifies.
  { name: 'app-role-owns-objects', sql: () => 'CREATE TABLE scratch (x int); ALTER TABLE scratch OWNER TO :app', expect: ['app-role-owns-objects', 'exposure-unknown-relation'] },
  {
    name: 'app-role-no-grants',
    sql: (b) => `CREATE ROLE ${(idle = b.role('idle'))} LOGIN`,
    options: () => ({ appRole: idle }),
    expect: ['app-role-no-grants'],
  },
  { name: 'grant-truncate', sql: () => 'GRANT TRUNCATE ON customers TO :app', expect: ['grant-truncate'] },
  { name: 'grant-references', sql: () => 'GRANT REFERENCES ON customers TO :app', expect: ['grant-references'] },
  { name: 'grant-trigger', sql: () => 'GRANT TRIGGER ON invoices TO :app', expect: ['grant-trigger'] },
  { name: 'grant-public', sql: () => 'GRANT SELECT ON customers TO PUBLIC', expect: ['grant-public'] },
  {
    name: 'view-no-security-invoker',
    sql: () => 'CREATE VIEW all_invoices AS SELECT i.* FROM invoices i; GRANT SELECT ON all_invoices TO :app',
    expect: ['view-no-security-invoker'],
  },
  {
    name: 'view-no-security-invoker (through another definer view)',
    sql: () => 'CREATE VIEW all_customers AS SELECT * FROM customers; CREATE VIEW emails_again AS SELECT email FROM all_customers; GRANT SELECT ON emails_again, all_customers TO :app',
    expect: ['view-no-security-invoker'],
  },
  {
    name: 'matview-over-tenant',
    sql: () => 'CREATE MATERIALIZED VIEW invoice_sums AS SELECT tenant_id, sum(amount_cents) FROM invoices GROUP BY 1; GRANT SELECT ON invoice_sums TO :app',
    expect: ['matview-over-tenant'],
  },
  {
    name: 'function-definer-reads-tenant',
    sql: () => `CREATE FUNCTION all_emails() RETURNS SETOF text LANGUAGE sql SECURITY DEFINER SET search_path = public AS 'SELECT email FROM customers'`,
    expect: ['function-definer-reads-tenant'],
  },
  {
    name: 'function-definer-reads-tenant (BEGIN ATOMIC body)',
    sql: () => `CREATE FUNCTION invoice_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = public BEGIN ATOMIC SELECT count(*) FROM public.invoices; END`,
    expect: ['function-definer-reads-tenant'],
  },
  { name: 'function-definer-search-path', sql: () => `CREATE FUNCTION one() RETURNS int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'`, expect: ['function-definer-search-path'] },
  {
    name: 'foreign-table',
    sql: () => 'CREATE FOREIGN DATA WRAPPER tw_dummy; CREATE SERVER tw_remote FOREIGN DATA WRAPPER tw_dummy; CREATE FOREIGN TABLE remote_notes (tenant_id uuid, body text) SERVER tw_remote; GRANT SELECT ON remote_notes TO :app',
    expect: ['foreign-table'],
  },
  { name: 'rule-on-tenant-table', sql: () => 'CREATE RULE keep AS ON DELETE TO customers DO INSTEAD NOTHING', expect: ['rule-on-tenant-table'] },
  { name: 'publication-tenant-table', sql: () => 'CREATE PUBLICATION tw_pub FOR TABLE customers', expect: ['publication-tenant-table'] },
  { name: 'tenant-column-nullable', sql: () => notes('tenant_id uuid, body text', 'CREATE INDEX ON notes (tenant_id);'), expect: ['tenant-column-nullable'] },
  { name: 'pk-not-tenant-led', sql: () => notes('id uuid PRIMARY KEY, tenant_id uuid NOT NULL', 'CREATE INDEX ON notes (tenant_id);'), expect: ['pk-not-tenant-led'] },
  { name: 'unique-not-tenant-led', sql: () => 'ALTER TABLE customers ADD CONSTRAINT customers_email_uniq UNIQUE (email)', expect: ['unique-not-tenant-led'] },
  { name: 'unique-index-not-tenant-led', sql: () => 'CREATE UNIQUE INDEX customers_email_global ON customers (lower(email))', expect: ['unique-index-not-tenant-led'] },
  {
    // A foreign key needs a unique key on the referenced columns; without tenant_id that key is itself a finding.
    name: 'fk-without-tenant',
    sql: () => 'CREATE UNIQUE INDEX customers_id_global ON customers (id); ALTER TABLE invoices ADD COLUMN payer_id uuid REFERENCES customers (id)',
    expect: ['fk-without-tenant', 'unique-index-not-tenant-led'],
  },
  { name: 'no-tenant-index', sql: () => notes('tenant_id uuid NOT NULL, body text'), expect: ['no-tenant-index'] },
  {
    name: 'sequence-shared',
    sql: () => notes('tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY, PRIMARY KEY (tenant_id, id)'),
    expect: ['sequence-shared'],
  },
  { name: 'setting-role-default', sql: () => `ALTER ROLE :app IN DATABASE :db SET tenantwall.tenant_id = '${TENANT_A}'`, expect: ['setting-role-default'] },
  { name: 'setting-database-default', sql: () => `ALTER DATABASE :db SET tenantwall.tenant_id = '${TENANT_A}'`, expect: ['setting-database-default'] },
  { name: 'schema-public-create', sql: () => 'GRANT CREATE ON SCHEMA public TO :app', expect: ['schema-public-create'] },
  { name: 'schema-create', sql: () => 'CREATE SCHEMA reports; GRANT USAGE, CREATE ON SCHEMA reports TO :app', expect: ['schema-create'] },
  { name: 'tenant-table-not-found', sql: () => '', options: () => ({ tables: ['customers', 'invoices', 'public.nope'] }), expect: ['tenant-table-not-found'] },
  { name: 'tenant-column-missing', sql: () => '', options: () => ({ tables: ['customers', 'invoices', 'currencies'] }), expect: ['tenant-column-missing'] },
  // With no tenant table, everything the application role reaches is unclassified.
  { name: 'no-tenant-tables', sql: () => '', options: () => ({ tenantColumn: 'org_id' }), expect: ['no-tenant-tables', 'exposure-unknown-relation'] },
  // Issue 19, misses: exposure the tenant column does not reveal.
  {
    name: 'exposure-tenant-data-unprotected (tenant data under another column name)',
    sql: () => 'CREATE TABLE attachments (owner_tenant_id uuid NOT NULL, body text); GRANT SELECT, INSERT ON attachments TO :app',
    expect: ['exposure-tenant-data-unprotected'],
  },
  {
    name: 'exposure-tenant-data-unprotected (scoped only by a foreign key to a tenant table)',
    sql: () =>
      'CREATE UNIQUE INDEX customers_tenant_id_id ON customers (tenant_id, id); CREATE TABLE customer_notes (tenant uuid NOT NULL, customer uuid NOT NULL, note text, ' +
      'FOREIGN KEY (tenant, customer) REFERENCES customers (tenant_id, id)); GRANT SELECT ON customer_notes TO :app',
    expect: ['exposure-tenant-data-unprotected'],
  },
  { name: 'exposure-unknown-relation', sql: () => 'CREATE TABLE settings (k text PRIMARY KEY, v text); GRANT SELECT ON settings TO :app', expect: ['exposure-unknown-relation'] },
  {
    name: 'exposure-unknown-relation (sequence)',
    sql: () => 'CREATE SEQUENCE ticket_numbers; GRANT USAGE ON SEQUENCE ticket_numbers TO :app',
    expect: ['exposure-unknown-relation'],
  },
  {
    name: 'function-definer-dynamic-sql',
    sql: () => `CREATE FUNCTION count_rows(t text) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
      DECLARE n bigint; BEGIN EXECUTE format('SELECT count(*) FROM %I', t) INTO n; RETURN n; END $$`,
    expect: ['function-definer-dynamic-sql'],
  },
  {
    name: 'function-definer-reads-tenant (through a security_invoker view)',
    sql: () => `CREATE FUNCTION emails() RETURNS SETOF text LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
      BEGIN RETURN QUERY SELECT email FROM customer_emails; END $$`,
    expect: ['function-definer-reads-tenant'],
  },
  {
    name: 'function-leakproof',
    sql: () => `CREATE FUNCTION leaky(x text) RETURNS boolean LANGUAGE plpgsql LEAKPROOF AS $$ BEGIN RAISE NOTICE 'saw %', x; RETURN true; END $$`,
    expect: ['function-leakproof'],
  },
  {
    name: 'function-definer-trigger-writes',
    sql: () => `CREATE TABLE audit_log (at timestamptz DEFAULT now(), what text);
      CREATE FUNCTION log_customer() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
      BEGIN INSERT INTO audit_log (what) VALUES (NEW.email); RETURN NEW; END $$;
      CREATE TRIGGER log_customer AFTER INSERT ON customers FOR EACH ROW EXECUTE FUNCTION log_customer()`,
    expect: ['function-definer-trigger-writes'],
  },
  // Issue 17: session-level tenant settings that a transaction-mode pooler carries to the next client.
  {
    name: 'setting-session-in-function (set_config(..., false) in PL/pgSQL)',
    sql: () => `CREATE FUNCTION become(t uuid) RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('tenantwall.tenant_id', t::text, false); END $$`,
    expect: ['setting-session-in-function'],
  },
  {
    name: 'setting-session-in-function (SET without LOCAL)',
    sql: () => `CREATE FUNCTION become_a() RETURNS void LANGUAGE plpgsql AS $$ BEGIN SET tenantwall.tenant_id = '${TENANT_A}'; END $$`,
    expect: ['setting-session-in-function'],
  },
  {
    name: 'setting-session-in-function (SQL function, set_config with a computed third argument)',
    sql: () => `CREATE FUNCTION become_sql(t text, keep boolean) RETURNS text LANGUAGE sql AS $$ SELECT set_config('tenantwall.tenant_id', t, keep) $$`,
    expect: ['setting-session-in-function'],
  },
];

test('transaction-local tenant settings in functions (SET LOCAL, set_config(..., true)) are not reported', async () => {
  const report = await auditWith(`CREATE FUNCTION ok_local(t uuid) RETURNS void LANGUAGE plpgsql AS $$ BEGIN PERFORM set_config('tenantwall.tenant_id', t::text, true); SET LOCAL tenantwall.tenant_id = '${TENANT_A}'; PERFORM set_config('app.other', 'x', false); END $$`);
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), []);
});

async function auditWith(sql: string, options: Partial<AuditOptions> = {}) {
  return base.inTransaction(sql, (client) => runAudit({ client, appRole: base.app, globalTables: GLOBALS, ...options }));
}

test('the clean baseline (tenantwall DDL, partitions, invoker view and function) has no finding at all', async () => {
  const report = await auditWith('');
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), []);
  assert.equal(report.stats.tenantTables, 2, JSON.stringify(report.stats));
  assert.ok((report.stats.partitions ?? 0) >= 2);
});

test('the baseline read from another connection by URL gives the same (empty) result', async () => {
  const db = await base.fixture();
  const report = await runAudit({ databaseUrl: db.url, appRole: base.app, globalTables: GLOBALS });
  assert.deepEqual(report.findings, []);
  assert.equal(report.database, db.name);
});

for (const fx of FIXTURES) {
  test(`rule ${fx.name} fires on its hole and nothing else; its confirmation query says "not fixed"`, async () => {
    const sql = fx.sql(base);
    const options = fx.options?.(base) ?? {};
    await base.inTransaction(sql, async (client) => {
      const report = await runAudit({ client, appRole: base.app, globalTables: GLOBALS, ...options });
      const fired = [...new Set(report.findings.map((f) => f.ruleId))].sort();
      assert.deepEqual(fired, [...fx.expect].sort(), report.findings.map((f) => `${f.ruleId} ${f.object}: ${f.message}`).join('\n'));
      for (const f of report.findings) {
        assert.ok(f.fix.length > 0 && f.why.length > 0 && f.object.length > 0, `finding ${f.ruleId} is complete`);
        assert.equal(f.docUrl, `https://github.com/tenantwall/tenantwall/blob/main/docs/audit.md#${f.ruleId}`);
        assert.ok(['isolation', 'performance', 'hygiene'].includes(f.category));
        assert.ok(Object.keys(f.details).length > 0, `${f.ruleId} has details`);
        const { rows } = await client.query(f.confirm);
        assert.equal(rows[0]?.fixed, false, `${f.ruleId} ${f.object}: confirmation ${f.confirm} sees the hole`);
      }
    });
  });
}

test('confirmation queries turn true once the fix is applied', async () => {
  const holes = [
    'GRANT TRUNCATE ON customers TO :app',
    'ALTER TABLE customers NO FORCE ROW LEVEL SECURITY',
    `ALTER ROLE :app IN DATABASE :db SET tenantwall.tenant_id = '${TENANT_A}'`,
    `CREATE FUNCTION leaky(x text) RETURNS boolean LANGUAGE sql LEAKPROOF AS 'SELECT true'`,
    'CREATE TABLE settings (k text); GRANT SELECT ON settings TO :app',
  ];
  for (const hole of holes) {
    await base.inTransaction(hole, async (client, db) => {
      const report = await runAudit({ client, appRole: base.app, globalTables: GLOBALS });
      assert.equal(report.findings.length, 1, hole);
      const f = report.findings[0] as (typeof report.findings)[number];
      assert.equal((await client.query(f.confirm)).rows[0]?.fixed, false);
      const fix = f.fix.includes('REVOKE ALL ON') ? f.fix.split('\n').at(-1) ?? '' : f.fix;
      await client.query(fix.replaceAll(':db', `"${db}"`));
      assert.equal((await client.query(f.confirm)).rows[0]?.fixed, true, `${f.ruleId}: ${fix}`);
    });
  }
});

// Issue 19, false positives: each of these was reported (as an error) before.
test('an INSERT check that falls back to USING: a restrictive USING-only tenant policy beside a permissive true policy is tight', async () => {
  const report = await auditWith(replacePolicy('customers', `CREATE POLICY allow_all ON customers USING (true) WITH CHECK (true); CREATE POLICY tenant ON customers AS RESTRICTIVE USING (${TIGHT})`));
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), []);
});

test('a materialized view or foreign table the application role cannot use is info, not an error or warning', async () => {
  const report = await auditWith(
    'CREATE MATERIALIZED VIEW invoice_sums AS SELECT tenant_id, sum(amount_cents) FROM invoices GROUP BY 1; REVOKE ALL ON invoice_sums FROM :app; ' +
      'CREATE FOREIGN DATA WRAPPER tw_dummy; CREATE SERVER tw_remote FOREIGN DATA WRAPPER tw_dummy; CREATE FOREIGN TABLE remote_notes (tenant_id uuid, body text) SERVER tw_remote',
  );
  assert.deepEqual(report.findings.map((f) => `${f.severity} ${f.ruleId}`).sort(), ['info foreign-table', 'info matview-over-tenant']);
  const granted = await auditWith('CREATE MATERIALIZED VIEW invoice_sums AS SELECT tenant_id, sum(amount_cents) FROM invoices GROUP BY 1; GRANT SELECT ON invoice_sums TO :app');
  assert.deepEqual(granted.findings.map((f) => `${f.severity} ${f.ruleId}`), ['error matview-over-tenant']);
});

test('a definer view over a security_invoker view is not a leak (the inner view reads as the session user)', async () => {
  const report = await auditWith('CREATE VIEW emails_again AS SELECT email FROM customer_emails; GRANT SELECT ON emails_again TO :app');
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), []);
});

test('RLS enabled with no policy denies everything: info, not an error', async () => {
  const report = await auditWith('DROP POLICY tenant_isolation ON customers');
  assert.deepEqual(report.findings.map((f) => `${f.severity} ${f.ruleId}`), ['info rls-no-policy']);
});

test('without --app-role the audit finds the application role in the catalog, and refuses to guess when there is none', async () => {
  await base.inTransaction('', async (client) => {
    const report = await runAudit({ client, globalTables: GLOBALS });
    assert.deepEqual(report.appRoles, [base.app]);
    assert.deepEqual(report.findings, []);
  });
  await base.inTransaction('GRANT SELECT ON customers TO :app', async (client) => {
    const other = base.role('second');
    await client.query(`CREATE ROLE ${other} LOGIN; GRANT SELECT, TRUNCATE ON invoices TO ${other}`);
    const report = await runAudit({ client, globalTables: GLOBALS });
    assert.deepEqual([...(report.appRoles ?? [])].sort(), [base.app, other].sort());
    assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.message}`), [`grant-truncate ${other} may TRUNCATE public.invoices.`]);
  });
  await base.inTransaction('REVOKE ALL ON customers, invoices FROM :app', async (client) => {
    await assert.rejects(runAudit({ client }), /No application role given, and none found.*--app-role/);
  });
});

test('a policy reading the setting through a helper function (wrapped in a sub-select) is tight: no finding', async () => {
  const report = await auditWith(`
    CREATE FUNCTION current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('tenantwall.tenant_id', true), '')::uuid $$;
    ${replacePolicy('customers', 'CREATE POLICY p ON customers USING (tenant_id = (SELECT current_tenant())) WITH CHECK (tenant_id = (SELECT current_tenant()))')}`);
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), []);
});

test('the same helper called per row is reported as a per-row call only', async () => {
  const report = await auditWith(`
    CREATE FUNCTION current_tenant() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT nullif(current_setting('tenantwall.tenant_id', true), '')::uuid $$;
    ${replacePolicy('customers', 'CREATE POLICY p ON customers USING (tenant_id = current_tenant()) WITH CHECK (tenant_id = current_tenant())')}`);
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), ['policy-per-row-call public.customers.p']);
});

test('exceptions: a prefix pattern suppresses with its reason, a stale entry is reported as unused, a bad one is refused', async () => {
  const report = await auditWith('GRANT TRUNCATE ON customers TO :app; GRANT TRUNCATE ON invoices TO :app', {
    exceptions: [
      { rule: 'grant-truncate', object: 'public.cust*', reason: 'purge job, see runbook 7' },
      { rule: 'rls-disabled', object: 'public.gone', reason: 'table dropped in v2, entry kept by mistake' },
    ],
  });
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), ['grant-truncate public.invoices']);
  assert.deepEqual(report.suppressed.map((x) => [x.finding.object, x.reason]), [['public.customers', 'purge job, see runbook 7']]);
  assert.deepEqual(report.unusedExceptions.map((e) => e.object), ['public.gone']);
  await assert.rejects(runAudit({ client: undefined, databaseUrl: 'postgres://x@127.0.0.1:1/db', exceptions: [{ rule: 'no-such-rule', object: 'x', reason: 'long enough reason' }] }), /unknown rule/);
});

test('a RESTRICTIVE tenant policy AND-ed with a permissive USING (true) is tight: no finding', async () => {
  const report = await auditWith(
    replacePolicy('customers', `CREATE POLICY allow_all ON customers USING (true); CREATE POLICY tenant ON customers AS RESTRICTIVE USING (${TIGHT}) WITH CHECK (${TIGHT})`),
  );
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), []);
});

test('a function over the row\'s own columns is not a per-row call to hoist: no finding', async () => {
  const report = await auditWith(replacePolicy('customers', `CREATE POLICY p ON customers USING ((${TIGHT}) AND lower(email) <> '') WITH CHECK (${TIGHT})`));
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}`), []);
});

test('every audit rule has a fixture', () => {
  // Rules over the project's source and the access log, not the catalog: test/audit/usage.test.ts.
  const covered = new Set([...FIXTURES.flatMap((f) => f.expect), 'cross-tenant-handle-in-source', 'break-glass-all-tenants']);
  assert.deepEqual(AUDIT_RULES.map((r) => r.id).filter((id) => !covered.has(id)), []);
  assert.ok(AUDIT_RULES.length >= 30);
  assert.equal(new Set(AUDIT_RULES.map((r) => r.id)).size, AUDIT_RULES.length, 'ids are unique');
});
