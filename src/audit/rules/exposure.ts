import { quoteLiteral } from '../../schema/ddl.ts';
import { confirmNoTablePrivilege, confirmRel } from '../confirm.ts';
import { appAccess, classifyRelations } from '../exposure.ts';
import { qi, qn } from '../tenant-set.ts';
import type { ObjectKind } from '../types.ts';
import { type RuleFamily, rule } from './define.ts';

const KIND: Record<string, ObjectKind> = { r: 'table', p: 'table', v: 'view', m: 'materialized-view', f: 'foreign-table', S: 'sequence' };

/** Everything the application role can reach, not only the tables with the tenant column. */
export const exposureRules: RuleFamily = {
  name: 'exposure',
  rules: [
    rule('exposure-tenant-data-unprotected', 'error', 'isolation', 'Tenant data without the tenant column and without row-level security', "The relation holds tenants' rows (it points at a tenant table or the registry by foreign key, or has a column such as owner_tenant_id) but no tenant column, so the other rules never look at it; with RLS off the application role reads and writes every tenant's rows."),
    rule('exposure-unknown-relation', 'warn', 'isolation', 'Relation the application role can reach is neither tenant nor global', 'Nothing says whose data it holds: not the tenant column, not a foreign key to a tenant table, not the declared global tables. If it holds tenant data, every tenant sees every row.'),
  ],
  evaluate({ cat, ts, opts, appName, push }) {
    if (!cat.app || cat.app.superuser) return;
    for (const c of classifyRelations(cat, ts, opts).values()) {
      const r = c.rel;
      const can = appAccess(r);
      if (can.length === 0 || ts.all.has(r.oid)) continue;
      const kind = KIND[r.kind] ?? 'table';
      const does = can.includes('owner') ? 'owns' : `may ${can.join(', ')}`;
      const details = { relation: qn(r), kind, owner: r.owner, class: c.cls, reason: c.reason, appAccess: can, rls: r.rls };
      const revoke = `REVOKE ALL ON ${r.kind === 'S' ? 'SEQUENCE ' : ''}${qi(r)} FROM PUBLIC, ${appName};`;
      if (c.cls === 'tenant' && (r.kind === 'r' || r.kind === 'p') && !r.rls) {
        push('exposure-tenant-data-unprotected', kind, qn(r), `${qn(r)} holds tenant data (${c.reason}) without a ${opts.tenantColumn} column or row-level security, and ${cat.app.name} ${does} it.`, `-- add the tenant column and the tenant policy (tenantwall audit then checks it like every tenant table), or:\nALTER TABLE ${qi(r)} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY; -- with a policy that reaches the tenant through the parent row\n-- or ${revoke}`, {
          confirm: confirmRel(r, `c.relrowsecurity OR NOT has_table_privilege(${quoteLiteral(opts.appRole)}, c.oid, 'SELECT, INSERT, UPDATE, DELETE')`),
          details,
        });
      } else if (c.cls === 'unknown') {
        push('exposure-unknown-relation', kind, qn(r), `${cat.app.name} ${does} ${qn(r)}, which is neither a tenant relation nor declared global.`, `-- declare it: --global-tables ${qn(r)} (data shared by all tenants) or --tables ${qn(r)} (tenant data, needs the tenant column); or:\n${revoke}`, {
          confirm:
            r.kind === 'S'
              ? `SELECT coalesce(NOT has_sequence_privilege(${quoteLiteral(opts.appRole)}, to_regclass(${quoteLiteral(qi(r))}), 'USAGE, SELECT, UPDATE'), true) AS fixed`
              : confirmNoTablePrivilege(opts.appRole, r, ['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
          details,
        });
      }
    }
  },
};
