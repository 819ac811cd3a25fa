import { groupBy, qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const rowSecurityRules: RuleFamily = {
  name: 'row-level security',
  rules: [
    rule('rls-disabled', 'error', 'Row-level security is not enabled', 'Without ENABLE ROW LEVEL SECURITY the policies are ignored and every tenant sees every row.'),
    rule('rls-not-forced', 'error', 'Row-level security is not forced', 'The table owner bypasses RLS unless FORCE is set; any connection or SECURITY DEFINER code running as the owner sees all tenants.'),
    rule('rls-no-policy', 'error', 'Tenant table has no policy', 'RLS without a policy denies everything to the application, so the usual "fix" is to disable RLS or add a permissive policy in a hurry; the tenant policy must exist.'),
    rule('partition-rls-disabled', 'error', 'Partition without row-level security', "Policies are per table: a query that names the partition directly is not filtered by the parent's policies."),
    rule('partition-rls-not-forced', 'warn', 'Partition with row-level security not forced', 'The owner reading the partition directly bypasses its policies.'),
    rule('partition-no-policy', 'error', 'Partition without policy', "A query that names the partition directly is checked against the partition's own policies, not the parent's."),
  ],
  evaluate({ cat, ts, push, policyFix }) {
    const policiesByRel = groupBy(cat.policies, (p) => p.rel);
    for (const r of ts.all.values()) {
      const part = r.isPartition;
      const kind = part ? 'partition' : 'table';
      const name = qn(r);
      if (!r.rls) push(part ? 'partition-rls-disabled' : 'rls-disabled', kind, name, `Row-level security is disabled on ${name}.`, `ALTER TABLE ${qi(r)} ENABLE ROW LEVEL SECURITY;`);
      if (!r.forceRls) push(part ? 'partition-rls-not-forced' : 'rls-not-forced', kind, name, `Row-level security is not forced on ${name} (its owner ${r.owner} bypasses it).`, `ALTER TABLE ${qi(r)} FORCE ROW LEVEL SECURITY;`);
      if (!policiesByRel.has(r.oid)) push(part ? 'partition-no-policy' : 'rls-no-policy', kind, name, `${name} has no row-level security policy.`, policyFix(r));
    }
  },
};
