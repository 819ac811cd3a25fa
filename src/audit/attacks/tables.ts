import { rule } from '../rules/define.ts';
import { qi, qn, rootOf } from '../tenant-set.ts';
import { quoteLiteral } from '../../schema/ddl.ts';
import { type AttackContext, type AttackFamily, type TableInfo, asApp, insertSql, referencing, tenantType, variant } from './context.ts';

/** Tenant tables, and the partitions the application may access directly. */
const targets = (ctx: AttackContext) => [...ctx.ts.all.values()].filter((r) => !r.isPartition || (r.app && (r.app.select || r.app.update || r.app.delete || r.app.insert)));

export const rowAttacks: AttackFamily = {
  name: 'rows',
  attacks: [
    rule('attack-read-cross-tenant', 'error', 'isolation', "Read another tenant's rows", 'With tenant A set, rows of tenant B were returned (plainly, or with row_security = off).'),
    rule('attack-update-cross-tenant', 'error', 'isolation', "Update another tenant's rows", 'With tenant A set, an UPDATE without WHERE changed rows of tenant B.'),
    rule('attack-delete-cross-tenant', 'error', 'isolation', "Delete another tenant's rows", 'With tenant A set, a DELETE without WHERE removed rows of tenant B.'),
    rule('attack-insert-cross-tenant', 'error', 'isolation', 'Insert a row for another tenant', 'With tenant A set, a row with tenant B was accepted.'),
    rule('attack-update-move-tenant', 'error', 'isolation', 'Move a row to another tenant', "With tenant A set, one of A's rows could be re-assigned to tenant B."),
  ],
  async run(ctx) {
    const { s, A, B, column, qcol, tries, found } = ctx;
    const list = targets(ctx);
    for (const [i, rel] of list.entries()) {
      ctx.progress({ phase: 'tables', done: i, total: list.length });
      const t = ctx.info.get(rel.oid) as TableInfo;
      const root = rootOf(rel, ctx.ts);
      const kind = rel.isPartition ? 'partition' : 'table';
      const name = qn(rel);
      const type = tenantType(t, column);
      const pair = ctx.rows.get(root.oid);
      await s.setTenant(A);
      const others = `SELECT count(*)::int AS n FROM ${qi(rel)} WHERE ${qcol} IS DISTINCT FROM $1::${type}`;
      const read = await tries(others, [A]);
      const readOff = await s.isolated(async () => {
        await s.raw('SET LOCAL row_security = off');
        return tries(others, [A]);
      });
      await s.setTenant(A);
      if ((read.ok && read.rows[0]?.n > 0) || (readOff.ok && readOff.rows[0]?.n > 0)) {
        ctx.readLeak.add(rel.oid);
        const n = read.ok && read.rows[0]?.n > 0 ? read.rows[0]?.n : readOff.rows[0]?.n;
        found('attack-read-cross-tenant', kind, name, `With tenant ${A} set, ${n} row(s) of other tenants were readable from ${name}${read.ok && read.rows[0]?.n > 0 ? '' : ' after SET row_security = off'}.`, `-- run tenantwall audit on ${name}: RLS enabled and forced, one tight policy, app role neither owner nor BYPASSRLS`, asApp(ctx, `SELECT count(*) = 0 AS fixed FROM ${qi(rel)} WHERE ${qcol} IS DISTINCT FROM ${quoteLiteral(A)}::${type}`), { table: name, rows: n });
      }
      // Writes fire the table's triggers: none where their effects would outlive the rollback.
      if (ctx.unsafeWrites.has(root.oid)) continue;
      const own = await tries(`SELECT count(*)::int AS n FROM ${qi(rel)}`);
      const ownCount = own.ok ? Number(own.rows[0]?.n ?? 0) : 0;
      // No WHERE clause: a WHERE that reads columns would bring in the SELECT policies and hide a weak UPDATE or
      // DELETE policy that a blind statement (the usual injection) still reaches. Setting the tenant column to A
      // leaves A's own rows unchanged, so any constraint error means another tenant's row was hit.
      const upd = await tries(`UPDATE ${qi(rel)} SET ${qcol} = $1::${type}`, [A]);
      if ((upd.ok && upd.rowCount > ownCount) || (!upd.ok && upd.code !== undefined && upd.code.startsWith('23'))) {
        found('attack-update-cross-tenant', kind, name, `With tenant ${A} set, UPDATE ${name} without WHERE reached ${upd.ok ? upd.rowCount - ownCount : 'some'} row(s) of other tenants${upd.ok ? '' : ` (then failed on ${upd.code})`}.`, `-- the UPDATE policy of ${name} must have USING (${column} = <tenant setting>)`, asApp(ctx, `WITH u AS (UPDATE ${qi(rel)} SET ${qcol} = ${qcol} RETURNING 1) SELECT (SELECT count(*) FROM u) = (SELECT count(*) FROM ${qi(rel)}) AS fixed`), { table: name });
      }
      // On a foreign key error, retry with A's rows in referencing tables deleted first: an error then can only come
      // from another tenant's row.
      let del = await tries(`DELETE FROM ${qi(rel)}`);
      if (!del.ok && del.code === '23503') {
        del = await s.isolated(async () => {
          for (const child of referencing(ctx, root.oid)) await tries(`DELETE FROM ${qi(child)}`, [], true);
          return tries(`DELETE FROM ${qi(rel)}`);
        });
      }
      if ((del.ok && del.rowCount > ownCount) || (!del.ok && del.code === '23503')) {
        found('attack-delete-cross-tenant', kind, name, `With tenant ${A} set, DELETE FROM ${name} reached ${del.ok ? del.rowCount - ownCount : 'some'} row(s) of other tenants.`, `-- the DELETE policy of ${name} must have USING (${column} = <tenant setting>)`, asApp(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = to_regclass(${quoteLiteral(qi(rel))}) AND p.polcmd IN ('d', '*') AND p.polpermissive AND pg_get_expr(p.polqual, p.polrelid) NOT LIKE '%' || ${quoteLiteral(column)} || '%') AS fixed`), { table: name });
      }
      if (!rel.isPartition) {
        const mv = await tries(`UPDATE ${qi(rel)} SET ${qcol} = $1::${type}`, [B]);
        if (ownCount > 0 && ((mv.ok && mv.rowCount > 0) || (mv.code !== undefined && mv.code.startsWith('23')))) {
          found('attack-update-move-tenant', kind, name, `With tenant ${A} set, rows of ${A} in ${name} could be re-assigned to ${B}.`, `-- the UPDATE policy of ${name} must have WITH CHECK (${column} = <tenant setting>)`, asApp(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = to_regclass(${quoteLiteral(qi(rel))}) AND p.polcmd IN ('w', '*') AND p.polpermissive AND coalesce(pg_get_expr(p.polwithcheck, p.polrelid), pg_get_expr(p.polqual, p.polrelid)) NOT LIKE '%' || ${quoteLiteral(column)} || '%') AS fixed`), { table: name });
        }
      }
      if (pair && !rel.isPartition) {
        const ins = insertSql(t, variant(t, pair.b, column, B), false);
        const r = await tries(ins.sql, ins.params);
        if (r.ok || (r.code !== undefined && r.code.startsWith('23'))) {
          found('attack-insert-cross-tenant', kind, name, `With tenant ${A} set, a row with ${column} = ${B} was accepted by ${name}${r.ok ? '' : ` (RLS passed; it then failed on ${r.code})`}.`, `-- the INSERT policy of ${name} must have WITH CHECK (${column} = <tenant setting>)`, asApp(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = to_regclass(${quoteLiteral(qi(rel))}) AND p.polcmd IN ('a', '*') AND p.polpermissive AND coalesce(pg_get_expr(p.polwithcheck, p.polrelid), pg_get_expr(p.polqual, p.polrelid)) NOT LIKE '%' || ${quoteLiteral(column)} || '%') AS fixed`), { table: name, tenant: B });
        }
      }
    }
  },
};

export const privilegeAttacks: AttackFamily = {
  name: 'privileges',
  attacks: [
    rule('attack-truncate', 'error', 'isolation', 'TRUNCATE a tenant table', 'The application role emptied the table for all tenants (rolled back).'),
    rule('attack-trigger', 'error', 'isolation', 'Create a trigger on a tenant table', "The application role attached a trigger, which would see every tenant's writes."),
    rule('attack-ddl', 'error', 'isolation', 'Disable the policies', "The application role could alter the table's row-level security (it owns the table or can act as its owner)."),
  ],
  async run(ctx) {
    const { s, tries, found } = ctx;
    // Privilege checks happen before locks are taken, so a refused attempt never blocks other sessions; a
    // permitted one waits at most 50 ms for its lock (a lock timeout then proves the permission).
    const ddlTry = (sql: string) =>
      s.isolated(async () => {
        await s.raw(`SET LOCAL lock_timeout = '50ms'`);
        return tries(sql);
      });
    const permitted = (r: { ok: boolean; code: string | undefined }) => r.ok || (r.code !== undefined && r.code !== '42501');
    const list = targets(ctx);
    for (const [i, rel] of list.entries()) {
      ctx.progress({ phase: 'privileges', done: i, total: list.length });
      const kind = rel.isPartition ? 'partition' : 'table';
      const name = qn(rel);
      const ddl = await ddlTry(`ALTER TABLE ${qi(rel)} NO FORCE ROW LEVEL SECURITY`);
      if (permitted(ddl)) {
        // TRUNCATE and triggers follow from ownership: reported once, as the cause.
        found('attack-ddl', kind, name, `The application role could ALTER TABLE ${name} (it can turn its row-level security off; TRUNCATE and triggers follow).`, `ALTER TABLE ${qi(rel)} OWNER TO <migration owner>; -- and REVOKE the owner role from the application role`, asApp(ctx, `SELECT NOT pg_has_role(current_user, (SELECT relowner FROM pg_class WHERE oid = to_regclass(${quoteLiteral(qi(rel))})), 'USAGE') AS fixed`), { table: name });
        continue;
      }
      const tr = await ddlTry(`TRUNCATE ${qi(rel)}`);
      if (permitted(tr)) found('attack-truncate', kind, name, `The application role could TRUNCATE ${name}${tr.ok ? '' : ` (permitted; stopped by ${tr.code})`}.`, `REVOKE TRUNCATE ON ${qi(rel)} FROM <app role>;`, asApp(ctx, `SELECT NOT has_table_privilege(${quoteLiteral(qi(rel))}, 'TRUNCATE') AS fixed`), { table: name });
      const trig = await ddlTry(`CREATE TRIGGER tw_verify_probe BEFORE UPDATE ON ${qi(rel)} FOR EACH ROW EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()`);
      if (permitted(trig)) found('attack-trigger', kind, name, `The application role could create a trigger on ${name}.`, `REVOKE TRIGGER ON ${qi(rel)} FROM <app role>;`, asApp(ctx, `SELECT NOT has_table_privilege(${quoteLiteral(qi(rel))}, 'TRIGGER') AS fixed`), { table: name });
    }
  },
};
