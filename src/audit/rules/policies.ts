import { quoteIdent } from '../../schema/ddl.ts';
import type { Policy } from '../catalog.ts';
import { confirmPolicyChanged, confirmSome } from '../confirm.ts';
import { quoteLiteral } from '../../schema/ddl.ts';
import { type PolicyClass, analyzePolicyExpr, setSettingHelpers } from '../policy-expr.ts';
import { groupBy, qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

const CMDS = ['r', 'a', 'w', 'd'] as const;
const CMD_NAME = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' } as const;

/**
 * The expressions PostgreSQL checks for `cmd` under policy `p`. A missing WITH CHECK falls back to USING for
 * INSERT and UPDATE (FOR INSERT policies have no USING, so theirs stays absent).
 */
function exprsFor(p: Policy, cmd: (typeof CMDS)[number]): (string | null)[] {
  if (cmd === 'r' || cmd === 'd') return [p.qual];
  if (cmd === 'a') return [p.check ?? p.qual];
  return [p.qual, p.check ?? p.qual];
}

const policyDetails = (table: string, p: Policy) => ({
  table,
  policy: p.name,
  command: CMD_NAME[p.cmd],
  permissive: p.permissive,
  roles: p.roleNames,
  using: p.qual,
  withCheck: p.check,
});

export const policyRules: RuleFamily = {
  name: 'policies',
  rules: [
    rule('policy-always-true', 'error', 'isolation', 'Policy is always true', 'Permissive policies are OR-ed: one that is always true lets every tenant see (or write) every row.'),
    rule('policy-no-tenant-setting', 'error', 'isolation', 'Policy does not compare the tenant column with the tenant setting', 'A policy that does not bind the tenant column to the per-transaction tenant setting does not isolate tenants.'),
    rule('policy-permissive-or-bypass', 'error', 'isolation', 'Permissive policies OR into a bypass', 'Permissive policies are combined with OR: any branch that does not require tenant = setting lets rows of other tenants through.'),
    rule('policy-missing-with-check', 'warn', 'hygiene', 'Write policy without WITH CHECK', 'Without an explicit WITH CHECK, writes are checked against USING (FOR ALL/UPDATE) or refused (FOR INSERT); an explicit WITH CHECK on the tenant makes the write rule visible and keeps it right when USING changes.'),
    rule('policy-per-row-call', 'warn', 'performance', 'Policy calls a function per row', 'A function call not wrapped in a sub-select is evaluated for every row instead of once per statement (an InitPlan); on large tables that is slow, and slow policies get "fixed" by disabling them.'),
    rule('policy-not-for-app-role', 'warn', 'hygiene', 'No policy applies to the application role', 'Policies exist but none is granted to the application role (TO ...), so it sees nothing: usually a typo in the role list.'),
  ],
  evaluate({ cat, opts, ts, appName, col, pred, policyFix, push }) {
    const app = cat.app;
    const policiesByRel = groupBy(cat.policies, (p) => p.rel);
    const appliesToApp = (p: Policy) => !app || p.roles.includes(0) || app.memberOf.some((r) => p.roles.includes(r));
    const settingText = opts.settingName.toLowerCase();
    setSettingHelpers(
      cat.functions.filter((f) => /current_setting/i.test(f.source) && f.source.toLowerCase().includes(settingText)).flatMap((f) => [f.name, `${f.schema}.${f.name}`]),
    );
    const cls = (e: string | null): PolicyClass => analyzePolicyExpr(e, col, opts.settingName).cls;
    for (const r of ts.all.values()) {
      const name = qn(r);
      const pols = policiesByRel.get(r.oid) ?? [];
      if (pols.length === 0) continue;
      const applicable = pols.filter(appliesToApp);
      if (applicable.length === 0) {
        push('policy-not-for-app-role', r.isPartition ? 'partition' : 'table', name, `None of the policies of ${name} (${pols.map((p) => p.name).join(', ')}) applies to ${opts.appRole}.`, `ALTER POLICY ${quoteIdent(pols[0]?.name ?? 'tenant_isolation')} ON ${qi(r)} TO ${appName};`, {
          confirm: confirmSome(`SELECT 1 FROM pg_policy p WHERE p.polrelid = to_regclass(${quoteLiteral(qi(r))}) AND (0 = ANY (p.polroles) OR EXISTS (SELECT 1 FROM unnest(p.polroles) x WHERE pg_has_role(${quoteLiteral(opts.appRole)}, x, 'MEMBER')))`),
          details: { table: name, policies: pols.map((p) => ({ policy: p.name, roles: p.roleNames })), appRole: opts.appRole },
        });
      }
      // Commands a tight RESTRICTIVE policy already binds to the tenant: permissive policies are AND-ed with it.
      const bound = new Set<string>();
      for (const cmd of CMDS) {
        const cps = applicable.filter((p) => p.cmd === '*' || p.cmd === cmd);
        if (cps.some((p) => !p.permissive && exprsFor(p, cmd).every((e) => cls(e) === 'tight'))) {
          bound.add(cmd);
          continue;
        }
        const perm = cps.filter((p) => p.permissive);
        for (const p of perm) {
          for (const e of exprsFor(p, cmd)) {
            const c = cls(e);
            if (c === 'tight' || c === 'absent') continue;
            const pname = `${name}.${p.name}`;
            const fixIt = `DROP POLICY ${quoteIdent(p.name)} ON ${qi(r)};\n${policyFix(r)}`;
            const extra = { confirm: confirmPolicyChanged(r, p.name, p.qual, p.check), details: { ...policyDetails(name, p), checkedFor: CMD_NAME[cmd] } };
            if (c === 'true') {
              push('policy-always-true', 'policy', pname, `Policy ${p.name} on ${name} (${CMD_NAME[p.cmd]}) is always true, so ${CMD_NAME[cmd]} sees every tenant.`, fixIt, extra);
            } else if (perm.length > 1 || c === 'loose') {
              push('policy-permissive-or-bypass', 'policy', pname, `Permissive policy ${p.name} on ${name} is OR-ed with ${perm.length > 1 ? `${perm.length - 1} other(s) ` : 'the tenant condition '}for ${CMD_NAME[cmd]} without requiring ${col} = the tenant setting: ${e}.`, perm.length > 1 ? `DROP POLICY ${quoteIdent(p.name)} ON ${qi(r)}; -- or make it AS RESTRICTIVE, or AND it with ${pred(r)}` : fixIt, extra);
            } else {
              push('policy-no-tenant-setting', 'policy', pname, `Policy ${p.name} on ${name} does not compare ${col} with current_setting('${opts.settingName}'): ${e}.`, fixIt, extra);
            }
          }
        }
      }
      for (const p of applicable) {
        const writes = p.cmd === '*' ? ['a', 'w'] : [p.cmd];
        if (p.permissive && p.check === null && p.cmd !== 'r' && p.cmd !== 'd' && !writes.every((c) => bound.has(c))) {
          push('policy-missing-with-check', 'policy', `${name}.${p.name}`, `Policy ${p.name} on ${name} (${CMD_NAME[p.cmd]}) has no WITH CHECK.`, `ALTER POLICY ${quoteIdent(p.name)} ON ${qi(r)} WITH CHECK (${pred(r)});`, {
            confirm: confirmPolicyChanged(r, p.name, p.qual, p.check),
            details: policyDetails(name, p),
          });
        }
        const calls = [...new Set([p.qual, p.check].flatMap((e) => analyzePolicyExpr(e, col, opts.settingName).perRowCalls))];
        if (calls.length > 0) {
          push('policy-per-row-call', 'policy', `${name}.${p.name}`, `Policy ${p.name} on ${name} calls ${calls.join(', ')} outside a sub-select (once per row).`, `ALTER POLICY ${quoteIdent(p.name)} ON ${qi(r)} USING (${pred(r)}) WITH CHECK (${pred(r)});`, {
            confirm: confirmPolicyChanged(r, p.name, p.qual, p.check),
            details: policyDetails(name, p),
          });
        }
      }
    }
  },
};
