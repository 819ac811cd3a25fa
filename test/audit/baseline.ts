import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { defineSchema, globalTable, schemaSql, tenantTable } from '../../src/index.ts';
import { adminUrl, superQuery, withDatabase } from '../helpers/db.ts';

export const SETTING = 'tenantwall.tenant_id';
export const TENANT_A = '0b6f9a3e-3c1d-4a8e-9a51-2f0c6d1e7b4a';
export const TENANT_B = '7d1c2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5b';
export const TIGHT = `tenant_id = (SELECT nullif(current_setting('${SETTING}', true), '')::uuid)`;

/** The baseline's global tables (declared global in its schema): pass as `globalTables`. */
export const GLOBALS = ['currencies'];

/** The clean baseline: tenantwall's own DDL (composite keys, forced RLS, partitions) plus a view and a function. */
export const auditSchema = defineSchema({
  tables: [
    globalTable({ name: 'currencies', columns: { code: { type: 'text', check: "code ~ '^[A-Z]{3}$'" } }, primaryKey: ['code'] }),
    tenantTable({
      name: 'customers',
      columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, email: { type: 'text' } },
      indexes: [{ columns: ['email'], unique: true }],
    }),
    tenantTable({
      name: 'invoices',
      columns: {
        id: { type: 'uuid', default: 'gen_random_uuid()' },
        customer_id: { type: 'uuid' },
        currency: { type: 'text' },
        amount_cents: { type: 'bigint', check: 'amount_cents >= 0' },
      },
      foreignKeys: [
        { columns: ['customer_id'], references: 'customers' },
        { columns: ['currency'], references: 'currencies' },
      ],
      partition: { hashPartitions: 2 },
    }),
  ],
});

function extrasSql(app: string): string {
  return `
CREATE VIEW customer_emails WITH (security_invoker = true) AS SELECT tenant_id, email FROM customers;
GRANT SELECT ON customer_emails TO "${app}";
CREATE FUNCTION invoice_total() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT coalesce(sum(amount_cents), 0)::bigint FROM invoices';
INSERT INTO currencies VALUES ('EUR'), ('USD');
INSERT INTO tenants (id, slug, name) VALUES ('${TENANT_A}', 'a', 'A'), ('${TENANT_B}', 'b', 'B');
INSERT INTO customers (tenant_id, id, email) VALUES
  ('${TENANT_A}', '11111111-1111-4111-8111-111111111111', 'ann@a.example'),
  ('${TENANT_B}', '22222222-2222-4222-8222-222222222222', 'bob@b.example');
INSERT INTO invoices (tenant_id, customer_id, currency, amount_cents) VALUES
  ('${TENANT_A}', '11111111-1111-4111-8111-111111111111', 'EUR', 100),
  ('${TENANT_B}', '22222222-2222-4222-8222-222222222222', 'USD', 250),
  ('${TENANT_B}', '22222222-2222-4222-8222-222222222222', 'EUR', 75);
`;
}

export interface Baseline {
  /** Login role the fixtures grant to; its password is `appPassword`. */
  readonly app: string;
  readonly appPassword: string;
  /** The clean template database (never modified after creation). */
  readonly template: string;
  /** A new database cloned from the template, with `sql` applied as superuser (`:app` and `:db` are replaced). */
  fixture(sql?: string): Promise<{ name: string; url: string; appUrl: string }>;
  /** Runs `fn` on a superuser connection inside BEGIN ... ROLLBACK after applying `sql` there. */
  inTransaction<T>(sql: string, fn: (client: pg.Client, db: string) => Promise<T>): Promise<T>;
  /** A fresh role name (dropped with the baseline). */
  role(prefix: string): string;
  close(): Promise<void>;
}

export async function createBaseline(): Promise<Baseline> {
  const id = randomBytes(4).toString('hex');
  const app = `tw_audit_app_${id}`;
  const appPassword = randomBytes(12).toString('hex');
  const template = `tw_audit_tpl_${id}`;
  const databases: string[] = [];
  const roles: string[] = [];
  await superQuery('postgres', `CREATE ROLE "${app}" LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT PASSWORD '${appPassword}'`);
  await superQuery('postgres', `CREATE DATABASE ${template}`);
  databases.push(template);
  await superQuery(template, `${schemaSql({ schema: auditSchema, appRole: app, settingName: SETTING })}\n${extrasSql(app)}`);
  const subst = (sql: string, db: string) => sql.replaceAll(':app', `"${app}"`).replaceAll(':db', `"${db}"`);
  let main: string | undefined;
  const b: Baseline = {
    app,
    appPassword,
    template,
    role(prefix) {
      const r = `tw_${prefix}_${id}_${roles.length}`;
      roles.push(r);
      return r;
    },
    async fixture(sql = '') {
      const name = `tw_audit_fx_${randomBytes(5).toString('hex')}`;
      await superQuery('postgres', `CREATE DATABASE ${name} TEMPLATE ${template}`);
      databases.push(name);
      if (sql.trim() !== '') await superQuery(name, subst(sql, name));
      const url = withDatabase(adminUrl(), name);
      const u = new URL(url);
      u.username = app;
      u.password = appPassword;
      return { name, url, appUrl: u.toString() };
    },
    async inTransaction(sql, fn) {
      main ??= (await b.fixture()).name;
      const db = main;
      const client = new pg.Client({ connectionString: withDatabase(adminUrl(), db) });
      await client.connect();
      try {
        await client.query('BEGIN');
        // Keep PostgreSQL's NOTICE/WARNING (e.g. wal_level for publications) out of the test output.
        await client.query('SET LOCAL client_min_messages = error');
        if (sql.trim() !== '') await client.query(subst(sql, db));
        return await fn(client, db);
      } finally {
        await client.query('ROLLBACK').catch(() => undefined);
        await client.end();
      }
    },
    async close() {
      // Dropping one by one costs a few hundred ms each on a durable server; they are independent.
      await Promise.all(databases.map((d) => superQuery('postgres', `DROP DATABASE IF EXISTS ${d} WITH (FORCE)`)));
      for (const r of [...roles, app]) {
        await superQuery('postgres', `DROP ROLE IF EXISTS "${r}"`).catch(() => undefined);
      }
    },
  };
  return b;
}
