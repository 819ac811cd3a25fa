import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { VERIFY_ATTACKS, databaseChecksum, runAudit, runVerify } from '../../src/index.ts';
import { type Baseline, GLOBALS, TENANT_A, TENANT_B, TIGHT, createBaseline } from './baseline.ts';

let base: Baseline;
before(async () => {
  base = await createBaseline();
});
after(async () => {
  await base?.close();
});

async function checksumOf(url: string): Promise<string> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await databaseChecksum(c);
  } finally {
    await c.end();
  }
}

async function verifyFixture(sql: string) {
  const db = await base.fixture(sql);
  const before = await checksumOf(db.url);
  const report = await runVerify({ databaseUrl: db.url, appDatabaseUrl: db.appUrl, appRole: base.app, globalTables: GLOBALS });
  const after = await checksumOf(db.url);
  return { db, report, before, after };
}

interface Fixture {
  readonly name: string;
  readonly sql: (b: Baseline) => string;
  /** Attacks expected to succeed: the one under test plus any the hole implies by construction. */
  readonly expect: readonly string[];
  readonly objects?: readonly string[];
}

const FIXTURES: Fixture[] = [
  { name: 'attack-read-cross-tenant', sql: () => 'CREATE POLICY peek ON invoices FOR SELECT USING (true)', expect: ['attack-read-cross-tenant'], objects: ['public.invoices'] },
  {
    name: 'attack-read-cross-tenant (partition read directly)',
    sql: () => `DO $$ DECLARE p regclass; BEGIN
      SELECT tableoid::regclass INTO p FROM invoices WHERE tenant_id = '${TENANT_B}' LIMIT 1;
      EXECUTE format('GRANT SELECT ON %s TO :app', p);
      EXECUTE format('ALTER TABLE %s DISABLE ROW LEVEL SECURITY', p);
    END $$`,
    expect: ['attack-read-cross-tenant'],
  },
  { name: 'attack-update-cross-tenant', sql: () => `CREATE POLICY upd ON invoices FOR UPDATE USING (true) WITH CHECK (${TIGHT})`, expect: ['attack-update-cross-tenant'] },
  { name: 'attack-delete-cross-tenant', sql: () => 'CREATE POLICY del ON invoices FOR DELETE USING (true)', expect: ['attack-delete-cross-tenant'] },
  {
    // customers is referenced by invoices: tenant A's invoices are deleted first, so the FK error can only be B's.
    name: 'attack-delete-cross-tenant (referenced table)',
    sql: () => 'CREATE POLICY del ON customers FOR DELETE USING (true)',
    expect: ['attack-delete-cross-tenant'],
    objects: ['public.customers'],
  },
  {
    name: 'attack-update-cross-tenant (referenced table)',
    sql: () => `CREATE POLICY upd ON customers FOR UPDATE USING (true) WITH CHECK (${TIGHT})`,
    expect: ['attack-update-cross-tenant'],
    objects: ['public.customers'],
  },
  { name: 'attack-insert-cross-tenant', sql: () => 'CREATE POLICY ins ON invoices FOR INSERT WITH CHECK (true)', expect: ['attack-insert-cross-tenant'] },
  { name: 'attack-update-move-tenant', sql: () => `CREATE POLICY mv ON invoices FOR UPDATE USING (${TIGHT}) WITH CHECK (true)`, expect: ['attack-update-move-tenant'] },
  { name: 'attack-no-tenant-setting', sql: () => `ALTER ROLE :app IN DATABASE :db SET tenantwall.tenant_id = '${TENANT_B}'`, expect: ['attack-no-tenant-setting'] },
  {
    name: 'attack-no-tenant-setting (policy that opens up when the setting is empty)',
    sql: () => `DROP POLICY tenant_isolation ON customers; CREATE POLICY p ON customers USING ((${TIGHT}) OR coalesce(current_setting('tenantwall.tenant_id', true), '') = '') WITH CHECK (${TIGHT})`,
    expect: ['attack-no-tenant-setting'],
  },
  { name: 'attack-unique-probe', sql: () => 'CREATE UNIQUE INDEX customers_email_global ON customers (email)', expect: ['attack-unique-probe'] },
  {
    // A foreign key needs a unique key on the referenced columns; without tenant_id that key is a probe too.
    name: 'attack-fk-probe',
    sql: () => 'CREATE UNIQUE INDEX customers_id_global ON customers (id); ALTER TABLE invoices ADD COLUMN payer_id uuid REFERENCES customers (id)',
    expect: ['attack-fk-probe', 'attack-unique-probe'],
  },
  { name: 'attack-truncate', sql: () => 'GRANT TRUNCATE ON customers TO :app', expect: ['attack-truncate'] },
  { name: 'attack-trigger', sql: () => 'GRANT TRIGGER ON customers TO :app', expect: ['attack-trigger'] },
  { name: 'attack-ddl', sql: () => 'ALTER TABLE customers OWNER TO :app', expect: ['attack-ddl'] },
  {
    name: 'attack-set-role',
    sql: (b) => {
      const owner = b.role('vowner');
      return `CREATE ROLE ${owner}; ALTER TABLE customers OWNER TO ${owner}; GRANT ${owner} TO :app`;
    },
    expect: ['attack-set-role'],
  },
  { name: 'attack-view-read', sql: () => 'CREATE VIEW all_customers AS SELECT * FROM customers; GRANT SELECT ON all_customers TO :app', expect: ['attack-view-read'] },
  {
    name: 'attack-view-read (view without the tenant column)',
    sql: () => 'CREATE VIEW invoice_sum AS SELECT sum(amount_cents) AS s FROM invoices; GRANT SELECT ON invoice_sum TO :app',
    expect: ['attack-view-read'],
  },
  {
    name: 'attack-view-read (materialized view)',
    sql: () => 'CREATE MATERIALIZED VIEW invoice_counts AS SELECT tenant_id, count(*) FROM invoices GROUP BY 1; GRANT SELECT ON invoice_counts TO :app',
    expect: ['attack-view-read'],
  },
  // Issue 19: the exposure classes.
  {
    name: 'attack-function-dynamic-read',
    sql: () => `CREATE FUNCTION count_rows(t text) RETURNS bigint LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
      DECLARE n bigint; BEGIN EXECUTE format('SELECT count(*) FROM %I', t) INTO n; RETURN n; END $$`,
    expect: ['attack-function-dynamic-read'],
  },
  {
    // Cheap, so the planner runs it before the policy: what a function written to leak looks like.
    name: 'attack-leakproof',
    sql: () => `CREATE FUNCTION leaky(x text) RETURNS boolean LANGUAGE plpgsql LEAKPROOF COST 0.0001 AS $$ BEGIN RAISE NOTICE 'saw %', x; RETURN true; END $$`,
    expect: ['attack-leakproof'],
  },
  {
    name: 'attack-exposure-read (tenant data under another column name)',
    sql: () => `CREATE TABLE attachments (owner_tenant_id uuid NOT NULL, body text); INSERT INTO attachments VALUES ('${TENANT_B}', 'secret'); GRANT SELECT ON attachments TO :app`,
    expect: ['attack-exposure-read'],
  },
  {
    name: 'attack-function-read',
    sql: () => `CREATE FUNCTION all_invoice_total() RETURNS bigint LANGUAGE sql SECURITY DEFINER SET search_path = public AS 'SELECT sum(amount_cents)::bigint FROM invoices'`,
    expect: ['attack-function-read'],
  },
];

test('a clean verify run finds nothing and leaves the content checksum unchanged', async () => {
  const { report, before, after } = await verifyFixture('');
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}: ${f.message}`), []);
  assert.deepEqual(report.notes, []);
  assert.equal(before, after);
  const db = await base.fixture();
  const phases = new Set<string>();
  const own = await runVerify({ databaseUrl: db.url, appDatabaseUrl: db.appUrl, appRole: base.app, globalTables: GLOBALS, checksum: true, onProgress: (p) => phases.add(p.phase) });
  for (const phase of ['rows', 'tables', 'setting', 'probes', 'views-functions']) assert.ok(phases.has(phase), `progress reports ${phase}`);
  assert.ok(own.checksums && own.checksums.before === own.checksums.after && own.checksums.before.length === 64);
  assert.ok((report.stats.attempts ?? 0) > 20);
});

test('verify makes the rows it needs when a tenant has none, and still leaves no trace', async () => {
  const { report, before, after } = await verifyFixture(`
    CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenants (id), id bigint GENERATED ALWAYS AS IDENTITY, body text NOT NULL,
      customer_id uuid NOT NULL, PRIMARY KEY (tenant_id, id), FOREIGN KEY (tenant_id, customer_id) REFERENCES customers (tenant_id, id));
    ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON notes USING (${TIGHT}) WITH CHECK (${TIGHT});
    GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO :app;
    INSERT INTO notes (tenant_id, body, customer_id) VALUES ('${TENANT_A}', 'only A has one', '11111111-1111-4111-8111-111111111111');`);
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}: ${f.message}`), []);
  assert.deepEqual(report.notes, []);
  // Identity values were given explicitly: the sequence did not move either.
  assert.equal(before, after);
});

test('a function it cannot call (required arguments) is named in the notes, not silently skipped', async () => {
  const { report } = await verifyFixture(`CREATE FUNCTION invoice_of(p uuid) RETURNS bigint LANGUAGE sql STABLE AS 'SELECT amount_cents FROM invoices WHERE id = p'`);
  assert.deepEqual(report.findings, []);
  assert.equal(report.notes.length, 1);
  assert.match(report.notes[0] ?? '', /public\.invoice_of\(p uuid\) reads public\.invoices but was not called/);
});

test('a RESTRICTIVE tenant policy AND-ed with a permissive USING (true) withstands every attack', async () => {
  const { report, before, after } = await verifyFixture(
    `DROP POLICY tenant_isolation ON customers; CREATE POLICY allow_all ON customers USING (true); CREATE POLICY tenant ON customers AS RESTRICTIVE USING (${TIGHT}) WITH CHECK (${TIGHT})`,
  );
  assert.deepEqual(report.findings.map((f) => `${f.ruleId} ${f.object}: ${f.message}`), []);
  assert.equal(before, after);
});

test('the checksum sees a one-row change (so an unchanged checksum means something)', async () => {
  const db = await base.fixture();
  const before = await checksumOf(db.url);
  const c = new pg.Client({ connectionString: db.url });
  await c.connect();
  await c.query(`UPDATE invoices SET amount_cents = amount_cents + 1 WHERE tenant_id = '${TENANT_A}'`);
  await c.end();
  assert.notEqual(await checksumOf(db.url), before);
});

// Each fixture is its own database, so they can run side by side.
describe('attacks', { concurrency: 4 }, () => {
  for (const fx of FIXTURES) {
    test(`attack ${fx.name} succeeds on its hole and nothing else does`, async () => {
      const { db, report, before, after } = await verifyFixture(fx.sql(base));
      const fired = [...new Set(report.findings.map((f) => f.ruleId))].sort();
      assert.deepEqual(fired, [...fx.expect].sort(), report.findings.map((f) => `${f.ruleId} ${f.object}: ${f.message}`).join('\n'));
      if (fx.objects) assert.deepEqual([...new Set(report.findings.map((f) => f.object))].sort(), [...fx.objects].sort());
      assert.equal(before, after, 'verify left no trace');
      // The catalog audit names every hole verify exploits.
      const audit = await runAudit({ databaseUrl: db.url, appRole: base.app, globalTables: GLOBALS });
      assert.ok(audit.findings.some((f) => f.severity === 'error'), `audit misses the hole of ${fx.name}`);
    });
  }
});

test('an application role that is superuser: every table reads across tenants, and still no trace', async () => {
  const su = base.role('su');
  const db = await base.fixture(`CREATE ROLE ${su} LOGIN SUPERUSER PASSWORD '${base.appPassword}'`);
  const before = await checksumOf(db.url);
  const appUrl = new URL(db.appUrl);
  appUrl.username = su;
  const report = await runVerify({ databaseUrl: db.url, appDatabaseUrl: appUrl.toString(), appRole: su, globalTables: GLOBALS });
  const reads = report.findings.filter((f) => f.ruleId === 'attack-read-cross-tenant').map((f) => f.object).sort();
  // Superusers may also name partitions directly: the partition holding B's rows leaks too.
  assert.ok(reads.includes('public.customers') && reads.includes('public.invoices'), reads.join(', '));
  assert.ok(reads.some((r) => r.startsWith('public.invoices_p')), reads.join(', '));
  assert.ok(!report.findings.some((f) => f.ruleId === 'attack-set-role'));
  assert.equal(await checksumOf(db.url), before);
});

test('coverage lists every relation the application role can reach; a trigger that advances a sequence is detected and its table\'s writes skipped', async () => {
  const clean = await verifyFixture('');
  const cov = Object.fromEntries((clean.report.coverage ?? []).map((e) => [e.relation, `${e.class} ${e.status}`]));
  assert.deepEqual(cov, {
    'public.currencies': 'global not-applicable',
    'public.customer_emails': 'tenant attacked',
    'public.customers': 'tenant attacked',
    'public.invoices': 'tenant attacked',
    'public.tenants': 'global not-applicable',
  });
  const { report, before, after } = await verifyFixture(`
    CREATE SEQUENCE note_numbers;
    CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenants (id), id uuid NOT NULL DEFAULT gen_random_uuid(), no bigint, PRIMARY KEY (tenant_id, id));
    ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON notes USING (${TIGHT}) WITH CHECK (${TIGHT});
    GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO :app; GRANT USAGE ON SEQUENCE note_numbers TO :app;
    CREATE FUNCTION number_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.no := nextval('note_numbers'); RETURN NEW; END $$;
    CREATE TRIGGER number_note BEFORE INSERT OR UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION number_note();
    INSERT INTO notes (tenant_id) VALUES ('${TENANT_A}'), ('${TENANT_B}');`);
  assert.equal(before, after, `the sequence did not move: no attack wrote to notes\n${report.notes.join('\n')}`);
  assert.ok(report.notes.some((n) => /trigger number_note on public\.notes .*advances a sequence.*write attacks on public\.notes skipped/.test(n)), report.notes.join('\n'));
  const notes = (report.coverage ?? []).find((e) => e.relation === 'public.notes');
  assert.equal(notes?.status, 'skipped');
  assert.match(notes?.reason ?? '', /advances a sequence/);
  assert.deepEqual(report.findings.map((f) => f.ruleId), []);
});

test('functions with effects a rollback does not undo are not called, also through a helper; a trigger reaching nextval through a helper is found; the checksum stays put', async () => {
  const { report, before, after } = await verifyFixture(`
    CREATE SEQUENCE ticket_numbers; GRANT USAGE ON SEQUENCE ticket_numbers TO :app;
    CREATE FUNCTION next_ticket() RETURNS bigint LANGUAGE sql AS $$ SELECT nextval('ticket_numbers') $$;
    CREATE FUNCTION count_customers_numbered() RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN PERFORM next_ticket(); RETURN (SELECT count(*) FROM customers); END $$;
    CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenants (id), id uuid NOT NULL DEFAULT gen_random_uuid(), no bigint, PRIMARY KEY (tenant_id, id));
    ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON notes USING (${TIGHT}) WITH CHECK (${TIGHT});
    GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO :app;
    CREATE FUNCTION number_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.no := next_ticket(); RETURN NEW; END $$;
    CREATE TRIGGER number_note BEFORE INSERT OR UPDATE ON notes FOR EACH ROW EXECUTE FUNCTION number_note();
    INSERT INTO notes (tenant_id) VALUES ('${TENANT_A}'), ('${TENANT_B}');`);
  assert.equal(before, after, `verify left a trace: ${report.notes.join('\n')}`);
  assert.ok(report.notes.some((n) => /public\.count_customers_numbered\(\) advances a sequence \(through public\.next_ticket\).*not called/.test(n)), report.notes.join('\n'));
  assert.ok(report.notes.some((n) => /trigger number_note on public\.notes .*advances a sequence \(through public\.next_ticket\).*write attacks on public\.notes skipped/.test(n)), report.notes.join('\n'));
  assert.ok(!report.notes.some((n) => /another session wrote to the database meanwhile/.test(n)));
});

test('a trigger whose helper INSERTs into a table with a serial column (no nextval in any body) is found; the checksum stays put', async () => {
  // The shape of a job queue's enqueue trigger (graphile-worker's add_job): the sequence advances through the
  // column default of the table the helper inserts into, a value a rollback does not give back.
  const { report, before, after } = await verifyFixture(`
    CREATE SCHEMA queue; GRANT USAGE ON SCHEMA queue TO :app;
    CREATE TABLE queue.jobs (id bigserial PRIMARY KEY, payload text);
    CREATE FUNCTION queue.add_job(p text) RETURNS void LANGUAGE plpgsql SECURITY DEFINER AS $$ BEGIN INSERT INTO queue.jobs (payload) VALUES (p); END $$;
    CREATE TABLE notes (tenant_id uuid NOT NULL REFERENCES tenants (id), id uuid NOT NULL DEFAULT gen_random_uuid(), PRIMARY KEY (tenant_id, id));
    ALTER TABLE notes ENABLE ROW LEVEL SECURITY; ALTER TABLE notes FORCE ROW LEVEL SECURITY;
    CREATE POLICY tenant_isolation ON notes USING (${TIGHT}) WITH CHECK (${TIGHT});
    GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO :app;
    CREATE FUNCTION enqueue_note() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM queue.add_job(NEW.id::text); RETURN NEW; END $$;
    CREATE TRIGGER enqueue_note AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION enqueue_note();
    INSERT INTO notes (tenant_id) VALUES ('${TENANT_A}'), ('${TENANT_B}');`);
  assert.equal(before, after, `verify left a trace: ${report.notes.join('\n')}`);
  assert.ok(report.notes.some((n) => /trigger enqueue_note on public\.notes .*advances a sequence \(inserts into queue\.jobs\) \(through queue\.add_job\).*write attacks on public\.notes skipped/.test(n)), report.notes.join('\n'));
});

test('a checksum change names the relations that changed and does not blame another session for it', async () => {
  // A restrictive policy calling nextval: every read of customers advances the sequence, a path the side-effect
  // detection does not follow. The note names the sequence and says it may be verify's own effect.
  const db = await base.fixture(`CREATE SEQUENCE side; GRANT USAGE ON SEQUENCE side TO :app;
    CREATE FUNCTION tick() RETURNS boolean LANGUAGE sql VOLATILE AS $$ SELECT nextval('side') > 0 $$;
    CREATE POLICY tick ON customers AS RESTRICTIVE USING (tick());`);
  const report = await runVerify({ databaseUrl: db.url, appDatabaseUrl: db.appUrl, appRole: base.app, globalTables: GLOBALS, checksum: true });
  assert.notEqual(report.checksums?.before, report.checksums?.after);
  assert.deepEqual(report.checksums?.changed, ['public.side']);
  const note = report.notes.find((n) => n.startsWith('content checksum changed'));
  assert.match(note ?? '', /in public\.side: either something verify fired .* or another session wrote/);
  assert.ok(!report.notes.some((n) => /another session wrote to the database meanwhile/.test(n)));
});

test('every attack has a fixture', () => {
  const covered = new Set(FIXTURES.flatMap((f) => f.expect));
  assert.deepEqual(VERIFY_ATTACKS.map((r) => r.id).filter((id) => !covered.has(id)), []);
});

test('verify refuses to run without the application role connection', async () => {
  await assert.rejects(runVerify({ databaseUrl: 'postgres://x@127.0.0.1:1/db', appDatabaseUrl: '' }), /app-database-url/);
  void TENANT_A;
});
