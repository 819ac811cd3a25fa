import { quoteIdent } from '../../schema/ddl.ts';
import { functionsTouchingTenants } from '../functions.ts';
import { rule } from '../rules/define.ts';
import { qn, rootOf } from '../tenant-set.ts';
import type { AttackFamily } from './context.ts';
import { differential, hashOf } from './differential.ts';

/** Functions the application may call without arguments: does the result follow tenant B's data? */
export const functionAttacks: AttackFamily = {
  name: 'functions',
  attacks: [
    rule('attack-function-read', 'error', "Read another tenant's rows through a function", "A function the application can call returned a result that depends on tenant B's data while tenant A was set."),
  ],
  async run(ctx) {
    const byName = new Map([...ctx.ts.all.values()].map((r) => [qn(r), rootOf(r, ctx.ts).oid]));
    for (const f of functionsTouchingTenants(ctx.cat, ctx.ts).all) {
      if (f.tables.length === 0 || f.fn.appExecute === false || f.fn.kind !== 'f') continue;
      if (f.fn.nargs > f.fn.nargDefaults) {
        ctx.notes.push(`${f.fn.schema}.${f.fn.name}(${f.fn.args}) reads ${f.tables.join(', ')} but was not called: it has arguments without defaults (tenantwall audit still checks it)`);
        continue;
      }
      const deps = f.tables.map((n) => byName.get(n)).filter((x): x is number => x !== undefined);
      if (deps.some((d) => ctx.readLeak.has(d))) continue;
      const sig = `${quoteIdent(f.fn.schema)}.${quoteIdent(f.fn.name)}`;
      const obj = `${f.fn.schema}.${f.fn.name}(${f.fn.args})`;
      if (await differential(ctx, hashOf(`${sig}()`), deps)) {
        ctx.found('attack-function-read', 'function', obj, `${obj} returned a result that changed when only tenant ${ctx.B}'s data changed, while tenant ${ctx.A} was set.`, `ALTER FUNCTION ${sig}(${f.fn.args}) SECURITY INVOKER;`);
      }
    }
  },
};
