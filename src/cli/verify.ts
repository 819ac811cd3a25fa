import { AUDIT_HINT } from '../audit/hint.ts';
import { type VerifyProgress, runVerify } from '../audit/verify.ts';
import { TenantwallError } from '../errors.ts';
import { CHECK_FLAGS, CHECK_USAGE, commonOptions, emit, guarded } from './audit.ts';
import { parseFlags } from './flags.ts';

export async function verifyCommand(argv: string[]): Promise<number> {
  return guarded('verify', async () => {
    const { values } = parseFlags(argv, {
      ...CHECK_FLAGS,
      'app-database-url': { type: 'string' },
      tenants: { type: 'string' },
      checksum: { type: 'boolean', default: false },
      'allow-skips': { type: 'boolean', default: false },
    }, 'docs/audit.md');
    if (values.help) {
      console.log(
        `usage: tenantwall verify --app-database-url <url> [options]\n\nAttacks the database as the application role inside a transaction that is rolled back (docs/audit.md).\n\n` +
          `  --app-database-url <url> the application role's connection (default TENANTWALL_APP_DATABASE_URL)\n` +
          `  --tenants <a>,<b>        the two tenants to attack with (default: first two of the registry)\n` +
          `  --checksum               checksum the content before and after through --database-url\n` +
          `  --allow-skips            pass even when attacks were skipped on some relation (default: exit 1)\n` +
          `  --format pgtap           print the attacks as a pgTAP script to run as the application role\n${CHECK_USAGE}`,
      );
      return 0;
    }
    let tenants: [string, string] | undefined;
    if (values.tenants) {
      const parts = values.tenants.split(',').map((s) => s.trim());
      if (parts.length !== 2 || !parts[0] || !parts[1]) {
        throw new TenantwallError('config_invalid', '--tenants takes two ids separated by a comma (docs/audit.md).', { hint: AUDIT_HINT, details: { field: 'tenants' } });
      }
      tenants = [parts[0], parts[1]];
    }
    // Progress on a terminal only: redirected output and CI logs stay clean.
    const tty = process.stderr.isTTY === true;
    let drawn = false;
    const report = await runVerify({
      ...(tty
        ? {
            onProgress: (p: VerifyProgress) => {
              process.stderr.write(`\rverify: ${p.phase} ${p.done}/${p.total}`.padEnd(40));
              drawn = true;
            },
          }
        : {}),
      ...commonOptions(values),
      ...(values['app-database-url'] ? { appDatabaseUrl: values['app-database-url'] } : {}),
      ...(tenants ? { tenants } : {}),
      checksum: values.checksum === true,
    });
    if (drawn) process.stderr.write('\r'.padEnd(41) + '\r');
    const code = emit(report, values);
    if (report.checksums && report.checksums.before !== report.checksums.after) {
      console.error(`tenantwall verify: content checksum changed (${report.checksums.before} -> ${report.checksums.after})`);
      return 1;
    }
    const skipped = (report.coverage ?? []).filter((e) => e.status === 'skipped');
    if (skipped.length > 0 && values['allow-skips'] !== true) {
      console.error(`tenantwall verify: ${skipped.length} relation(s) the application role can reach were not fully attacked (${skipped.slice(0, 3).map((e) => `${e.relation}: ${e.reason}`).join('; ')}${skipped.length > 3 ? '; ...' : ''}); pass --allow-skips to accept that`);
      return Math.max(code, 1);
    }
    return code;
  });
}
