import { quoteIdent } from '../../schema/ddl.ts';
import { groupBy, qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const objectRules: RuleFamily = {
  name: 'objects around tenant tables',
  rules: [
    rule('view-no-security-invoker', 'error', 'View over tenant tables without security_invoker', "A view runs with its owner's rights; when the owner is superuser, BYPASSRLS or exempt owner, it returns every tenant's rows."),
    rule('matview-over-tenant', 'error', 'Materialized view over tenant tables', "Materialized views have no row-level security: they hold a copy of every tenant's rows."),
    rule('foreign-table', 'warn', 'Foreign table', 'Row-level security cannot be enabled on foreign tables; the remote side must isolate tenants.'),
    rule('rule-on-tenant-table', 'warn', 'Rewrite rule on a tenant table', "Rule actions run with the table owner's rights and can copy rows elsewhere, outside of the caller's RLS."),
    rule('publication-tenant-table', 'info', 'Tenant table published for logical replication', "Subscribers receive every tenant's rows; RLS does not filter replication."),
  ],
  evaluate({ cat, ts, appName, col, push }) {
    const refs = groupBy(cat.viewDeps, (d) => d.view);
    const memo = new Map<number, string[]>();
    const tenantDeps = (oid: number, stack: Set<number>): string[] => {
      const hit = memo.get(oid);
      if (hit) return hit;
      if (stack.has(oid)) return [];
      stack.add(oid);
      const found = new Set<string>();
      for (const { ref } of refs.get(oid) ?? []) {
        const t = ts.all.get(ref);
        if (t) found.add(qn(t));
        else for (const x of tenantDeps(ref, stack)) found.add(x);
      }
      stack.delete(oid);
      const res = [...found];
      memo.set(oid, res);
      return res;
    };
    for (const v of cat.relations) {
      if (v.kind === 'f') {
        push('foreign-table', 'foreign-table', qn(v), `Foreign table ${qn(v)}${v.tenantAttnum !== null ? ` has a ${col} column but` : ''} cannot have row-level security.`, `REVOKE ALL ON ${qi(v)} FROM PUBLIC, ${appName}; -- expose it through a security_invoker view filtering on the tenant setting, or drop it`);
      }
      if (v.kind !== 'v' && v.kind !== 'm') continue;
      const deps = tenantDeps(v.oid, new Set());
      if (deps.length === 0) continue;
      if (v.kind === 'v') {
        const invoker = v.options.some((o) => /^security_invoker=(true|on|1|yes)$/i.test(o));
        if (!invoker) push('view-no-security-invoker', 'view', qn(v), `View ${qn(v)} over ${deps.join(', ')} runs with the rights of its owner ${v.owner}.`, `ALTER VIEW ${qi(v)} SET (security_invoker = true);`);
      } else {
        push('matview-over-tenant', 'materialized-view', qn(v), `Materialized view ${qn(v)} copies rows of ${deps.join(', ')} without row-level security.`, `REVOKE ALL ON ${qi(v)} FROM PUBLIC, ${appName}; -- or replace it with a table under RLS / a security_invoker view`);
      }
    }
    for (const r of ts.tables) {
      for (const rw of cat.rewriteRules.filter((x) => x.rel === r.oid)) {
        push('rule-on-tenant-table', 'rule', `${qn(r)}.${rw.name}`, `Rewrite rule ${rw.name} on ${qn(r)}.`, `DROP RULE ${quoteIdent(rw.name)} ON ${qi(r)};`);
      }
    }
    const pubs = new Map<string, Set<string>>();
    for (const p of cat.publications) {
      const hits = [...ts.all.values()].filter((r) => p.allTables || p.rel === r.oid || (p.schema !== null && r.schema === p.schema)).map(qn);
      if (hits.length > 0) pubs.set(p.name, new Set([...(pubs.get(p.name) ?? []), ...hits]));
    }
    for (const [pub, tables] of pubs) {
      const list = [...tables].filter((t) => !ts.partitions.some((x) => qn(x) === t));
      push('publication-tenant-table', 'publication', pub, `Publication ${pub} replicates ${tables.size} tenant relation(s) (${list.slice(0, 5).join(', ')}${list.length > 5 ? ', ...' : ''}).`, `-- make sure every subscriber is trusted with all tenants, or: ALTER PUBLICATION ${quoteIdent(pub)} DROP TABLE ...;`);
    }
  },
};
