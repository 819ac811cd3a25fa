import { quoteLiteral } from '../../schema/ddl.ts';
import { type RuleFamily, rule } from './define.ts';

export const configurationRules: RuleFamily = {
  name: 'configuration',
  rules: [
    rule('no-tenant-tables', 'info', 'hygiene', 'No tenant table found', 'Nothing has the tenant column, so nothing was checked: the column name or table list is probably wrong.'),
    rule('tenant-table-not-found', 'error', 'isolation', 'Listed tenant table does not exist', 'A table named in the tenant table list is missing, so its isolation cannot be checked.'),
    rule('tenant-column-missing', 'error', 'isolation', 'Listed tenant table has no tenant column', 'Rows without a tenant column cannot be isolated by a tenant policy.'),
  ],
  evaluate({ cat, opts, ts, col, push }) {
    const hasColumn = (table: string) =>
      `SELECT coalesce((SELECT EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(${quoteLiteral(table)}) AND a.attname = ${quoteLiteral(col)} AND NOT a.attisdropped)), false) AS fixed`;
    for (const p of ts.configProblems) {
      push(p.ruleId, p.kind, p.object, p.message, p.fix, {
        confirm: p.ruleId === 'tenant-table-not-found' ? `SELECT to_regclass(${quoteLiteral(p.object)}) IS NOT NULL AS fixed` : hasColumn(p.object),
        details: { table: p.object, tenantColumn: col },
      });
    }
    if (ts.all.size === 0 && !opts.tables) {
      push('no-tenant-tables', 'database', cat.database, `No table in ${cat.database} has a column named ${col}.`, `-- pass --tenant-column or --tables`, {
        confirm: `SELECT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid WHERE c.relkind IN ('r', 'p') AND a.attname = ${quoteLiteral(col)} AND NOT a.attisdropped) AS fixed`,
        details: { tenantColumn: col },
      });
    }
  },
};
