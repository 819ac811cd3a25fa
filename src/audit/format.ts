import { AUDIT_RULES, VERIFY_ATTACKS } from './rules.ts';
import { quoteIdent, quoteLiteral } from '../schema/ddl.ts';
import type { Finding, Report, Severity } from './types.ts';

const COLORS: Record<Severity, string> = { error: '\x1b[31m', warn: '\x1b[33m', info: '\x1b[36m' };
const RESET = '\x1b[0m';
const BOLD = '\x1b[1m';
const DIM = '\x1b[2m';

/** Human output: findings grouped by rule, most severe first. Colour only when `color` (a terminal). */
export function formatText(report: Report, options: { color?: boolean; verbose?: boolean } = {}): string {
  const c = (code: string, s: string) => (options.color ? `${code}${s}${RESET}` : s);
  const lines: string[] = [];
  const title = report.kind === 'audit' ? 'tenantwall audit' : 'tenantwall verify';
  lines.push(c(BOLD, `${title}: ${report.database} (PostgreSQL ${report.serverVersion})`));
  const groups = new Map<string, Finding[]>();
  for (const f of report.findings) groups.set(f.ruleId, [...(groups.get(f.ruleId) ?? []), f]);
  for (const [rule, list] of groups) {
    const first = list[0] as Finding;
    lines.push('');
    lines.push(`${c(COLORS[first.severity], first.severity.toUpperCase().padEnd(5))} ${c(BOLD, rule)} (${list.length})`);
    lines.push(c(DIM, `      why: ${first.why}`));
    for (const f of list) {
      lines.push(`  - ${f.object}: ${f.message}`);
      if (options.verbose !== false) lines.push(c(DIM, `    fix: ${f.fix.split('\n').join('\n         ')}`));
    }
  }
  for (const n of report.notes) lines.push(c(DIM, `note: ${n}`));
  if (report.coverage) {
    const by = (st: string) => report.coverage?.filter((e) => e.status === st) ?? [];
    lines.push('', `coverage: ${by('attacked').length} relation(s) attacked, ${by('skipped').length} skipped, ${by('not-applicable').length} not applicable (of ${report.coverage.length} the application role can reach)`);
    for (const e of by('skipped')) lines.push(c(COLORS.warn, `  skipped ${e.relation}: ${e.reason}`));
  }
  if (report.suppressed.length > 0) lines.push('', `${report.suppressed.length} finding(s) suppressed by exceptions.`);
  for (const u of report.unusedExceptions) lines.push(c(COLORS.warn, `unused exception: ${u.rule} on ${u.object} (remove it)`));
  const count = (s: Severity) => report.findings.filter((f) => f.severity === s).length;
  const stats = Object.entries(report.stats).map(([k, v]) => `${v} ${k.replace(/[A-Z]/g, (ch) => ` ${ch.toLowerCase()}`)}`).join(', ');
  lines.push('');
  lines.push(`${count('error')} error(s), ${count('warn')} warning(s), ${count('info')} info; checked ${stats} in ${report.durationMs} ms.`);
  return lines.join('\n');
}

/** Formats an audit or verify report as JSON. */
export function formatJson(report: Report): string {
  return JSON.stringify(report, null, 2);
}

const SARIF_LEVEL: Record<Severity, 'error' | 'warning' | 'note'> = { error: 'error', warn: 'warning', info: 'note' };

/**
 * SARIF 2.1.0 for code-scanning tools. Database objects have no file, so each result carries a logical location
 * (the object) and, for tools that insist on a physical one, the database URI without credentials.
 */
export function formatSarif(report: Report, version = '0.1.0'): string {
  const rules = report.kind === 'audit' ? AUDIT_RULES : VERIFY_ATTACKS;
  const index = new Map(rules.map((r, i) => [r.id, i]));
  const sarif = {
    $schema: 'https://json.schemastore.org/sarif-2.1.0.json',
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: `tenantwall ${report.kind}`,
            version,
            informationUri: 'https://github.com/tenantwall/tenantwall/blob/main/docs/audit.md',
            rules: rules.map((r) => ({
              id: r.id,
              name: r.id.replace(/(^|-)([a-z])/g, (_m, _d, ch: string) => ch.toUpperCase()),
              shortDescription: { text: r.title },
              fullDescription: { text: r.why },
              helpUri: `https://github.com/tenantwall/tenantwall/blob/main/docs/audit.md#${r.id}`,
              defaultConfiguration: { level: SARIF_LEVEL[r.severity] },
            })),
          },
        },
        results: report.findings.map((f) => ({
          ruleId: f.ruleId,
          ...(index.has(f.ruleId) ? { ruleIndex: index.get(f.ruleId) } : {}),
          level: SARIF_LEVEL[f.severity],
          message: { text: `${f.message} Fix: ${f.fix}` },
          locations: [
            {
              physicalLocation: { artifactLocation: { uri: `postgres:///${encodeURIComponent(report.database)}` } },
              logicalLocations: [{ fullyQualifiedName: f.object, kind: f.objectKind }],
            },
          ],
          partialFingerprints: { tenantwallObject: `${f.ruleId}:${f.object}` },
          properties: { objectKind: f.objectKind, fix: f.fix, why: f.why },
        })),
        properties: { database: report.database, serverVersion: report.serverVersion, stats: report.stats },
      },
    ],
  };
  return JSON.stringify(sarif, null, 2);
}

const sqlName = (object: string) => object.split('.').map(quoteIdent).join('.');

/**
 * verify as a pgTAP script: run it as the application role (`pg_prove -U <app role>`) to repeat the read attacks
 * in any pgTAP suite. One test per tenant table attacked (tenant A sees no other tenant's row, nothing with no
 * tenant set) and per relation outside the tenant tables it attacked, plus one failing test per finding.
 */
export function formatPgTap(report: Report): string {
  if (report.kind !== 'verify' || !report.attack) throw new Error('pgTAP output is for verify reports');
  const { tenants, setting, tenantColumn } = report.attack;
  const setA = `SELECT set_config(${quoteLiteral(setting)}, ${quoteLiteral(tenants[0])}, true)`;
  const setNone = `SELECT set_config(${quoteLiteral(setting)}, '', true)`;
  const tests: string[] = [];
  for (const e of report.coverage ?? []) {
    if (e.status !== 'attacked') continue;
    const rel = sqlName(e.relation);
    if (e.class === 'tenant' && (e.kind === 'table' || e.kind === 'partition')) {
      tests.push(`${setA};\nSELECT is((SELECT count(*) FROM ${rel} WHERE ${quoteIdent(tenantColumn)}::text IS DISTINCT FROM ${quoteLiteral(tenants[0])}), 0::bigint, ${quoteLiteral(`${e.relation}: tenant A sees no row of another tenant`)});`);
      tests.push(`${setNone};\nSELECT is((SELECT count(*) FROM ${rel}), 0::bigint, ${quoteLiteral(`${e.relation}: no row with no tenant set`)});`);
    } else if (e.kind !== 'view' && e.kind !== 'materialized-view') {
      tests.push(`${setNone};\nSELECT is((SELECT count(*) FROM ${rel}), 0::bigint, ${quoteLiteral(`${e.relation}: no row with no tenant set (${e.reason})`)});`);
    }
  }
  for (const f of report.findings) tests.push(`SELECT fail(${quoteLiteral(`${f.ruleId} ${f.object}: ${f.message}`)});`);
  return ['-- tenantwall verify as pgTAP; run as the application role. Nothing is kept.', 'BEGIN;', `SELECT plan(${tests.length});`, ...tests, 'SELECT * FROM finish();', 'ROLLBACK;', ''].join('\n');
}
