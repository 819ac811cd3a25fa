import type pg from 'pg';

/** A column as the catalog describes it. */
export interface DbColumn {
  readonly name: string;
  /** `format_type`, e.g. `integer`, `character varying(200)`, `timestamp with time zone`. */
  readonly type: string;
  readonly notNull: boolean;
  readonly default: string | undefined;
  /** `a` (ALWAYS) or `d` (BY DEFAULT) for identity columns, else ''. */
  readonly identity: string;
  /** The sequence behind a serial or identity column. */
  readonly sequence: string | undefined;
}

/** A primary key, unique or foreign key constraint. */
export interface DbConstraint {
  readonly name: string;
  readonly kind: 'p' | 'u' | 'f' | 'c';
  readonly columns: readonly string[];
  /** Foreign keys: the referenced table (its schema in `refSchema`) and columns. */
  readonly refTable?: string;
  readonly refSchema?: string;
  readonly refColumns?: readonly string[];
  /** Foreign keys: `a` no action, `r` restrict, `c` cascade, `n` set null, `d` set default. */
  readonly onDelete?: string;
  readonly definition: string;
}

/** An index that no constraint owns. */
export interface DbIndex {
  readonly name: string;
  readonly unique: boolean;
  /** Plain column names; undefined when the index has expressions, a predicate or a non-btree method. */
  readonly columns: readonly string[] | undefined;
  readonly definition: string;
}

/** A table of one of the introspected schemas. */
export interface DbTable {
  readonly schema: string;
  readonly name: string;
  /**
   * Whether the unqualified name resolves to this table under the session's search_path (declared tables are
   * named unqualified: the schema is found through the search_path, as the app's own unqualified queries do).
   */
  readonly visible: boolean;
  readonly partitioned: boolean;
  readonly rowEstimate: number;
  readonly rls: boolean;
  readonly forceRls: boolean;
  readonly columns: readonly DbColumn[];
  readonly constraints: readonly DbConstraint[];
  readonly indexes: readonly DbIndex[];
}

/** Tables tenantwall itself keeps; never adopted, never diffed. */
export function isTenantwallInternal(name: string): boolean {
  return name.startsWith('tenantwall_') || name.startsWith('tw_');
}

/** Schemas that are PostgreSQL's or an extension's own: never introspected unless named. */
const USER_SCHEMAS = `n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass AND d.objid = n.oid AND d.deptype = 'e')`;

/**
 * Reads the ordinary and partitioned tables of `schemas` (default: every schema that is not PostgreSQL's or an
 * extension's own; partitions and tenantwall's own bookkeeping tables left out) with their columns,
 * constraints and free-standing indexes.
 */
export async function introspect(client: pg.ClientBase, schemas?: readonly string[]): Promise<DbTable[]> {
  const ns = await client.query<{ oid: number }>(
    schemas === undefined ? `SELECT n.oid::int AS oid FROM pg_namespace n WHERE ${USER_SCHEMAS}` : `SELECT n.oid::int AS oid FROM pg_namespace n WHERE n.nspname = ANY ($1::text[])`,
    schemas === undefined ? [] : [schemas],
  );
  const nsOids = ns.rows.map((r) => r.oid);
  const tables = await client.query<{ oid: number; schema: string; name: string; visible: boolean; kind: string; est: number; rls: boolean; force: boolean }>(`
    SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name, pg_table_is_visible(c.oid) AS visible, c.relkind::text AS kind,
           greatest(c.reltuples, 0)::float8 AS est, c.relrowsecurity AS rls, c.relforcerowsecurity AS force
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.oid = ANY ($1::oid[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
     ORDER BY c.relname, n.nspname`, [nsOids]);
  const columns = await client.query<{ rel: number; name: string; type: string; notnull: boolean; def: string | null; identity: string; seq: string | null }>(`
    SELECT a.attrelid::int AS rel, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS notnull,
           pg_get_expr(d.adbin, d.adrelid) AS def, a.attidentity::text AS identity,
           pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS seq
      FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE n.oid = ANY ($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p')
     ORDER BY a.attrelid, a.attnum`, [nsOids]);
  const constraints = await client.query<{ rel: number; name: string; kind: string; cols: string[]; reftable: string | null; refschema: string | null; refcols: string[] | null; deltype: string; def: string }>(`
    SELECT con.conrelid::int AS rel, con.conname AS name, con.contype::text AS kind,
           ARRAY(SELECT a.attname::text FROM unnest(con.conkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.o) AS cols,
           CASE WHEN con.contype = 'f' THEN (SELECT relname FROM pg_class WHERE oid = con.confrelid) END AS reftable,
           CASE WHEN con.contype = 'f' THEN (SELECT rn.nspname FROM pg_class rc JOIN pg_namespace rn ON rn.oid = rc.relnamespace WHERE rc.oid = con.confrelid) END AS refschema,
           CASE WHEN con.contype = 'f' THEN ARRAY(SELECT a.attname::text FROM unnest(con.confkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.o) END AS refcols,
           con.confdeltype::text AS deltype, pg_get_constraintdef(con.oid) AS def
      FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.oid = ANY ($1::oid[]) AND con.contype IN ('p', 'u', 'f', 'c') AND con.conparentid = 0
     ORDER BY con.conrelid, con.conname`, [nsOids]);
  const indexes = await client.query<{ rel: number; name: string; unique: boolean; plain: boolean; cols: string[]; def: string }>(`
    SELECT i.indrelid::int AS rel, ic.relname AS name, i.indisunique AS unique,
           (i.indexprs IS NULL AND i.indpred IS NULL AND am.amname = 'btree') AS plain,
           ARRAY(SELECT a.attname::text FROM unnest(i.indkey::int2[]) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o) AS cols,
           pg_get_indexdef(i.indexrelid) AS def
      FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
      JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.oid = ANY ($1::oid[]) AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid AND con.conrelid = i.indrelid)
       AND NOT c.relispartition
     ORDER BY ic.relname`, [nsOids]);
  return tables.rows
    .filter((t) => !isTenantwallInternal(t.name))
    .map((t) => ({
      schema: t.schema,
      name: t.name,
      visible: t.visible,
      partitioned: t.kind === 'p',
      rowEstimate: t.est,
      rls: t.rls,
      forceRls: t.force,
      columns: columns.rows
        .filter((c) => c.rel === t.oid)
        .map((c) => ({ name: c.name, type: c.type, notNull: c.notnull, default: c.def ?? undefined, identity: c.identity, sequence: c.seq ?? undefined })),
      constraints: constraints.rows
        .filter((c) => c.rel === t.oid)
        .map((c) => ({
          name: c.name,
          kind: c.kind as DbConstraint['kind'],
          columns: c.cols,
          ...(c.kind === 'f' ? { refTable: c.reftable ?? '', refSchema: c.refschema ?? '', refColumns: c.refcols ?? [], onDelete: c.deltype } : {}),
          definition: c.def,
        })),
      indexes: indexes.rows
        .filter((i) => i.rel === t.oid)
        .map((i) => ({ name: i.name, unique: i.unique, columns: i.plain ? i.cols : undefined, definition: i.def })),
    }));
}
