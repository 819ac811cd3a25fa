import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { mapPgError } from '../db/pg-errors.ts';
import { TenantwallError } from '../errors.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { type AttackContext, AttackSession, type TableInfo, type VerifyProgress, describeTables } from './attacks/context.ts';
import { ATTACK_FAMILIES } from './attacks/index.ts';
import { prepareRows } from './attacks/rows.ts';
import { type Catalog, loadCatalog } from './catalog.ts';
import { databaseChecksum } from './checksum.ts';
import { applyExceptions } from './exceptions.ts';
import { make, sortFindings } from './finding.ts';
import { type AppConnectionOptions, type IsolationCheckOptions, resolveCheckOptions } from './options.ts';
import { loadParser } from './policy-expr.ts';
import { withClient } from './run-audit.ts';
import { type TenantSet, qi, tenantSet } from './tenant-set.ts';
import type { Finding, Report } from './types.ts';

export type { VerifyProgress } from './attacks/context.ts';

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
  const opts = resolveCheckOptions(options);
  const appUrl = opts.appDatabaseUrl;
  if (appUrl === undefined) {
    throw new TenantwallError('config_invalid', 'verify attacks as the application role: pass --app-database-url or set TENANTWALL_APP_DATABASE_URL.', { details: { field: 'appDatabaseUrl' } });
  }
  await loadParser();
  const notes: string[] = [];
  const prepared = await withClient(opts.databaseUrl, undefined, async (owner) => {
    const cat = await loadCatalog(owner, opts.appRole, opts.tenantColumn, opts.settingName);
    const ts = tenantSet(cat, opts);
    const tables = await describeTables(owner, cat, ts);
    const tenants = options.tenants ?? (await pickTenants(owner, cat, ts, tables, opts.tenantColumn));
    const before = options.checksum ? await databaseChecksum(owner) : undefined;
    const roles = await owner.query<{ rolname: string }>(
      `SELECT DISTINCT rolname FROM pg_roles r WHERE rolname <> $1 AND (pg_has_role($1, r.oid, 'MEMBER') OR r.oid = ANY($2::oid[])) ORDER BY 1`,
      [opts.appRole, [...new Set([...ts.all.values()].map((x) => x.ownerOid))]],
    ).catch(() => ({ rows: [] as { rolname: string }[] }));
    // A superuser reaches everything already (the read attacks report it); trying every role would add nothing.
    return { cat, ts, tables, tenants, before, roles: cat.app?.superuser ? [] : roles.rows.map((r) => r.rolname) };
  });
  const { cat, ts, tables, before } = prepared;
  const [tenantA, tenantB] = prepared.tenants;
  if (tenantA === tenantB) throw new TenantwallError('config_invalid', 'verify needs two different tenant ids.', { details: { field: 'tenants' } });

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
        rows: new Map(),
        readLeak: new Set(),
        progress: options.onProgress ?? (() => undefined),
        found: (rule, kind, object, message, fix) => findings.push(make(rule, kind, object, message, fix)),
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

  let checksums: { before: string; after: string } | undefined;
  if (before !== undefined) {
    const after = await withClient(opts.databaseUrl, undefined, (c) => databaseChecksum(c));
    checksums = { before, after };
    if (before !== after) notes.push(`content checksum changed during verify (${before} -> ${after}): something outside the rolled-back transaction wrote to the database`);
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
    checksums,
    durationMs: Math.round(performance.now() - started),
  });
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
  throw new TenantwallError('config_invalid', 'verify could not find two tenant ids; pass --tenants <a>,<b>.', { details: { field: 'tenants' } });
}

