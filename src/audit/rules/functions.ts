import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import { confirmFunction } from '../confirm.ts';
import { functionReach } from '../functions.ts';
import { qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const functionRules: RuleFamily = {
  name: 'functions',
  rules: [
    rule('function-definer-reads-tenant', 'error', 'isolation', 'SECURITY DEFINER function reads tenant tables', "It runs with its owner's rights, so RLS is bypassed when the owner is superuser, BYPASSRLS or the exempt table owner; inside it even a security_invoker view is read as the owner."),
    rule('function-definer-dynamic-sql', 'error', 'isolation', 'SECURITY DEFINER function runs dynamic SQL', "EXECUTE of a computed string (or query_to_xml, dblink...) runs whatever SQL the string holds with the owner's rights: any table, every tenant, invisible to a search of the body for table names."),
    rule('function-definer-trigger-writes', 'error', 'isolation', 'SECURITY DEFINER trigger function on a tenant table writes another table', "Fired by the application's writes, it writes the other table with its owner's rights, outside that table's row-level security: what tenant it writes for is up to the function, not the policies."),
    rule('function-definer-search-path', 'warn', 'hygiene', 'SECURITY DEFINER function with a mutable search_path', "A caller can put objects earlier on the search_path and have them run with the owner's rights."),
    rule('function-leakproof', 'error', 'isolation', 'User-defined LEAKPROOF function', 'PostgreSQL runs LEAKPROOF functions before the row-level security filter; one that is not really leak-proof (it raises, logs or returns its arguments) shows values of rows the policy hides.'),
  ],
  evaluate({ cat, ts, opts, push }) {
    const role = quoteLiteral(opts.appRole);
    const triggersOf = new Map<number, { rel: number; name: string }[]>();
    for (const t of cat.triggers) triggersOf.set(t.fn, [...(triggersOf.get(t.fn) ?? []), t]);
    for (const f of functionReach(cat, ts)) {
      const fn = f.fn;
      const sig = `${quoteIdent(fn.schema)}.${quoteIdent(fn.name)}(${fn.args})`;
      const obj = `${fn.schema}.${fn.name}(${fn.args})`;
      const details = { function: obj, signature: fn.regprocedure, owner: fn.owner, language: fn.language, securityDefiner: fn.securityDefiner, appExecute: fn.appExecute };
      const definerOff = confirmFunction(fn.regprocedure, `NOT p.prosecdef OR NOT has_function_privilege(${role}, p.oid, 'EXECUTE')`);
      if (fn.leakproof) {
        push('function-leakproof', 'function', obj, `${obj} is marked LEAKPROOF${fn.appExecute === false ? ` (${opts.appRole} cannot call it, but the planner still runs it before RLS filters in queries that use it)` : ''}.`, `ALTER FUNCTION ${sig} NOT LEAKPROOF;`, {
          confirm: confirmFunction(fn.regprocedure, 'NOT p.proleakproof'),
          details,
          severity: fn.appExecute === false ? 'warn' : 'error',
        });
      }
      if (!fn.securityDefiner) continue;
      if ((fn.appExecute !== false || fn.returnsTrigger) && !fn.config.some((c) => c.toLowerCase().startsWith('search_path='))) {
        push('function-definer-search-path', 'function', obj, `SECURITY DEFINER function ${obj} does not pin search_path.`, `ALTER FUNCTION ${sig} SET search_path = pg_catalog, pg_temp;`, {
          confirm: confirmFunction(fn.regprocedure, `NOT p.prosecdef OR EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE lower(c) LIKE 'search_path=%')`),
          details,
        });
      }
      if (fn.returnsTrigger) {
        for (const t of triggersOf.get(fn.oid) ?? []) {
          const on = ts.all.get(t.rel);
          if (!on) continue;
          const others = f.writes.filter((w) => w.oid !== on.oid);
          if (others.length === 0 && !f.body.dynamic) continue;
          const what = others.length > 0 ? others.map(qn).join(', ') : 'tables chosen at run time (dynamic SQL)';
          push('function-definer-trigger-writes', 'function', `${obj}@${qn(on)}.${t.name}`, `SECURITY DEFINER trigger function ${obj} (owner ${fn.owner}), fired by trigger ${t.name} on ${qn(on)}, writes ${what} with its owner's rights.`, `ALTER FUNCTION ${sig} SECURITY INVOKER; -- and grant the application role what the trigger writes, under that table's policies`, {
            confirm: confirmFunction(fn.regprocedure, 'NOT p.prosecdef'),
            details: { ...details, trigger: t.name, table: qn(on), writes: others.map(qn), dynamic: f.body.dynamic },
          });
        }
        continue;
      }
      if (fn.appExecute === false) continue;
      if (f.tables.length > 0) {
        const via = f.throughViews.length > 0 ? ` (through ${f.throughViews.join(', ')})` : '';
        push('function-definer-reads-tenant', 'function', obj, `SECURITY DEFINER function ${obj} (owner ${fn.owner}) reads ${f.tables.join(', ')}${via}.`, `ALTER FUNCTION ${sig} SECURITY INVOKER;`, {
          confirm: definerOff,
          details: { ...details, tables: f.tables, throughViews: f.throughViews },
        });
      }
      if (f.body.dynamic) {
        push('function-definer-dynamic-sql', 'function', obj, `SECURITY DEFINER function ${obj} (owner ${fn.owner}) runs dynamic SQL (EXECUTE of a computed string, or a function that runs SQL text) with its owner's rights.`, `ALTER FUNCTION ${sig} SECURITY INVOKER; -- or REVOKE EXECUTE ON FUNCTION ${sig} FROM PUBLIC, ${quoteIdent(opts.appRole)};`, {
          confirm: definerOff,
          details: { ...details, dynamic: true },
        });
      }
    }
  },
};
