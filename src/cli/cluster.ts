import { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { rebalanceCluster } from '../lifecycle/citus.ts';
import { createProgressPrinter } from '../lifecycle/progress.ts';
import { loadProjectConfig } from './config.ts';
import { parseFlags } from './flags.ts';

const USAGE = `usage: tenantwall cluster <subcommand> [options]

  rebalance [--dry-run]   spread the shards over the workers of a Citus cluster (after citus_add_node), online;
                          dedicated-node tenants stay on their node and no other shard goes there

Takes --config <file> (default ./tenantwall.config.ts), --database-url <url> (the coordinator) and --json.
See docs/scale-out.md.`;

/** `tenantwall cluster`: Citus cluster operations (docs/scale-out.md, docs/cli.md). */
export async function clusterCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    config: { type: 'string' },
    'database-url': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
    'dry-run': { type: 'boolean', default: false },
  });
  const [sub] = positionals;
  if (values.help || sub === undefined || sub === 'help') {
    console.log(USAGE);
    return sub === undefined && !values.help ? 2 : 0;
  }
  if (sub !== 'rebalance') throw new TenantwallError('config_invalid', `Unknown subcommand ${JSON.stringify(sub)}.\n\n${USAGE}`);
  const cfg = await loadProjectConfig(values.config);
  const db = await Tenantwall.connect({ ...cfg.options, schema: cfg.schema, ...(values['database-url'] ? { databaseUrl: values['database-url'] } : {}) });
  const progress = createProgressPrinter({ json: values.json });
  try {
    const r = await rebalanceCluster(db, { dryRun: values['dry-run'], onProgress: progress.onProgress });
    progress.done();
    console.log(
      values.json
        ? JSON.stringify(r)
        : `${values['dry-run'] ? 'would move' : 'moved'} ${r.moves.length} shard(s) in ${r.ms.toFixed(0)} ms; placements per worker: ${r.workers.map((w) => `${w.node} ${w.shards}`).join(', ')}`,
    );
    return 0;
  } finally {
    progress.done();
    await db.close();
  }
}
