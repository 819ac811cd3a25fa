import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import { confirmNone } from '../confirm.ts';
import { analyzeBody } from '../functions.ts';
import { type RuleFamily, rule } from './define.ts';

export const settingRules: RuleFamily = {
  name: 'settings and schemas',
  rules: [
    rule('setting-role-default', 'error', 'isolation', 'Role default for the tenant setting', 'ALTER ROLE ... SET gives every new session a tenant: queries that forgot to set one run as that tenant instead of failing closed, and behind a pooler every client of that role starts with it.'),
    rule('setting-database-default', 'error', 'isolation', 'Database default for the tenant setting', 'ALTER DATABASE ... SET gives every session a tenant: queries that forgot to set one run as that tenant instead of failing closed, and behind a pooler every client starts with it.'),
    rule('setting-session-in-function', 'warn', 'isolation', 'Function sets the tenant for the whole session', "SET without LOCAL, or set_config(..., false), keeps the tenant after the transaction: behind a transaction-mode pooler (PgBouncer, Supavisor, RDS Proxy) the server connection, and with it that tenant, goes to the next client. tenantwall sets the tenant with set_config(..., true), local to the transaction."),
    rule('schema-public-create', 'warn', 'hygiene', 'Application role may CREATE in schema public', 'It can plant functions and operators that shadow the ones policies and SECURITY DEFINER code call, and create tables referencing tenant keys.'),
    rule('schema-create', 'warn', 'hygiene', 'Application role may CREATE in a schema', 'It can plant objects that shadow the ones other code resolves through the search_path.'),
  ],
  evaluate({ cat, opts, appName, push }) {
    const defaults = (where: string) =>
      confirmNone(`SELECT 1 FROM pg_db_role_setting s, unnest(s.setconfig) cfg WHERE ${where} AND lower(cfg) LIKE ${quoteLiteral(`${opts.settingName.toLowerCase()}=%`)}`);
    for (const s of cat.settingDefaults) {
      if (s.role !== null) {
        const where = s.database ? ` IN DATABASE ${quoteIdent(s.database)}` : '';
        push('setting-role-default', 'role', s.database ? `${s.role}@${s.database}` : s.role, `Role ${s.role}${s.database ? ` in database ${s.database}` : ''} has a default ${s.value}.`, `ALTER ROLE ${quoteIdent(s.role)}${where} RESET ${opts.settingName};`, {
          confirm: defaults(`s.setrole = to_regrole(${quoteLiteral(s.role)})`),
          details: { role: s.role, database: s.database, value: s.value },
        });
      } else if (s.database !== null) {
        push('setting-database-default', 'database', s.database, `Database ${s.database} has a default ${s.value}.`, `ALTER DATABASE ${quoteIdent(s.database)} RESET ${opts.settingName};`, {
          confirm: defaults(`s.setrole = 0 AND s.setdatabase = (SELECT oid FROM pg_database WHERE datname = ${quoteLiteral(s.database)})`),
          details: { database: s.database, value: s.value },
        });
      }
    }
    const setting = opts.settingName.toLowerCase();
    for (const fn of cat.functions) {
      const body = analyzeBody(fn);
      const hits = [...body.sessionSettings].filter((x) => x === setting || x === '?');
      if (hits.length === 0) continue;
      const obj = `${fn.schema}.${fn.name}(${fn.args})`;
      const esc = opts.settingName.replace(/\./g, '\\.');
      const how = hits.includes(setting) ? `sets ${opts.settingName} for the session (SET without LOCAL, or set_config(..., false))` : 'calls set_config with a computed setting name at session level (it may set the tenant)';
      push('setting-session-in-function', 'function', obj, `Function ${obj} ${how}: on a pooled connection the tenant outlives the transaction and reaches the next client.`, `-- in ${obj}: SET LOCAL ${opts.settingName} = ... / set_config('${opts.settingName}', ..., true)`, {
        confirm: `SELECT NOT EXISTS (SELECT 1 FROM pg_proc p WHERE p.oid = ${quoteLiteral(fn.regprocedure)}::regprocedure AND ((p.prosrc ~* ${quoteLiteral(String.raw`set_config\s*\(\s*'${esc}'`)} AND p.prosrc !~* ${quoteLiteral(String.raw`set_config\s*\(\s*'${esc}'[^;]*,\s*true\s*\)`)}) OR p.prosrc ~* ${quoteLiteral(String.raw`\mset\s+(session\s+)?${esc}\M`)})) AS fixed`,
        details: { function: obj, signature: fn.regprocedure, setting: opts.settingName, language: fn.language },
      });
    }
    const app = cat.app;
    if (!app || app.superuser) return;
    const noCreate = (schema: string) => `SELECT NOT has_schema_privilege(${quoteLiteral(app.name)}, ${quoteLiteral(schema)}, 'CREATE') AS fixed`;
    for (const s of cat.schemas) {
      if (!s.appCreate || s.owner === app.name) continue;
      if (s.name === 'public') push('schema-public-create', 'schema', s.name, `Application role ${app.name} may CREATE in schema public.`, `REVOKE CREATE ON SCHEMA public FROM PUBLIC, ${appName};`, { confirm: noCreate(s.name), details: { schema: s.name, role: app.name } });
      else push('schema-create', 'schema', s.name, `Application role ${app.name} may CREATE in schema ${s.name}.`, `REVOKE CREATE ON SCHEMA ${quoteIdent(s.name)} FROM PUBLIC, ${appName};`, { confirm: noCreate(s.name), details: { schema: s.name, role: app.name } });
    }
  },
};
