import { Tenantwall } from '../db/tenantwall.ts';
import { loadProjectConfig } from './config.ts';
import { parseFlags } from './flags.ts';

export async function migrateCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    config: { type: 'string' },
    'database-url': { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  if (values.help) {
    console.log('usage: tenantwall migrate [--config file] [--database-url url] [--dry-run] [--json]');
    return 0;
  }
  const cfg = await loadProjectConfig(values.config);
  const db = await Tenantwall.connect({
    ...cfg.options,
    schema: cfg.schema,
    ...(values['database-url'] ? { databaseUrl: values['database-url'] } : {}),
  });
  try {
    if (values['dry-run']) {
      for (const m of db.renderMigrations(cfg.migrations)) {
        console.log(`-- migration ${m.version}: ${m.name} (sha256 ${m.checksum})\n${m.sql}\n`);
      }
      return 0;
    }
    const result = await db.migrate(cfg.migrations, {
      // Online migrations (adopt) report every step and batch: a long backfill shows it is moving.
      onProgress: (p) => console.error(`migration ${p.version} step ${p.step} (${p.kind})${p.kind === 'batch' ? `: ${p.rows} rows` : ''}${p.done ? ' done' : ''}`),
    });
    if (values.json) {
      console.log(JSON.stringify({ applied: result.applied.map((m) => ({ version: m.version, name: m.name })), alreadyApplied: result.alreadyApplied }));
    } else if (result.applied.length === 0) {
      console.log(`Nothing to apply: ${result.alreadyApplied} migration(s) already applied.`);
    } else {
      for (const m of result.applied) console.log(`applied ${m.version} ${m.name}`);
    }
    return 0;
  } finally {
    await db.close();
  }
}
