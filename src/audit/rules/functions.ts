import { quoteIdent } from '../../schema/ddl.ts';
import { functionsTouchingTenants } from '../functions.ts';
import { type RuleFamily, rule } from './define.ts';

export const functionRules: RuleFamily = {
  name: 'functions',
  rules: [
    rule('function-definer-reads-tenant', 'error', 'SECURITY DEFINER function reads tenant tables', "It runs with its owner's rights, so RLS is bypassed when the owner is superuser, BYPASSRLS or the exempt table owner."),
    rule('function-definer-search-path', 'warn', 'SECURITY DEFINER function with a mutable search_path', "A caller can put objects earlier on the search_path and have them run with the owner's rights."),
  ],
  evaluate({ cat, ts, push }) {
    for (const f of functionsTouchingTenants(cat, ts).definers) {
      if (f.fn.appExecute === false) continue;
      const sig = `${quoteIdent(f.fn.schema)}.${quoteIdent(f.fn.name)}(${f.fn.args})`;
      const obj = `${f.fn.schema}.${f.fn.name}(${f.fn.args})`;
      if (f.tables.length > 0) {
        push('function-definer-reads-tenant', 'function', obj, `SECURITY DEFINER function ${obj} (owner ${f.fn.owner}) reads ${f.tables.join(', ')}.`, `ALTER FUNCTION ${sig} SECURITY INVOKER;`);
      }
      if (!f.fn.config.some((c) => c.toLowerCase().startsWith('search_path='))) {
        push('function-definer-search-path', 'function', obj, `SECURITY DEFINER function ${obj} does not pin search_path.`, `ALTER FUNCTION ${sig} SET search_path = pg_catalog, pg_temp;`);
      }
    }
  },
};
