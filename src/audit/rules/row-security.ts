import { confirmRel, confirmSome } from '../confirm.ts';
import { quoteLiteral } from '../../schema/ddl.ts';
import { groupBy, qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const rowSecurityRules: RuleFamily = {
  name: 'row-level security',
  rules: [
    rule('rls-disabled', 'error', 'isolation', 'Row-level security is not enabled', 'Without ENABLE ROW LEVEL SECURITY the policies are ignored and every tenant sees every row.'),
    rule('rls-not-forced', 'error', 'isolation', 'Row-level security is not forced', 'The table owner bypasses RLS unless FORCE is set; any connection or SECURITY DEFINER code running as the owner sees all tenants.'),
    rule('rls-no-policy', 'info', 'hygiene', 'Tenant table has no policy', 'RLS without a policy denies every row to everyone but the owner: not a leak, but the application cannot use the table, and the usual hurried "fix" (disabling RLS, a permissive policy) is one.'),
    rule('partition-rls-disabled', 'error', 'isolation', 'Partition without row-level security', "Policies are per table: a query that names the partition directly is not filtered by the parent's policies."),
    rule('partition-rls-not-forced', 'warn', 'isolation', 'Partition with row-level security not forced', 'The owner reading the partition directly bypasses its policies.'),
    rule('partition-no-policy', 'info', 'hygiene', 'Partition without policy', "A query that names the partition directly is checked against the partition's own policies, not the parent's; with RLS on and no policy it is denied every row (not a leak)."),
  ],
  evaluate({ cat, ts, push, policyFix }) {
    const policiesByRel = groupBy(cat.policies, (p) => p.rel);
    for (const r of ts.all.values()) {
      const part = r.isPartition;
      const kind = part ? 'partition' : 'table';
      const name = qn(r);
      const details = { table: name, owner: r.owner, rls: r.rls, forceRls: r.forceRls };
      if (!r.rls) push(part ? 'partition-rls-disabled' : 'rls-disabled', kind, name, `Row-level security is disabled on ${name}.`, `ALTER TABLE ${qi(r)} ENABLE ROW LEVEL SECURITY;`, { confirm: confirmRel(r, 'c.relrowsecurity'), details });
      if (!r.forceRls) push(part ? 'partition-rls-not-forced' : 'rls-not-forced', kind, name, `Row-level security is not forced on ${name} (its owner ${r.owner} bypasses it).`, `ALTER TABLE ${qi(r)} FORCE ROW LEVEL SECURITY;`, { confirm: confirmRel(r, 'c.relforcerowsecurity'), details });
      // With RLS off the table is open (rls-disabled says so); with RLS on and no policy it is closed.
      if (r.rls && !policiesByRel.has(r.oid)) {
        push(part ? 'partition-no-policy' : 'rls-no-policy', kind, name, `${name} has row-level security enabled and no policy: every row is denied to every role but the owner.`, policyFix(r), {
          confirm: confirmSome(`SELECT 1 FROM pg_policy p WHERE p.polrelid = to_regclass(${quoteLiteral(qi(r))})`),
          details,
        });
      }
    }
  },
};
