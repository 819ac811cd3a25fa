import { type RuleFamily, rule } from './define.ts';

export const configurationRules: RuleFamily = {
  name: 'configuration',
  rules: [
    rule('no-tenant-tables', 'info', 'No tenant table found', 'Nothing has the tenant column, so nothing was checked: the column name or table list is probably wrong.'),
    rule('tenant-table-not-found', 'error', 'Listed tenant table does not exist', 'A table named in the tenant table list is missing, so its isolation cannot be checked.'),
    rule('tenant-column-missing', 'error', 'Listed tenant table has no tenant column', 'Rows without a tenant column cannot be isolated by a tenant policy.'),
  ],
  evaluate({ cat, opts, ts, col, push }) {
    for (const p of ts.configProblems) push(p.ruleId, p.kind, p.object, p.message, p.fix);
    if (ts.all.size === 0 && !opts.tables) {
      push('no-tenant-tables', 'database', cat.database, `No table in ${cat.database} has a column named ${col}.`, `-- pass --tenant-column or --tables`);
    }
  },
};
