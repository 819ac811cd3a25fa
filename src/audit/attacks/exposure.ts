import { quoteLiteral } from '../../schema/ddl.ts';
import { appAccess, classifyRelations } from '../exposure.ts';
import { rule } from '../rules/define.ts';
import { qi, qn } from '../tenant-set.ts';
import type { ObjectKind } from '../types.ts';
import { type AttackFamily, asApp } from './context.ts';
import { viewTenantDeps } from './differential.ts';

const KIND: Record<string, ObjectKind> = { r: 'table', p: 'table', v: 'view', m: 'materialized-view', f: 'foreign-table' };

/**
 * Relations outside the tenant set that the application role can read: with no tenant set, a tenant-owned one
 * (foreign key to a tenant table, a column like owner_tenant_id) must show nothing; an unknown one that shows
 * rows is reported as a warning (nothing says whose rows they are).
 */
export const exposureAttacks: AttackFamily = {
  name: 'exposure',
  attacks: [
    rule('attack-exposure-read', 'error', 'isolation', 'Read tenant data outside the tenant tables', 'With no tenant set, the application role read rows of a relation that holds tenant data without the tenant column (error), or of a relation nothing classifies (warning).'),
  ],
  async run(ctx) {
    const tenantDeps = viewTenantDeps(ctx);
    const classes = classifyRelations(ctx.cat, ctx.ts, ctx.opts);
    await ctx.s.setTenant(null);
    for (const c of classes.values()) {
      const r = c.rel;
      if (ctx.ts.all.has(r.oid) || c.cls === 'global' || r.kind === 'S' || !appAccess(r).some((a) => a === 'select' || a === 'owner')) continue;
      // Views over tenant tables are the view attacks' job.
      if ((r.kind === 'v' || r.kind === 'm') && tenantDeps(r.oid).length > 0) continue;
      const got = await ctx.tries(`SELECT count(*)::int AS n FROM ${qi(r)}`);
      ctx.covered.set(r.oid, got.ok ? 'attacked' : `not readable (${got.code ?? got.message})`);
      const n = got.ok ? Number(got.rows[0]?.n ?? 0) : 0;
      if (n === 0) continue;
      const tenant = c.cls === 'tenant';
      ctx.found(
        'attack-exposure-read',
        KIND[r.kind] ?? 'table',
        qn(r),
        `With no tenant set, ${n} row(s) of ${qn(r)} were readable; ${tenant ? `it holds tenant data (${c.reason})` : 'nothing classifies it as tenant or global data'}.`,
        tenant ? `-- add the tenant column and the tenant policy to ${qn(r)}, or REVOKE SELECT ON ${qi(r)} FROM <app role>;` : `-- declare ${qn(r)} global (--global-tables) if its rows are shared by all tenants; otherwise isolate it or REVOKE SELECT ON ${qi(r)} FROM <app role>;`,
        asApp(ctx, `SELECT set_config(${quoteLiteral(ctx.setting)}, '', true); SELECT NOT has_table_privilege(${quoteLiteral(qi(r))}, 'SELECT') OR (SELECT count(*) = 0 FROM ${qi(r)}) AS fixed`),
        { relation: qn(r), class: c.cls, reason: c.reason, rows: n },
        tenant ? undefined : 'warn',
      );
    }
  },
};
