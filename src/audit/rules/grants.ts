import { confirmNoTablePrivilege, confirmRel } from '../confirm.ts';
import { qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const grantRules: RuleFamily = {
  name: 'grants',
  rules: [
    rule('grant-truncate', 'error', 'isolation', 'Application role may TRUNCATE a tenant table', 'TRUNCATE ignores row-level security: one call empties the table for every tenant.'),
    rule('grant-references', 'warn', 'isolation', 'Application role has REFERENCES on a tenant table', "REFERENCES lets the role create foreign keys to the table, whose checks ignore RLS: an existence oracle on other tenants' keys."),
    rule('grant-trigger', 'error', 'isolation', 'Application role may create triggers on a tenant table', "A trigger function sees the rows of every tenant's writes, outside of RLS."),
    rule('grant-public', 'warn', 'hygiene', 'Tenant table privileges granted to PUBLIC', 'Every role, present and future, gets these privileges; only the application role should.'),
  ],
  evaluate({ cat, ts, appName, push }) {
    const app = cat.app;
    for (const r of ts.all.values()) {
      const kind = r.isPartition ? 'partition' : 'table';
      const name = qn(r);
      if (r.publicPrivileges.length > 0) push('grant-public', kind, name, `PUBLIC has ${r.publicPrivileges.join(', ')} on ${name}.`, `REVOKE ALL ON ${qi(r)} FROM PUBLIC;`, {
        confirm: confirmRel(r, 'NOT EXISTS (SELECT 1 FROM aclexplode(c.relacl) e WHERE e.grantee = 0)'),
        details: { table: name, privileges: r.publicPrivileges },
      });
      // Owners and members of the owner hold every privilege: the role rules report the cause once.
      if (!app || app.superuser || !r.app || r.ownerOid === app.oid || r.app.ownerMember) continue;
      if (r.app.truncate) push('grant-truncate', kind, name, `${app.name} may TRUNCATE ${name}.`, `REVOKE TRUNCATE ON ${qi(r)} FROM ${appName};`, { confirm: confirmNoTablePrivilege(app.name, r, ['TRUNCATE']), details: { table: name, role: app.name, privilege: 'TRUNCATE' } });
      if (r.app.references) push('grant-references', kind, name, `${app.name} has REFERENCES on ${name}.`, `REVOKE REFERENCES ON ${qi(r)} FROM ${appName};`, { confirm: confirmNoTablePrivilege(app.name, r, ['REFERENCES']), details: { table: name, role: app.name, privilege: 'REFERENCES' } });
      if (r.app.trigger) push('grant-trigger', kind, name, `${app.name} may create triggers on ${name}.`, `REVOKE TRIGGER ON ${qi(r)} FROM ${appName};`, { confirm: confirmNoTablePrivilege(app.name, r, ['TRIGGER']), details: { table: name, role: app.name, privilege: 'TRIGGER' } });
    }
  },
};
