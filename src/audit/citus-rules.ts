import type pg from 'pg';
import { quoteIdent, quoteLiteral } from '../schema/ddl.ts';
import type { Finding, ObjectKind, RuleInfo, Severity } from './types.ts';

/**
 * The Citus rule family of `tenantwall audit` (docs/scale-out.md, "Audit on Citus"). It runs only when the audited
 * database has the `citus` extension; the shard checks run on the workers through the coordinator
 * (`run_command_on_placements`, `run_command_on_workers`), so they see what the workers really hold.
 */

function r(id: string, severity: Severity, title: string, why: string): RuleInfo {
  return Object.freeze({ id, severity, category: id === 'citus-shards-unchecked' || id === 'citus-output-plugin-libraries' ? ('hygiene' as const) : ('isolation' as const), title, why });
}

export const CITUS_RULES: readonly RuleInfo[] = Object.freeze([
  r('citus-tenant-table-not-distributed', 'error', 'Tenant table is not distributed', 'A local or reference table holds every tenant on one node (or on all of them): it does not scale out, statements on it are not routed to the tenant\'s worker, and it cannot carry foreign keys with the distributed tenant tables.'),
  r('citus-distributed-by-other-column', 'error', 'Tenant table distributed by another column', 'A tenant\'s rows are spread over every shard: each tenant-scoped statement fans out to all workers, composite foreign keys and joins with the other tenant tables cannot stay on one worker, and a tenant cannot be isolated or moved.'),
  r('citus-tenant-tables-not-colocated', 'error', 'Tenant tables are not colocated', 'Tables in different colocation groups put one tenant\'s rows on different workers: joins and foreign keys between them are refused or fan out, and moving a tenant moves only part of its data.'),
  r('citus-global-table-not-reference', 'warn', 'Global table is not a reference table', 'A table without the tenant column that lives only on the coordinator cannot be joined with or referenced by distributed tenant tables on the workers.'),
  r('citus-propagate-set-commands', 'error', 'citus.propagate_set_commands is not local', 'Only with \'local\' does the SET LOCAL that carries the tenant reach the workers; otherwise every routed statement runs without a tenant (no rows, or errors), and code "fixed" to work again tends to drop the policies.'),
  r('citus-shard-policy-mismatch', 'error', 'A shard\'s row-level security differs from its table', 'Policies are per relation: a statement sent to a worker\'s shard directly (or routed there) is checked against the shard\'s own RLS flags and policies; a shard without them is open to every tenant.'),
  r('citus-shards-unchecked', 'warn', 'The shards could not be checked', 'The audit role could not run the shard checks on the workers, so their row-level security is unknown.'),
  r('citus-worker-role-rights', 'error', 'The application role has more rights on a worker than on the coordinator', 'The application role can log in to a worker directly (the workers hold every shard): any role attribute (superuser, BYPASSRLS, CREATEROLE, ...), role membership or CREATE privilege it has there and not on the coordinator bypasses what the coordinator\'s catalog shows and the audit checks.'),
  r('citus-worker-attack', 'error', 'An attack sent directly to a worker\'s shard succeeded', 'A statement sent straight to a shard on its worker as the application role read or changed another tenant\'s rows (or rows with no tenant set): the shard\'s row-level security does not hold on that worker.'),
  r('citus-output-plugin-libraries', 'warn', 'output_plugin_libraries lacks citus', 'PostgreSQL 15.19 and newer only load whitelisted logical decoding plugins: without citus in output_plugin_libraries, isolate_tenant_to_new_shard (dedicated placement) fails on that node.'),
]);

const BY_ID = new Map(CITUS_RULES.map((x) => [x.id, x]));

/** A query answering `fixed` (boolean) once the finding's fix is in place (run as the auditing role). */
function confirmFor(ruleId: string, object: string, col: string): string {
  const rel = quoteLiteral(object);
  const dist = `SELECT * FROM pg_dist_partition WHERE logicalrelid = to_regclass(${rel})`;
  switch (ruleId) {
    case 'citus-tenant-table-not-distributed':
    case 'citus-distributed-by-other-column':
      return `SELECT EXISTS (${dist} AND partmethod = 'h' AND column_to_column_name(logicalrelid, partkey) = ${quoteLiteral(col)}) AS fixed`;
    case 'citus-tenant-tables-not-colocated':
      return `SELECT count(DISTINCT colocationid) <= 1 AS fixed FROM pg_dist_partition WHERE partmethod = 'h' AND column_to_column_name(logicalrelid, partkey) = ${quoteLiteral(col)}`;
    case 'citus-global-table-not-reference':
      return `SELECT EXISTS (${dist} AND partmethod = 'n') AS fixed`;
    case 'citus-propagate-set-commands':
      return `SELECT current_setting('citus.propagate_set_commands') = 'local' AS fixed`;
    case 'citus-worker-role-rights':
      return `SELECT count(DISTINCT result) = 1 AS fixed FROM run_command_on_all_nodes(${quoteLiteral(roleRightsSql(object.replace(/^role /, '')))})`;
    case 'citus-worker-attack':
      return `SELECT bool_and(success AND result = 't') AS fixed FROM run_command_on_placements(${rel}, $$SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = '%s'::regclass$$)`;
    case 'citus-output-plugin-libraries':
      return `SELECT bool_and(success AND result LIKE '%citus%') AS fixed FROM run_command_on_all_nodes($$SHOW output_plugin_libraries$$)`;
    default: // shard row-level security
      return `SELECT bool_and(success AND result = 't') AS fixed FROM run_command_on_placements(${rel}, $$SELECT relrowsecurity AND relforcerowsecurity FROM pg_class WHERE oid = '%s'::regclass$$)`;
  }
}

/** A finding of a Citus rule (also used by verify's worker attacks, src/audit/citus-verify.ts). */
export function make(ruleId: string, objectKind: ObjectKind, object: string, message: string, fix: string, col: string): Finding {
  const info = BY_ID.get(ruleId) as RuleInfo;
  return Object.freeze({
    ruleId,
    severity: info.severity,
    category: info.category,
    docUrl: `docs/scale-out.md#${ruleId}`,
    source: ruleId === 'citus-worker-attack' ? ('verify' as const) : ('audit' as const),
    objectKind,
    object,
    message,
    why: info.why,
    fix,
    confirm: confirmFor(ruleId, object, col),
    details: Object.freeze({}),
  });
}

export interface CitusCheckOptions {
  readonly tenantColumn: string;
  readonly appRole: string;
  /** Tenant tables (`table` or `schema.table`); default every table with the tenant column. */
  readonly tables?: readonly string[] | undefined;
}

/** Tables tenantwall keeps on the coordinator on purpose. */
const LOCAL_BOOKKEEPING = new Set(['tenantwall_migrations', 'tenantwall_lifecycle', 'tenantwall_citus_pins']);
const SYSTEM_SCHEMAS = `('pg_catalog', 'information_schema', 'citus', 'citus_internal', 'columnar', 'columnar_internal', 'pg_toast')`;

interface TableRow {
  oid: number;
  schema: string;
  name: string;
  has_tenant: boolean;
  citus_type: string | null;
  dist_column: string | null;
  colocation_id: number | null;
}

/**
 * The Citus rules against the database `client` is connected to (the coordinator). Returns no finding on a
 * database without the citus extension.
 */
export async function citusRules(client: pg.ClientBase, opts: CitusCheckOptions): Promise<Finding[]> {
  const ext = await client.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`);
  if (ext.rowCount === 0) return [];
  const out: Finding[] = [];
  const col = opts.tenantColumn;
  const { rows: tables } = await client.query<TableRow>(
    `SELECT c.oid::int AS oid, n.nspname AS schema, c.relname AS name,
        EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = $1 AND NOT a.attisdropped) AS has_tenant,
        t.citus_table_type AS citus_type, t.distribution_column AS dist_column, t.colocation_id::int AS colocation_id
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN citus_tables t ON t.table_name = c.oid
      WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ${SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg_temp%'
      ORDER BY n.nspname, c.relname`,
    [col],
  );
  const listed = opts.tables?.map((s) => (s.includes('.') ? s : `.${s}`));
  const isTenant = (t: TableRow) => (listed ? listed.some((s) => s === `${t.schema}.${t.name}` || s === `.${t.name}`) : t.has_tenant);
  const qn = (t: TableRow) => `${t.schema}.${t.name}`;
  const qi = (t: TableRow) => `${quoteIdent(t.schema)}.${quoteIdent(t.name)}`;
  const tenant = tables.filter(isTenant);

  for (const t of tenant) {
    if (t.citus_type !== 'distributed') {
      const what = t.citus_type === null ? 'a plain coordinator table' : `a ${t.citus_type} table`;
      out.push(make('citus-tenant-table-not-distributed', 'table', qn(t), `Tenant table ${qn(t)} is ${what}, not distributed by ${col}.`,
        `${t.citus_type === 'reference' || t.citus_type === 'local' ? `SELECT undistribute_table(${quoteLiteral(qi(t))});\n` : ''}SELECT create_distributed_table(${quoteLiteral(qi(t))}, ${quoteLiteral(col)}, colocate_with => '<first tenant table>');`, col));
    } else if (t.dist_column !== col) {
      out.push(make('citus-distributed-by-other-column', 'table', qn(t), `Tenant table ${qn(t)} is distributed by ${t.dist_column}, not by ${col}.`,
        `SELECT alter_distributed_table(${quoteLiteral(qi(t))}, distribution_column => ${quoteLiteral(col)}, colocate_with => '<first tenant table>');`, col));
    }
  }
  // Colocation: the group of the oldest tenant table is the reference; every other one must join it.
  const distributed = tenant.filter((t) => t.citus_type === 'distributed' && t.dist_column === col).sort((a, b) => a.oid - b.oid);
  const anchor = distributed[0];
  for (const t of distributed) {
    if (anchor && t.colocation_id !== anchor.colocation_id) {
      out.push(make('citus-tenant-tables-not-colocated', 'table', qn(t), `Tenant table ${qn(t)} is in colocation group ${t.colocation_id}, ${qn(anchor)} in ${anchor.colocation_id}.`,
        `SELECT alter_distributed_table(${quoteLiteral(qi(t))}, colocate_with => ${quoteLiteral(qi(anchor))});`, col));
    }
  }
  for (const t of tables) {
    if (isTenant(t) || LOCAL_BOOKKEEPING.has(t.name) || t.citus_type === 'reference' || t.citus_type === 'distributed') continue;
    out.push(make('citus-global-table-not-reference', 'table', qn(t), `Table ${qn(t)} has no ${col} column and is ${t.citus_type === null ? 'a plain coordinator table' : `a ${t.citus_type} table`}, not a reference table.`,
      `SELECT create_reference_table(${quoteLiteral(qi(t))});`, col));
  }

  // citus.propagate_set_commands: the server value and any per-role / per-database override for the app role.
  const { rows: settings } = await client.query<{ scope: string; value: string | null }>(
    `SELECT 'server' AS scope, current_setting('citus.propagate_set_commands', true) AS value
     UNION ALL
     SELECT CASE WHEN s.setrole = 0 THEN 'database ' || d.datname WHEN s.setdatabase = 0 THEN 'role ' || r.rolname ELSE 'role ' || r.rolname || ' in database ' || d.datname END,
            split_part(cfg, '=', 2)
       FROM pg_db_role_setting s CROSS JOIN LATERAL unnest(s.setconfig) AS cfg
       LEFT JOIN pg_roles r ON r.oid = s.setrole LEFT JOIN pg_database d ON d.oid = s.setdatabase
      WHERE split_part(cfg, '=', 1) = 'citus.propagate_set_commands'
        AND (s.setrole = 0 OR r.rolname = $1) AND (s.setdatabase = 0 OR d.datname = current_database())`,
    [opts.appRole],
  );
  for (const s of settings) {
    if (s.value === 'local') continue;
    const fix = s.scope === 'server' ? `ALTER SYSTEM SET citus.propagate_set_commands = 'local'; SELECT pg_reload_conf();` : `-- remove the override (ALTER ROLE/DATABASE ... RESET citus.propagate_set_commands) for ${s.scope}`;
    out.push(make('citus-propagate-set-commands', 'database', s.scope, `citus.propagate_set_commands is ${JSON.stringify(s.value)} (${s.scope}).`, fix, col));
  }

  // Row-level security of every shard placement, read on the workers, against its table on the coordinator.
  const rlsOf = (rel: string) =>
    `SELECT concat_ws('|', c.relrowsecurity, c.relforcerowsecurity, (SELECT string_agg(concat_ws(':', p.polname, p.polcmd, p.polpermissive, p.polroles::regrole[]::text, pg_get_expr(p.polqual, p.polrelid), pg_get_expr(p.polwithcheck, p.polrelid)), ';' ORDER BY p.polname) FROM pg_policy p WHERE p.polrelid = c.oid)) FROM pg_class c WHERE c.oid = ${rel}::regclass`;
  for (const t of tenant.filter((x) => x.citus_type === 'distributed' || x.citus_type === 'reference')) {
    const expected = (await client.query<{ v: string }>(`SELECT (${rlsOf(quoteLiteral(qi(t)))}) AS v`)).rows[0]?.v;
    let placements: pg.QueryResult<{ nodename: string; nodeport: number; shardid: string; success: boolean; result: string }>;
    try {
      placements = await client.query(`SELECT nodename, nodeport, shardid::text, success, result FROM run_command_on_placements($1::regclass, $2)`, [qi(t), rlsOf(`'%s'`)]);
    } catch (err) {
      out.push(make('citus-shards-unchecked', 'table', qn(t), `The shards of ${qn(t)} could not be read on the workers: ${(err as Error).message}.`, '-- run the audit as a superuser of the cluster', col));
      continue;
    }
    const bad = placements.rows.filter((p) => !p.success || p.result !== expected);
    if (bad.length > 0) {
      const where = bad.slice(0, 5).map((p) => `shard ${p.shardid} on ${p.nodename}:${p.nodeport}`).join(', ');
      out.push(make('citus-shard-policy-mismatch', 'table', qn(t), `${bad.length} shard placement(s) of ${qn(t)} differ from the table's row-level security (${where}${bad.length > 5 ? ', ...' : ''}).`,
        `-- on the coordinator, restore each listed shard as its table is (%s is the shard), e.g.:\nSELECT * FROM run_command_on_placements(${quoteLiteral(qi(t))}, 'ALTER TABLE %s ENABLE ROW LEVEL SECURITY');\nSELECT * FROM run_command_on_placements(${quoteLiteral(qi(t))}, 'ALTER TABLE %s FORCE ROW LEVEL SECURITY');\n-- and re-create a missing policy on that shard with the table's CREATE POLICY statement`, col));
    }
  }

  // The application role on each worker: attributes, memberships and CREATE rights as on the coordinator?
  try {
    const { rows } = await client.query<{ nodename: string; nodeport: number; success: boolean; result: string; coordinator: boolean }>(
      `SELECT n.nodename, n.nodeport, r.success, r.result, n.groupid = 0 AS coordinator FROM run_command_on_all_nodes($1) r JOIN pg_dist_node n USING (nodeid) ORDER BY r.nodeid`,
      [roleRightsSql(opts.appRole)],
    );
    const mine = rows.find((x) => x.coordinator)?.result ?? (await client.query<{ v: string }>(`SELECT (${roleRightsSql(opts.appRole)}) AS v`)).rows[0]?.v ?? '';
    for (const w of rows.filter((x) => !x.coordinator)) {
      if (!w.success) {
        out.push(make('citus-shards-unchecked', 'database', `${w.nodename}:${w.nodeport}`, `The application role could not be checked on worker ${w.nodename}:${w.nodeport}: ${w.result}.`, '-- run the audit as a superuser of the cluster', col));
        continue;
      }
      if (w.result === mine) continue;
      const diff = describeRights(w.result, mine);
      if (diff === undefined) continue; // fewer rights on the worker (or no role there) is no hole
      out.push(make('citus-worker-role-rights', 'role', `role ${opts.appRole}`, `On worker ${w.nodename}:${w.nodeport} the application role ${opts.appRole} has ${diff} (coordinator: ${mine || 'no such role'}; worker: ${w.result || 'no such role'}).`,
        `-- on worker ${w.nodename}:${w.nodeport} (connect to it directly as a superuser), take back what the coordinator does not grant, e.g.:\nALTER ROLE ${quoteIdent(opts.appRole)} NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB NOREPLICATION;\nREVOKE CREATE ON DATABASE <database> FROM ${quoteIdent(opts.appRole)};\n-- and REVOKE <role> FROM ${quoteIdent(opts.appRole)} for each extra membership`, col));
    }
  } catch (err) {
    out.push(make('citus-shards-unchecked', 'database', 'workers', `The application role's rights on the workers could not be read: ${(err as Error).message}.`, '-- run the audit as a superuser of the cluster', col));
  }

  // output_plugin_libraries (PostgreSQL 15.19+): citus must be allowed on every node for tenant isolation.
  const plugin = `SELECT coalesce(current_setting('output_plugin_libraries', true), '<absent>')`;
  const nodes: { node: string; value: string }[] = [
    { node: 'coordinator', value: (await client.query<{ v: string }>(`${plugin} AS v`)).rows[0]?.v ?? '<absent>' },
  ];
  try {
    const workers = await client.query<{ nodename: string; nodeport: number; success: boolean; result: string }>(`SELECT nodename, nodeport, success, result FROM run_command_on_workers($1)`, [plugin]);
    for (const w of workers.rows) nodes.push({ node: `${w.nodename}:${w.nodeport}`, value: w.success ? w.result : '<absent>' });
  } catch {
    // Not fatal: the shard check above reports workers it could not reach.
  }
  for (const n of nodes) {
    if (n.value === '<absent>' || n.value.split(',').some((x) => x.trim() === 'citus')) continue;
    out.push(make('citus-output-plugin-libraries', 'database', n.node, `output_plugin_libraries on ${n.node} is ${JSON.stringify(n.value)}, without citus.`,
      `-- in postgresql.conf of ${n.node}:\noutput_plugin_libraries = '${n.value}, citus'`, col));
  }
  return out;
}

/**
 * One line describing the rights of `role` on a node (run there): role attributes, memberships, CREATE on the
 * database and on the public schema. Equal lines on the coordinator and a worker mean equal rights.
 */
export function roleRightsSql(role: string): string {
  const lit = quoteLiteral(role);
  return `SELECT coalesce((SELECT concat_ws('|',
      'super=' || rolsuper, 'bypassrls=' || rolbypassrls, 'createrole=' || rolcreaterole, 'createdb=' || rolcreatedb, 'replication=' || rolreplication,
      'member_of=' || coalesce((SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles b ON b.oid = m.roleid WHERE m.member = r.oid), ''),
      'create_db=' || has_database_privilege(r.oid, current_database(), 'CREATE'),
      'create_public=' || coalesce(has_schema_privilege(r.oid, to_regnamespace('public'), 'CREATE'), false))
    FROM pg_roles r WHERE rolname = ${lit}), '')`;
}

function describeRights(worker: string, coordinator: string): string | undefined {
  const parse = (x: string) => new Map(x.split('|').filter(Boolean).map((kv) => [kv.split('=')[0] as string, kv.slice(kv.indexOf('=') + 1)]));
  const w = parse(worker);
  const c = parse(coordinator);
  const extra: string[] = [];
  for (const [k, v] of w) {
    if (c.get(k) === v) continue;
    if (k === 'member_of') {
      const mine = new Set((c.get(k) ?? '').split(',').filter(Boolean));
      const more = v.split(',').filter((x) => x && !mine.has(x));
      if (more.length > 0) extra.push(`membership in ${more.join(', ')}`);
    } else if (v === 'true') extra.push(k.toUpperCase().replace('_', ' '));
  }
  return extra.length > 0 ? `more rights than on the coordinator: ${extra.join(', ')}` : undefined;
}
