import { TenantwallError } from '../errors.ts';

/** A column of a declared table. Columns are NOT NULL unless `nullable: true`. */
export interface ColumnSpec {
  /** SQL type, e.g. `uuid`, `text`, `bigint`, `timestamptz`, `numeric(12,2)`. */
  readonly type: string;
  readonly nullable?: boolean;
  /** SQL expression for DEFAULT, e.g. `gen_random_uuid()` or `now()`. */
  readonly default?: string;
  /** SQL boolean expression for a CHECK constraint on this column. */
  readonly check?: string;
}

/** A foreign key of a declared table; tenant tables get `tenant_id` prepended. */
export interface ForeignKeySpec {
  /** Local columns (without tenant_id; it is prepended for tenant tables). */
  readonly columns: readonly string[];
  /** Referenced table name; a tenant table for tenant tables (composite key), any table for global ones. */
  readonly references: string;
  /** Referenced columns (without tenant_id). Default: the referenced table's primary key. */
  readonly referencedColumns?: readonly string[];
  readonly onDelete?: 'restrict' | 'cascade' | 'no action';
}

/** An index of a declared table; tenant tables get `tenant_id` as the first column. */
export interface IndexSpec {
  /** Columns (or expressions) after tenant_id. */
  readonly columns: readonly string[];
  readonly unique?: boolean;
  readonly name?: string;
}

/**
 * Physical placement of a tenant table (see docs/isolation-strategies.md and docs/lifecycle.md). The default
 * hybrid layout is HASH (tenant_id) at the top; every hash bucket is LIST (tenant_id) with a DEFAULT partition
 * that holds the bucket's shared tenants, so a dedicated tenant's LIST partition only ever touches one bucket.
 */
export interface PartitionSpec {
  /** Hash buckets shared by the many small tenants (1..1024). Fixed once created: changing it means a rewrite. */
  readonly hashPartitions: number;
  /**
   * `true` (default): each bucket is LIST-partitioned with a DEFAULT partition, so chosen tenants can get a
   * dedicated partition (`tenantwall tenants move`). `false`: plain hash partitions, no dedicated placement.
   */
  readonly dedicated?: boolean;
}

interface TableSpecBase {
  readonly name: string;
  readonly columns: Readonly<Record<string, ColumnSpec>>;
  /** Primary key columns (tenant tables: without tenant_id). Default `['id']`. */
  readonly primaryKey?: readonly string[];
  readonly foreignKeys?: readonly ForeignKeySpec[];
  readonly indexes?: readonly IndexSpec[];
}

export interface TenantTableSpec extends TableSpecBase {
  readonly partition?: PartitionSpec;
}

export interface GlobalTableSpec extends TableSpecBase {
  /** What the application role may do on it. Default `read`. */
  readonly appAccess?: 'none' | 'read' | 'readwrite';
}

/** A declared tenant table. `S` keeps the literal declaration, so `InferDatabase` (tenantwall/kysely) can type it. */
export type TenantTable<S extends TenantTableSpec = TenantTableSpec> = Readonly<S & { kind: 'tenant'; primaryKey: readonly string[] }>;
/** A declared global table; `S` as for TenantTable. */
export type GlobalTable<S extends GlobalTableSpec = GlobalTableSpec> = Readonly<S & { kind: 'global'; primaryKey: readonly string[] }>;
/** A declared table: a `TenantTable` or a `GlobalTable`. */
export type TableDecl = TenantTable | GlobalTable;

/** Input of `defineSchema`: the tables and schema-wide settings. */
export interface SchemaSpec<T extends readonly TableDecl[] = readonly TableDecl[], C extends string = string> {
  readonly tables: T;
  /**
   * Kept for compatibility: only `uuid` is accepted here. The tenant key type is the `tenantKey` connection
   * option (uuid, bigint or text; docs/tenant-scope.md, "Tenant key types").
   */
  readonly tenantIdType?: 'uuid';
  /** Name of the tenant column in every tenant table. Default `tenant_id`. */
  readonly tenantColumn?: C;
  /** Name of the tenants registry table. Default `tenants`. */
  readonly registryTable?: string;
  /**
   * `subselect` (default): `tenant_id = (select nullif(current_setting(...), '')::uuid)`, evaluated once per
   * statement. `plain`: without the sub-select, the form Citus can propagate.
   */
  readonly policyForm?: 'subselect' | 'plain';
}

/** A validated schema. `T` and `C` keep the declared tables and tenant column for `InferDatabase`. */
export type Schema<T extends readonly TableDecl[] = readonly TableDecl[], C extends string = string> = Readonly<{
  tables: T;
  tenantTables: readonly TenantTable[];
  globalTables: readonly GlobalTable[];
  tenantColumn: C;
  registryTable: string;
  policyForm: 'subselect' | 'plain';
  table(name: string): TableDecl | undefined;
  isTenantTable(name: string): boolean;
}>;

const IDENT_RE = /^[a-z_][a-z0-9_]{0,62}$/;

function fail(table: string, why: string): never {
  throw new TenantwallError('schema_invalid', `Table ${table}: ${why}.`, { details: { table } });
}

function checkIdent(table: string, what: string, name: string): void {
  if (!IDENT_RE.test(name)) fail(table, `${what} ${JSON.stringify(name)} must be a lowercase SQL identifier`);
}

function validateBase(spec: TableSpecBase, tenantColumn: string, kind: 'tenant' | 'global'): readonly string[] {
  checkIdent(spec.name, 'table name', spec.name);
  const columns = Object.keys(spec.columns);
  if (columns.length === 0) fail(spec.name, 'declares no columns');
  for (const c of columns) {
    checkIdent(spec.name, 'column', c);
    if (kind === 'tenant' && c === tenantColumn) {
      fail(spec.name, `must not declare ${tenantColumn}: tenantwall adds it (NOT NULL, referencing the registry)`);
    }
  }
  const primaryKey = spec.primaryKey ?? ['id'];
  if (primaryKey.length === 0) fail(spec.name, 'needs a primary key');
  for (const c of primaryKey) if (!spec.columns[c]) fail(spec.name, `primary key column ${c} is not declared`);
  for (const fk of spec.foreignKeys ?? []) {
    for (const c of fk.columns) if (!spec.columns[c]) fail(spec.name, `foreign key column ${c} is not declared`);
  }
  for (const ix of spec.indexes ?? []) {
    if (ix.columns.length === 0) fail(spec.name, 'an index needs at least one column');
    for (const c of ix.columns) {
      if (kind === 'tenant' && c === tenantColumn) fail(spec.name, `index columns must not repeat ${tenantColumn}: it is always first`);
    }
  }
  return primaryKey;
}

/**
 * Declares a tenant-owned table. tenantwall adds `tenant_id` (NOT NULL, FK to the registry), leads the primary
 * key, every foreign key, unique constraint and index with it, and protects the table with forced RLS.
 */
export function tenantTable<const S extends TenantTableSpec>(spec: S): TenantTable<S> {
  const primaryKey = validateBase(spec, 'tenant_id', 'tenant');
  if (spec.partition !== undefined) {
    const n = spec.partition.hashPartitions;
    if (!Number.isInteger(n) || n < 1 || n > 1024) fail(spec.name, 'partition.hashPartitions must be an integer in 1..1024');
    // PostgreSQL would silently truncate longer partition names, and truncated names can collide.
    if (`${spec.name}_p${n - 1}_shared`.length > 63) fail(spec.name, 'is too long to name its partitions (at most 63 - 13 characters)');
  }
  return Object.freeze({ ...spec, kind: 'tenant' as const, primaryKey });
}

/** Declares a table shared by all tenants (plans, currencies, ...). No tenant column, no RLS. */
export function globalTable<const S extends GlobalTableSpec>(spec: S): GlobalTable<S> {
  const primaryKey = validateBase(spec, 'tenant_id', 'global');
  return Object.freeze({ ...spec, kind: 'global' as const, primaryKey });
}

export function defineSchema<const T extends readonly TableDecl[], const C extends string = 'tenant_id'>(spec: SchemaSpec<T, C>): Schema<T, C> {
  const tenantColumn = (spec.tenantColumn ?? 'tenant_id') as C;
  const registryTable = spec.registryTable ?? 'tenants';
  checkIdent('(schema)', 'tenantColumn', tenantColumn);
  checkIdent('(schema)', 'registryTable', registryTable);
  if ((spec.tenantIdType ?? 'uuid') !== 'uuid') fail('(schema)', 'tenantIdType must be uuid: choose bigint or text tenant ids with the tenantKey option');
  const byName = new Map<string, TableDecl>();
  for (const t of spec.tables) {
    if (byName.has(t.name) || t.name === registryTable) fail(t.name, 'is declared twice (or clashes with the registry)');
    if (t.kind === 'tenant' && t.columns[tenantColumn]) fail(t.name, `must not declare ${tenantColumn}`);
    byName.set(t.name, t);
  }
  for (const t of spec.tables) {
    for (const fk of t.foreignKeys ?? []) {
      const target = byName.get(fk.references);
      if (!target) fail(t.name, `foreign key references undeclared table ${fk.references}`);
      if (t.kind === 'global' && target.kind === 'tenant') fail(t.name, `a global table cannot reference tenant table ${target.name}`);
      const refCols = fk.referencedColumns ?? target.primaryKey;
      if (refCols.length !== fk.columns.length) fail(t.name, `foreign key to ${target.name} has ${fk.columns.length} columns for ${refCols.length}`);
    }
  }
  const tables = Object.freeze([...spec.tables]) as unknown as T;
  return Object.freeze({
    tables,
    tenantTables: spec.tables.filter((t): t is TenantTable => t.kind === 'tenant'),
    globalTables: spec.tables.filter((t): t is GlobalTable => t.kind === 'global'),
    tenantColumn,
    registryTable,
    policyForm: spec.policyForm ?? 'subselect',
    table: (name: string) => byName.get(name),
    isTenantTable: (name: string) => byName.get(name)?.kind === 'tenant',
  });
}
