import { quoteIdent, quoteLiteral } from '../schema/ddl.ts';
import type { ResolvedCheckOptions } from './options.ts';
import { ruleInfo } from './rules.ts';

/**
 * The audit rules that read the catalog alone, as plain SQL views (`tenantwall audit --emit-sql`), for teams that
 * run checks in a SQL console or a pgTAP suite. Rules that need PostgreSQL's parser (policy expressions, function
 * bodies) or graph walks (exposure classes) are not here: `SQL_RULES` lists the ones that are.
 */
const VIEWS: Record<string, string> = {
  'rls-disabled': `SELECT CASE WHEN t.is_partition THEN 'partition-rls-disabled' ELSE 'rls-disabled' END, t.object, 'Row-level security is disabled on ' || t.object FROM $rel t WHERE NOT t.rls`,
  'rls-not-forced': `SELECT CASE WHEN t.is_partition THEN 'partition-rls-not-forced' ELSE 'rls-not-forced' END, t.object, 'Row-level security is not forced on ' || t.object FROM $rel t WHERE NOT t.force_rls`,
  'rls-no-policy': `SELECT CASE WHEN t.is_partition THEN 'partition-no-policy' ELSE 'rls-no-policy' END, t.object, t.object || ' has row-level security enabled and no policy' FROM $rel t WHERE t.rls AND NOT EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = t.oid)`,
  'grant-truncate': `SELECT 'grant-truncate', t.object, :app_name || ' may TRUNCATE ' || t.object FROM $rel t, $app app WHERE NOT app.super AND NOT pg_has_role(app.oid, t.owner, 'MEMBER') AND has_table_privilege(app.oid, t.oid, 'TRUNCATE')`,
  'grant-references': `SELECT 'grant-references', t.object, :app_name || ' has REFERENCES on ' || t.object FROM $rel t, $app app WHERE NOT app.super AND NOT pg_has_role(app.oid, t.owner, 'MEMBER') AND has_table_privilege(app.oid, t.oid, 'REFERENCES')`,
  'grant-trigger': `SELECT 'grant-trigger', t.object, :app_name || ' may create triggers on ' || t.object FROM $rel t, $app app WHERE NOT app.super AND NOT pg_has_role(app.oid, t.owner, 'MEMBER') AND has_table_privilege(app.oid, t.oid, 'TRIGGER')`,
  'grant-public': `SELECT 'grant-public', t.object, 'PUBLIC has privileges on ' || t.object FROM $rel t JOIN pg_class c ON c.oid = t.oid WHERE EXISTS (SELECT 1 FROM aclexplode(c.relacl) e WHERE e.grantee = 0)`,
  'app-role-missing': `SELECT 'app-role-missing', :app_name, 'Role ' || :app_name || ' does not exist' WHERE NOT EXISTS (SELECT 1 FROM $app app)`,
  'app-role-superuser': `SELECT 'app-role-superuser', :app_name, 'Application role is SUPERUSER' FROM $app app WHERE app.super`,
  'app-role-bypassrls': `SELECT 'app-role-bypassrls', :app_name, 'Application role has BYPASSRLS' FROM $app app WHERE app.bypassrls AND NOT app.super`,
  'app-role-replication': `SELECT 'app-role-replication', :app_name, 'Application role has REPLICATION' FROM $app app WHERE app.replication AND NOT app.super`,
  'app-role-createrole': `SELECT 'app-role-createrole', :app_name, 'Application role has CREATEROLE' FROM $app app WHERE app.createrole AND NOT app.super`,
  'tenant-column-nullable': `SELECT 'tenant-column-nullable', t.object || '.' || :column, t.object || '.' || :column || ' allows NULL' FROM $rel t WHERE NOT t.is_partition AND NOT t.not_null`,
  'no-tenant-index': `SELECT 'no-tenant-index', t.object, 'No index of ' || t.object || ' starts with ' || :column FROM $rel t WHERE NOT t.is_partition AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = t.oid AND i.indkey[0] = t.attnum)`,
  'pk-not-tenant-led': `SELECT CASE k.contype WHEN 'p' THEN 'pk-not-tenant-led' ELSE 'unique-not-tenant-led' END, t.object || '.' || k.conname, k.conname || ' on ' || t.object || ' is not led by ' || :column FROM $rel t JOIN pg_constraint k ON k.conrelid = t.oid AND k.contype IN ('p', 'u') AND k.conparentid = 0 WHERE NOT t.is_partition AND k.conkey[1] <> t.attnum`,
  'matview-over-tenant': `SELECT DISTINCT 'matview-over-tenant', n.nspname || '.' || c.relname, 'Materialized view ' || n.nspname || '.' || c.relname || ' copies tenant rows' FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_rewrite w ON w.ev_class = c.oid JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid AND d.refclassid = 'pg_class'::regclass JOIN $rel t ON t.oid = d.refobjid WHERE c.relkind = 'm'`,
  'function-leakproof': `SELECT 'function-leakproof', n.nspname || '.' || p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')', p.oid::regprocedure::text || ' is marked LEAKPROOF' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE p.proleakproof AND n.nspname NOT IN ('pg_catalog', 'information_schema')`,
  'setting-role-default': `SELECT CASE WHEN s.setrole = 0 THEN 'setting-database-default' ELSE 'setting-role-default' END, CASE WHEN s.setrole = 0 THEN d.datname ELSE pg_get_userbyid(s.setrole) || coalesce('@' || d.datname, '') END, 'Default ' || cfg FROM pg_db_role_setting s LEFT JOIN pg_database d ON d.oid = s.setdatabase, unnest(s.setconfig) cfg WHERE lower(cfg) LIKE lower(:setting) || '=%' AND (s.setdatabase = 0 OR d.datname = current_database())`,
  'schema-create': `SELECT CASE WHEN n.nspname = 'public' THEN 'schema-public-create' ELSE 'schema-create' END, n.nspname::text, :app_name || ' may CREATE in schema ' || n.nspname FROM pg_namespace n, $app app WHERE NOT app.super AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_' AND n.nspowner <> app.oid AND has_schema_privilege(app.oid, n.oid, 'CREATE')`,
};

/** Rule ids the emitted views report (each view may report the partition variant of its rule too). */
export const SQL_RULES: readonly string[] = Object.freeze([
  ...Object.keys(VIEWS),
  'partition-rls-disabled',
  'partition-rls-not-forced',
  'partition-no-policy',
  'unique-not-tenant-led',
  'setting-database-default',
  'schema-public-create',
]);

/** A script creating schema `tenantwall_audit` with one view per rule and `tenantwall_audit.findings` over all. */
export function emitSql(opts: Pick<ResolvedCheckOptions, 'tenantColumn' | 'appRole' | 'settingName'>, schema = 'tenantwall_audit'): string {
  const s = quoteIdent(schema);
  const bind = (sql: string) => sql.replaceAll(':app_name', quoteLiteral(opts.appRole)).replaceAll(':column', quoteLiteral(opts.tenantColumn)).replaceAll(':setting', quoteLiteral(opts.settingName));
  const severity = `CASE x.rule_id ${[...SQL_RULES].map((id) => `WHEN ${quoteLiteral(id)} THEN ${quoteLiteral(ruleInfo(id).severity)}`).join(' ')} END`;
  const names = Object.keys(VIEWS).map((id) => `${s}.${quoteIdent(id.replaceAll('-', '_'))}`);
  return [
    `-- tenantwall audit rules as SQL views (docs/audit.md, "Rules as SQL"). Generated for tenant column ${opts.tenantColumn}, application role ${opts.appRole}, setting ${opts.settingName}.`,
    `-- Covers: ${SQL_RULES.join(', ')}. The other rules need tenantwall audit itself.`,
    `CREATE SCHEMA IF NOT EXISTS ${s};`,
    `CREATE OR REPLACE VIEW ${s}.tenant_relations AS
  SELECT c.oid, n.nspname || '.' || c.relname AS object, c.relispartition AS is_partition, c.relrowsecurity AS rls, c.relforcerowsecurity AS force_rls,
         c.relowner AS owner, a.attnum, a.attnotnull AS not_null
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = ${quoteLiteral(opts.tenantColumn)} AND NOT a.attisdropped AND a.attnum > 0
  WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', ${quoteLiteral(schema)});`,
    `CREATE OR REPLACE VIEW ${s}.app AS SELECT r.oid, r.rolsuper AS super, r.rolbypassrls AS bypassrls, r.rolreplication AS replication, r.rolcreaterole AS createrole FROM pg_roles r WHERE r.rolname = ${quoteLiteral(opts.appRole)};`,
    ...Object.entries(VIEWS).map(
      ([id, sql]) => `CREATE OR REPLACE VIEW ${s}.${quoteIdent(id.replaceAll('-', '_'))} (rule_id, object, message) AS\n  ${bind(sql).replaceAll('$rel', `${s}.tenant_relations`).replaceAll('$app', `${s}.app`)};`,
    ),
    `CREATE OR REPLACE VIEW ${s}.findings AS\n  SELECT x.rule_id, ${severity} AS severity, x.object, x.message FROM (\n    ${names.map((n) => `SELECT * FROM ${n}`).join('\n    UNION ALL ')}\n  ) x;`,
    `GRANT USAGE ON SCHEMA ${s} TO PUBLIC;`,
    `GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO PUBLIC;`,
    '',
  ].join('\n');
}
