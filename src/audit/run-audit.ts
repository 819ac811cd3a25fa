import pg from 'pg';
import { TenantwallError } from '../errors.ts';
import { mapPgError } from '../db/pg-errors.ts';
import { quoteIdent, quoteLiteral } from '../schema/ddl.ts';
import { type Catalog, type Relation, loadCatalog } from './catalog.ts';
import { applyExceptions } from './exceptions.ts';
import { make, sortFindings } from './finding.ts';
import { type IsolationCheckOptions, type ResolvedCheckOptions, resolveCheckOptions } from './options.ts';
import { loadParser } from './policy-expr.ts';
import type { RuleContext } from './rules/define.ts';
import { RULE_FAMILIES } from './rules/index.ts';
import { qi, tenantSet } from './tenant-set.ts';
import { type Finding, type Report, SEVERITY_RANK } from './types.ts';

export { type IsolationCheckOptions, type ResolvedCheckOptions, resolveCheckOptions } from './options.ts';

export interface AuditOptions extends IsolationCheckOptions {
  /** An open connection to read the catalog through instead of `databaseUrl` (sees its own transaction). */
  client?: pg.ClientBase | undefined;
}

/** Opens a client on `url` (or uses `given`), runs `fn`, closes what it opened; driver errors become TenantwallErrors. */
export async function withClient<T>(url: string | undefined, given: pg.ClientBase | undefined, fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  if (given) return fn(given);
  if (url === undefined) throw new TenantwallError('config_invalid', 'No database to check: pass --database-url or set DATABASE_URL.', { details: { field: 'databaseUrl' } });
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
    push(ruleId, kind, object, message, fix) {
      const key = `${ruleId}\u0000${object}`;
      if (seen.has(key)) return;
      seen.add(key);
      out.push(make(ruleId, kind, object, message, fix));
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

/** Reads the catalog of a live database and applies every rule. Never writes. */
export async function runAudit(options: AuditOptions = {}): Promise<Report> {
  const started = performance.now();
  const opts = resolveCheckOptions(options);
  await loadParser();
  const cat = await withClient(opts.databaseUrl, options.client, (c) => loadCatalog(c, opts.appRole, opts.tenantColumn, opts.settingName));
  const { findings, stats } = evaluateRules(cat, opts);
  const { kept, suppressed, unused } = applyExceptions(findings, opts.exceptions);
  return Object.freeze({
    kind: 'audit',
    database: cat.database,
    serverVersion: cat.serverVersion,
    findings: kept,
    suppressed,
    unusedExceptions: unused,
    stats,
    notes: [],
    durationMs: Math.round(performance.now() - started),
  });
}

/** True when a finding at or above `failOn` remains. */
export function reachesThreshold(report: Report, failOn: 'info' | 'warn' | 'error' | 'none'): boolean {
  if (failOn === 'none') return false;
  return report.findings.some((f) => SEVERITY_RANK[f.severity] >= SEVERITY_RANK[failOn]);
}
