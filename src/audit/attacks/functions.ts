import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import { functionReach } from '../functions.ts';
import { rule } from '../rules/define.ts';
import { qi, qn, rootOf } from '../tenant-set.ts';
import { type AttackFamily, type TableInfo, asApp } from './context.ts';
import { differential, hashOf } from './differential.ts';

const TEXT = new Set(['text', 'character varying', 'name', 'regclass']);

/** Functions the application may call: does the result follow tenant B's data? */
export const functionAttacks: AttackFamily = {
  name: 'functions',
  attacks: [
    rule('attack-function-read', 'error', 'isolation', "Read another tenant's rows through a function", "A function the application can call returned a result that depends on tenant B's data while tenant A was set."),
    rule('attack-function-dynamic-read', 'error', 'isolation', "Read another tenant's rows through dynamic SQL", "A SECURITY DEFINER function running dynamic SQL, called with a tenant table's name, returned a result that depends on tenant B's data while tenant A was set."),
    rule('attack-leakproof', 'error', 'isolation', 'Another tenant\'s values printed by a LEAKPROOF function', "Used in a WHERE clause, a function marked LEAKPROOF ran on tenant B's rows before the policy filtered them, and its message showed B's values to tenant A."),
  ],
  async run(ctx) {
    const { A, B, tries } = ctx;
    const byName = new Map([...ctx.ts.all.values()].map((r) => [qn(r), rootOf(r, ctx.ts).oid]));
    const allTables = ctx.ts.tables.filter((t) => ctx.rows.has(t.oid));
    for (const f of functionReach(ctx.cat, ctx.ts)) {
      const fn = f.fn;
      if (fn.appExecute === false || fn.kind !== 'f' || fn.returnsTrigger) continue;
      // Calling it would leave a trace the rollback cannot remove (a sequence advanced, dblink work): skipped, noted.
      if (ctx.unsafeFunctions.has(fn.oid)) continue;
      const sig = `${quoteIdent(fn.schema)}.${quoteIdent(fn.name)}`;
      const obj = `${fn.schema}.${fn.name}(${fn.args})`;
      const details = { function: obj, signature: fn.regprocedure, owner: fn.owner, securityDefiner: fn.securityDefiner };
      const confirm = asApp(ctx, `SELECT coalesce((SELECT NOT p.prosecdef OR NOT has_function_privilege(p.oid, 'EXECUTE') FROM pg_proc p WHERE p.oid = to_regprocedure(${quoteLiteral(fn.regprocedure)})), true) AS fixed`);
      if (fn.leakproof && fn.nargs === 1) await leakproof(fn.regprocedure, fn.argTypes[0] ?? '', obj);
      if (f.body.dynamic && fn.securityDefiner && fn.nargs >= 1 && fn.argTypes.slice(0, fn.nargs - fn.nargDefaults).every((t) => TEXT.has(t)) && fn.nargs - fn.nargDefaults === 1) {
        // The usual shape: f(table_name text) running EXECUTE format('... FROM %I', table_name).
        for (const t of allTables) {
          if (ctx.readLeak.has(t.oid)) continue;
          const hit = await differential(ctx, hashOf(`${sig}(${quoteLiteral(t.name)})`), [t.oid]);
          if (hit) {
            ctx.found('attack-function-dynamic-read', 'function', obj, `${obj} called with '${t.name}' returned a result that changed when only tenant ${B}'s rows of ${qn(t)} changed, while tenant ${A} was set.`, `ALTER FUNCTION ${sig}(${fn.args}) SECURITY INVOKER; -- or REVOKE EXECUTE from the application role`, confirm, { ...details, table: qn(t) });
            break;
          }
        }
        continue;
      }
      const deps = f.tables.map((n) => byName.get(n)).filter((x): x is number => x !== undefined);
      if (fn.nargs > fn.nargDefaults) {
        if (deps.length > 0 || f.body.dynamic) ctx.notes.push(`${obj} ${deps.length > 0 ? `reads ${f.tables.join(', ')}` : 'runs dynamic SQL'} but was not called: it has arguments without defaults (tenantwall audit still checks it)`);
        continue;
      }
      // A dynamic body may read any tenant table: grow them all.
      const reach = f.body.dynamic && fn.securityDefiner ? allTables.map((t) => t.oid) : deps;
      if (reach.length === 0 || reach.some((d) => ctx.readLeak.has(d))) continue;
      if (await differential(ctx, hashOf(`${sig}()`), reach)) {
        ctx.found(f.body.dynamic && deps.length === 0 ? 'attack-function-dynamic-read' : 'attack-function-read', 'function', obj, `${obj} returned a result that changed when only tenant ${B}'s data changed, while tenant ${A} was set.`, `ALTER FUNCTION ${sig}(${fn.args}) SECURITY INVOKER;`, confirm, details);
      }
    }

    /** WHERE fn(column) on each tenant table with a column of the argument's type: do B's values show up in messages? */
    async function leakproof(regprocedure: string, argType: string, obj: string) {
      await ctx.s.setTenant(A);
      for (const t of ctx.ts.tables) {
        const pair = ctx.rows.get(t.oid);
        const info = ctx.info.get(t.oid) as TableInfo;
        if (!pair || ctx.readLeak.has(t.oid)) continue;
        for (const c of info.columns.filter((x) => x.type === argType && x.name !== ctx.column)) {
          const secret = pair.b[c.name];
          if (secret === null || secret === undefined || secret === pair.a[c.name]) continue;
          // The application role chooses the plan: a scan that filters rows (not an index that skips them).
          const r = await ctx.s.isolated(async () => {
            await ctx.s.raw('SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_indexonlyscan = off');
            return tries(`SELECT count(*) FROM ${qi(t)} WHERE ${regprocedure.replace(/\(.*$/, '')}(${quoteIdent(c.name)})`);
          });
          const seen = [...ctx.s.notices, r.message, r.detail].some((m) => m.includes(secret));
          if (seen) {
            ctx.found('attack-leakproof', 'function', obj, `As tenant ${A}, WHERE ${obj}(${c.name}) on ${qn(t)} printed tenant ${B}'s value of ${c.name}: the function ran before the policy filtered the row.`, `ALTER FUNCTION ${regprocedure} NOT LEAKPROOF;`, asApp(ctx, `SELECT coalesce((SELECT NOT proleakproof FROM pg_proc WHERE oid = to_regprocedure(${quoteLiteral(regprocedure)})), true) AS fixed`), { function: obj, table: qn(t), column: c.name });
            return;
          }
        }
      }
    }
  },
};
