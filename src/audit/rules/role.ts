import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import { confirmNone, confirmRel, confirmRole } from '../confirm.ts';
import { qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const roleRules: RuleFamily = {
  name: 'application role',
  rules: [
    rule('app-role-missing', 'error', 'isolation', 'Application role does not exist', 'The role the application connects as could not be found, so none of the role checks could run.'),
    rule('app-role-no-grants', 'warn', 'hygiene', 'Application role holds no privilege', 'A role with no grant on any table is probably not the role the application connects as, and every role, grant and exposure finding is silent for it.'),
    rule('app-role-superuser', 'error', 'isolation', 'Application role is superuser', 'Superusers bypass row-level security entirely.'),
    rule('app-role-bypassrls', 'error', 'isolation', 'Application role has BYPASSRLS', 'BYPASSRLS roles are never subject to row-level security.'),
    rule('app-role-replication', 'error', 'isolation', 'Application role has REPLICATION', 'A replication role can stream every row of every tenant through a replication slot, outside of RLS.'),
    rule('app-role-server-files', 'error', 'isolation', 'Application role can read or write server files', 'pg_read_server_files / pg_write_server_files / pg_execute_server_program reach the data files and COPY to programs, outside of RLS.'),
    rule('app-role-member-of-privileged', 'error', 'isolation', 'Application role can become a superuser or BYPASSRLS role', 'Membership lets the application SET ROLE to a role that bypasses RLS.'),
    rule('app-role-owns-tenant-table', 'error', 'isolation', 'Application role owns a tenant table', 'The owner can disable or drop the policies and bypasses RLS unless FORCE is set.'),
    rule('app-role-member-of-owner', 'error', 'isolation', 'Application role is a member of a tenant table owner', 'Through the membership the application can SET ROLE to the owner and alter or disable the policies.'),
    rule('app-role-createrole', 'warn', 'hygiene', 'Application role has CREATEROLE', 'CREATEROLE can create and grant roles; the application should not manage roles.'),
    rule('app-role-owns-objects', 'warn', 'hygiene', 'Application role owns database objects', 'The application role should own nothing: owners can replace functions, views and tables that other code trusts.'),
  ],
  evaluate({ cat, opts, ts, appName, push }) {
    const app = cat.app;
    const role = quoteLiteral(opts.appRole);
    if (!app) {
      push('app-role-missing', 'role', opts.appRole, `Role ${opts.appRole} does not exist.`, `-- pass --app-role, or: CREATE ROLE ${appName} LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;`, {
        confirm: `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = ${role}) AS fixed`,
        details: { role: opts.appRole },
      });
      return;
    }
    const details = { role: app.name };
    if (app.superuser) {
      push('app-role-superuser', 'role', app.name, `Application role ${app.name} is SUPERUSER.`, `ALTER ROLE ${appName} NOSUPERUSER;`, { confirm: confirmRole(app.name, 'NOT r.rolsuper'), details });
      return;
    }
    if (!cat.relations.some((r) => r.app && (r.app.select || r.app.insert || r.app.update || r.app.delete || r.app.truncate || r.app.ownerMember))) {
      push('app-role-no-grants', 'role', app.name, `Role ${app.name} holds no privilege on any table, view or sequence of ${cat.database}: is it the role the application connects as? (pass --app-role, or leave it out to find the application roles from the catalog)`, `-- pass the application's role with --app-role`, {
        confirm: confirmRole(app.name, `EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND has_table_privilege(r.oid, c.oid, 'SELECT, INSERT, UPDATE, DELETE'))`),
        details,
      });
    }
    if (app.bypassrls) push('app-role-bypassrls', 'role', app.name, `Application role ${app.name} has BYPASSRLS.`, `ALTER ROLE ${appName} NOBYPASSRLS;`, { confirm: confirmRole(app.name, 'NOT r.rolbypassrls'), details });
    if (app.replication) push('app-role-replication', 'role', app.name, `Application role ${app.name} has REPLICATION.`, `ALTER ROLE ${appName} NOREPLICATION;`, { confirm: confirmRole(app.name, 'NOT r.rolreplication'), details });
    if (app.createrole) push('app-role-createrole', 'role', app.name, `Application role ${app.name} has CREATEROLE.`, `ALTER ROLE ${appName} NOCREATEROLE;`, { confirm: confirmRole(app.name, 'NOT r.rolcreaterole'), details });
    const notMemberOf = (roles: readonly string[]) => confirmRole(app.name, roles.map((m) => `NOT pg_has_role(r.oid, ${quoteLiteral(m)}, 'MEMBER')`).join(' AND '));
    if (app.privilegedRoles.length > 0) {
      push('app-role-member-of-privileged', 'role', app.name, `Application role ${app.name} is a member of ${app.privilegedRoles.join(', ')}, which bypass RLS.`, app.privilegedRoles.map((r) => `REVOKE ${quoteIdent(r)} FROM ${appName};`).join('\n'), {
        confirm: notMemberOf(app.privilegedRoles),
        details: { ...details, memberOf: app.privilegedRoles },
      });
    }
    if (app.serverFileRoles.length > 0) {
      push('app-role-server-files', 'role', app.name, `Application role ${app.name} is a member of ${app.serverFileRoles.join(', ')}.`, app.serverFileRoles.map((r) => `REVOKE ${quoteIdent(r)} FROM ${appName};`).join('\n'), {
        confirm: notMemberOf(app.serverFileRoles),
        details: { ...details, memberOf: app.serverFileRoles },
      });
    }
    const owned = [
      ...cat.relations.filter((r) => r.ownerOid === app.oid && !ts.all.has(r.oid)).map((r) => `${r.kind === 'v' ? 'view' : 'relation'} ${qn(r)}`),
      ...cat.functions.filter((f) => f.ownerOid === app.oid).map((f) => `function ${f.schema}.${f.name}(${f.args})`),
      ...cat.schemas.filter((s) => s.owner === app.name).map((s) => `schema ${s.name}`),
    ];
    if (owned.length > 0) {
      push('app-role-owns-objects', 'role', app.name, `Application role ${app.name} owns ${owned.length} object(s): ${owned.slice(0, 10).join(', ')}${owned.length > 10 ? ', ...' : ''}.`, `REASSIGN OWNED BY ${appName} TO <migration owner>; -- run in every database`, {
        confirm: confirmNone(
          `SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relowner = to_regrole(${role}) AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ` +
            `UNION ALL SELECT 1 FROM pg_proc p WHERE p.proowner = to_regrole(${role}) UNION ALL SELECT 1 FROM pg_namespace n WHERE n.nspowner = to_regrole(${role})`,
        ),
        details: { ...details, owned },
      });
    }
    const ownerMembers = new Map<string, string[]>();
    for (const r of ts.all.values()) {
      if (!r.app) continue;
      if (r.ownerOid === app.oid) {
        push('app-role-owns-tenant-table', r.isPartition ? 'partition' : 'table', qn(r), `Application role ${app.name} owns ${qn(r)}.`, `ALTER TABLE ${qi(r)} OWNER TO <migration owner>;`, {
          confirm: confirmRel(r, `c.relowner <> to_regrole(${role})`),
          details: { ...details, table: qn(r) },
        });
      } else if (r.app.ownerMember) {
        ownerMembers.set(r.owner, [...(ownerMembers.get(r.owner) ?? []), qn(r)]);
      }
    }
    for (const [owner, tables] of ownerMembers) {
      push('app-role-member-of-owner', 'role', `${opts.appRole}->${owner}`, `Application role ${opts.appRole} is a member of ${owner}, owner of ${tables.length} tenant table(s) (${tables.slice(0, 5).join(', ')}${tables.length > 5 ? ', ...' : ''}).`, `REVOKE ${quoteIdent(owner)} FROM ${appName};`, {
        confirm: notMemberOf([owner]),
        details: { ...details, owner, tables },
      });
    }
  },
};
