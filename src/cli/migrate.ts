import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { generateMigration } from '../adopt/generate.ts';
import { resolveOptions } from '../config/options.ts';
import { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { loadProjectConfig } from './config.ts';
import { parseFlags } from './flags.ts';

const GENERATE_USAGE = `usage: tenantwall migrate generate [options]

Compares the declared schema (the config's \`schema\`) with the database and writes the next numbered
migration (<dir>/<NNNN>_<name>.sql) for what is missing. Writes nothing when the database matches.

  --config <file>              project config (default ./tenantwall.config.ts)
  --database-url <url>         database to compare with (default DATABASE_URL)
  --dir <folder>               where migration files live (default ./migrations)
  --name <name>                file name part (default generated)
  --allow-drop <a,b.c,...>     tables, table.columns and indexes that may be dropped
  --allow-type-change <t.c,...> columns whose type may change
  --json                       print {"file","changes","refused"}
exit codes: 0 written or nothing to do, 1 destructive changes refused (listed; the rest is written)
every flag: docs/cli.md`;

const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

/** \`tenantwall migrate generate\`: writes the migration from the declared schema to the database's. */
async function generateCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    config: { type: 'string' },
    'database-url': { type: 'string' },
    dir: { type: 'string', default: 'migrations' },
    name: { type: 'string', default: 'generated' },
    'allow-drop': { type: 'string' },
    'allow-type-change': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  }, 'docs/cli.md');
  if (values.help) {
    console.log(GENERATE_USAGE);
    return 0;
  }
  if (!/^[A-Za-z0-9_-]+$/.test(values.name)) throw new TenantwallError('config_invalid', '--name takes letters, digits, _ and -.', { details: { field: 'name' } });
  const cfg = await loadProjectConfig(values.config);
  const options = resolveOptions({ ...cfg.options, ...(values['database-url'] ? { databaseUrl: values['database-url'] } : {}) });
  if (options.databaseUrl === undefined) throw new TenantwallError('config_invalid', 'migrate generate needs the database: pass --database-url or set DATABASE_URL.', { details: { field: 'database-url' } });
  const client = new pg.Client({ connectionString: options.databaseUrl, application_name: 'tenantwall migrate generate' });
  await client.connect();
  let result;
  let applied = 0;
  try {
    result = await generateMigration(client, { schema: cfg.schema, appRole: options.appRole, settingName: options.settingName }, {
      allowDrop: list(values['allow-drop']),
      allowTypeChange: list(values['allow-type-change']),
    });
    if ((await client.query(`SELECT to_regclass('tenantwall_migrations') AS r`)).rows[0]?.r) {
      applied = Number((await client.query<{ v: number | null }>('SELECT max(version) AS v FROM tenantwall_migrations')).rows[0]?.v ?? 0);
    }
  } finally {
    await client.end();
  }
  let file: string | undefined;
  if (result.sql !== '') {
    const version = Math.max(applied, ...cfg.migrations.map((m) => m.version), 0) + 1;
    const dir = path.resolve(values.dir);
    fs.mkdirSync(dir, { recursive: true });
    file = path.join(dir, `${String(version).padStart(4, '0')}_${values.name}.sql`);
    fs.writeFileSync(file, result.sql);
  }
  if (values.json) {
    console.log(JSON.stringify({ file: file ?? null, changes: result.changes, refused: result.refused }));
  } else {
    for (const c of result.changes) console.log(`  ${c}`);
    for (const r of result.refused) console.log(`refused: ${r.change} (pass ${r.flag})`);
    console.log(file ? `wrote ${file}; review it, then run \`tenantwall migrate\`` : 'Nothing to generate: the database matches the declared schema.');
  }
  return result.refused.length > 0 ? 1 : 0;
}

export async function migrateCommand(argv: string[]): Promise<number> {
  if (argv[0] === 'generate') return generateCommand(argv.slice(1));
  const { values } = parseFlags(argv, {
    config: { type: 'string' },
    'database-url': { type: 'string' },
    'dry-run': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  if (values.help) {
    console.log('usage: tenantwall migrate [--config file] [--database-url url] [--dry-run] [--json]\n       tenantwall migrate generate [options]   (--help for its options)');
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
