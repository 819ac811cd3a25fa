import type { Relation } from '../catalog.ts';
import { qi, qn } from '../tenant-set.ts';
import { type AttackContext, type RowValues, type TableInfo, freshValue, insertSql, selectList, tenantType, variant } from './context.ts';

/** FK order: a table's referenced tenant tables come first, so their rows exist when its rows are made. */
function fkOrder(tables: readonly Relation[], info: ReadonlyMap<number, TableInfo>): Relation[] {
  const out: Relation[] = [];
  const state = new Map<number, number>();
  const visit = (r: Relation) => {
    if (state.get(r.oid) !== undefined) return;
    state.set(r.oid, 1);
    for (const fk of info.get(r.oid)?.fks ?? []) {
      const t = tables.find((x) => x.oid === fk.target);
      if (t && t.oid !== r.oid) visit(t);
    }
    state.set(r.oid, 2);
    out.push(r);
  };
  for (const t of tables) visit(t);
  return out;
}

/**
 * Rows of both tenants in every tenant table: picked when visible, made (in the rolled-back transaction)
 * otherwise. Fills `ctx.rows`; a table without rows for both is named in the notes.
 */
export async function prepareRows(ctx: AttackContext): Promise<void> {
  const { s, A, B, column, qcol, info, rows, tries } = ctx;
  const roots = fkOrder(ctx.ts.tables, info);
  for (const [i, rel] of roots.entries()) {
    ctx.progress({ phase: 'rows', done: i, total: roots.length });
    const t = info.get(rel.oid) as TableInfo;
    const got: Partial<Record<'a' | 'b', RowValues>> = {};
    for (const [k, tenant] of [['a', A], ['b', B]] as const) {
      await s.setTenant(tenant);
      const seen = await tries(`SELECT ${selectList(t)} FROM ${qi(rel)} WHERE ${qcol} = $1::${tenantType(t, column)} LIMIT 1`, [tenant]);
      if (seen.ok && seen.rows[0]) got[k] = seen.rows[0] as RowValues;
    }
    for (const [k, other, tenant] of [['a', 'b', A], ['b', 'a', B]] as const) {
      if (got[k]) continue;
      if (ctx.unsafeWrites.has(rel.oid)) {
        ctx.notes.push(`${qn(rel)}: no row of tenant ${tenant} to pick, and none made (its triggers have effects a rollback does not undo); row-based attacks skipped`);
        continue;
      }
      await s.setTenant(tenant);
      // The other tenant's row satisfies the table's checks: copy it, re-pointed at this tenant's parents.
      const model = got[other];
      const candidates: RowValues[] = [];
      if (model) candidates.push(variant(t, model, column, tenant));
      for (const style of [0, 1, 2]) {
        const values: RowValues = { [column]: tenant };
        for (const c of t.columns) {
          if (c.generated || c.name === column || t.fks.some((f) => f.columns.includes(c.name))) continue;
          if (c.identity !== '' || c.sequenceDefault) values[c.name] = freshValue(c.type, style);
          else if (c.hasDefault || !c.notNull) continue;
          else values[c.name] = freshValue(c.type, style);
        }
        candidates.push(values);
      }
      let lastError = '';
      for (const values of candidates) {
        for (const fk of t.fks) {
          const ref = rows.get(fk.target)?.[k];
          fk.columns.forEach((c, idx) => {
            if (c === column) return;
            const col = t.columns.find((x) => x.name === c);
            values[c] = ref ? (ref[fk.targetColumns[idx] ?? ''] ?? null) : col?.notNull ? freshValue(col.type) : null;
          });
        }
        const ins = insertSql(t, values, true);
        const made = await tries(ins.sql, ins.params, true);
        if (made.ok && made.rows[0]) {
          got[k] = made.rows[0] as RowValues;
          break;
        }
        lastError = made.message;
      }
      if (!got[k]) ctx.notes.push(`${qn(rel)}: could not pick or make a row for tenant ${tenant} (${lastError || 'not visible'}); row-based attacks skipped`);
    }
    if (got.a && got.b) rows.set(rel.oid, { a: got.a, b: got.b });
  }
}
