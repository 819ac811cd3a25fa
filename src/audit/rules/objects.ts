import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import type { Relation } from '../catalog.ts';
import { confirmNone, confirmNoTablePrivilege, confirmRel } from '../confirm.ts';
import { groupBy, qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

const isInvoker = (v: Relation) => v.options.some((o) => /^security_invoker=(true|on|1|yes)$/i.test(o));
const appReads = (r: Relation) => !!r.app && (r.app.select || r.app.ownerMember);
const appTouches = (r: Relation) => !!r.app && (r.app.select || r.app.insert || r.app.update || r.app.delete || r.app.ownerMember);

export const objectRules: RuleFamily = {
  name: 'objects around tenant tables',
  rules: [
    rule('view-no-security-invoker', 'error', 'isolation', 'View over tenant tables without security_invoker', "A view runs with its owner's rights; when the owner is superuser, BYPASSRLS or exempt owner, it returns every tenant's rows."),
    rule('matview-over-tenant', 'error', 'isolation', 'Materialized view over tenant tables', "Materialized views have no row-level security: they hold a copy of every tenant's rows."),
    rule('foreign-table', 'warn', 'isolation', 'Foreign table', 'Row-level security cannot be enabled on foreign tables; the remote side must isolate tenants.'),
    rule('rule-on-tenant-table', 'warn', 'isolation', 'Rewrite rule on a tenant table', "Rule actions run with the table owner's rights and can copy rows elsewhere, outside of the caller's RLS."),
    rule('publication-tenant-table', 'info', 'isolation', 'Tenant table published for logical replication', "Subscribers receive every tenant's rows; RLS does not filter replication."),
  ],
  evaluate({ cat, ts, opts, appName, col, push }) {
    const refs = groupBy(cat.viewDeps, (d) => d.view);
    const byOid = new Map(cat.relations.map((r) => [r.oid, r]));
    /**
     * Tenant tables `oid` reads with its owner's rights. A security_invoker view on the way is not followed when
     * `stopAtInvoker`: its base tables are checked as the session user, whoever owns the outer view.
     */
    const tenantDeps = (oid: number, stopAtInvoker: boolean, stack = new Set<number>()): string[] => {
      if (stack.has(oid)) return [];
      stack.add(oid);
      const found = new Set<string>();
      for (const { ref } of refs.get(oid) ?? []) {
        const t = ts.all.get(ref);
        const inner = byOid.get(ref);
        if (t) found.add(qn(t));
        else if (!(stopAtInvoker && inner && inner.kind === 'v' && isInvoker(inner))) for (const x of tenantDeps(ref, stopAtInvoker, stack)) found.add(x);
      }
      stack.delete(oid);
      return [...found];
    };
    // Severity follows what the application role can do: an object it cannot use is worth knowing, not a leak.
    const reach = (can: boolean) => (can ? {} : { severity: 'info' as const });
    const access = (r: Relation) => (r.app ? { select: r.app.select, insert: r.app.insert, update: r.app.update, delete: r.app.delete } : null);
    for (const v of cat.relations) {
      if (v.kind === 'f') {
        push('foreign-table', 'foreign-table', qn(v), `Foreign table ${qn(v)}${v.tenantAttnum !== null ? ` has a ${col} column but` : ''} cannot have row-level security${appTouches(v) ? '' : ` (${opts.appRole} cannot use it)`}.`, `REVOKE ALL ON ${qi(v)} FROM PUBLIC, ${appName}; -- expose it through a security_invoker view filtering on the tenant setting, or drop it`, {
          confirm: confirmNoTablePrivilege(opts.appRole, v, ['SELECT', 'INSERT', 'UPDATE', 'DELETE']),
          details: { relation: qn(v), owner: v.owner, appAccess: access(v) },
          ...reach(appTouches(v)),
        });
      }
      if (v.kind !== 'v' && v.kind !== 'm') continue;
      if (v.kind === 'v') {
        if (isInvoker(v)) continue;
        const deps = tenantDeps(v.oid, true);
        if (deps.length === 0) continue;
        push('view-no-security-invoker', 'view', qn(v), `View ${qn(v)} over ${deps.join(', ')} runs with the rights of its owner ${v.owner}${appReads(v) ? '' : ` (${opts.appRole} cannot read it)`}.`, `ALTER VIEW ${qi(v)} SET (security_invoker = true);`, {
          confirm: confirmRel(v, `coalesce(c.reloptions::text[] && ARRAY['security_invoker=true', 'security_invoker=on', 'security_invoker=1', 'security_invoker=yes'], false) OR NOT has_table_privilege(${quoteLiteral(opts.appRole)}, c.oid, 'SELECT')`),
          details: { view: qn(v), owner: v.owner, tables: deps, appAccess: access(v) },
          ...reach(appReads(v)),
        });
      } else {
        // A refresh runs as the owner: even a security_invoker view in between is read with the owner's rights.
        const deps = tenantDeps(v.oid, false);
        if (deps.length === 0) continue;
        push('matview-over-tenant', 'materialized-view', qn(v), `Materialized view ${qn(v)} copies rows of ${deps.join(', ')} without row-level security${appReads(v) ? '' : ` (${opts.appRole} cannot read it)`}.`, `REVOKE ALL ON ${qi(v)} FROM PUBLIC, ${appName}; -- or replace it with a table under RLS / a security_invoker view`, {
          confirm: confirmNoTablePrivilege(opts.appRole, v, ['SELECT']),
          details: { view: qn(v), owner: v.owner, tables: deps, appAccess: access(v) },
          ...reach(appReads(v)),
        });
      }
    }
    for (const r of ts.tables) {
      for (const rw of cat.rewriteRules.filter((x) => x.rel === r.oid)) {
        push('rule-on-tenant-table', 'rule', `${qn(r)}.${rw.name}`, `Rewrite rule ${rw.name} on ${qn(r)}.`, `DROP RULE ${quoteIdent(rw.name)} ON ${qi(r)};`, {
          confirm: confirmNone(`SELECT 1 FROM pg_rewrite w WHERE w.ev_class = to_regclass(${quoteLiteral(qi(r))}) AND w.rulename = ${quoteLiteral(rw.name)}`),
          details: { table: qn(r), rule: rw.name },
        });
      }
    }
    const pubs = new Map<string, Set<string>>();
    for (const p of cat.publications) {
      const hits = [...ts.all.values()].filter((r) => p.allTables || p.rel === r.oid || (p.schema !== null && r.schema === p.schema)).map(qn);
      if (hits.length > 0) pubs.set(p.name, new Set([...(pubs.get(p.name) ?? []), ...hits]));
    }
    for (const [pub, tables] of pubs) {
      const list = [...tables].filter((t) => !ts.partitions.some((x) => qn(x) === t));
      push('publication-tenant-table', 'publication', pub, `Publication ${pub} replicates ${tables.size} tenant relation(s) (${list.slice(0, 5).join(', ')}${list.length > 5 ? ', ...' : ''}).`, `-- make sure every subscriber is trusted with all tenants, or: ALTER PUBLICATION ${quoteIdent(pub)} DROP TABLE ...;`, {
        confirm: confirmNone(`SELECT 1 FROM pg_publication_tables t WHERE t.pubname = ${quoteLiteral(pub)} AND (t.schemaname || '.' || t.tablename) = ANY (${quoteLiteral(`{${[...tables].join(',')}}`)}::text[])`),
        details: { publication: pub, tables: [...tables] },
      });
    }
  },
};
