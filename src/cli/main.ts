import { TenantwallError } from '../errors.ts';
import { auditCommand } from './audit.ts';
import { migrateCommand } from './migrate.ts';
import { verifyCommand } from './verify.ts';
import { tenantsCommand } from './tenants.ts';
import { usageCommand } from './usage.ts';
import { webhooksCommand } from './webhooks.ts';
import { topCommand } from './top.ts';
import { clusterCommand } from './cluster.ts';
import { adoptCommand } from './adopt.ts';
import { keysCommand } from './keys.ts';

/**
 * The tenantwall command. Thin: it parses flags and calls the library. Errors print one line without a stack
 * and exit non-zero. docs/cli.md documents every command.
 */
export type Command = (argv: string[]) => Promise<number>;

const commands: Record<string, { run: Command; summary: string }> = {
  migrate: { run: migrateCommand, summary: 'apply pending migrations (--dry-run prints the SQL)' },
  audit: { run: auditCommand, summary: 'report isolation holes from the catalog (--json, --sarif, --fail-on)' },
  verify: { run: verifyCommand, summary: 'attack the database as the application role (rolled back)' },
  tenants: { run: tenantsCommand, summary: 'create, list, suspend, resume, rename, move, export, import, delete tenants' },
  usage: { run: usageCommand, summary: 'query usage (table, CSV, JSON), close a billing period, set a plan' },
  webhooks: { run: webhooksCommand, summary: 'replay dead deliveries, list deliveries, manage endpoints, run the relay' },
  top: { run: topCommand, summary: 'noisy neighbours: tenants ranked by database time, statements, rows, requests (--json, --watch)' },
  cluster: { run: clusterCommand, summary: 'Citus: rebalance the shards over the workers (keeps dedicated-node tenants pinned)' },
  adopt: { run: adoptCommand, summary: 'write the migration and declaration that bring an existing database under tenantwall' },
  keys: { run: keysCommand, summary: 'create (printed once), list and revoke API keys of a tenant (id or slug)' },
};

function usage(): string {
  return [
    'usage: tenantwall <command> [options]',
    '',
    ...Object.entries(commands).map(([n, c]) => `  ${n.padEnd(10)} ${c.summary}`),
    '',
    'Run `tenantwall <command> --help` for the options of a command. See docs/cli.md.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    console.log(usage());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    console.error(`tenantwall: unknown command ${JSON.stringify(name)}\n\n${usage()}`);
    return 2;
  }
  try {
    return await command.run(rest);
  } catch (err) {
    if (err instanceof TenantwallError) console.error(`tenantwall ${name}: [${err.code}] ${err.message}`);
    else console.error(`tenantwall ${name}: ${(err as Error).message ?? String(err)}`);
    return 1;
  }
}
