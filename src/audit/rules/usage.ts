import { type RuleFamily, rule } from './define.ts';

/**
 * Cross-tenant access in use, not in the catalog: the plain cross-tenant handle in the project's source (static)
 * and all-tenant break-glass grants in the access log (dynamic, src/access). runAudit produces these findings;
 * the family only registers the rules (docs/audit.md documents them).
 */
export const usageRules: RuleFamily = {
  name: 'cross-tenant access in use',
  rules: [
    rule('cross-tenant-handle-in-source', 'warn', 'isolation', 'Plain cross-tenant handle used outside migrations and lifecycle code', "dangerouslyCrossTenant() reads and writes every tenant with no record of who looked or why; outside migrations and lifecycle code a person's access belongs in dangerouslyBreakGlass (logged, scoped, expiring)."),
    rule('break-glass-all-tenants', 'warn', 'isolation', 'All-tenant break-glass access in the access log', 'A break-glass grant for every tenant at once ran statements recently; each is logged with actor and reason, and each should be reviewed: most support work needs one tenant.'),
  ],
  evaluate() {
    // Findings come from the source scan and the access log (runAudit), not from the catalog snapshot.
  },
};
