import { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { deleteTenant } from '../lifecycle/delete.ts';
import { exportTenant } from '../lifecycle/export.ts';
import { importTenant } from '../lifecycle/import.ts';
import { resolveTenant, type Placement } from '../lifecycle/internal.ts';
import { abortMove, moveTenant } from '../lifecycle/move.ts';
import { createProgressPrinter } from '../lifecycle/progress.ts';
import { suspendTenant } from '../lifecycle/suspend.ts';
import { createTenant, listTenants, renameTenant } from '../lifecycle/tenants.ts';
import type { TenantStatus } from '../db/tenant-registry.ts';
import { loadProjectConfig } from './config.ts';
import { parseFlags } from './flags.ts';

const USAGE = `usage: tenantwall tenants <subcommand> [options]

  create <slug> --name <name> [--id <id>] [--placement shared|dedicated]
  list [--status active|suspended|deleted] [--limit <n>] [--after <slug>]
  suspend <tenant>
  resume <tenant>
  rename <tenant> <new-slug>
  move <tenant> --to shared|dedicated [--batch-size <n>] [--lock-timeout <ms>]
  move <tenant> --abort
  export <tenant> --out <dir> [--format ndjson|csv] [--batch-size <n>]
  import <dir> --slug <slug> [--name <name>] [--id <id>] [--placement shared|dedicated] [--batch-size <n>]
  delete <tenant> --confirm <slug> [--batch-size <n>]

<tenant> is a tenant id or slug. Every subcommand takes --config <file> (default ./tenantwall.config.ts),
--database-url <url> and --json (one JSON result on stdout; progress as JSON lines on stderr).
See docs/lifecycle.md.`;

function int(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new TenantwallError('config_invalid', `--${flag} must be a positive integer.`);
  return n;
}

function placement(value: string | undefined, flag: string): Placement | undefined {
  if (value === undefined) return undefined;
  if (value !== 'shared' && value !== 'dedicated') throw new TenantwallError('config_invalid', `--${flag} must be shared or dedicated.`);
  return value;
}

function need(value: string | undefined, what: string): string {
  if (value === undefined || value === '') throw new TenantwallError('config_invalid', `Missing ${what}.\n\n${USAGE}`);
  return value;
}

export async function tenantsCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    config: { type: 'string' },
    'database-url': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
    name: { type: 'string' },
    id: { type: 'string' },
    slug: { type: 'string' },
    placement: { type: 'string' },
    status: { type: 'string' },
    limit: { type: 'string' },
    after: { type: 'string' },
    to: { type: 'string' },
    abort: { type: 'boolean', default: false },
    'batch-size': { type: 'string' },
    'lock-timeout': { type: 'string' },
    out: { type: 'string' },
    format: { type: 'string' },
    confirm: { type: 'string' },
  });
  const [sub, ...args] = positionals;
  if (values.help || sub === undefined || sub === 'help') {
    console.log(USAGE);
    return sub === undefined && !values.help ? 2 : 0;
  }
  const known = ['create', 'list', 'suspend', 'resume', 'rename', 'move', 'export', 'import', 'delete'];
  if (!known.includes(sub)) throw new TenantwallError('config_invalid', `Unknown subcommand ${JSON.stringify(sub)}.\n\n${USAGE}`);
  const batchSize = int(values['batch-size'], 'batch-size');
  const json = values.json;
  const progress = createProgressPrinter({ json });
  const cfg = await loadProjectConfig(values.config);
  const db = await Tenantwall.connect({
    ...cfg.options,
    schema: cfg.schema,
    ...(values['database-url'] ? { databaseUrl: values['database-url'] } : {}),
  });
  const print = (result: unknown, human: string): void => {
    console.log(json ? JSON.stringify(result) : human);
  };
  try {
    switch (sub) {
      case 'create': {
        const p = placement(values.placement, 'placement');
        const r = await createTenant(db, {
          slug: need(args[0], '<slug>'),
          name: need(values.name, '--name'),
          ...(values.id ? { id: values.id } : {}),
          ...(p ? { placement: p } : {}),
        });
        print(r, `created ${r.tenant.slug} ${r.tenant.id} (${r.placement})`);
        return 0;
      }
      case 'list': {
        const status = values.status as TenantStatus | undefined;
        if (status !== undefined && !['active', 'suspended', 'deleted'].includes(status)) {
          throw new TenantwallError('config_invalid', '--status must be active, suspended or deleted.');
        }
        const rows = await listTenants(db, {
          ...(status ? { status } : {}),
          ...(values.limit ? { limit: int(values.limit, 'limit') as number } : {}),
          ...(values.after ? { after: values.after } : {}),
        });
        print(rows, rows.map((r) => `${r.tenant.slug.padEnd(24)} ${r.tenant.id}  ${r.tenant.status.padEnd(9)} ${r.placement}`).join('\n') || '(no tenants)');
        return 0;
      }
      case 'suspend':
      case 'resume': {
        const t = await resolveTenant(db, need(args[0], '<tenant>'));
        // Suspension through the lifecycle: with the metering tables it writes the tenant.suspended event too.
        const r = sub === 'suspend' ? await suspendTenant(db, t.id) : await db.tenants.resume(t.id);
        print(r, `${r.slug} is ${r.status}`);
        return 0;
      }
      case 'rename': {
        const r = await renameTenant(db, need(args[0], '<tenant>'), need(args[1], '<new-slug>'));
        print(r, `${r.id} is now ${r.slug}`);
        return 0;
      }
      case 'move': {
        const ref = need(args[0], '<tenant>');
        if (values.abort) {
          const r = await abortMove(db, ref);
          print(r, r.dropped.length === 0 ? `no unfinished move of ${r.tenant.slug}` : `rolled back the move of ${r.tenant.slug}: dropped ${r.dropped.join(', ')}`);
          return 0;
        }
        const to = placement(need(values.to, '--to'), 'to') as Placement;
        const lockTimeoutMs = int(values['lock-timeout'], 'lock-timeout');
        const r = await moveTenant(db, ref, to, {
          ...(batchSize ? { batchSize } : {}),
          ...(lockTimeoutMs ? { lockTimeoutMs } : {}),
          onProgress: progress.onProgress,
        });
        progress.done();
        const rows = r.tables.reduce((a, t) => a + t.rows, 0);
        print(
          r,
          `moved ${r.tenant.slug} ${r.from} -> ${r.to}${r.resumed ? ' (resumed)' : ''}: ${rows} rows verified in ${r.tables.length} tables, ` +
            `writes blocked ${r.writeBlockedMs.toFixed(1)} ms (reads of its bucket ${r.readBlockedMs.toFixed(1)} ms), total ${r.totalMs.toFixed(0)} ms`,
        );
        return 0;
      }
      case 'export': {
        const format = values.format ?? 'ndjson';
        if (format !== 'ndjson' && format !== 'csv') throw new TenantwallError('config_invalid', '--format must be ndjson or csv.');
        const r = await exportTenant(db, need(args[0], '<tenant>'), {
          dir: need(values.out, '--out <dir>'),
          format,
          ...(batchSize ? { batchSize } : {}),
          onProgress: progress.onProgress,
        });
        progress.done();
        print({ dir: r.dir, rows: r.rows, ms: r.ms, manifest: r.manifest }, `exported ${r.rows} rows of ${r.manifest.tenant.slug} to ${r.dir} in ${r.ms.toFixed(0)} ms`);
        return 0;
      }
      case 'import': {
        const p = placement(values.placement, 'placement');
        const r = await importTenant(db, {
          dir: need(args[0], '<dir>'),
          slug: need(values.slug, '--slug'),
          ...(values.name ? { name: values.name } : {}),
          ...(values.id ? { id: values.id } : {}),
          ...(p ? { placement: p } : {}),
          ...(batchSize ? { batchSize } : {}),
          onProgress: progress.onProgress,
        });
        progress.done();
        print(r, `imported ${r.rows} rows into ${r.tenant.slug} ${r.tenant.id} in ${r.ms.toFixed(0)} ms`);
        return 0;
      }
      case 'delete': {
        const r = await deleteTenant(db, need(args[0], '<tenant>'), {
          confirm: values.confirm,
          ...(batchSize ? { batchSize } : {}),
          onProgress: progress.onProgress,
        });
        progress.done();
        print(
          r,
          `deleted ${r.tenant.slug}${r.resumed ? ' (resumed)' : ''}: dropped ${r.droppedPartitions.length} partitions, deleted ${r.rowsDeleted} shared rows, tombstone left (${r.ms.toFixed(0)} ms)`,
        );
        return 0;
      }
    }
    return 2;
  } finally {
    progress.done();
    await db.close();
  }
}
