import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { introspect } from '../adopt/introspect.ts';
import { planAdoption } from '../adopt/plan.ts';
import { resolveOptions } from '../config/options.ts';
import { TenantwallError } from '../errors.ts';
import { loadMigrations } from '../schema/migrations.ts';
import { parseFlags } from './flags.ts';

const USAGE = `usage: tenantwall adopt [options]

Reads an existing database and writes, without applying anything:
  <migrations-dir>/<NNNN>_adopt.sql   an online migration (applied by \`tenantwall migrate\`, resumable)
  <schema-file>                       the matching defineSchema declaration
  <dir>/tenantwall.config.ts          a project config loading both (only when missing)

  --database-url <url>          database to read (default DATABASE_URL)
  --dir <folder>                where to write (default .)
  --migrations-dir <folder>     default <dir>/migrations
  --schema-file <file>          default <dir>/tenantwall.schema.ts
  --schemas <a,b,...>           schemas to adopt (default: every schema not PostgreSQL's or an extension's own);
                                their tables are declared unqualified, found through the search_path
  --tenant-table <table>        the existing table whose rows are the tenants (default: found by name)
  --tenant-key <t=col,...>      a table's column holding the tenant table's key without a foreign key
  --global-tables <a,b,...>     keep these tables global
  --tenant-column <name>        the column to add (default tenant_id)
  --registry-table <name>       the registry to create (default tenants)
  --batch-size <n>              rows per backfill batch (default 1000)
  (tenant key type: the tenantKey option, TENANTWALL_TENANT_KEY=uuid|bigint|text; bigint/text keep the
   tenant table's own key as the tenant id)
  --import-from <module>        module the declaration imports (default tenantwall)
  --json                        print the plan as JSON
exit codes: 0 written and nothing undecided, 1 written with undecided tables (listed), 2 nothing written
every flag: docs/cli.md`;

const list = (v: string | undefined) => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');

/** `tenantwall adopt`: plans the adoption of an existing database and writes the migration and declaration. */
export async function adoptCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(argv, {
    'database-url': { type: 'string' },
    dir: { type: 'string', default: '.' },
    'migrations-dir': { type: 'string' },
    'schema-file': { type: 'string' },
    schemas: { type: 'string' },
    'tenant-table': { type: 'string' },
    'tenant-key': { type: 'string' },
    'global-tables': { type: 'string' },
    'tenant-column': { type: 'string' },
    'registry-table': { type: 'string' },
    'batch-size': { type: 'string' },
    'import-from': { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  }, 'docs/cli.md');
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const options = resolveOptions(values['database-url'] ? { databaseUrl: values['database-url'] } : {});
  if (options.databaseUrl === undefined) throw new TenantwallError('config_invalid', 'adopt needs the database: pass --database-url or set DATABASE_URL.', { details: { field: 'database-url' } });
  const batchSize = values['batch-size'] === undefined ? undefined : Number(values['batch-size']);
  if (batchSize !== undefined && (!Number.isInteger(batchSize) || batchSize < 1)) {
    throw new TenantwallError('config_invalid', '--batch-size must be a positive integer.', { details: { field: 'batch-size' } });
  }
  const tenantKeys: Record<string, string> = {};
  for (const kv of list(values['tenant-key'])) {
    const [t, c] = kv.split('=');
    if (!t || !c) throw new TenantwallError('config_invalid', `--tenant-key takes table=column pairs (got ${JSON.stringify(kv)}).`, { details: { field: 'tenant-key' } });
    tenantKeys[t] = c;
  }
  const client = new pg.Client({ connectionString: options.databaseUrl, application_name: 'tenantwall adopt' });
  await client.connect();
  let tables;
  try {
    const schemas = values.schemas === undefined ? undefined : list(values.schemas);
    if (schemas !== undefined && schemas.length === 0) throw new TenantwallError('config_invalid', '--schemas takes a comma-separated list of schema names.', { details: { field: 'schemas' } });
    tables = await introspect(client, schemas);
  } finally {
    await client.end();
  }
  const plan = planAdoption(tables, {
    tenantColumn: values['tenant-column'],
    registryTable: values['registry-table'],
    tenantTable: values['tenant-table'],
    tenantKeys,
    globalTables: list(values['global-tables']),
    appRole: options.appRole,
    settingName: options.settingName,
    tenantKey: options.tenantKey,
    batchSize,
    importFrom: values['import-from'],
  });
  const dir = path.resolve(values.dir);
  const migrationsDir = path.resolve(values['migrations-dir'] ?? path.join(dir, 'migrations'));
  const schemaFile = path.resolve(values['schema-file'] ?? path.join(dir, 'tenantwall.schema.ts'));
  const written: string[] = [];
  if (plan.migrationSql !== '') {
    const existing = loadMigrations(migrationsDir);
    const version = (existing.at(-1)?.version ?? 0) + 1;
    const file = path.join(migrationsDir, `${String(version).padStart(4, '0')}_adopt.sql`);
    fs.mkdirSync(migrationsDir, { recursive: true });
    fs.writeFileSync(file, plan.migrationSql);
    fs.mkdirSync(path.dirname(schemaFile), { recursive: true });
    fs.writeFileSync(schemaFile, plan.declaration);
    written.push(file, schemaFile);
    const config = path.join(dir, 'tenantwall.config.ts');
    if (!fs.existsSync(config)) {
      const rel = (p: string) => `./${path.relative(dir, p).split(path.sep).join('/')}`;
      fs.writeFileSync(config, `// Written by \`tenantwall adopt\`: the project config the tenantwall CLI loads.
import { loadMigrations } from ${JSON.stringify(values['import-from'] ?? 'tenantwall')};
export { schema } from ${JSON.stringify(rel(schemaFile))};
export const migrations = loadMigrations(new URL(${JSON.stringify(`${rel(migrationsDir)}/`)}, import.meta.url));
${options.tenantKey === 'uuid' ? '' : `// Tenant ids are the tenant table's own ${options.tenantKey} keys: every process must use the same type.\nexport const options = { tenantKey: ${JSON.stringify(options.tenantKey)} } as const;\n`}`);
      written.push(config);
    }
  }
  if (values.json) {
    console.log(JSON.stringify({ written, tenantTable: plan.tenantTable, tenantTables: plan.tenantTables, globalTables: plan.globalTables, undecided: plan.undecided, notes: plan.notes }, null, 2));
  } else {
    if (plan.tenantTable) console.log(`tenant table: ${plan.tenantTable}`);
    for (const t of plan.tenantTables) console.log(`  tenant table ${t.schema ? `${t.schema}.` : ''}${t.table}${t.via ? ` (tenant through ${t.via.column} -> ${t.via.parent})` : ' (its rows are the tenants)'}`);
    for (const g of plan.globalTables) console.log(`  global table ${g}`);
    for (const n of plan.notes) console.log(`note: ${n.table}: ${n.note}`);
    if (plan.undecided.length > 0) {
      console.log(`\ncould not decide (${plan.undecided.length}):`);
      for (const u of plan.undecided) console.log(`  ${u.table}: ${u.reason}\n    fix: ${u.fix}`);
    }
    for (const w of written) console.log(`wrote ${w}`);
    if (written.length > 0) console.log('Review the files, then run `tenantwall migrate` to apply the migration.');
  }
  return written.length === 0 ? 2 : plan.undecided.length > 0 ? 1 : 0;
}
