import { AUDIT_HINT } from './hint.ts';
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import { mapPgError } from '../db/pg-errors.ts';
import { TenantwallError } from '../errors.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { type AttackContext, AttackSession, type RowValues, type TableInfo, type VerifyProgress, describeTables } from './attacks/context.ts';
import { sideEffects } from './attacks/side-effects.ts';
import { citusWorkerAttacks } from './citus-verify.ts';
import { appAccess, classifyRelations } from './exposure.ts';
import { ATTACK_FAMILIES } from './attacks/index.ts';
import { prepareRows } from './attacks/rows.ts';
import { type Catalog, loadCatalog } from './catalog.ts';
import { relationChecksums } from './checksum.ts';
import { applyExceptions } from './exceptions.ts';
import { make, sortFindings } from './finding.ts';
import { type AppConnectionOptions, type IsolationCheckOptions, type ResolvedCheckOptions, resolveCheckOptions } from './options.ts';
import { loadParser } from './policy-expr.ts';
import { withClient } from './run-audit.ts';
import { type TenantSet, groupBy, qi, qn, rootOf, tenantSet } from './tenant-set.ts';
import type { CoverageEntry, Finding, ObjectKind, Report } from './types.ts';

const KIND: Record<string, ObjectKind> = { r: 'table', p: 'table', v: 'view', m: 'materialized-view', f: 'foreign-table', S: 'sequence' };

export type { VerifyProgress } from './attacks/context.ts';

/** Options of `runVerify`: the app connection and the tenants to attack with. */
export interface VerifyOptions extends IsolationCheckOptions, AppConnectionOptions {
  /** The two tenants to attack with (A attacks B). Default: the first two ids of the tenant registry. */
  tenants?: readonly [string, string] | undefined;
  /** Take a content checksum through `databaseUrl` before and after, and fail if they differ. Default false. */
  checksum?: boolean | undefined;
  /** Per-statement limits of the attack session, ms. Default 10000 (statement) and 2000 (lock). */
  statementTimeoutMs?: number | undefined;
  lockTimeoutMs?: number | undefined;
  /** Called as the attacks advance (the CLI draws it on a terminal). */
  onProgress?: ((p: VerifyProgress) => void) | undefined;
}

/**
 * Attacks the database as the application role, inside one transaction that is always rolled back: every
 * successful attack is a finding. Needs the owner URL (catalog, tenant ids) and the application role's URL.
 */
export async function runVerify(options: VerifyOptions = {}): Promise<Report> {
  const started = performance.now();
  const given = resolveCheckOptions(options);
  const appUrl = given.appDatabaseUrl;
  if (appUrl === undefined) {
    throw new TenantwallError('config_invalid', 'verify attacks as the application role: pass --app-database-url or set TENANTWALL_APP_DATABASE_URL (docs/audit.md).', { hint: AUDIT_HINT, details: { field: 'appDatabaseUrl' } });
  }
  // The role that attacks is the one the URL logs in as: without --app-role, that is the application role.
  const urlUser = decodeURIComponent(new URL(appUrl).username);
  const opts = given.appRoleGiven || urlUser === '' ? given : Object.freeze({ ...given, appRole: urlUser, appRoleGiven: true });
  await loadParser();
  const notes: string[] = [];
  const prepared = await withClient(opts.databaseUrl, undefined, async (owner) => {
    const cat = await loadCatalog(owner, opts.appRole, opts.tenantColumn, opts.settingName);
    const ts = tenantSet(cat, opts);
    const tables = await describeTables(owner, cat, ts);
    const tenants = options.tenants ?? (await pickTenants(owner, cat, ts, tables, opts.tenantColumn));
    const before = options.checksum ? await relationChecksums(owner) : undefined;
    const effects = sideEffects(cat, ts);
    const roles = await owner.query<{ rolname: string }>(
      `SELECT DISTINCT rolname FROM pg_roles r WHERE rolname <> $1 AND (pg_has_role($1, r.oid, 'MEMBER') OR r.oid = ANY($2::oid[])) ORDER BY 1`,
      [opts.appRole, [...new Set([...ts.all.values()].map((x) => x.ownerOid))]],
    ).catch(() => ({ rows: [] as { rolname: string }[] }));
    // A superuser reaches everything already (the read attacks report it); trying every role would add nothing.
    return { cat, ts, tables, tenants, before, effects, roles: cat.app?.superuser ? [] : roles.rows.map((r) => r.rolname) };
  });
  const { cat, ts, tables, before, effects } = prepared;
  notes.push(...effects.notes);
  const rows = new Map<number, { a: RowValues; b: RowValues }>();
  const readLeak = new Set<number>();
  const covered = new Map<number, string>();
  const [tenantA, tenantB] = prepared.tenants;
  if (tenantA === tenantB) throw new TenantwallError('config_invalid', 'verify needs two different tenant ids.', { hint: AUDIT_HINT, details: { field: 'tenants' } });

  const findings: Finding[] = [];
  let attempts: number;
  const app = new pg.Client({ connectionString: appUrl, application_name: 'tenantwall-verify' });
  app.on('error', () => undefined);
  try {
    await app.connect();
  } catch (err) {
    throw mapPgError(err);
  }
  try {
    await app.query('BEGIN');
    try {
      await app.query(`SET LOCAL statement_timeout = ${Math.max(0, options.statementTimeoutMs ?? 10_000)}`);
      await app.query(`SET LOCAL lock_timeout = ${Math.max(0, options.lockTimeoutMs ?? 2_000)}`);
      const s = new AttackSession(app, opts.settingName);
      const ctx: AttackContext = {
        s,
        cat,
        ts,
        info: tables,
        A: tenantA,
        B: tenantB,
        column: opts.tenantColumn,
        qcol: quoteIdent(opts.tenantColumn),
        roles: prepared.roles,
        notes,
        rows,
        readLeak,
        opts,
        setting: opts.settingName,
        covered,
        unsafeWrites: effects.unsafe,
        unsafeFunctions: effects.unsafeFunctions,
        progress: options.onProgress ?? (() => undefined),
        found: (rule, kind, object, message, fix, confirm, details, severity) => findings.push(make(rule, kind, object, message, fix, { confirm, details, severity })),
        tries: (sql, params = [], keep = false) => s.attempt(sql, params, keep),
      };
      await prepareRows(ctx);
      for (const family of ATTACK_FAMILIES) await family.run(ctx);
      attempts = s.attempts;
    } finally {
      await app.query('ROLLBACK').catch(() => undefined);
    }
  } catch (err) {
    throw err instanceof TenantwallError ? err : mapPgError(err);
  } finally {
    await app.end().catch(() => undefined);
  }

  // Citus: the same tenants attacked directly on every worker's shards (nothing on a plain PostgreSQL).
  const workers = await citusWorkerAttacks(
    { ownerUrl: opts.databaseUrl ?? appUrl, appUrl, tenantColumn: opts.tenantColumn, settingName: opts.settingName, statementTimeoutMs: options.statementTimeoutMs ?? 10_000 },
    tenantA as string,
    tenantB as string,
  );
  findings.push(...workers.findings);
  notes.push(...workers.notes);
  attempts += workers.attempts;

  let checksums: { before: string; after: string; changed: readonly string[] } | undefined;
  if (before !== undefined) {
    const afterRels = await withClient(opts.databaseUrl, undefined, (c) => relationChecksums(c));
    const digest = (m: ReadonlyMap<string, string>) => {
      const h = createHash('sha256');
      for (const line of m.values()) h.update(line);
      return h.digest('hex');
    };
    const changed = [...new Set([...before.keys(), ...afterRels.keys()])].filter((r) => before.get(r) !== afterRels.get(r)).sort();
    const after = digest(afterRels);
    checksums = { before: digest(before), after, changed };
    // verify's own writes are rolled back and the ones whose effects would outlive it were skipped (notes).
    // verify does not guess whose change it was: its writes are rolled back, and the triggers and functions it
    // found with lasting effects were not fired, but a path it did not see (a column default, a view or policy
    // calling nextval) is its own effect as much as another session's write would be someone else's.
    if (changed.length > 0) {
      notes.push(
        `content checksum changed during verify in ${changed.join(', ')}: either something verify fired had an effect its rollback does not undo and its detection missed ` +
          `(e.g. nextval in a column default, a view or a policy function; please report it), or another session wrote meanwhile. Run verify on a database nothing else writes to, to tell them apart`,
      );
    }
  }
  const { kept, suppressed, unused } = applyExceptions(sortFindings(findings), opts.exceptions);
  return Object.freeze({
    kind: 'verify',
    database: cat.database,
    serverVersion: cat.serverVersion,
    findings: kept,
    suppressed,
    unusedExceptions: unused,
    stats: { tenantTables: ts.tables.length, partitions: ts.partitions.length, attempts },
    notes,
    attack: { tenants: [tenantA, tenantB] as const, setting: opts.settingName, tenantColumn: opts.tenantColumn, appRole: opts.appRole },
    coverage: coverageOf(cat, ts, opts, { rows, readLeak, covered, unsafe: effects.unsafe, notes }),
    checksums,
    durationMs: Math.round(performance.now() - started),
  });
}

/** Every relation the application role can reach, and whether an attack ran on it (or why not). */
function coverageOf(
  cat: Catalog,
  ts: TenantSet,
  opts: ResolvedCheckOptions,
  run: { rows: ReadonlyMap<number, unknown>; readLeak: ReadonlySet<number>; covered: ReadonlyMap<number, string>; unsafe: ReadonlyMap<number, string>; notes: readonly string[] },
): CoverageEntry[] {
  const out: CoverageEntry[] = [];
  const viewDeps = groupBy(cat.viewDeps, (d) => d.view);
  for (const c of classifyRelations(cat, ts, opts).values()) {
    const r = c.rel;
    if (appAccess(r).length === 0) continue;
    const entry = (status: CoverageEntry['status'], reason: string) =>
      out.push({ relation: qn(r), kind: KIND[r.kind] ?? 'table', class: c.cls, status, reason });
    const root = ts.all.has(r.oid) ? rootOf(r, ts) : undefined;
    if (root) {
      const unsafe = run.unsafe.get(root.oid);
      if (unsafe) entry('skipped', `write attacks skipped: ${unsafe}`);
      else if (!run.rows.has(root.oid)) entry('skipped', run.notes.find((n) => n.startsWith(`${qn(root)}:`)) ?? 'no row of both tenants: row-based attacks skipped');
      else entry('attacked', r.isPartition ? 'partition attacked directly' : 'row, privilege, setting and key attacks');
    } else if (c.cls === 'global') entry('not-applicable', `global (${c.reason})`);
    else if (r.kind === 'S') entry('not-applicable', `sequence ${c.cls === 'tenant' ? `(${c.reason}; tenantwall audit: sequence-shared)` : '(no rows to attack; tenantwall audit: exposure-unknown-relation)'}`);
    else if (run.covered.has(r.oid)) {
      const how = run.covered.get(r.oid) as string;
      entry(how === 'attacked' ? 'attacked' : 'skipped', how === 'attacked' ? `read with no tenant set (${c.reason})` : how);
    } else if ((r.kind === 'v' || r.kind === 'm') && viewDeps.has(r.oid) && c.cls === 'tenant') {
      entry(r.app?.select ? 'attacked' : 'skipped', r.app?.select ? 'view attack (differential read)' : 'not readable by the application role');
    } else entry('skipped', `the application role may ${appAccess(r).join(', ')} it but cannot read it; only reads are attacked outside the tenant tables`);
  }
  return out.sort((a, b) => a.relation.localeCompare(b.relation));
}

/** Two tenant ids: from the table the tenant column references (the registry), else from the data. */
async function pickTenants(owner: pg.ClientBase, cat: Catalog, ts: TenantSet, tables: ReadonlyMap<number, TableInfo>, column: string): Promise<[string, string]> {
  for (const t of ts.tables) {
    for (const c of cat.constraints) {
      if (c.rel !== t.oid || c.type !== 'f' || c.keys.length !== 1 || c.keys[0] !== t.tenantAttnum) continue;
      const reg = cat.relations.find((r) => r.oid === c.refRel);
      if (!reg) continue;
      const col = await owner.query<{ attname: string }>('SELECT attname FROM pg_attribute WHERE attrelid = $1 AND attnum = $2', [reg.oid, c.refKeys[0]]);
      const name = col.rows[0]?.attname;
      if (!name) continue;
      const ids = await owner.query<{ id: string }>(`SELECT ${quoteIdent(name)}::text AS id FROM ${qi(reg)} ORDER BY 1 LIMIT 2`);
      if (ids.rows.length === 2) return [ids.rows[0]?.id as string, ids.rows[1]?.id as string];
    }
  }
  for (const t of ts.tables) {
    const ids = await owner.query<{ id: string }>(`SELECT DISTINCT ${quoteIdent(column)}::text AS id FROM ${qi(t)} WHERE ${quoteIdent(column)} IS NOT NULL ORDER BY 1 LIMIT 2`);
    if (ids.rows.length === 2) return [ids.rows[0]?.id as string, ids.rows[1]?.id as string];
  }
  const type = tables.values().next().value?.columns.find((c) => c.name === column)?.type;
  if (type === 'uuid') return [randomUUID(), randomUUID()];
  throw new TenantwallError('config_invalid', 'verify could not find two tenant ids; pass --tenants <a>,<b>.', { hint: AUDIT_HINT, details: { field: 'tenants' } });
}

