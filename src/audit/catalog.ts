import type pg from 'pg';
import { TenantwallError } from '../errors.ts';

/**
 * One snapshot of the catalog, read with a handful of set-based queries (never one query per table): the audit
 * must stay fast on databases with thousands of partitions.
 */
export interface Catalog {
  readonly database: string;
  readonly serverVersion: string;
  readonly app: AppRole | undefined;
  readonly relations: readonly Relation[];
  readonly policies: readonly Policy[];
  readonly constraints: readonly Constraint[];
  readonly indexes: readonly IndexInfo[];
  readonly viewDeps: readonly { view: number; ref: number }[];
  readonly rewriteRules: readonly { rel: number; name: string }[];
  readonly functions: readonly FunctionInfo[];
  readonly functionDeps: readonly { fn: number; ref: number }[];
  readonly settingDefaults: readonly { role: string | null; database: string | null; value: string }[];
  readonly schemas: readonly SchemaInfo[];
  readonly sequenceColumns: readonly { rel: number; column: string; kind: 'identity' | 'default'; sequence: string | null }[];
  readonly publications: readonly { name: string; rel: number | null; allTables: boolean; schema: string | null }[];
  /** User triggers (not the internal ones of foreign keys). */
  readonly triggers: readonly { rel: number; name: string; fn: number }[];
  /** Columns whose name ends with `_<tenant column>` (e.g. `owner_tenant_id`): tenant data under another name. */
  readonly tenantLikeColumns: readonly { rel: number; column: string }[];
}

export interface AppRole {
  readonly oid: number;
  readonly name: string;
  readonly superuser: boolean;
  readonly bypassrls: boolean;
  readonly createrole: boolean;
  readonly replication: boolean;
  /** Every role the app role is a member of, itself included (policies granted to those apply). */
  readonly memberOf: readonly number[];
  readonly privilegedRoles: readonly string[];
  readonly serverFileRoles: readonly string[];
}

export interface Relation {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  /** r table, p partitioned table, v view, m materialized view, f foreign table, S sequence */
  readonly kind: 'r' | 'p' | 'v' | 'm' | 'f' | 'S';
  /** Sequences: the table whose column owns it (serial, identity, OWNED BY). */
  readonly ownedBy: number | null;
  readonly isPartition: boolean;
  readonly parent: number | null;
  readonly owner: string;
  readonly ownerOid: number;
  readonly rls: boolean;
  readonly forceRls: boolean;
  readonly options: readonly string[];
  readonly tenantAttnum: number | null;
  readonly tenantNotNull: boolean;
  /** SQL type of the tenant column, e.g. `uuid`. */
  readonly tenantType: string | null;
  readonly app: {
    readonly select: boolean;
    readonly insert: boolean;
    readonly update: boolean;
    readonly delete: boolean;
    readonly truncate: boolean;
    readonly references: boolean;
    readonly trigger: boolean;
    /** The app role can act as the owner (SET ROLE) or inherits its rights. */
    readonly ownerMember: boolean;
  } | null;
  readonly publicPrivileges: readonly string[];
}

export interface Policy {
  readonly rel: number;
  readonly name: string;
  /** r SELECT, a INSERT, w UPDATE, d DELETE, * ALL */
  readonly cmd: 'r' | 'a' | 'w' | 'd' | '*';
  readonly permissive: boolean;
  readonly roles: readonly number[];
  /** The same roles by name (`public` for PUBLIC). */
  readonly roleNames: readonly string[];
  readonly qual: string | null;
  readonly check: string | null;
}

export interface Constraint {
  readonly rel: number;
  readonly name: string;
  readonly type: 'p' | 'u' | 'f';
  readonly keys: readonly number[];
  readonly refRel: number;
  readonly refKeys: readonly number[];
  readonly definition: string;
}

export interface IndexInfo {
  readonly rel: number;
  readonly name: string;
  readonly unique: boolean;
  readonly keys: readonly number[];
  readonly backsConstraint: boolean;
  readonly definition: string;
}

export interface FunctionInfo {
  readonly oid: number;
  readonly schema: string;
  readonly name: string;
  readonly args: string;
  readonly securityDefiner: boolean;
  readonly leakproof: boolean;
  readonly returnsTrigger: boolean;
  /** `oid::regprocedure` text: the signature `to_regprocedure` reads back. */
  readonly regprocedure: string;
  /** Types of the input arguments, e.g. `['text']`. */
  readonly argTypes: readonly string[];
  readonly config: readonly string[];
  /** `pg_get_functiondef` of PL/pgSQL functions (the PL/pgSQL parser needs the whole CREATE FUNCTION). */
  readonly definition: string | null;
  readonly source: string;
  readonly language: string;
  readonly owner: string;
  readonly ownerOid: number;
  readonly kind: string;
  readonly nargs: number;
  readonly nargDefaults: number;
  readonly returnsSet: boolean;
  readonly appExecute: boolean | null;
}

export interface SchemaInfo {
  readonly name: string;
  readonly owner: string;
  readonly appCreate: boolean | null;
}

const USER_NS = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_'`;

const num = (v: unknown): number => Number(v);
const nums = (v: unknown): number[] => ((v as unknown[] | null) ?? []).map(Number);

export async function loadCatalog(client: pg.ClientBase, appRole: string, tenantColumn: string, settingName: string): Promise<Catalog> {
  const meta = await client.query(
    `SELECT current_database() AS db, current_setting('server_version') AS version, current_setting('server_version_num')::int AS version_num,
       r.oid::int8 AS oid, r.rolname, r.rolsuper, r.rolbypassrls, r.rolcreaterole, r.rolreplication,
       CASE WHEN r.oid IS NOT NULL THEN (SELECT array_agg(m.oid::int8) FROM pg_roles m WHERE pg_has_role(r.oid, m.oid, 'MEMBER')) END AS member_of,
       CASE WHEN r.oid IS NOT NULL THEN (SELECT array_agg(m.rolname::text ORDER BY m.rolname) FROM pg_roles m
         WHERE m.oid <> r.oid AND (m.rolsuper OR m.rolbypassrls) AND pg_has_role(r.oid, m.oid, 'MEMBER')) END AS privileged,
       CASE WHEN r.oid IS NOT NULL THEN (SELECT array_agg(m.rolname::text ORDER BY m.rolname) FROM pg_roles m
         WHERE m.rolname IN ('pg_read_server_files', 'pg_write_server_files', 'pg_execute_server_program') AND pg_has_role(r.oid, m.oid, 'MEMBER')) END AS server_files
     FROM (SELECT 1) one LEFT JOIN pg_roles r ON r.rolname = $1`,
    [appRole],
  );
  const m = meta.rows[0] as Record<string, any>;
  // The queries below use PostgreSQL 15 catalogs (pg_publication_namespace, security_invoker views).
  if (Number(m.version_num) < 150000) {
    throw new TenantwallError('server_version_unsupported', `The server runs PostgreSQL ${m.version as string}.`);
  }
  const app: AppRole | undefined =
    m.oid === null
      ? undefined
      : {
          oid: num(m.oid),
          name: m.rolname as string,
          superuser: m.rolsuper as boolean,
          bypassrls: m.rolbypassrls as boolean,
          createrole: m.rolcreaterole as boolean,
          replication: m.rolreplication as boolean,
          memberOf: nums(m.member_of),
          privilegedRoles: (m.privileged as string[] | null) ?? [],
          serverFileRoles: (m.server_files as string[] | null) ?? [],
        };
  const appOid = app?.oid ?? null;

  // Privileges only matter where the tenant column is, or for views/matviews/foreign tables; computing them for
  // every relation of a large schema would dominate the run time.
  const rels = await client.query(
    `SELECT c.oid::int8 AS oid, n.nspname AS schema, c.relname AS name, c.relkind AS kind, c.relispartition AS is_partition,
       (SELECT i.inhparent::int8 FROM pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1) AS parent,
       pg_get_userbyid(c.relowner) AS owner, c.relowner::int8 AS owner_oid, c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls,
       coalesce(c.reloptions, '{}') AS options, a.attnum AS tenant_attnum, coalesce(a.attnotnull, false) AS tenant_notnull,
       format_type(a.atttypid, a.atttypmod) AS tenant_type,
       CASE WHEN $2::oid IS NOT NULL THEN ARRAY[
         CASE WHEN c.relkind = 'S' THEN has_sequence_privilege($2::oid, c.oid, 'USAGE, SELECT') ELSE has_table_privilege($2::oid, c.oid, 'SELECT') END,
         has_table_privilege($2::oid, c.oid, 'INSERT'),
         has_table_privilege($2::oid, c.oid, 'UPDATE'), has_table_privilege($2::oid, c.oid, 'DELETE'),
         has_table_privilege($2::oid, c.oid, 'TRUNCATE'), has_table_privilege($2::oid, c.oid, 'REFERENCES'),
         has_table_privilege($2::oid, c.oid, 'TRIGGER'), pg_has_role($2::oid, c.relowner, 'MEMBER')] END AS app,
       (SELECT coalesce(array_agg(DISTINCT e.privilege_type), '{}') FROM aclexplode(c.relacl) e WHERE e.grantee = 0) AS public_privileges,
       CASE WHEN c.relkind = 'S' THEN (SELECT d.refobjid::int8 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
         AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i') LIMIT 1) END AS owned_by
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped AND a.attnum > 0
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND ${USER_NS}`,
    [tenantColumn, appOid],
  );
  const relations: Relation[] = rels.rows.map((row: Record<string, any>) => {
    const p = row.app as boolean[] | null;
    return {
      oid: num(row.oid),
      schema: row.schema as string,
      name: row.name as string,
      kind: row.kind as Relation['kind'],
      isPartition: row.is_partition as boolean,
      ownedBy: row.owned_by === null ? null : num(row.owned_by),
      parent: row.parent === null ? null : num(row.parent),
      owner: row.owner as string,
      ownerOid: num(row.owner_oid),
      rls: row.rls as boolean,
      forceRls: row.force_rls as boolean,
      options: row.options as string[],
      tenantAttnum: row.tenant_attnum === null ? null : num(row.tenant_attnum),
      tenantNotNull: row.tenant_notnull as boolean,
      tenantType: row.tenant_type as string | null,
      app: p
        ? {
            select: !!p[0],
            insert: !!p[1],
            update: !!p[2],
            delete: !!p[3],
            truncate: !!p[4],
            references: !!p[5],
            trigger: !!p[6],
            ownerMember: !!p[7],
          }
        : null,
      publicPrivileges: row.public_privileges as string[],
    };
  });

  const pols = await client.query(
    `SELECT p.polrelid::int8 AS rel, p.polname AS name, p.polcmd AS cmd, p.polpermissive AS permissive, p.polroles::int8[] AS roles,
       ARRAY(SELECT CASE WHEN x = 0 THEN 'public' ELSE pg_get_userbyid(x) END FROM unnest(p.polroles) x) AS role_names,
       pg_get_expr(p.polqual, p.polrelid) AS qual, pg_get_expr(p.polwithcheck, p.polrelid) AS check
     FROM pg_policy p`,
  );
  const policies: Policy[] = pols.rows.map((row: Record<string, any>) => ({
    rel: num(row.rel),
    name: row.name as string,
    cmd: row.cmd as Policy['cmd'],
    permissive: row.permissive as boolean,
    roles: nums(row.roles),
    roleNames: row.role_names as string[],
    qual: row.qual as string | null,
    check: row.check as string | null,
  }));

  // Constraints and indexes of partitions are clones of the parent's (conparentid / pg_inherits): checking the
  // parent once is enough and keeps the result small.
  const cons = await client.query(
    `SELECT k.conrelid::int8 AS rel, k.conname AS name, k.contype AS type, k.conkey::int2[] AS keys, k.confrelid::int8 AS ref_rel,
       coalesce(k.confkey::int2[], '{}') AS ref_keys, pg_get_constraintdef(k.oid) AS definition
     FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE k.contype IN ('p', 'u', 'f') AND k.conparentid = 0 AND NOT c.relispartition AND ${USER_NS}`,
  );
  const constraints: Constraint[] = cons.rows.map((row: Record<string, any>) => ({
    rel: num(row.rel),
    name: row.name as string,
    type: row.type as Constraint['type'],
    keys: nums(row.keys),
    refRel: num(row.ref_rel),
    refKeys: nums(row.ref_keys),
    definition: row.definition as string,
  }));

  const idx = await client.query(
    `SELECT i.indrelid::int8 AS rel, ic.relname AS name, i.indisunique AS unique, (i.indkey::int2[])[0:i.indnkeyatts - 1] AS keys,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x')) AS backs_constraint,
       pg_get_indexdef(i.indexrelid) AS definition
     FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE NOT c.relispartition AND c.relkind IN ('r', 'p') AND ${USER_NS}`,
  );
  const indexes: IndexInfo[] = idx.rows.map((row: Record<string, any>) => ({
    rel: num(row.rel),
    name: row.name as string,
    unique: row.unique as boolean,
    keys: nums(row.keys),
    backsConstraint: row.backs_constraint as boolean,
    definition: row.definition as string,
  }));

  const deps = await client.query(
    `SELECT DISTINCT w.ev_class::int8 AS view, d.refobjid::int8 AS ref
     FROM pg_rewrite w JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.refclassid = 'pg_class'::regclass
     WHERE w.rulename = '_RETURN' AND d.refobjid <> w.ev_class`,
  );
  const rules = await client.query(`SELECT ev_class::int8 AS rel, rulename AS name FROM pg_rewrite WHERE rulename <> '_RETURN'`);

  const fns = await client.query(
    `SELECT p.oid::int8 AS oid, n.nspname AS schema, p.proname AS name, pg_get_function_identity_arguments(p.oid) AS args,
       p.prosecdef AS secdef, p.proleakproof AS leakproof, p.prorettype = 'trigger'::regtype AS returns_trigger, p.oid::regprocedure::text AS regprocedure, p.proargtypes::regtype[]::text[] AS arg_types,
       CASE WHEN l.lanname = 'plpgsql' THEN pg_get_functiondef(p.oid) END AS definition, coalesce(p.proconfig, '{}') AS config, coalesce(p.prosrc, '') AS source, l.lanname AS language,
       pg_get_userbyid(p.proowner) AS owner, p.proowner::int8 AS owner_oid, p.prokind AS kind, p.pronargs AS nargs,
       p.pronargdefaults AS nargdefaults, p.proretset AS retset,
       CASE WHEN $1::oid IS NOT NULL THEN has_function_privilege($1::oid, p.oid, 'EXECUTE') END AS app_execute
     FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang
     WHERE ${USER_NS} AND (l.lanname NOT IN ('c', 'internal') OR p.proleakproof)
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e')`,
    [appOid],
  );
  const functions: FunctionInfo[] = fns.rows.map((row: Record<string, any>) => ({
    oid: num(row.oid),
    schema: row.schema as string,
    name: row.name as string,
    args: row.args as string,
    securityDefiner: row.secdef as boolean,
    leakproof: row.leakproof as boolean,
    returnsTrigger: row.returns_trigger as boolean,
    regprocedure: row.regprocedure as string,
    argTypes: (row.arg_types as string[] | null) ?? [],
    definition: row.definition as string | null,
    config: row.config as string[],
    source: row.source as string,
    language: row.language as string,
    owner: row.owner as string,
    ownerOid: num(row.owner_oid),
    kind: row.kind as string,
    nargs: num(row.nargs),
    nargDefaults: num(row.nargdefaults),
    returnsSet: row.retset as boolean,
    appExecute: row.app_execute as boolean | null,
  }));
  // BEGIN ATOMIC bodies record their table dependencies; other bodies are scanned as text.
  const fdeps = await client.query(
    `SELECT objid::int8 AS fn, refobjid::int8 AS ref FROM pg_depend WHERE classid = 'pg_proc'::regclass AND refclassid = 'pg_class'::regclass AND deptype = 'n'`,
  );

  const settings = await client.query(
    `SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END AS role, d.datname AS database, cfg AS value
     FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) cfg
     WHERE lower(cfg) LIKE lower($1) || '=%' AND (s.setdatabase = 0 OR d.datname = current_database())`,
    [settingName],
  );

  const schemas = await client.query(
    `SELECT n.nspname AS name, pg_get_userbyid(n.nspowner) AS owner,
       CASE WHEN $1::oid IS NOT NULL THEN has_schema_privilege($1::oid, n.oid, 'CREATE') END AS app_create
     FROM pg_namespace n WHERE ${USER_NS}`,
    [appOid],
  );

  const seqs = await client.query(
    `SELECT a.attrelid::int8 AS rel, a.attname AS column, CASE WHEN a.attidentity <> '' THEN 'identity' ELSE 'default' END AS kind,
       pg_get_serial_sequence(quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname) AS sequence
     FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
     WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND a.attnum > 0 AND NOT a.attisdropped AND ${USER_NS}
       AND (a.attidentity <> '' OR pg_get_expr(ad.adbin, ad.adrelid) LIKE 'nextval(%')`,
  );

  const pubs = await client.query(
    `SELECT p.pubname AS name, NULL::int8 AS rel, p.puballtables AS all_tables, NULL AS schema FROM pg_publication p WHERE p.puballtables
     UNION ALL SELECT p.pubname, r.prrelid::int8, false, NULL FROM pg_publication p JOIN pg_publication_rel r ON r.prpubid = p.oid
     UNION ALL SELECT p.pubname, NULL, false, n.nspname FROM pg_publication p JOIN pg_publication_namespace pn ON pn.pnpubid = p.oid
       JOIN pg_namespace n ON n.oid = pn.pnnspid`,
  );

  const trigs = await client.query(
    `SELECT t.tgrelid::int8 AS rel, t.tgname AS name, t.tgfoid::int8 AS fn FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal AND ${USER_NS}`,
  );
  const likeCols = await client.query(
    `SELECT a.attrelid::int8 AS rel, a.attname AS column FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm') AND a.attnum > 0 AND NOT a.attisdropped AND a.attname LIKE '%\\_' || $1 AND ${USER_NS}`,
    [tenantColumn.replace(/[\\%_]/g, (ch) => `\\${ch}`)],
  );

  return {
    triggers: trigs.rows.map((x: Record<string, any>) => ({ rel: num(x.rel), name: x.name as string, fn: num(x.fn) })),
    tenantLikeColumns: likeCols.rows.map((x: Record<string, any>) => ({ rel: num(x.rel), column: x.column as string })),
    database: m.db as string,
    serverVersion: m.version as string,
    app,
    relations,
    policies,
    constraints,
    indexes,
    viewDeps: deps.rows.map((x: Record<string, any>) => ({ view: num(x.view), ref: num(x.ref) })),
    rewriteRules: rules.rows.map((x: Record<string, any>) => ({ rel: num(x.rel), name: x.name as string })),
    functions,
    functionDeps: fdeps.rows.map((x: Record<string, any>) => ({ fn: num(x.fn), ref: num(x.ref) })),
    settingDefaults: settings.rows.map((x: Record<string, any>) => ({ role: x.role as string | null, database: x.database as string | null, value: x.value as string })),
    schemas: schemas.rows.map((x: Record<string, any>) => ({ name: x.name as string, owner: x.owner as string, appCreate: x.app_create as boolean | null })),
    sequenceColumns: seqs.rows.map((x: Record<string, any>) => ({ rel: num(x.rel), column: x.column as string, kind: x.kind as 'identity' | 'default', sequence: x.sequence as string | null })),
    publications: pubs.rows.map((x: Record<string, any>) => ({ name: x.name as string, rel: x.rel === null ? null : num(x.rel), allTables: x.all_tables as boolean, schema: x.schema as string | null })),
  };
}
