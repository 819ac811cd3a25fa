import type { Relation } from '../catalog.ts';
import { groupBy, rootOf } from '../tenant-set.ts';
import { type AttackContext, insertSql, variant } from './context.ts';

/** Tenant tables (root oids) a view reads, through any chain of views. */
export function viewTenantDeps(ctx: AttackContext): (oid: number) => number[] {
  const depsOf = groupBy(ctx.cat.viewDeps, (d) => d.view);
  const walk = (oid: number, seen: Set<number>): number[] => {
    if (seen.has(oid)) return [];
    seen.add(oid);
    return (depsOf.get(oid) ?? []).flatMap(({ ref }) => (ctx.ts.all.has(ref) ? [rootOf(ctx.ts.all.get(ref) as Relation, ctx.ts).oid] : walk(ref, seen)));
  };
  return (oid) => [...new Set(walk(oid, new Set()))];
}

/** Adds one more row for tenant B to each table; false when none could be added. */
async function growB(ctx: AttackContext, tableOids: readonly number[]): Promise<boolean> {
  let any = false;
  await ctx.s.setTenant(ctx.B);
  for (const oid of new Set(tableOids)) {
    const t = ctx.info.get(oid);
    const pair = ctx.rows.get(oid);
    if (!t || !pair || ctx.unsafeWrites.has(oid)) continue;
    const ins = insertSql(t, variant(t, pair.b, ctx.column, ctx.B), false);
    const r = await ctx.tries(ins.sql, ins.params, true);
    any ||= r.ok;
  }
  await ctx.s.setTenant(ctx.A);
  return any;
}

/** Hash of every row `from` returns (a relation or a function call), as one value `h`. */
export const hashOf = (from: string) => `SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) AS h FROM ${from} x`;

/**
 * Does what tenant A sees through `query` (a `hashOf` query) change when only tenant B's rows in `deps` change?
 * False when the query is not stable on its own.
 */
export async function differential(ctx: AttackContext, query: string, deps: readonly number[]): Promise<boolean> {
  await ctx.s.setTenant(ctx.A);
  const r1 = await ctx.tries(query);
  const r2 = await ctx.tries(query);
  if (!r1.ok || !r2.ok || r1.rows[0]?.h !== r2.rows[0]?.h) return false;
  return ctx.s.isolated(async () => {
    if (!(await growB(ctx, deps))) return false;
    const r3 = await ctx.tries(query);
    return r3.ok && r3.rows[0]?.h !== r1.rows[0]?.h;
  });
}
