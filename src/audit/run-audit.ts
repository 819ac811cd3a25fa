import { AUDIT_HINT } from './hint.ts';
import pg from 'pg';
import { TenantwallError } from '../errors.ts';
import { mapPgError } from '../db/pg-errors.ts';
import { quoteIdent, quoteLiteral } from '../schema/ddl.ts';
import { type Catalog, type Relation, loadCatalog } from './catalog.ts';
import { citusRules } from './citus-rules.ts';
import { accessLogFindings, scanSource } from './usage.ts';
import { applyExceptions } from './exceptions.ts';
import { make, sortFindings } from './finding.ts';
import { type IsolationCheckOptions, type ResolvedCheckOptions, resolveCheckOptions } from './options.ts';
import { loadParser } from './policy-expr.ts';
import type { RuleContext } from './rules/define.ts';
import { RULE_FAMILIES } from './rules/index.ts';
import { qi, tenantSet } from './tenant-set.ts';
import { type Finding, type Report, SEVERITY_RANK } from './types.ts';

export { type IsolationCheckOptions, type ResolvedCheckOptions, resolveCheckOptions } from './options.ts';

/** Options of `runAudit`: the isolation-check options plus the rules to run. */
export interface AuditOptions extends IsolationCheckOptions {
  /** An open connection to read the catalog through instead of `databaseUrl` (sees its own transaction). */
  client?: pg.ClientBase | undefined;
}

/** Opens a client on `url` (or uses `given`), runs `fn`, closes what it opened; driver errors become TenantwallErrors. */
export async function withClient<T>(url: string | undefined, given: pg.ClientBase | undefined, fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  if (given) return fn(given);
  if (url === undefined) throw new TenantwallError('config_invalid', 'No database to check: pass --database-url or set DATABASE_URL.', { hint: AUDIT_HINT, details: { field: 'databaseUrl' } });
  const client = new pg.Client({ connectionString: url, application_name: 'tenantwall-audit' });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw mapPgError(err);
  }
  try {
    return await fn(client);
  } catch (err) {
    throw err instanceof TenantwallError ? err : mapPgError(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

/** The catalog rules of every family. Pure: everything it needs is in the catalog snapshot. */
export function evaluateRules(cat: Catalog, opts: ResolvedCheckOptions): { findings: Finding[]; stats: Record<string, number> } {
  const ts = tenantSet(cat, opts);
  const out: Finding[] = [];
  const seen = new Set<string>();
  const qcol = quoteIdent(opts.tenantColumn);
  const pred = (r: Relation) => `${qcol} = (SELECT nullif(current_setting(${quoteLiteral(opts.settingName)}, true), '')::${r.tenantType ?? 'uuid'})`;
  const ctx: RuleContext = {
    cat,
    opts,
    ts,
    appName: quoteIdent(opts.appRole),
    col: opts.tenantColumn,
    qcol,
    pred,
    policyFix: (r) => `CREATE POLICY tenant_isolation ON ${qi(r)} FOR ALL USING (${pred(r)}) WITH CHECK (${pred(r)});`,
    push(ruleId, kind, object, message, fix, extra) {
      const key = `${ruleId}\u0000${object}`;
      if (seen.has(key)) return;
      seen.add(key);
      out.push(make(ruleId, kind, object, message, fix, extra));
    },
  };
  for (const family of RULE_FAMILIES) family.evaluate(ctx);
  return {
    findings: sortFindings(out),
    stats: {
      tenantTables: ts.tables.length,
      partitions: ts.partitions.length,
      policies: cat.policies.filter((p) => ts.all.has(p.rel)).length,
      relations: cat.relations.length,
      functions: cat.functions.length,
    },
  };
}

/**
 * The application roles, from the catalog: login roles, not superuser, that may SELECT/INSERT/UPDATE/DELETE a
 * table with the tenant column and own none of them (nor can act as their owner).
 */
export async function findAppRoles(client: pg.ClientBase, tenantColumn: string): Promise<string[]> {
  const { rows } = await client.query<{ rolname: string }>(
    `WITH t AS (SELECT c.oid, c.relowner FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped AND a.attnum > 0
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema'))
     SELECT r.rolname FROM pg_roles r WHERE r.rolcanlogin AND NOT r.rolsuper AND r.rolname !~ '^pg_'
       AND EXISTS (SELECT 1 FROM t WHERE has_table_privilege(r.oid, t.oid, 'SELECT, INSERT, UPDATE, DELETE'))
       AND NOT EXISTS (SELECT 1 FROM t WHERE pg_has_role(r.oid, t.relowner, 'MEMBER'))
     ORDER BY 1`,
    [tenantColumn],
  );
  return rows.map((r) => r.rolname);
}

/**
 * Reads the catalog of a live database and applies every rule. Never writes. Without an application role
 * (option or TENANTWALL_APP_ROLE), audits each role `findAppRoles` finds, and refuses to guess when there is none.
 */
export async function runAudit(options: AuditOptions = {}): Promise<Report> {
  const started = performance.now();
  const given = resolveCheckOptions(options);
  await loadParser();
  const parserMs = performance.now() - started;
  let citus: Finding[] = [];
  const runs = await withClient(given.databaseUrl, options.client, async (c) => {
    const roles = given.appRoleGiven ? [given.appRole] : await findAppRoles(c, given.tenantColumn);
    if (roles.length === 0) {
      throw new TenantwallError(
        'config_invalid',
        `No application role given, and none found in the catalog (a login role, not superuser, with SELECT/INSERT/UPDATE/DELETE on a table with column ${given.tenantColumn}, owning none of them): pass --app-role (docs/audit.md).`,
        { hint: AUDIT_HINT, details: { field: 'appRole' } },
      );
    }
    const out: { role: string; cat: Catalog; opts: ResolvedCheckOptions }[] = [];
    for (const role of roles) {
      const opts = Object.freeze({ ...given, appRole: role });
      out.push({ role, cat: await loadCatalog(c, role, opts.tenantColumn, opts.settingName), opts });
    }
    // The Citus rule family reads the cluster's own catalog (src/audit/citus-rules.ts; nothing without citus).
    citus = await citusRules(c, given);
    // The break-glass access log (src/access): all-tenant grants that ran statements.
    citus.push(...(await accessLogFindings(c, given.accessLogDays)));
    return out;
  });
  const catalogDone = performance.now();
  const seen = new Set<string>();
  const findings: Finding[] = [];
  let stats: Record<string, number> = {};
  for (const run of runs) {
    const result = evaluateRules(run.cat, run.opts);
    stats = result.stats;
    for (const f of result.findings) {
      const key = `${f.ruleId}\u0000${f.object}\u0000${f.message}`;
      if (!seen.has(key)) {
        seen.add(key);
        findings.push(f);
      }
    }
  }
  const scanned = given.source === undefined ? undefined : scanSource(given.source, given.sourceAllow);
  if (scanned) findings.push(...scanned.findings);
  const { kept, suppressed, unused } = applyExceptions(sortFindings([...findings, ...citus]), given.exceptions);
  const first = runs[0]?.cat as Catalog;
  return Object.freeze({
    kind: 'audit',
    database: first.database,
    serverVersion: first.serverVersion,
    findings: kept,
    suppressed,
    unusedExceptions: unused,
    stats: { ...stats, appRoles: runs.length, parserMs: Math.round(parserMs), catalogMs: Math.round(catalogDone - started - parserMs), rulesMs: Math.round(performance.now() - catalogDone), ...(scanned ? { sourceFiles: scanned.files, sourceAllowedUses: scanned.allowed } : {}) },
    notes: [
      ...(given.appRoleGiven ? [] : [`application role(s) found in the catalog and audited: ${runs.map((r) => r.role).join(', ')}`]),
      ...(scanned ? [`source ${given.source}: ${scanned.files} file(s) scanned, ${scanned.allowed} use(s) of dangerouslyCrossTenant in allowed paths (${given.sourceAllow.join(', ')}) or marked tenantwall-audit-allow`] : []),
    ],
    appRoles: runs.map((r) => r.role),
    durationMs: Math.round(performance.now() - started),
  });
}

/** True when a finding at or above `failOn` remains. */
export function reachesThreshold(report: Report, failOn: 'info' | 'warn' | 'error' | 'none'): boolean {
  if (failOn === 'none') return false;
  return report.findings.some((f) => SEVERITY_RANK[f.severity] >= SEVERITY_RANK[failOn]);
}
