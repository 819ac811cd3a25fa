import { rule } from '../rules/define.ts';
import { qi, qn } from '../tenant-set.ts';
import { quoteLiteral } from '../../schema/ddl.ts';
import { type AttackFamily, asApp } from './context.ts';
import { differential, hashOf, viewTenantDeps } from './differential.ts';

/** Views and materialized views: does what A sees change when only B's data changes? */
export const viewAttacks: AttackFamily = {
  name: 'views',
  attacks: [rule('attack-view-read', 'error', 'isolation', "Read another tenant's rows through a view", "A view showed tenant B's data to tenant A.")],
  async run(ctx) {
    const { s, A, B, qcol, tries } = ctx;
    ctx.progress({ phase: 'views-functions', done: 0, total: 1 });
    const tenantDeps = viewTenantDeps(ctx);
    for (const v of ctx.cat.relations) {
      if ((v.kind !== 'v' && v.kind !== 'm') || !v.app?.select) continue;
      const deps = tenantDeps(v.oid);
      if (deps.length === 0 || deps.some((d) => ctx.readLeak.has(d))) continue;
      let leak = v.tenantAttnum !== null && ((await tries(`SELECT count(*)::int AS n FROM ${qi(v)} WHERE ${qcol} IS DISTINCT FROM $1::${v.tenantType ?? 'uuid'}`, [A])).rows[0]?.n ?? 0) > 0;
      if (!leak && v.kind === 'm') {
        await s.setTenant(null);
        leak = ((await tries(`SELECT count(*)::int AS n FROM ${qi(v)}`)).rows[0]?.n ?? 0) > 0;
      }
      if (!leak) leak = await differential(ctx, hashOf(qi(v)), deps);
      if (leak) {
        ctx.found('attack-view-read', v.kind === 'v' ? 'view' : 'materialized-view', qn(v), `Through ${qn(v)}, tenant ${A} saw data of tenant ${B}.`, v.kind === 'v' ? `ALTER VIEW ${qi(v)} SET (security_invoker = true);` : `REVOKE SELECT ON ${qi(v)} FROM <app role>;`, asApp(ctx, `SELECT NOT has_table_privilege(${quoteLiteral(qi(v))}, 'SELECT') OR coalesce((SELECT 'security_invoker=true' = ANY (reloptions) FROM pg_class WHERE oid = to_regclass(${quoteLiteral(qi(v))})), false) AS fixed`), { view: qn(v) });
      }
    }
  },
};
