import { quoteIdent } from '../../schema/ddl.ts';
import { type RuleFamily, rule } from './define.ts';

export const settingRules: RuleFamily = {
  name: 'settings and schemas',
  rules: [
    rule('setting-role-default', 'error', 'Role default for the tenant setting', 'ALTER ROLE ... SET gives every new session a tenant: queries that forgot to set one run as that tenant instead of failing closed.'),
    rule('setting-database-default', 'error', 'Database default for the tenant setting', 'ALTER DATABASE ... SET gives every session a tenant: queries that forgot to set one run as that tenant instead of failing closed.'),
    rule('schema-public-create', 'warn', 'Application role may CREATE in schema public', 'It can plant functions and operators that shadow the ones policies and SECURITY DEFINER code call, and create tables referencing tenant keys.'),
    rule('schema-create', 'warn', 'Application role may CREATE in a schema', 'It can plant objects that shadow the ones other code resolves through the search_path.'),
  ],
  evaluate({ cat, opts, appName, push }) {
    for (const s of cat.settingDefaults) {
      if (s.role !== null) {
        const where = s.database ? ` IN DATABASE ${quoteIdent(s.database)}` : '';
        push('setting-role-default', 'role', s.database ? `${s.role}@${s.database}` : s.role, `Role ${s.role}${s.database ? ` in database ${s.database}` : ''} has a default ${s.value}.`, `ALTER ROLE ${quoteIdent(s.role)}${where} RESET ${opts.settingName};`);
      } else if (s.database !== null) {
        push('setting-database-default', 'database', s.database, `Database ${s.database} has a default ${s.value}.`, `ALTER DATABASE ${quoteIdent(s.database)} RESET ${opts.settingName};`);
      }
    }
    const app = cat.app;
    if (!app || app.superuser) return;
    for (const s of cat.schemas) {
      if (!s.appCreate || s.owner === app.name) continue;
      if (s.name === 'public') push('schema-public-create', 'schema', s.name, `Application role ${app.name} may CREATE in schema public.`, `REVOKE CREATE ON SCHEMA public FROM PUBLIC, ${appName};`);
      else push('schema-create', 'schema', s.name, `Application role ${app.name} may CREATE in schema ${s.name}.`, `REVOKE CREATE ON SCHEMA ${quoteIdent(s.name)} FROM PUBLIC, ${appName};`);
    }
  },
};
