import { quoteLiteral } from '../../schema/ddl.ts';
import { rule } from '../rules/define.ts';
import { qi, qn } from '../tenant-set.ts';
import { type AttackFamily, asApp } from './context.ts';

/** RESET (back to the session/role default) and an empty value must show nothing. */
export const settingAttacks: AttackFamily = {
  name: 'setting',
  attacks: [rule('attack-no-tenant-setting', 'error', 'isolation', 'Read with no tenant set', 'With no tenant set (fresh transaction, RESET, or empty value) rows were returned instead of none.')],
  async run(ctx) {
    const { s, A, column, tries } = ctx;
    ctx.progress({ phase: 'setting', done: 0, total: 1 });
    for (const rel of ctx.ts.tables) {
      if (ctx.readLeak.has(rel.oid)) continue;
      const variants: string[] = [];
      await s.setTenant(A);
      const reset = await s
        .isolated(async () => {
          await s.resetTenant();
          return tries(`SELECT count(*)::int AS n FROM ${qi(rel)}`);
        })
        .catch(() => undefined);
      if (reset?.ok && reset.rows[0]?.n > 0) variants.push(`after RESET: ${reset.rows[0]?.n} row(s)`);
      await s.setTenant(null);
      const empty = await tries(`SELECT count(*)::int AS n FROM ${qi(rel)}`);
      if (empty.ok && empty.rows[0]?.n > 0) variants.push(`with an empty value: ${empty.rows[0]?.n} row(s)`);
      if (variants.length > 0) {
        ctx.found('attack-no-tenant-setting', 'table', qn(rel), `With no tenant set, ${qn(rel)} returned rows (${variants.join('; ')}).`, `-- remove role/database defaults of the tenant setting (tenantwall audit: setting-*-default) and make the policy fail closed: ${column} = (SELECT nullif(current_setting('<setting>', true), '')::<type>)`, asApp(ctx, `SELECT set_config(${quoteLiteral(ctx.setting)}, '', true); SELECT count(*) = 0 AS fixed FROM ${qi(rel)}`), { table: qn(rel), variants });
      }
    }
  },
};
