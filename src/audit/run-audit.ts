import pg from 'pg';
import { parseDatabaseUrl } from '../config/options.ts';
import { TenantwallError } from '../errors.ts';
import { mapPgError } from '../db/pg-errors.ts';
import { quoteIdent, quoteLiteral } from '../schema/ddl.ts';
import { type Catalog, type Policy, type Relation, loadCatalog } from './catalog.ts';
import { citusRules } from './citus-rules.ts';
import { type AuditException, applyExceptions, loadExceptionsFile, parseExceptions } from './exceptions.ts';
import { type PolicyClass, analyzePolicyExpr, loadParser, setSettingHelpers } from './policy-expr.ts';
import { ruleInfo } from './rules.ts';
import { type Finding, type ObjectKind, type Report, SEVERITY_RANK } from './types.ts';

/** Options shared by `runAudit` and `runVerify`. Explicit value > environment variable > default. */
export interface IsolationCheckOptions {
  /** Connection to audit (any role that can read the catalog). Env `DATABASE_URL`. Required unless `client` is given. */
  databaseUrl?: string | undefined;
  /** Name of the tenant column. Env `TENANTWALL_TENANT_COLUMN`. Default `tenant_id`. */
  tenantColumn?: string | undefined;
  /** Custom setting carrying the tenant. Env `TENANTWALL_SETTING`. Default `tenantwall.tenant_id`. */
  settingName?: string | undefined;
  /** Role the application connects as. Env `TENANTWALL_APP_ROLE`. Default `tenantwall_app`. */
  appRole?: string | undefined;
  /**
   * Tenant tables (`table` or `schema.table`); their partitions are included. Default: every table that has the
   * tenant column.
   */
  tables?: readonly string[] | undefined;
  /** Reasoned exceptions, or the path of a JSON exception file (docs/audit.md). Default none. */
  exceptions?: readonly AuditException[] | string | undefined;
}

export interface AuditOptions extends IsolationCheckOptions {
  /** An open connection to read the catalog through instead of `databaseUrl` (sees its own transaction). */
  client?: pg.ClientBase | undefined;
}

export interface ResolvedCheckOptions {
  readonly databaseUrl: string | undefined;
  readonly tenantColumn: string;
  readonly settingName: string;
  readonly appRole: string;
  readonly tables: readonly string[] | undefined;
  readonly exceptions: readonly AuditException[];
}

const SETTING_RE = /^[A-Za-z_][A-Za-z0-9_]*\.[A-Za-z_][A-Za-z0-9_]*$/;

export function resolveCheckOptions(o: IsolationCheckOptions, env: NodeJS.ProcessEnv = process.env): ResolvedCheckOptions {
  const str = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
  const databaseUrl = o.databaseUrl ?? str(env.DATABASE_URL);
  if (databaseUrl !== undefined) parseDatabaseUrl(databaseUrl, 'databaseUrl (DATABASE_URL)');
  const tenantColumn = o.tenantColumn ?? str(env.TENANTWALL_TENANT_COLUMN) ?? 'tenant_id';
  const settingName = o.settingName ?? str(env.TENANTWALL_SETTING) ?? 'tenantwall.tenant_id';
  const appRole = o.appRole ?? str(env.TENANTWALL_APP_ROLE) ?? 'tenantwall_app';
  const bad = (field: string, why: string) => new TenantwallError('config_invalid', `Option ${field} ${why}.`, { details: { field } });
  if (tenantColumn.trim() === '') throw bad('tenantColumn', 'must not be empty');
  if (!SETTING_RE.test(settingName)) throw bad('settingName', 'must look like namespace.name');
  if (appRole.trim() === '') throw bad('appRole', 'must not be empty');
  // Lists given in code get the same validation as files: a rule id that does not exist silences nothing.
  const exceptions = typeof o.exceptions === 'string' ? loadExceptionsFile(o.exceptions) : parseExceptions([...(o.exceptions ?? [])], 'exceptions option');
  return Object.freeze({
    databaseUrl,
    tenantColumn,
    settingName,
    appRole,
    tables: o.tables && o.tables.length > 0 ? Object.freeze([...o.tables]) : undefined,
    exceptions: Object.freeze([...exceptions]),
  });
}

/** Opens a client on `url` (or uses `given`), runs `fn`, closes what it opened; driver errors become TenantwallErrors. */
export async function withClient<T>(url: string | undefined, given: pg.ClientBase | undefined, fn: (c: pg.ClientBase) => Promise<T>): Promise<T> {
  if (given) return fn(given);
  if (url === undefined) throw new TenantwallError('config_invalid', 'No database to check: pass --database-url or set DATABASE_URL.', { details: { field: 'databaseUrl' } });
  const client = new pg.Client({ connectionString: url, application_name: 'tenantwall-audit' });
  client.on('error', () => undefined);
  try {
    await client.connect();
  } catch (err) {
    throw mapPgError(err);
  }
  try {
    return await fn(client);
  } catch (err) {
    throw err instanceof TenantwallError ? err : mapPgError(err);
  } finally {
    await client.end().catch(() => undefined);
  }
}

const qn = (r: { schema: string; name: string }) => `${r.schema}.${r.name}`;
const qi = (r: { schema: string; name: string }) => `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;

/** Which relations are tenant tables (roots, plain tables) and tenant partitions. */
export interface TenantSet {
  readonly tables: readonly Relation[];
  readonly partitions: readonly Relation[];
  readonly all: ReadonlyMap<number, Relation>;
  readonly configFindings: readonly Finding[];
}

export function tenantSet(cat: Catalog, opts: ResolvedCheckOptions): TenantSet {
  const findings: Finding[] = [];
  const children = new Map<number, Relation[]>();
  for (const r of cat.relations) {
    if (r.parent !== null) children.set(r.parent, [...(children.get(r.parent) ?? []), r]);
  }
  let roots: Relation[];
  if (opts.tables) {
    roots = [];
    for (const spec of opts.tables) {
      const [a, b] = spec.includes('.') ? spec.split('.', 2) : [undefined, spec];
      const found = cat.relations.filter((r) => (r.kind === 'r' || r.kind === 'p') && r.name === b && (a === undefined || r.schema === a));
      if (found.length === 0) {
        findings.push(make('tenant-table-not-found', 'table', spec, `Tenant table ${spec} does not exist in database ${cat.database}.`, `-- fix the table list, or create ${spec}`));
      }
      for (const r of found) {
        if (r.tenantAttnum === null) {
          findings.push(make('tenant-column-missing', 'table', qn(r), `Tenant table ${qn(r)} has no column ${opts.tenantColumn}.`, `ALTER TABLE ${qi(r)} ADD COLUMN ${quoteIdent(opts.tenantColumn)} uuid NOT NULL; -- backfill first`));
        } else {
          roots.push(r);
        }
      }
    }
  } else {
    roots = cat.relations.filter((r) => (r.kind === 'r' || r.kind === 'p') && r.tenantAttnum !== null && !r.isPartition);
  }
  const all = new Map<number, Relation>();
  const partitions: Relation[] = [];
  const add = (r: Relation, isPart: boolean) => {
    if (all.has(r.oid)) return;
    all.set(r.oid, r);
    if (isPart) partitions.push(r);
    for (const c of children.get(r.oid) ?? []) if (c.isPartition) add(c, true);
  };
  for (const r of roots) add(r, r.isPartition);
  // Detected by column: a partition whose parent lacks the column is still a tenant relation.
  if (!opts.tables) for (const r of cat.relations) if (r.isPartition && r.tenantAttnum !== null && (r.kind === 'r' || r.kind === 'p')) add(r, true);
  return { tables: roots.filter((r) => !r.isPartition), partitions, all, configFindings: findings };
}

export function make(ruleId: string, objectKind: ObjectKind, object: string, message: string, fix: string): Finding {
  const info = ruleInfo(ruleId);
  return Object.freeze({ ruleId, severity: info.severity, source: ruleId.startsWith('attack-') ? 'verify' : 'audit', objectKind, object, message, why: info.why, fix });
}

const CMDS = ['r', 'a', 'w', 'd'] as const;
const CMD_NAME = { r: 'SELECT', a: 'INSERT', w: 'UPDATE', d: 'DELETE', '*': 'ALL' } as const;

/** The catalog rules. Pure: everything it needs is in the catalog snapshot. */
export function evaluateRules(cat: Catalog, opts: ResolvedCheckOptions): { findings: Finding[]; stats: Record<string, number> } {
  const ts = tenantSet(cat, opts);
  const out: Finding[] = [...ts.configFindings];
  const seen = new Set<string>();
  const push = (f: Finding) => {
    const key = `${f.ruleId}\u0000${f.object}`;
    if (!seen.has(key)) {
      seen.add(key);
      out.push(f);
    }
  };
  const app = cat.app;
  const appName = quoteIdent(opts.appRole);
  const col = opts.tenantColumn;
  const qcol = quoteIdent(col);
  const pred = (r: Relation) =>
    `${qcol} = (SELECT nullif(current_setting(${quoteLiteral(opts.settingName)}, true), '')::${r.tenantType ?? 'uuid'})`;
  const policyFix = (r: Relation) => `CREATE POLICY tenant_isolation ON ${qi(r)} FOR ALL USING (${pred(r)}) WITH CHECK (${pred(r)});`;

  if (ts.all.size === 0 && !opts.tables) {
    push(make('no-tenant-tables', 'database', cat.database, `No table in ${cat.database} has a column named ${col}.`, `-- pass --tenant-column or --tables`));
  }

  // role
  const appUsable = app !== undefined && !app.superuser;
  if (!app) {
    push(make('app-role-missing', 'role', opts.appRole, `Role ${opts.appRole} does not exist.`, `-- pass --app-role, or: CREATE ROLE ${appName} LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT;`));
  } else {
    if (app.superuser) push(make('app-role-superuser', 'role', app.name, `Application role ${app.name} is SUPERUSER.`, `ALTER ROLE ${appName} NOSUPERUSER;`));
    if (app.bypassrls && !app.superuser) push(make('app-role-bypassrls', 'role', app.name, `Application role ${app.name} has BYPASSRLS.`, `ALTER ROLE ${appName} NOBYPASSRLS;`));
    if (app.replication && !app.superuser) push(make('app-role-replication', 'role', app.name, `Application role ${app.name} has REPLICATION.`, `ALTER ROLE ${appName} NOREPLICATION;`));
    if (app.createrole && !app.superuser) push(make('app-role-createrole', 'role', app.name, `Application role ${app.name} has CREATEROLE.`, `ALTER ROLE ${appName} NOCREATEROLE;`));
    if (appUsable && app.privilegedRoles.length > 0) {
      push(make('app-role-member-of-privileged', 'role', app.name, `Application role ${app.name} is a member of ${app.privilegedRoles.join(', ')}, which bypass RLS.`, app.privilegedRoles.map((r) => `REVOKE ${quoteIdent(r)} FROM ${appName};`).join('\n')));
    }
    if (appUsable && app.serverFileRoles.length > 0) {
      push(make('app-role-server-files', 'role', app.name, `Application role ${app.name} is a member of ${app.serverFileRoles.join(', ')}.`, app.serverFileRoles.map((r) => `REVOKE ${quoteIdent(r)} FROM ${appName};`).join('\n')));
    }
    if (appUsable) {
      const owned = [
        ...cat.relations.filter((r) => r.ownerOid === app.oid && !ts.all.has(r.oid)).map((r) => `${r.kind === 'v' ? 'view' : 'relation'} ${qn(r)}`),
        ...cat.functions.filter((f) => f.ownerOid === app.oid).map((f) => `function ${f.schema}.${f.name}(${f.args})`),
        ...cat.schemas.filter((s) => s.owner === app.name).map((s) => `schema ${s.name}`),
      ];
      if (owned.length > 0) {
        push(make('app-role-owns-objects', 'role', app.name, `Application role ${app.name} owns ${owned.length} object(s): ${owned.slice(0, 10).join(', ')}${owned.length > 10 ? ', ...' : ''}.`, `REASSIGN OWNED BY ${appName} TO <migration owner>; -- run in every database`));
      }
      for (const s of cat.schemas) {
        if (!s.appCreate || s.owner === app.name) continue;
        if (s.name === 'public') push(make('schema-public-create', 'schema', s.name, `Application role ${app.name} may CREATE in schema public.`, `REVOKE CREATE ON SCHEMA public FROM PUBLIC, ${appName};`));
        else push(make('schema-create', 'schema', s.name, `Application role ${app.name} may CREATE in schema ${s.name}.`, `REVOKE CREATE ON SCHEMA ${quoteIdent(s.name)} FROM PUBLIC, ${appName};`));
      }
    }
  }

  // settings
  for (const s of cat.settingDefaults) {
    if (s.role !== null) {
      const where = s.database ? ` IN DATABASE ${quoteIdent(s.database)}` : '';
      push(make('setting-role-default', 'role', s.database ? `${s.role}@${s.database}` : s.role, `Role ${s.role}${s.database ? ` in database ${s.database}` : ''} has a default ${s.value}.`, `ALTER ROLE ${quoteIdent(s.role)}${where} RESET ${opts.settingName};`));
    } else if (s.database !== null) {
      push(make('setting-database-default', 'database', s.database, `Database ${s.database} has a default ${s.value}.`, `ALTER DATABASE ${quoteIdent(s.database)} RESET ${opts.settingName};`));
    }
  }

  // tenant relations: RLS, policies, grants, ownership
  const policiesByRel = new Map<number, Policy[]>();
  for (const p of cat.policies) policiesByRel.set(p.rel, [...(policiesByRel.get(p.rel) ?? []), p]);
  const appliesToApp = (p: Policy) => !app || p.roles.includes(0) || app.memberOf.some((r) => p.roles.includes(r));
  const settingText = opts.settingName.toLowerCase();
  setSettingHelpers(
    cat.functions
      .filter((f) => /current_setting/i.test(f.source) && f.source.toLowerCase().includes(settingText))
      .flatMap((f) => [f.name, `${f.schema}.${f.name}`]),
  );
  const cls = (e: string | null): PolicyClass => analyzePolicyExpr(e, col, opts.settingName).cls;
  const exprsFor = (p: Policy, cmd: (typeof CMDS)[number]): (string | null)[] => {
    if (cmd === 'r' || cmd === 'd') return [p.qual];
    if (cmd === 'a') return [p.check];
    return [p.qual, p.check ?? p.qual];
  };
  const ownerMembers = new Map<string, string[]>();
  for (const r of ts.all.values()) {
    const part = r.isPartition;
    const kind: ObjectKind = part ? 'partition' : 'table';
    const name = qn(r);
    if (!r.rls) push(make(part ? 'partition-rls-disabled' : 'rls-disabled', kind, name, `Row-level security is disabled on ${name}.`, `ALTER TABLE ${qi(r)} ENABLE ROW LEVEL SECURITY;`));
    if (!r.forceRls) push(make(part ? 'partition-rls-not-forced' : 'rls-not-forced', kind, name, `Row-level security is not forced on ${name} (its owner ${r.owner} bypasses it).`, `ALTER TABLE ${qi(r)} FORCE ROW LEVEL SECURITY;`));
    const pols = policiesByRel.get(r.oid) ?? [];
    if (pols.length === 0) {
      push(make(part ? 'partition-no-policy' : 'rls-no-policy', kind, name, `${name} has no row-level security policy.`, policyFix(r)));
    } else {
      const applicable = pols.filter(appliesToApp);
      if (applicable.length === 0) {
        push(make('policy-not-for-app-role', kind, name, `None of the policies of ${name} (${pols.map((p) => p.name).join(', ')}) applies to ${opts.appRole}.`, `ALTER POLICY ${quoteIdent(pols[0]?.name ?? 'tenant_isolation')} ON ${qi(r)} TO ${appName};`));
      }
      // Commands a tight RESTRICTIVE policy already binds to the tenant: permissive policies are AND-ed with it.
      const bound = new Set<string>();
      for (const cmd of CMDS) {
        const cps = applicable.filter((p) => p.cmd === '*' || p.cmd === cmd);
        if (cps.some((p) => !p.permissive && exprsFor(p, cmd).every((e) => cls(e) === 'tight'))) {
          bound.add(cmd);
          continue;
        }
        const perm = cps.filter((p) => p.permissive);
        for (const p of perm) {
          for (const e of exprsFor(p, cmd)) {
            const c = cls(e);
            if (c === 'tight' || c === 'absent') continue;
            const pname = `${name}.${p.name}`;
            const fixIt = `DROP POLICY ${quoteIdent(p.name)} ON ${qi(r)};\n${policyFix(r)}`;
            if (c === 'true') {
              push(make('policy-always-true', 'policy', pname, `Policy ${p.name} on ${name} (${CMD_NAME[p.cmd]}) is always true, so ${CMD_NAME[cmd]} sees every tenant.`, fixIt));
            } else if (perm.length > 1 || c === 'loose') {
              push(make('policy-permissive-or-bypass', 'policy', pname, `Permissive policy ${p.name} on ${name} is OR-ed with ${perm.length > 1 ? `${perm.length - 1} other(s) ` : 'the tenant condition '}for ${CMD_NAME[cmd]} without requiring ${col} = the tenant setting: ${e}.`, perm.length > 1 ? `DROP POLICY ${quoteIdent(p.name)} ON ${qi(r)}; -- or make it AS RESTRICTIVE, or AND it with ${pred(r)}` : fixIt));
            } else {
              push(make('policy-no-tenant-setting', 'policy', pname, `Policy ${p.name} on ${name} does not compare ${col} with current_setting('${opts.settingName}'): ${e}.`, fixIt));
            }
          }
        }
      }
      for (const p of applicable) {
        const writes = p.cmd === '*' ? ['a', 'w'] : [p.cmd];
        if (p.permissive && p.check === null && p.cmd !== 'r' && p.cmd !== 'd' && !writes.every((c) => bound.has(c))) {
          push(make('policy-missing-with-check', 'policy', `${name}.${p.name}`, `Policy ${p.name} on ${name} (${CMD_NAME[p.cmd]}) has no WITH CHECK.`, `ALTER POLICY ${quoteIdent(p.name)} ON ${qi(r)} WITH CHECK (${pred(r)});`));
        }
        const calls = [...new Set([p.qual, p.check].flatMap((e) => analyzePolicyExpr(e, col, opts.settingName).perRowCalls))];
        if (calls.length > 0) {
          push(make('policy-per-row-call', 'policy', `${name}.${p.name}`, `Policy ${p.name} on ${name} calls ${calls.join(', ')} outside a sub-select (once per row).`, `ALTER POLICY ${quoteIdent(p.name)} ON ${qi(r)} USING (${pred(r)}) WITH CHECK (${pred(r)});`));
        }
      }
    }
    if (r.publicPrivileges.length > 0) {
      push(make('grant-public', kind, name, `PUBLIC has ${r.publicPrivileges.join(', ')} on ${name}.`, `REVOKE ALL ON ${qi(r)} FROM PUBLIC;`));
    }
    if (app && appUsable && r.app) {
      if (r.ownerOid === app.oid) {
        push(make('app-role-owns-tenant-table', kind, name, `Application role ${app.name} owns ${name}.`, `ALTER TABLE ${qi(r)} OWNER TO <migration owner>;`));
        continue;
      }
      if (r.app.ownerMember) {
        ownerMembers.set(r.owner, [...(ownerMembers.get(r.owner) ?? []), name]);
        continue;
      }
      if (r.app.truncate) push(make('grant-truncate', kind, name, `${app.name} may TRUNCATE ${name}.`, `REVOKE TRUNCATE ON ${qi(r)} FROM ${appName};`));
      if (r.app.references) push(make('grant-references', kind, name, `${app.name} has REFERENCES on ${name}.`, `REVOKE REFERENCES ON ${qi(r)} FROM ${appName};`));
      if (r.app.trigger) push(make('grant-trigger', kind, name, `${app.name} may create triggers on ${name}.`, `REVOKE TRIGGER ON ${qi(r)} FROM ${appName};`));
    }
  }
  for (const [owner, tables] of ownerMembers) {
    push(make('app-role-member-of-owner', 'role', `${opts.appRole}->${owner}`, `Application role ${opts.appRole} is a member of ${owner}, owner of ${tables.length} tenant table(s) (${tables.slice(0, 5).join(', ')}${tables.length > 5 ? ', ...' : ''}).`, `REVOKE ${quoteIdent(owner)} FROM ${appName};`));
  }

  // keys, indexes, sequences: partitions clone their parent's, so only tables are checked
  const consByRel = new Map<number, typeof cat.constraints>();
  for (const c of cat.constraints) consByRel.set(c.rel, [...(consByRel.get(c.rel) ?? []), c]);
  const idxByRel = new Map<number, typeof cat.indexes>();
  for (const i of cat.indexes) idxByRel.set(i.rel, [...(idxByRel.get(i.rel) ?? []), i]);
  const lead = (def: string) => def.replace(/\(([^()]*)\)/, (_m, inner: string) => `(${qcol}, ${inner})`);
  for (const r of ts.tables) {
    const name = qn(r);
    const ta = r.tenantAttnum;
    if (!r.tenantNotNull) push(make('tenant-column-nullable', 'table', name, `${name}.${col} allows NULL.`, `ALTER TABLE ${qi(r)} ALTER COLUMN ${qcol} SET NOT NULL;`));
    for (const c of consByRel.get(r.oid) ?? []) {
      const cname = `${name}.${c.name}`;
      if ((c.type === 'p' || c.type === 'u') && c.keys[0] !== ta) {
        push(make(c.type === 'p' ? 'pk-not-tenant-led' : 'unique-not-tenant-led', 'constraint', cname, `${c.type === 'p' ? 'Primary key' : 'Unique constraint'} ${c.name} on ${name} is ${c.definition}, not led by ${col}.`, `ALTER TABLE ${qi(r)} DROP CONSTRAINT ${quoteIdent(c.name)}, ADD CONSTRAINT ${quoteIdent(c.name)} ${lead(c.definition)};`));
      }
      if (c.type === 'f') {
        const target = ts.all.get(c.refRel);
        if (!target) continue;
        const pos = ta === null ? -1 : c.keys.indexOf(ta);
        if (pos < 0 || c.refKeys[pos] !== target.tenantAttnum) {
          const def = c.definition.replace(/FOREIGN KEY \(([^)]*)\) REFERENCES ([^(]+)\(([^)]*)\)/, `FOREIGN KEY (${qcol}, $1) REFERENCES $2(${qcol}, $3)`);
          push(make('fk-without-tenant', 'constraint', cname, `Foreign key ${c.name} on ${name} (${c.definition}) does not carry ${col}.`, `ALTER TABLE ${qi(r)} DROP CONSTRAINT ${quoteIdent(c.name)}, ADD CONSTRAINT ${quoteIdent(c.name)} ${def}; -- needs UNIQUE (${col}, ...) on ${qn(target)}`));
        }
      }
    }
    const idx = idxByRel.get(r.oid) ?? [];
    for (const i of idx) {
      if (i.unique && !i.backsConstraint && i.keys[0] !== ta) {
        push(make('unique-index-not-tenant-led', 'index', `${r.schema}.${i.name}`, `Unique index ${i.name} on ${name} is not led by ${col}: ${i.definition}.`, `DROP INDEX ${quoteIdent(r.schema)}.${quoteIdent(i.name)};\n${i.definition.replace(/ USING (\w+) \(/, ` USING $1 (${qcol}, `)};`));
      }
    }
    if (!idx.some((i) => i.keys[0] === ta)) push(make('no-tenant-index', 'table', name, `No index of ${name} starts with ${col}.`, `CREATE INDEX ON ${qi(r)} (${qcol});`));
    for (const rule of cat.rewriteRules.filter((x) => x.rel === r.oid)) {
      push(make('rule-on-tenant-table', 'rule', `${name}.${rule.name}`, `Rewrite rule ${rule.name} on ${name}.`, `DROP RULE ${quoteIdent(rule.name)} ON ${qi(r)};`));
    }
  }
  for (const s of cat.sequenceColumns) {
    const r = ts.all.get(s.rel);
    if (!r) continue;
    push(make('sequence-shared', 'sequence', `${qn(r)}.${s.column}`, `${qn(r)}.${s.column} takes its values from ${s.kind === 'identity' ? 'an identity sequence' : `sequence ${s.sequence ?? '?'}`} shared by all tenants.`, `-- use uuid keys: ALTER TABLE ${qi(r)} ALTER COLUMN ${quoteIdent(s.column)} ${s.kind === 'identity' ? 'DROP IDENTITY' : 'DROP DEFAULT'}, ALTER COLUMN ${quoteIdent(s.column)} TYPE uuid ... DEFAULT gen_random_uuid(); or add an exception if the ids are never shown`));
  }

  // views, materialized views, foreign tables
  const refs = new Map<number, number[]>();
  for (const d of cat.viewDeps) refs.set(d.view, [...(refs.get(d.view) ?? []), d.ref]);
  const memo = new Map<number, string[]>();
  const tenantDeps = (oid: number, stack: Set<number>): string[] => {
    const hit = memo.get(oid);
    if (hit) return hit;
    if (stack.has(oid)) return [];
    stack.add(oid);
    const found = new Set<string>();
    for (const ref of refs.get(oid) ?? []) {
      const t = ts.all.get(ref);
      if (t) found.add(qn(t));
      else for (const x of tenantDeps(ref, stack)) found.add(x);
    }
    stack.delete(oid);
    const res = [...found];
    memo.set(oid, res);
    return res;
  };
  for (const v of cat.relations) {
    if (v.kind === 'f') {
      push(make('foreign-table', 'foreign-table', qn(v), `Foreign table ${qn(v)}${v.tenantAttnum !== null ? ` has a ${col} column but` : ''} cannot have row-level security.`, `REVOKE ALL ON ${qi(v)} FROM PUBLIC, ${appName}; -- expose it through a security_invoker view filtering on the tenant setting, or drop it`));
    }
    if (v.kind !== 'v' && v.kind !== 'm') continue;
    const deps = tenantDeps(v.oid, new Set());
    if (deps.length === 0) continue;
    if (v.kind === 'v') {
      const invoker = v.options.some((o) => /^security_invoker=(true|on|1|yes)$/i.test(o));
      if (!invoker) push(make('view-no-security-invoker', 'view', qn(v), `View ${qn(v)} over ${deps.join(', ')} runs with the rights of its owner ${v.owner}.`, `ALTER VIEW ${qi(v)} SET (security_invoker = true);`));
    } else {
      push(make('matview-over-tenant', 'materialized-view', qn(v), `Materialized view ${qn(v)} copies rows of ${deps.join(', ')} without row-level security.`, `REVOKE ALL ON ${qi(v)} FROM PUBLIC, ${appName}; -- or replace it with a table under RLS / a security_invoker view`));
    }
  }

  // functions
  const tenantNames = new Set([...ts.all.values()].map((r) => r.name.toLowerCase()));
  const fnDeps = new Map<number, number[]>();
  for (const d of cat.functionDeps) fnDeps.set(d.fn, [...(fnDeps.get(d.fn) ?? []), d.ref]);
  for (const f of functionsTouchingTenants(cat, ts, tenantNames, fnDeps).definers) {
    if (f.fn.appExecute === false) continue;
    const sig = `${quoteIdent(f.fn.schema)}.${quoteIdent(f.fn.name)}(${f.fn.args})`;
    const obj = `${f.fn.schema}.${f.fn.name}(${f.fn.args})`;
    if (f.tables.length > 0) {
      push(make('function-definer-reads-tenant', 'function', obj, `SECURITY DEFINER function ${obj} (owner ${f.fn.owner}) reads ${f.tables.join(', ')}.`, `ALTER FUNCTION ${sig} SECURITY INVOKER;`));
    }
    if (!f.fn.config.some((c) => c.toLowerCase().startsWith('search_path='))) {
      push(make('function-definer-search-path', 'function', obj, `SECURITY DEFINER function ${obj} does not pin search_path.`, `ALTER FUNCTION ${sig} SET search_path = pg_catalog, pg_temp;`));
    }
  }

  // publications
  const pubs = new Map<string, Set<string>>();
  for (const p of cat.publications) {
    const hits = [...ts.all.values()].filter((r) => p.allTables || p.rel === r.oid || (p.schema !== null && r.schema === p.schema)).map(qn);
    if (hits.length > 0) pubs.set(p.name, new Set([...(pubs.get(p.name) ?? []), ...hits]));
  }
  for (const [pub, tables] of pubs) {
    const list = [...tables].filter((t) => !ts.partitions.some((x) => qn(x) === t));
    push(make('publication-tenant-table', 'publication', pub, `Publication ${pub} replicates ${tables.size} tenant relation(s) (${list.slice(0, 5).join(', ')}${list.length > 5 ? ', ...' : ''}).`, `-- make sure every subscriber is trusted with all tenants, or: ALTER PUBLICATION ${quoteIdent(pub)} DROP TABLE ...;`));
  }

  out.sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.ruleId.localeCompare(b.ruleId) || a.object.localeCompare(b.object));
  return {
    findings: out,
    stats: {
      tenantTables: ts.tables.length,
      partitions: ts.partitions.length,
      policies: cat.policies.filter((p) => ts.all.has(p.rel)).length,
      relations: cat.relations.length,
      functions: cat.functions.length,
    },
  };
}

const IDENT_TOKEN = /"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*)/g;

/** Functions whose body names a tenant relation (text scan) or depends on one (BEGIN ATOMIC). */
export function functionsTouchingTenants(cat: Catalog, ts: TenantSet, tenantNames: ReadonlySet<string>, fnDeps: ReadonlyMap<number, number[]>) {
  const byName = new Map<string, string>();
  for (const r of ts.all.values()) byName.set(r.name.toLowerCase(), qn(r));
  const all: { fn: (typeof cat.functions)[number]; tables: string[] }[] = [];
  for (const fn of cat.functions) {
    const tables = new Set<string>();
    for (const ref of fnDeps.get(fn.oid) ?? []) {
      const t = ts.all.get(ref);
      if (t) tables.add(qn(t));
    }
    for (const m of fn.source.matchAll(IDENT_TOKEN)) {
      const word = m[1] !== undefined ? m[1].replace(/""/g, '"') : (m[2] ?? '').toLowerCase();
      if (tenantNames.has(word)) tables.add(byName.get(word) ?? word);
    }
    all.push({ fn, tables: [...tables] });
  }
  return { all, definers: all.filter((x) => x.fn.securityDefiner) };
}

/** Reads the catalog of a live database and applies every rule. Never writes. */
export async function runAudit(options: AuditOptions = {}): Promise<Report> {
  const started = performance.now();
  const opts = resolveCheckOptions(options);
  await loadParser();
  const [cat, citus] = await withClient(opts.databaseUrl, options.client, async (c) => [await loadCatalog(c, opts.appRole, opts.tenantColumn, opts.settingName), await citusRules(c, opts)] as const);
  const { findings, stats } = evaluateRules(cat, opts);
  // Rule families beyond the catalog rules (src/audit/citus-rules.ts: only on a Citus coordinator).
  const { kept, suppressed, unused } = applyExceptions([...findings, ...citus], opts.exceptions);
  return Object.freeze({
    kind: 'audit',
    database: cat.database,
    serverVersion: cat.serverVersion,
    findings: kept,
    suppressed,
    unusedExceptions: unused,
    stats,
    notes: [],
    durationMs: Math.round(performance.now() - started),
  });
}

/** True when a finding at or above `failOn` remains. */
export function reachesThreshold(report: Report, failOn: 'info' | 'warn' | 'error' | 'none'): boolean {
  if (failOn === 'none') return false;
  return report.findings.some((f) => SEVERITY_RANK[f.severity] >= SEVERITY_RANK[failOn]);
}
