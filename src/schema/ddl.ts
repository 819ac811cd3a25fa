import type { ColumnSpec, GlobalTable, Schema, TableDecl, TenantTable } from './declare.ts';

/** What DDL generation needs besides the declarations. */
export interface DdlContext {
  readonly schema: Schema;
  readonly appRole: string;
  readonly settingName: string;
}

export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

const q = quoteIdent;

/** The policy expression of design.md: a missing or reset setting reads as NULL, so nothing matches. */
export function tenantPredicate(ctx: DdlContext): string {
  const setting = `nullif(current_setting(${quoteLiteral(ctx.settingName)}, true), '')::uuid`;
  const col = q(ctx.schema.tenantColumn);
  return ctx.schema.policyForm === 'plain' ? `${col} = ${setting}` : `${col} = (SELECT ${setting})`;
}

function columnSql(name: string, c: ColumnSpec): string {
  let sql = `${q(name)} ${c.type}`;
  if (!c.nullable) sql += ' NOT NULL';
  if (c.default !== undefined) sql += ` DEFAULT ${c.default}`;
  if (c.check !== undefined) sql += ` CHECK (${c.check})`;
  return sql;
}

function cols(names: readonly string[]): string {
  return names.map(q).join(', ');
}

/** Registry of tenants: global, readable by the application role, written only by the owner. */
export function registrySql(ctx: DdlContext): string {
  const t = q(ctx.schema.registryTable);
  return [
    `CREATE TABLE ${t} (
  "id" uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  "slug" text NOT NULL CHECK ("slug" ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  "name" text NOT NULL CHECK (length("name") BETWEEN 1 AND 200),
  "status" text NOT NULL DEFAULT 'active' CHECK ("status" IN ('active', 'suspended', 'deleted')),
  "created_at" timestamptz NOT NULL DEFAULT now(),
  "deleted_at" timestamptz
);`,
    // A deleted tenant keeps its tombstone row; its slug becomes free for reuse.
    `CREATE UNIQUE INDEX ${q(`${ctx.schema.registryTable}_slug_key`)} ON ${t} ("slug") WHERE "status" <> 'deleted';`,
    `GRANT SELECT ON ${t} TO ${q(ctx.appRole)};`,
  ].join('\n');
}

function tenantTableSql(t: TenantTable, ctx: DdlContext): string[] {
  const tc = ctx.schema.tenantColumn;
  const name = q(t.name);
  const body = [
    `${q(tc)} uuid NOT NULL`,
    ...Object.entries(t.columns).map(([n, c]) => columnSql(n, c)),
    `CONSTRAINT ${q(`${t.name}_pkey`)} PRIMARY KEY (${cols([tc, ...t.primaryKey])})`,
    `CONSTRAINT ${q(`${t.name}_${tc}_fkey`)} FOREIGN KEY (${q(tc)}) REFERENCES ${q(ctx.schema.registryTable)} ("id")`,
  ];
  for (const fk of t.foreignKeys ?? []) {
    const target = ctx.schema.table(fk.references) as TableDecl;
    const refCols = fk.referencedColumns ?? target.primaryKey;
    const onDelete = fk.onDelete ? ` ON DELETE ${fk.onDelete.toUpperCase()}` : '';
    if (target.kind === 'tenant') {
      // Composite: a row of tenant A can only reference a row of tenant A.
      body.push(
        `CONSTRAINT ${q(`${t.name}_${fk.columns.join('_')}_fkey`)} FOREIGN KEY (${cols([tc, ...fk.columns])}) REFERENCES ${q(target.name)} (${cols([tc, ...refCols])})${onDelete}`,
      );
    } else {
      body.push(
        `CONSTRAINT ${q(`${t.name}_${fk.columns.join('_')}_fkey`)} FOREIGN KEY (${cols(fk.columns)}) REFERENCES ${q(target.name)} (${cols(refCols)})${onDelete}`,
      );
    }
  }
  const partition = t.partition ? ` PARTITION BY HASH (${q(tc)})` : '';
  const out = [`CREATE TABLE ${name} (\n  ${body.join(',\n  ')}\n)${partition};`];
  for (const ix of t.indexes ?? []) {
    const ixName = ix.name ?? `${t.name}_${tc}_${ix.columns.join('_').replace(/[^a-z0-9_]/g, '')}_${ix.unique ? 'key' : 'idx'}`;
    out.push(`CREATE ${ix.unique ? 'UNIQUE ' : ''}INDEX ${q(ixName)} ON ${name} (${[q(tc), ...ix.columns.map((c) => (/^[a-z_][a-z0-9_]*$/.test(c) ? q(c) : c))].join(', ')});`);
  }
  const relations = [t.name];
  if (t.partition) {
    for (let i = 0; i < t.partition.hashPartitions; i++) {
      const part = `${t.name}_p${i}`;
      out.push(`CREATE TABLE ${q(part)} PARTITION OF ${name} FOR VALUES WITH (MODULUS ${t.partition.hashPartitions}, REMAINDER ${i});`);
      relations.push(part);
    }
  }
  // RLS is per relation: a query that names a partition directly must be isolated too.
  for (const rel of relations) out.push(...rlsSql(rel, ctx));
  out.push(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${name} TO ${q(ctx.appRole)};`);
  return out;
}

/** ENABLE + FORCE row level security and the one tenant policy on `relation`. */
export function rlsSql(relation: string, ctx: DdlContext): string[] {
  const rel = q(relation);
  const pred = tenantPredicate(ctx);
  return [
    `ALTER TABLE ${rel} ENABLE ROW LEVEL SECURITY;`,
    `ALTER TABLE ${rel} FORCE ROW LEVEL SECURITY;`,
    `CREATE POLICY "tenant_isolation" ON ${rel} FOR ALL USING (${pred}) WITH CHECK (${pred});`,
  ];
}

function globalTableSql(t: GlobalTable, ctx: DdlContext): string[] {
  const name = q(t.name);
  const body = [
    ...Object.entries(t.columns).map(([n, c]) => columnSql(n, c)),
    `CONSTRAINT ${q(`${t.name}_pkey`)} PRIMARY KEY (${cols(t.primaryKey)})`,
  ];
  for (const fk of t.foreignKeys ?? []) {
    const target = ctx.schema.table(fk.references) as TableDecl;
    body.push(
      `CONSTRAINT ${q(`${t.name}_${fk.columns.join('_')}_fkey`)} FOREIGN KEY (${cols(fk.columns)}) REFERENCES ${q(target.name)} (${cols(fk.referencedColumns ?? target.primaryKey)})`,
    );
  }
  const out = [`CREATE TABLE ${name} (\n  ${body.join(',\n  ')}\n);`];
  for (const ix of t.indexes ?? []) {
    const ixName = ix.name ?? `${t.name}_${ix.columns.join('_').replace(/[^a-z0-9_]/g, '')}_${ix.unique ? 'key' : 'idx'}`;
    out.push(`CREATE ${ix.unique ? 'UNIQUE ' : ''}INDEX ${q(ixName)} ON ${name} (${ix.columns.join(', ')});`);
  }
  const access = t.appAccess ?? 'read';
  if (access !== 'none') {
    out.push(`GRANT ${access === 'read' ? 'SELECT' : 'SELECT, INSERT, UPDATE, DELETE'} ON ${name} TO ${q(ctx.appRole)};`);
  }
  return out;
}

/** DDL of one declared table (tenant or global). */
export function tableSql(table: TableDecl, ctx: DdlContext): string {
  return (table.kind === 'tenant' ? tenantTableSql(table, ctx) : globalTableSql(table, ctx)).join('\n');
}

/** DDL of the registry and every declared table, in declaration order: the usual first migration. */
export function schemaSql(ctx: DdlContext): string {
  return [registrySql(ctx), ...ctx.schema.tables.map((t) => tableSql(t, ctx))].join('\n\n');
}
