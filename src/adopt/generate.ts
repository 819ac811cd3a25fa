import type pg from 'pg';
import { type DdlContext, columnSql, quoteIdent as q, registrySql, rlsSql, tableSql } from '../schema/ddl.ts';
import type { TableDecl } from '../schema/declare.ts';
import { type DbTable, introspect, isTenantwallInternal } from './introspect.ts';

/** Options of `generateMigration`: the destructive changes the caller names explicitly. */
export interface GenerateOptions {
  /** Tables (`orders`), columns (`orders.note`) and indexes (`orders_tenant_id_note_idx`) that may be dropped. */
  readonly allowDrop?: readonly string[] | undefined;
  /** Columns (`orders.total`) whose type may change. */
  readonly allowTypeChange?: readonly string[] | undefined;
}

/** A destructive change left out of the migration because it was not named. */
export interface RefusedChange {
  readonly change: string;
  /** The flag that allows it. */
  readonly flag: string;
}

/** What `generateMigration` found: the SQL (empty when the database matches), one line per change, the refused ones. */
export interface GeneratedMigration {
  readonly sql: string;
  readonly changes: readonly string[];
  readonly refused: readonly RefusedChange[];
}

/** The DDL generator's name for a declared index (src/schema/ddl.ts). */
function indexName(t: TableDecl, tc: string, ix: NonNullable<TableDecl['indexes']>[number]): string {
  if (ix.name) return ix.name;
  const base = ix.columns.join('_').replace(/[^a-z0-9_]/g, '');
  return t.kind === 'tenant' ? `${t.name}_${tc}_${base}_${ix.unique ? 'key' : 'idx'}` : `${t.name}_${base}_${ix.unique ? 'key' : 'idx'}`;
}

function indexSql(t: TableDecl, tc: string, ix: NonNullable<TableDecl['indexes']>[number]): string {
  const columns = t.kind === 'tenant' ? [q(tc), ...ix.columns.map((c) => (/^[a-z_][a-z0-9_]*$/.test(c) ? q(c) : c))] : ix.columns;
  return `CREATE ${ix.unique ? 'UNIQUE ' : ''}INDEX ${q(indexName(t, tc, ix))} ON ${q(t.name)} (${columns.join(', ')});`;
}

/** The types as PostgreSQL spells them (`varchar(20)` -> `character varying(20)`), through a rolled-back temporary table. */
async function normalizeTypes(client: pg.ClientBase, types: readonly string[]): Promise<string[]> {
  if (types.length === 0) return [];
  await client.query('BEGIN');
  try {
    await client.query(`CREATE TEMP TABLE tenantwall_type_probe (${types.map((t, i) => `c${i} ${t}`).join(', ')})`);
    const { rows } = await client.query<{ t: string }>(
      `SELECT format_type(atttypid, atttypmod) AS t FROM pg_attribute WHERE attrelid = 'tenantwall_type_probe'::regclass AND attnum > 0 ORDER BY attnum`,
    );
    return rows.map((r) => r.t);
  } finally {
    await client.query('ROLLBACK');
  }
}

/**
 * Compares the declared schema with the database and returns the migration that brings the database to the
 * declaration: new tables (with every tenant-table rule: tenant-led keys, RLS, policy, partitions, grants, as
 * `createTable` writes them), new columns, indexes, uniques and foreign keys, and RLS missing on a tenant table.
 * Drops and type changes are left out (listed in `refused`) unless named in `options`.
 */
export async function generateMigration(client: pg.ClientBase, ctx: DdlContext, options: GenerateOptions = {}): Promise<GeneratedMigration> {
  const tc = ctx.schema.tenantColumn;
  // Declared tables are named unqualified: each is the table its name resolves to under the search_path.
  const db = new Map((await introspect(client)).filter((t) => t.visible).map((t) => [t.name, t]));
  const visible = `pg_table_is_visible((quote_ident(schemaname) || '.' || quote_ident(tablename))::regclass)`;
  const { rows: allIndexes } = await client.query<{ table: string; name: string }>(
    `SELECT tablename AS table, indexname AS name FROM pg_indexes WHERE ${visible}`,
  );
  const { rows: policies } = await client.query<{ table: string }>(`SELECT tablename AS table FROM pg_policies WHERE ${visible} AND policyname = 'tenant_isolation'`);
  const withPolicy = new Set(policies.map((p) => p.table));
  const allowDrop = new Set(options.allowDrop ?? []);
  const allowType = new Set(options.allowTypeChange ?? []);
  const sql: string[] = [];
  const changes: string[] = [];
  const refused: RefusedChange[] = [];
  const destructive = (name: string, change: string, flag: 'allow-drop' | 'allow-type-change', statement: string) => {
    if ((flag === 'allow-drop' ? allowDrop : allowType).has(name)) {
      sql.push(statement);
      changes.push(change);
    } else refused.push({ change, flag: `--${flag} ${name}` });
  };

  if (!(await client.query(`SELECT to_regclass($1) AS r`, [q(ctx.schema.registryTable)])).rows[0]?.r) {
    sql.push(registrySql(ctx));
    changes.push(`create the registry ${ctx.schema.registryTable}`);
  }

  const declaredTypes = ctx.schema.tables.flatMap((t) => Object.values(t.columns).map((c) => c.type));
  const normalized = await normalizeTypes(client, declaredTypes);
  const typeOf = new Map(declaredTypes.map((t, i) => [t, normalized[i] as string]));

  for (const t of ctx.schema.tables) {
    // tenantwall's own tables (metering tw_*, bookkeeping) come with their own migrations.
    if (isTenantwallInternal(t.name)) continue;
    const existing: DbTable | undefined = db.get(t.name);
    if (!existing) {
      sql.push(tableSql(t, ctx));
      changes.push(`create ${t.kind} table ${t.name}`);
      continue;
    }
    const cols = new Map(existing.columns.map((c) => [c.name, c]));
    for (const [name, spec] of Object.entries(t.columns)) {
      const c = cols.get(name);
      if (!c) {
        sql.push(`ALTER TABLE ${q(t.name)} ADD COLUMN ${columnSql(name, spec, ctx)};`);
        changes.push(`add column ${t.name}.${name}`);
        continue;
      }
      const want = typeOf.get(spec.type) ?? spec.type;
      if (want !== c.type) {
        destructive(`${t.name}.${name}`, `change the type of ${t.name}.${name} from ${c.type} to ${want}`, 'allow-type-change', `ALTER TABLE ${q(t.name)} ALTER COLUMN ${q(name)} TYPE ${spec.type};`);
      }
      if (!spec.nullable && !c.notNull) {
        sql.push(`ALTER TABLE ${q(t.name)} ALTER COLUMN ${q(name)} SET NOT NULL;`);
        changes.push(`make ${t.name}.${name} NOT NULL`);
      } else if (spec.nullable && c.notNull) {
        sql.push(`ALTER TABLE ${q(t.name)} ALTER COLUMN ${q(name)} DROP NOT NULL;`);
        changes.push(`make ${t.name}.${name} nullable`);
      }
    }
    for (const c of existing.columns) {
      if (t.columns[c.name] || (t.kind === 'tenant' && c.name === tc)) continue;
      destructive(`${t.name}.${c.name}`, `drop column ${t.name}.${c.name}`, 'allow-drop', `ALTER TABLE ${q(t.name)} DROP COLUMN ${q(c.name)};`);
    }
    const indexNames = new Set(allIndexes.filter((i) => i.table === t.name).map((i) => i.name));
    const declaredIndexes = new Set<string>();
    for (const ix of t.indexes ?? []) {
      const name = indexName(t, tc, ix);
      declaredIndexes.add(name);
      if (indexNames.has(name)) continue;
      sql.push(indexSql(t, tc, ix));
      changes.push(`create ${ix.unique ? 'unique ' : ''}index ${name}`);
    }
    for (const ix of existing.indexes) {
      if (declaredIndexes.has(ix.name)) continue;
      destructive(ix.name, `drop index ${ix.name} on ${t.name}`, 'allow-drop', `DROP INDEX IF EXISTS ${q(ix.name)};`);
    }
    const constraintNames = new Set(existing.constraints.map((c) => c.name));
    for (const fk of t.foreignKeys ?? []) {
      const name = `${t.name}_${fk.columns.join('_')}_fkey`;
      if (constraintNames.has(name)) continue;
      const target = ctx.schema.table(fk.references) as TableDecl;
      const refCols = fk.referencedColumns ?? target.primaryKey;
      const onDelete = fk.onDelete ? ` ON DELETE ${fk.onDelete.toUpperCase()}` : '';
      const composite = t.kind === 'tenant' && target.kind === 'tenant';
      const local = composite ? [tc, ...fk.columns] : fk.columns;
      const remote = composite ? [tc, ...refCols] : refCols;
      sql.push(`ALTER TABLE ${q(t.name)} ADD CONSTRAINT ${q(name)} FOREIGN KEY (${local.map(q).join(', ')}) REFERENCES ${q(target.name)} (${remote.map(q).join(', ')})${onDelete};`);
      changes.push(`add foreign key ${name}`);
    }
    if (t.kind === 'tenant' && (!existing.rls || !existing.forceRls || !withPolicy.has(t.name))) {
      const statements = rlsSql(t.name, ctx).filter((s) => !(withPolicy.has(t.name) && s.startsWith('CREATE POLICY')));
      sql.push(...statements);
      changes.push(`row-level security and policy on ${t.name}`);
    }
  }
  for (const name of db.keys()) {
    if (ctx.schema.table(name) || name === ctx.schema.registryTable || isTenantwallInternal(name)) continue;
    destructive(name, `drop table ${name}`, 'allow-drop', `DROP TABLE ${q(name)};`);
  }
  return {
    sql: sql.length === 0 ? '' : `-- Written by \`tenantwall migrate generate\`:\n${changes.map((c) => `--   ${c}`).join('\n')}\n\n${sql.join('\n')}\n`,
    changes,
    refused,
  };
}
