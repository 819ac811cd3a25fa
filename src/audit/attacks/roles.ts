import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import { rule } from '../rules/define.ts';
import { qi, qn } from '../tenant-set.ts';
import { type AttackFamily, type TableInfo, asApp, tenantType } from './context.ts';

/** SET ROLE to the owners and the roles the application role belongs to. */
export const roleAttacks: AttackFamily = {
  name: 'roles',
  attacks: [
    rule('attack-set-role', 'error', 'isolation', 'Escape through SET ROLE', "The application role switched to another role and read tenant B's rows (directly, or after turning the table's RLS off as that role)."),
  ],
  async run(ctx) {
    const { s, A, column, tries } = ctx;
    for (const [i, role] of ctx.roles.entries()) {
      ctx.progress({ phase: 'roles', done: i, total: ctx.roles.length });
      const leaked = await s.isolated(async () => {
        const set = await tries(`SET LOCAL ROLE ${quoteIdent(role)}`, [], true);
        if (!set.ok) return [];
        await s.raw(`SET LOCAL lock_timeout = '50ms'`);
        await s.setTenant(A);
        const hits: string[] = [];
        for (const rel of ctx.ts.tables) {
          if (ctx.readLeak.has(rel.oid)) continue;
          const q = `SELECT count(*)::int AS n FROM ${qi(rel)} WHERE ${quoteIdent(column)} IS DISTINCT FROM $1::${tenantType(ctx.info.get(rel.oid) as TableInfo, column)}`;
          let r = await tries(q, [A]);
          if (!(r.ok && r.rows[0]?.n > 0)) {
            r = await s.isolated(async () => {
              await tries(`ALTER TABLE ${qi(rel)} NO FORCE ROW LEVEL SECURITY`, [], true);
              await tries(`ALTER TABLE ${qi(rel)} DISABLE ROW LEVEL SECURITY`, [], true);
              return tries(q, [A]);
            });
          }
          if (r.ok && r.rows[0]?.n > 0) hits.push(qn(rel));
        }
        return hits;
      });
      if (leaked.length > 0) {
        ctx.found('attack-set-role', 'role', role, `The application role could SET ROLE ${role} and then read other tenants' rows of ${leaked.slice(0, 5).join(', ')}${leaked.length > 5 ? ', ...' : ''}.`, `REVOKE ${quoteIdent(role)} FROM <app role>;`, asApp(ctx, `SELECT NOT pg_has_role(current_user, ${quoteLiteral(role)}, 'MEMBER') AS fixed`), { role, tables: leaked });
      }
    }
  },
};
