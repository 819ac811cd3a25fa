import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import { rule } from '../rules/define.ts';
import { qi, qn } from '../tenant-set.ts';
import { type AttackFamily, type TableInfo, asApp, freshValue, insertSql, variant } from './context.ts';

/** Existence probes: unique keys and foreign keys answer for rows RLS hides. */
export const probeAttacks: AttackFamily = {
  name: 'probes',
  attacks: [
    rule('attack-unique-probe', 'error', 'isolation', 'Existence leak through a unique constraint', "Inserting tenant B's key as tenant A raised a duplicate-key error: A learns that B has that value."),
    rule('attack-fk-probe', 'error', 'isolation', 'Existence leak through a foreign key', "As tenant A, a row referencing tenant B's row was accepted while a random key was refused."),
  ],
  async run(ctx) {
    const { s, A, B, column, tries, found } = ctx;
    ctx.progress({ phase: 'probes', done: 0, total: 1 });
    for (const rel of ctx.ts.tables) {
      const t = ctx.info.get(rel.oid) as TableInfo;
      const pair = ctx.rows.get(rel.oid);
      if (!pair || ctx.unsafeWrites.has(rel.oid)) continue;
      await s.setTenant(A);
      for (const u of t.uniques) {
        const ins = insertSql(t, variant(t, pair.b, column, A, u.columns), false);
        const r = await tries(ins.sql, ins.params);
        if (!r.ok && r.code === '23505' && r.constraint === u.name) {
          // Not a leak when the colliding row is tenant A's own.
          const cols = u.columns.filter((c) => c !== column);
          const mine = cols.length === 0 ? undefined : await tries(`SELECT 1 FROM ${qi(rel)} WHERE ${cols.map((c, i) => `${quoteIdent(c)}::text = $${i + 1}`).join(' AND ')}`, cols.map((c) => pair.b[c]));
          if (!mine?.ok || mine.rows.length === 0) {
            found('attack-unique-probe', 'constraint', `${qn(rel)}.${u.name}`, `As tenant ${A}, inserting tenant ${B}'s value of (${u.columns.join(', ')}) failed on ${u.name}: A learns that B has it.`, `-- lead ${u.name} with ${column}: UNIQUE (${[column, ...u.columns.filter((c) => c !== column)].join(', ')})`, asApp(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = to_regclass(${quoteLiteral(qi(rel))}) AND ic.relname = ${quoteLiteral(u.name)} AND i.indkey[0] <> (SELECT attnum FROM pg_attribute WHERE attrelid = i.indrelid AND attname = ${quoteLiteral(column)})) AS fixed`), { table: qn(rel), constraint: u.name, columns: u.columns });
          }
        }
      }
      for (const fk of t.fks) {
        const target = ctx.rows.get(fk.target);
        if (!target) continue;
        const probeRow = variant(t, pair.a, column, A);
        const controlRow = variant(t, pair.a, column, A);
        fk.columns.forEach((c, i) => {
          const tc = fk.targetColumns[i] ?? '';
          probeRow[c] = c === column ? A : (target.b[tc] ?? null);
          const col = t.columns.find((x) => x.name === c);
          controlRow[c] = c === column ? A : col ? freshValue(col.type) : null;
        });
        const probe = insertSql(t, probeRow, false);
        const control = insertSql(t, controlRow, false);
        const p = await tries(probe.sql, probe.params);
        const c = await tries(control.sql, control.params);
        if ((p.ok || p.code !== '23503') && !c.ok && c.code === '23503') {
          found('attack-fk-probe', 'constraint', `${qn(rel)}.${fk.name}`, `As tenant ${A}, a row of ${qn(rel)} referencing tenant ${B}'s row was ${p.ok ? 'accepted' : `past the foreign key (${p.code})`}, while a random key was refused: A learns which keys B has.`, `-- include ${column} in ${fk.name}: FOREIGN KEY (${column}, ${fk.columns.filter((x) => x !== column).join(', ')})`, asApp(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conrelid = to_regclass(${quoteLiteral(qi(rel))}) AND k.conname = ${quoteLiteral(fk.name)} AND NOT (SELECT attnum FROM pg_attribute WHERE attrelid = k.conrelid AND attname = ${quoteLiteral(column)}) = ANY (k.conkey)) AS fixed`), { table: qn(rel), constraint: fk.name, columns: fk.columns });
        }
      }
    }
  },
};
