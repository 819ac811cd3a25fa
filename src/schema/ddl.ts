import { createHash } from 'node:crypto';
import { TenantwallError } from '../errors.ts';
import type { TenantKeyType } from '../tenant/tenant-id.ts';
import type { ColumnSpec, GlobalTable, Schema, TableDecl, TenantTable } from './declare.ts';

/** What DDL generation needs besides the declarations. */
export interface DdlContext {
  readonly schema: Schema;
  readonly appRole: string;
  readonly settingName: string;
  /**
   * The target is a Citus coordinator (`Tenantwall.connect` detects it): plain policies, tenant tables
   * distributed by the tenant column and colocated, the registry and global tables as reference tables.
   */
  readonly citus?: boolean | undefined;
  /** SQL type of tenant ids (the `tenantKey` option). Default `uuid`. */
  readonly tenantKey?: TenantKeyType | undefined;
}

/**
 * Column type placeholder for a column holding a tenant id outside the tenant column (metering's
 * `scope_tenant_id`, ...): rendered as the configured tenant key type (`DdlContext.tenantKey`).
 */
export const TENANT_KEY_COLUMN_TYPE = 'tenant_key';

/** The SQL type of tenant ids in `ctx`. */
export function tenantKeySql(ctx: Pick<DdlContext, 'tenantKey'>): TenantKeyType {
  return ctx.tenantKey ?? 'uuid';
}

/** Quotes an SQL identifier (double quotes, doubled inside). */
export function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

/** Quotes an SQL string literal (single quotes, doubled inside). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

const q = quoteIdent;

/** The policy expression (docs/architecture.md, "the policy shape"); a missing or reset setting reads as NULL, so nothing matches. */
export function tenantPredicate(ctx: DdlContext): string {
  const setting = `nullif(current_setting(${quoteLiteral(ctx.settingName)}, true), '')::${tenantKeySql(ctx)}`;
  const col = q(ctx.schema.tenantColumn);
  // Citus refuses policies with a sub-select on distributed tables.
  return ctx.schema.policyForm === 'plain' || ctx.citus ? `${col} = ${setting}` : `${col} = (SELECT ${setting})`;
}

/** One column definition of CREATE TABLE or ADD COLUMN. */
export function columnSql(name: string, c: ColumnSpec, ctx: DdlContext): string {
  let sql = `${q(name)} ${c.type === TENANT_KEY_COLUMN_TYPE ? tenantKeySql(ctx) : c.type}`;
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
  "id" ${tenantKeySql(ctx) === 'uuid' ? 'uuid PRIMARY KEY DEFAULT gen_random_uuid()' : `${tenantKeySql(ctx)} PRIMARY KEY`},
  "slug" text NOT NULL CHECK ("slug" ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  "name" text NOT NULL CHECK (length("name") BETWEEN 1 AND 200),
  "status" text NOT NULL DEFAULT 'active' CHECK ("status" IN ('active', 'suspended', 'deleted')),
  "created_at" timestamptz NOT NULL DEFAULT now(),
  "deleted_at" timestamptz
);`,
    // A deleted tenant keeps its tombstone row; its slug becomes free for reuse.
    `CREATE UNIQUE INDEX ${q(`${ctx.schema.registryTable}_slug_key`)} ON ${t} ("slug") WHERE "status" <> 'deleted';`,
    `GRANT SELECT ON ${t} TO ${q(ctx.appRole)};`,
    ...(ctx.citus ? [referenceTableSql(ctx.schema.registryTable)] : []),
  ].join('\n');
}

function tenantTableSql(t: TenantTable, ctx: DdlContext): string[] {
  const tc = ctx.schema.tenantColumn;
  const name = q(t.name);
  const body = [
    `${q(tc)} ${tenantKeySql(ctx)} NOT NULL`,
    ...Object.entries(t.columns).map(([n, c]) => columnSql(n, c, ctx)),
    `CONSTRAINT ${q(`${t.name}_pkey`)} PRIMARY KEY (${cols([tc, ...t.primaryKey])})`,
  ];
  const fks = [`CONSTRAINT ${q(`${t.name}_${tc}_fkey`)} FOREIGN KEY (${q(tc)}) REFERENCES ${q(ctx.schema.registryTable)} ("id")`];
  for (const fk of t.foreignKeys ?? []) {
    const target = ctx.schema.table(fk.references) as TableDecl;
    const refCols = fk.referencedColumns ?? target.primaryKey;
    const onDelete = fk.onDelete ? ` ON DELETE ${fk.onDelete.toUpperCase()}` : '';
    if (target.kind === 'tenant') {
      // Composite: a row of tenant A can only reference a row of tenant A.
      fks.push(
        `CONSTRAINT ${q(`${t.name}_${fk.columns.join('_')}_fkey`)} FOREIGN KEY (${cols([tc, ...fk.columns])}) REFERENCES ${q(target.name)} (${cols([tc, ...refCols])})${onDelete}`,
      );
    } else {
      fks.push(
        `CONSTRAINT ${q(`${t.name}_${fk.columns.join('_')}_fkey`)} FOREIGN KEY (${cols(fk.columns)}) REFERENCES ${q(target.name)} (${cols(refCols)})${onDelete}`,
      );
    }
  }
  // Citus: a local table with a foreign key to a reference table is turned into a Citus local table, which
  // cannot reference distributed ones: distribute first, then add the foreign keys.
  if (!ctx.citus) body.push(...fks);
  // On Citus the shards are the partitions: Citus cannot distribute the two-level hybrid layout.
  const partitioning = ctx.citus ? undefined : t.partition;
  const partition = partitioning ? ` PARTITION BY HASH (${q(tc)})` : '';
  const out = [`CREATE TABLE ${name} (\n  ${body.join(',\n  ')}\n)${partition};`];
  for (const ix of t.indexes ?? []) {
    const ixName = ix.name ?? `${t.name}_${tc}_${ix.columns.join('_').replace(/[^a-z0-9_]/g, '')}_${ix.unique ? 'key' : 'idx'}`;
    out.push(`CREATE ${ix.unique ? 'UNIQUE ' : ''}INDEX ${q(ixName)} ON ${name} (${[q(tc), ...ix.columns.map((c) => (/^[a-z_][a-z0-9_]*$/.test(c) ? q(c) : c))].join(', ')});`);
  }
  const relations = [t.name];
  if (partitioning) {
    // Indexes and foreign keys were declared on the parent first, so every partition below inherits them.
    const n = partitioning.hashPartitions;
    for (let i = 0; i < n; i++) {
      const bucket = bucketPartitionName(t.name, i);
      const sub = partitioning.dedicated === false ? '' : ` PARTITION BY LIST (${q(tc)})`;
      out.push(`CREATE TABLE ${q(bucket)} PARTITION OF ${name} FOR VALUES WITH (MODULUS ${n}, REMAINDER ${i})${sub};`);
      relations.push(bucket);
      if (partitioning.dedicated !== false) {
        const shared = sharedPartitionName(t.name, i);
        out.push(`CREATE TABLE ${q(shared)} PARTITION OF ${q(bucket)} DEFAULT;`);
        relations.push(shared);
      }
    }
  }
  // RLS is per relation: a query that names a partition directly must be isolated too.
  for (const rel of relations) out.push(...rlsSql(rel, ctx));
  out.push(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${name} TO ${q(ctx.appRole)};`);
  if (ctx.citus) out.push(distributedTableSql(t.name, tc), ...fks.map((fk) => `ALTER TABLE ${name} ADD ${fk};`));
  return out;
}

/**
 * Citus: distributes a tenant table by the tenant column, colocated with the first tenant table already
 * distributed by that column (so every tenant's rows of every table share one shard group, and composite
 * foreign keys and joins stay on one worker); the first one starts the group.
 */
export function distributedTableSql(table: string, tenantColumn: string): string {
  const anchor = `SELECT c.table_name::text FROM citus_tables c WHERE c.citus_table_type = 'distributed' AND c.distribution_column = ${quoteLiteral(tenantColumn)} AND c.table_name <> ${quoteLiteral(q(table))}::regclass ORDER BY c.table_name::oid LIMIT 1`;
  return `SELECT create_distributed_table(${quoteLiteral(q(table))}, ${quoteLiteral(tenantColumn)}, colocate_with => coalesce((${anchor}), 'default'));`;
}

/** Citus: a table every worker holds a copy of (the registry, global tables): joins and foreign keys to it stay local. */
export function referenceTableSql(table: string): string {
  return `SELECT create_reference_table(${quoteLiteral(q(table))});`;
}

/** Hash bucket `i` of a partitioned tenant table (a leaf, or LIST-partitioned in the hybrid layout). */
export function bucketPartitionName(table: string, i: number): string {
  return `${table}_p${i}`;
}

/** The DEFAULT partition of bucket `i`: the rows of that bucket's shared tenants. */
export function sharedPartitionName(table: string, i: number): string {
  return `${table}_p${i}_shared`;
}

/**
 * A tenant's dedicated partition of `table`: `<table>_t_<uuid hex>` (ids of digits only as they are, other
 * text ids as 32 hex of their sha256). Identifiers stop at 63 bytes, so a long table
 * name is shortened and disambiguated with a hash of the full name instead of being cut silently.
 */
export function dedicatedPartitionName(table: string, tenantId: string): string {
  const plain = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(tenantId) ? tenantId.replace(/-/g, '') : tenantId;
  const hex = plain !== tenantId || /^[0-9]{1,19}$/.test(tenantId) ? plain : createHash('sha256').update(tenantId).digest('hex').slice(0, 32);
  const full = `${table}_t_${hex}`;
  if (full.length <= 63) return full;
  return `${table.slice(0, 18)}_${createHash('sha256').update(table).digest('hex').slice(0, 8)}_t_${hex}`;
}

/**
 * A dedicated LIST partition for one tenant inside its hash bucket, with the same policy. PostgreSQL scans the
 * bucket's DEFAULT partition for rows of that tenant under an ACCESS EXCLUSIVE lock: one bucket, not all shared
 * data, is what the hybrid layout buys.
 */
export function dedicatedPartitionSql(t: TenantTable, ctx: DdlContext, tenantId: string, bucket: number): string[] {
  const part = dedicatedPartitionName(t.name, tenantId);
  return [
    `CREATE TABLE ${q(part)} PARTITION OF ${q(bucketPartitionName(t.name, bucket))} FOR VALUES IN (${quoteLiteral(tenantId)});`,
    ...rlsSql(part, ctx),
  ];
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
    ...Object.entries(t.columns).map(([n, c]) => columnSql(n, c, ctx)),
    `CONSTRAINT ${q(`${t.name}_pkey`)} PRIMARY KEY (${cols(t.primaryKey)})`,
  ];
  const fks = (t.foreignKeys ?? []).map((fk) => {
    const target = ctx.schema.table(fk.references) as TableDecl;
    return `CONSTRAINT ${q(`${t.name}_${fk.columns.join('_')}_fkey`)} FOREIGN KEY (${cols(fk.columns)}) REFERENCES ${q(target.name)} (${cols(fk.referencedColumns ?? target.primaryKey)})`;
  });
  if (!ctx.citus) body.push(...fks);
  const out = [`CREATE TABLE ${name} (\n  ${body.join(',\n  ')}\n);`];
  for (const ix of t.indexes ?? []) {
    const ixName = ix.name ?? `${t.name}_${ix.columns.join('_').replace(/[^a-z0-9_]/g, '')}_${ix.unique ? 'key' : 'idx'}`;
    out.push(`CREATE ${ix.unique ? 'UNIQUE ' : ''}INDEX ${q(ixName)} ON ${name} (${ix.columns.join(', ')});`);
  }
  const access = t.appAccess ?? 'read';
  if (access !== 'none') {
    out.push(`GRANT ${access === 'read' ? 'SELECT' : 'SELECT, INSERT, UPDATE, DELETE'} ON ${name} TO ${q(ctx.appRole)};`);
  }
  if (ctx.citus) out.push(referenceTableSql(t.name), ...fks.map((fk) => `ALTER TABLE ${name} ADD ${fk};`));
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

/**
 * Citus: the statements that turn an existing single-server tenantwall schema, restored into a Citus database
 * (plain tables on the coordinator), into the layout the DDL generator creates on Citus: plain policies, the
 * registry and global tables as reference tables, tenant tables distributed by the tenant column and colocated
 * (their rows are copied into the shards). Foreign keys are dropped first and re-created as they were.
 * Run them in one transaction as the owner (docs/scale-out.md). Partitioned tenant tables are refused.
 */
export function citusConversionStatements(ctx: DdlContext): string[] {
  const tc = ctx.schema.tenantColumn;
  for (const t of ctx.schema.tenantTables) {
    if (t.partition) {
      throw new TenantwallError('schema_invalid', `Table ${t.name}: a partitioned tenant table cannot be distributed as is; move its rows into an unpartitioned table first (docs/scale-out.md).`, { details: { table: t.name } });
    }
  }
  const citusCtx: DdlContext = { ...ctx, citus: true };
  const all = [ctx.schema.registryTable, ...ctx.schema.tables.map((t) => t.name)];
  const rels = `ARRAY[${all.map((n) => quoteLiteral(q(n))).join(', ')}]::regclass[]`;
  return [
    `SET LOCAL citus.multi_shard_modify_mode TO 'sequential'`,
    `CREATE TEMP TABLE tenantwall_saved_fks ON COMMIT DROP AS
  SELECT conrelid::regclass::text AS rel, conname AS name, pg_get_constraintdef(oid) AS def FROM pg_constraint
   WHERE contype = 'f' AND conrelid = ANY (${rels})`,
    `DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM tenantwall_saved_fks LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.rel, r.name); END LOOP;
END $$`,
    ...ctx.schema.tenantTables.flatMap((t) => [`DROP POLICY IF EXISTS "tenant_isolation" ON ${q(t.name)}`, ...rlsSql(t.name, citusCtx).map((s) => s.replace(/;$/, ''))]),
    referenceTableSql(ctx.schema.registryTable).replace(/;$/, ''),
    ...ctx.schema.globalTables.map((t) => referenceTableSql(t.name).replace(/;$/, '')),
    ...ctx.schema.tenantTables.map((t) => distributedTableSql(t.name, tc).replace(/;$/, '')),
    `DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT * FROM tenantwall_saved_fks ORDER BY rel, name LOOP EXECUTE format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.rel, r.name, r.def); END LOOP;
END $$`,
  ];
}
