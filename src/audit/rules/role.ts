import { quoteIdent } from '../../schema/ddl.ts';
import { qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const roleRules: RuleFamily = {
  name: 'application role',
  rules: [
    rule('app-role-missing', 'error', 'Application role does not exist', 'The role the application connects as could not be found, so none of the role checks could run.'),
    rule('app-role-superuser', 'error', 'Application role is superuser', 'Superusers bypass row-level security entirely.'),
    rule('app-role-bypassrls', 'error', 'Application role has BYPASSRLS', 'BYPASSRLS roles are never subject to row-level security.'),
    rule('app-role-replication', 'error', 'Application role has REPLICATION', 'A replication role can stream every row of every tenant through a replication slot, outside of RLS.'),
    rule('app-role-server-files', 'error', 'Application role can read or write server files', 'pg_read_server_files / pg_write_server_files / pg_execute_server_program reach the data files and COPY to programs, outside of RLS.'),
    rule('app-role-member-of-privileged', 'error', 'Application role can become a superuser or BYPASSRLS role', 'Membership lets the application SET ROLE to a role that bypasses RLS.'),
    rule('app-role-owns-tenant-table', 'error', 'Application role owns a tenant table', 'The owner can disable or drop the policies and bypasses RLS unless FORCE is set.'),
    rule('app-role-member-of-owner', 'error', 'Application role is a member of a tenant table owner', 'Through the membership the application can SET ROLE to the owner and alter or disable the policies.'),
    rule('app-role-createrole', 'warn', 'Application role has CREATEROLE', 'CREATEROLE can create and grant roles; the application should not manage roles.'),
    rule('app-role-owns-objects', 'warn', 'Application role owns database objects', 'The application role should own nothing: owners can replace functions, views and tables that other code trusts.'),
  ],
  evaluate({ cat, opts, ts, appName, push }) {
    const app = cat.app;
    if (!app) {
      push('app-role-missing', 'role', opts.appRole, `Role ${opts.appRole} does not exist.`, `-- pass --app-role, or: CREATE ROLE ${appName} LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;`);
      return;
    }
    if (app.superuser) {
      push('app-role-superuser', 'role', app.name, `Application role ${app.name} is SUPERUSER.`, `ALTER ROLE ${appName} NOSUPERUSER;`);
      return;
    }
    if (app.bypassrls) push('app-role-bypassrls', 'role', app.name, `Application role ${app.name} has BYPASSRLS.`, `ALTER ROLE ${appName} NOBYPASSRLS;`);
    if (app.replication) push('app-role-replication', 'role', app.name, `Application role ${app.name} has REPLICATION.`, `ALTER ROLE ${appName} NOREPLICATION;`);
    if (app.createrole) push('app-role-createrole', 'role', app.name, `Application role ${app.name} has CREATEROLE.`, `ALTER ROLE ${appName} NOCREATEROLE;`);
    if (app.privilegedRoles.length > 0) {
      push('app-role-member-of-privileged', 'role', app.name, `Application role ${app.name} is a member of ${app.privilegedRoles.join(', ')}, which bypass RLS.`, app.privilegedRoles.map((r) => `REVOKE ${quoteIdent(r)} FROM ${appName};`).join('\n'));
    }
    if (app.serverFileRoles.length > 0) {
      push('app-role-server-files', 'role', app.name, `Application role ${app.name} is a member of ${app.serverFileRoles.join(', ')}.`, app.serverFileRoles.map((r) => `REVOKE ${quoteIdent(r)} FROM ${appName};`).join('\n'));
    }
    const owned = [
      ...cat.relations.filter((r) => r.ownerOid === app.oid && !ts.all.has(r.oid)).map((r) => `${r.kind === 'v' ? 'view' : 'relation'} ${qn(r)}`),
      ...cat.functions.filter((f) => f.ownerOid === app.oid).map((f) => `function ${f.schema}.${f.name}(${f.args})`),
      ...cat.schemas.filter((s) => s.owner === app.name).map((s) => `schema ${s.name}`),
    ];
    if (owned.length > 0) {
      push('app-role-owns-objects', 'role', app.name, `Application role ${app.name} owns ${owned.length} object(s): ${owned.slice(0, 10).join(', ')}${owned.length > 10 ? ', ...' : ''}.`, `REASSIGN OWNED BY ${appName} TO <migration owner>; -- run in every database`);
    }
    const ownerMembers = new Map<string, string[]>();
    for (const r of ts.all.values()) {
      if (!r.app) continue;
      if (r.ownerOid === app.oid) {
        push('app-role-owns-tenant-table', r.isPartition ? 'partition' : 'table', qn(r), `Application role ${app.name} owns ${qn(r)}.`, `ALTER TABLE ${qi(r)} OWNER TO <migration owner>;`);
      } else if (r.app.ownerMember) {
        ownerMembers.set(r.owner, [...(ownerMembers.get(r.owner) ?? []), qn(r)]);
      }
    }
    for (const [owner, tables] of ownerMembers) {
      push('app-role-member-of-owner', 'role', `${opts.appRole}->${owner}`, `Application role ${opts.appRole} is a member of ${owner}, owner of ${tables.length} tenant table(s) (${tables.slice(0, 5).join(', ')}${tables.length > 5 ? ', ...' : ''}).`, `REVOKE ${quoteIdent(owner)} FROM ${appName};`);
    }
  },
};
