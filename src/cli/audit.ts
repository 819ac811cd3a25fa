import { AUDIT_HINT } from '../audit/hint.ts';
import fs from 'node:fs';
import { emitSql } from '../audit/emit-sql.ts';
import { reachesThreshold, resolveCheckOptions, runAudit } from '../audit/run-audit.ts';
import { formatJson, formatPgTap, formatSarif, formatText } from '../audit/format.ts';
import type { Report } from '../audit/types.ts';
import { TenantwallError } from '../errors.ts';
import { parseFlags } from './flags.ts';

/** Flags shared by `audit` and `verify`. */
export const CHECK_FLAGS = {
  'database-url': { type: 'string' },
  'tenant-column': { type: 'string' },
  setting: { type: 'string' },
  'app-role': { type: 'string' },
  tables: { type: 'string' },
  'global-tables': { type: 'string' },
  exceptions: { type: 'string' },
  format: { type: 'string' },
  json: { type: 'boolean', default: false },
  sarif: { type: 'boolean', default: false },
  output: { type: 'string' },
  'fail-on': { type: 'string' },
  source: { type: 'string' },
  'source-allow': { type: 'string' },
  'access-log-days': { type: 'string' },
  help: { type: 'boolean', default: false },
} as const;

export const CHECK_USAGE = `  --database-url <url>     database to check (default DATABASE_URL)
  --tenant-column <name>   tenant column (default tenant_id)
  --setting <ns.name>      tenant setting (default tenantwall.tenant_id)
  --app-role <role>        role the application connects as (default: audit finds them in the catalog;
                           verify takes the user of --app-database-url)
  --tables <a,b,...>       tenant tables (default: every table with the tenant column)
  --global-tables <a,...>  relations shared by all tenants (the tenant registry is recognised by itself)
  --exceptions <file>      JSON exception file (docs/audit.md)
  --format text|json|sarif output format (default text; --json and --sarif are shorthands)
  --output <file>          write the report to a file instead of stdout
  --fail-on error|warn|info|none
                           exit 1 when a finding of this severity or above remains (default error)
  --source <dir>           scan a project's source for dangerouslyCrossTenant( outside allowed paths (audit)
  --source-allow <g,...>   globs where the plain cross-tenant handle is expected
                           (default **/migrations/**,**/migrate*,**/lifecycle/**)
  --access-log-days <n>    days of the break-glass access log read for all-tenant grants (default 30)
every flag: docs/audit.md
exit codes: 0 nothing at or above --fail-on, 1 findings at or above --fail-on, 2 the check could not run`;

const list = (v: string) => v.split(',').map((s) => s.trim()).filter((s) => s !== '');

type Values = { [K in keyof typeof CHECK_FLAGS]?: (typeof CHECK_FLAGS)[K]['type'] extends 'boolean' ? boolean : string };

export function commonOptions(v: Values) {
  return {
    ...(v['database-url'] ? { databaseUrl: v['database-url'] } : {}),
    ...(v['tenant-column'] ? { tenantColumn: v['tenant-column'] } : {}),
    ...(v.setting ? { settingName: v.setting } : {}),
    ...(v['app-role'] ? { appRole: v['app-role'] } : {}),
    ...(v.tables ? { tables: list(v.tables) } : {}),
    ...(v['global-tables'] ? { globalTables: list(v['global-tables']) } : {}),
    ...(v.exceptions ? { exceptions: v.exceptions } : {}),
    ...(v.source ? { source: v.source } : {}),
    ...(v['source-allow'] !== undefined ? { sourceAllow: list(v['source-allow']) } : {}),
    ...(v['access-log-days'] !== undefined ? { accessLogDays: Number(v['access-log-days']) } : {}),
  };
}

function failOn(v: Values): 'error' | 'warn' | 'info' | 'none' {
  const f = v['fail-on'] ?? 'error';
  if (f !== 'error' && f !== 'warn' && f !== 'info' && f !== 'none') {
    throw new TenantwallError('config_invalid', `--fail-on must be error, warn, info or none (got ${JSON.stringify(f)}; docs/audit.md).`, { hint: AUDIT_HINT, details: { field: 'fail-on' } });
  }
  return f;
}

/** Prints the report in the chosen format and returns the exit code. */
export function emit(report: Report, v: Values): number {
  const threshold = failOn(v);
  const format = v.sarif ? 'sarif' : v.json ? 'json' : (v.format ?? 'text');
  let text: string;
  if (format === 'json') text = formatJson(report);
  else if (format === 'sarif') text = formatSarif(report);
  else if (format === 'pgtap' && report.kind === 'verify') text = formatPgTap(report);
  else if (format === 'text') {
    const color = v.output === undefined && process.stdout.isTTY === true && !process.env.NO_COLOR;
    text = formatText(report, { color });
  } else {
    throw new TenantwallError('config_invalid', `--format must be text, json or sarif${report.kind === 'verify' ? ' or pgtap' : ''} (got ${JSON.stringify(format)}; docs/audit.md).`, { hint: AUDIT_HINT, details: { field: 'format' } });
  }
  if (v.output) fs.writeFileSync(v.output, `${text}\n`);
  else console.log(text);
  return reachesThreshold(report, threshold) ? 1 : 0;
}

/** Runs `fn`; a failure is one line on stderr and exit code 2, so CI can tell "holes found" from "did not run". */
export async function guarded(name: string, fn: () => Promise<number>): Promise<number> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof TenantwallError) console.error(`tenantwall ${name}: [${err.code}] ${err.message}`);
    else console.error(`tenantwall ${name}: ${(err as Error)?.message ?? String(err)}`);
    return 2;
  }
}

export async function auditCommand(argv: string[]): Promise<number> {
  return guarded('audit', async () => {
    const { values } = parseFlags(argv, { ...CHECK_FLAGS, 'emit-sql': { type: 'boolean', default: false } }, 'docs/audit.md');
    if (values.help) {
      console.log(`usage: tenantwall audit [options]\n\nReads the catalog and reports isolation holes (docs/audit.md).\n\n  --emit-sql               print the catalog rules as SQL views (schema tenantwall_audit) and exit\n${CHECK_USAGE}`);
      return 0;
    }
    if (values['emit-sql']) {
      const sql = emitSql(resolveCheckOptions(commonOptions(values)));
      if (values.output) fs.writeFileSync(values.output, sql);
      else console.log(sql);
      return 0;
    }
    failOn(values);
    const report = await runAudit(commonOptions(values));
    return emit(report, values);
  });
}
