import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { parseDatabaseUrl } from '../config/options.ts';
import { mapPgError } from '../db/pg-errors.ts';
import { TenantwallError } from '../errors.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { type Catalog, type Relation, loadCatalog } from './catalog.ts';
import { databaseChecksum } from './checksum.ts';
import { applyExceptions } from './exceptions.ts';
import { loadParser } from './policy-expr.ts';
import { type IsolationCheckOptions, type TenantSet, functionsTouchingTenants, make, resolveCheckOptions, tenantSet, withClient } from './run-audit.ts';
import { type Finding, type ObjectKind, type Report, SEVERITY_RANK } from './types.ts';

/** Options of `runVerify`: the app connection and the tenants to attack with. */
export interface VerifyOptions extends IsolationCheckOptions {
  /**
   * Connection of the application role; every attack runs through it. Env `TENANTWALL_APP_DATABASE_URL`.
   * Required. `databaseUrl` (the owner) only reads the catalog, the tenant ids and the optional checksums.
   */
  appDatabaseUrl?: string | undefined;
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

export interface VerifyProgress {
  readonly phase: 'rows' | 'tables' | 'setting' | 'probes' | 'roles' | 'views-functions';
  readonly done: number;
  readonly total: number;
}

interface Column {
  readonly name: string;
  readonly attnum: number;
  readonly type: string;
  readonly notNull: boolean;
  readonly hasDefault: boolean;
  readonly sequenceDefault: boolean;
  readonly identity: string;
  readonly generated: boolean;
}

type RowValues = Record<string, string | null>;

interface AttemptResult {
  ok: boolean;
  rows: Record<string, any>[];
  rowCount: number;
  code: string | undefined;
  message: string;
  detail: string;
  constraint: string | undefined;
}

const qi = (r: { schema: string; name: string }) => `${quoteIdent(r.schema)}.${quoteIdent(r.name)}`;
const qn = (r: { schema: string; name: string }) => `${r.schema}.${r.name}`;

/**
 * A value of `type` (text form) unlikely to collide with existing data; null when unknown. `style` 0 is "large
 * and unique", 1 "small" (fits range checks), 2 "digest-shaped" (fits length checks on hashes).
 */
function freshValue(type: string, style = 0): string | null {
  const t = type.toLowerCase();
  const n = (max: number) => String(style === 0 ? Math.floor(max / 2 + Math.random() * (max / 2 - 1)) : 1 + Math.floor(Math.random() * 99));
  if (t.endsWith('[]')) return '{}';
  if (t === 'uuid') return randomUUID();
  if (t === 'smallint') return n(32_000);
  if (t === 'integer') return n(2_000_000_000);
  if (t === 'bigint') return n(9_000_000_000_000);
  if (/^(numeric|decimal|real|double precision)/.test(t)) return n(1_000_000);
  if (/^(text|character varying|varchar|citext|character|char|name)/.test(t)) {
    return style === 0 ? `tw-verify-${randomBytes(5).toString('hex')}` : style === 1 ? `v${randomBytes(3).toString('hex')}` : randomBytes(32).toString('hex');
  }
  if (t === 'boolean') return 'false';
  if (t === 'date') return '2000-01-01';
  if (t.startsWith('timestamp')) return '2000-01-01 00:00:00+00';
  if (t === 'json' || t === 'jsonb') return '{}';
  if (t === 'bytea') return `\\x${randomBytes(style === 2 ? 32 : style === 1 ? 16 : 1).toString('hex')}`;
  if (t === 'inet' || t === 'cidr') return '10.0.0.1';
  return null;
}

/** Runs every statement of the attack session inside one transaction that is always rolled back. */
class AttackSession {
  readonly #client: pg.Client;
  readonly #setting: string;
  #sp = 0;

  constructor(client: pg.Client, setting: string) {
    this.#client = client;
    this.#setting = setting;
  }

  async raw(sql: string, params: unknown[] = []): Promise<pg.QueryResult> {
    return this.#client.query(sql, params);
  }

  /** Back to the session's value: what a transaction that never set the tenant sees (role/database defaults). */
  async resetTenant(): Promise<void> {
    await this.#client.query(`RESET ${this.#setting}`);
  }

  async setTenant(id: string | null): Promise<void> {
    await this.#client.query('SELECT set_config($1, $2, true)', [this.#setting, id ?? '']);
  }

  /** Runs `sql` in a savepoint; undone afterwards unless `keep`. Errors are results, not exceptions. */
  async attempt(sql: string, params: unknown[] = [], keep = false): Promise<AttemptResult> {
    const sp = `tw_verify_${++this.#sp}`;
    await this.#client.query(`SAVEPOINT ${sp}`);
    try {
      const r = await this.#client.query(sql, params);
      if (keep) await this.#client.query(`RELEASE SAVEPOINT ${sp}`);
      else await this.#client.query(`ROLLBACK TO SAVEPOINT ${sp}`);
      return { ok: true, rows: r.rows, rowCount: r.rowCount ?? 0, code: undefined, message: '', detail: '', constraint: undefined };
    } catch (err) {
      await this.#client.query(`ROLLBACK TO SAVEPOINT ${sp}`);
      const e = err as { code?: string; message?: string; detail?: string; constraint?: string };
      return { ok: false, rows: [], rowCount: 0, code: e.code, message: e.message ?? String(err), detail: e.detail ?? '', constraint: e.constraint };
    }
  }

  /** Runs `fn` and undoes everything it did. */
  async isolated<T>(fn: () => Promise<T>): Promise<T> {
    const sp = `tw_verify_${++this.#sp}`;
    await this.#client.query(`SAVEPOINT ${sp}`);
    try {
      return await fn();
    } finally {
      await this.#client.query(`ROLLBACK TO SAVEPOINT ${sp}`);
    }
  }
}

interface TableInfo {
  readonly rel: Relation;
  readonly columns: readonly Column[];
  readonly byAttnum: ReadonlyMap<number, Column>;
  /** Column sets of primary keys, unique constraints and unique indexes (plain columns only). */
  readonly uniques: readonly { name: string; columns: readonly string[] }[];
  /** Foreign keys to other tenant tables. */
  readonly fks: readonly { name: string; columns: readonly string[]; target: number; targetColumns: readonly string[] }[];
}

/**
 * Attacks the database as the application role, inside one transaction that is always rolled back: every
 * successful attack is a finding. Needs the owner URL (catalog, tenant ids) and the application role's URL.
 */
export async function runVerify(options: VerifyOptions = {}): Promise<Report> {
  const started = performance.now();
  const opts = resolveCheckOptions(options);
  const appUrl = options.appDatabaseUrl || process.env.TENANTWALL_APP_DATABASE_URL || undefined;
  if (appUrl === undefined) {
    throw new TenantwallError('config_invalid', 'verify attacks as the application role: pass --app-database-url or set TENANTWALL_APP_DATABASE_URL.', { details: { field: 'appDatabaseUrl' } });
  }
  parseDatabaseUrl(appUrl, 'appDatabaseUrl');
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
  const counter = { attempts: 0 };
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
      const result = await attack(s, cat, ts, tables, tenantA, tenantB, opts.tenantColumn, prepared.roles, notes, options.onProgress ?? (() => undefined));
      findings.push(...result.findings);
      counter.attempts = result.attempts;
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
  findings.sort((a, b) => SEVERITY_RANK[b.severity] - SEVERITY_RANK[a.severity] || a.ruleId.localeCompare(b.ruleId) || a.object.localeCompare(b.object));
  const { kept, suppressed, unused } = applyExceptions(findings, opts.exceptions);
  return Object.freeze({
    kind: 'verify',
    database: cat.database,
    serverVersion: cat.serverVersion,
    findings: kept,
    suppressed,
    unusedExceptions: unused,
    stats: { tenantTables: ts.tables.length, partitions: ts.partitions.length, attempts: counter.attempts },
    notes,
    checksums,
    durationMs: Math.round(performance.now() - started),
  });
}

async function describeTables(owner: pg.ClientBase, cat: Catalog, ts: TenantSet): Promise<Map<number, TableInfo>> {
  const oids = [...ts.all.keys()];
  const { rows } = await owner.query(
    `SELECT a.attrelid::int8 AS rel, a.attname AS name, a.attnum AS attnum, format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull AS not_null,
       a.atthasdef AS has_default, coalesce(pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%', false) AS seq_default, a.attidentity AS identity,
       a.attgenerated <> '' AS generated
     FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = ANY($1::oid[]) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum`,
    [oids],
  );
  const cols = new Map<number, Column[]>();
  for (const r of rows as Record<string, any>[]) {
    const rel = Number(r.rel);
    cols.set(rel, [
      ...(cols.get(rel) ?? []),
      {
        name: r.name as string,
        attnum: Number(r.attnum),
        type: r.type as string,
        notNull: r.not_null as boolean,
        hasDefault: r.has_default as boolean,
        sequenceDefault: r.seq_default as boolean,
        identity: r.identity as string,
        generated: r.generated as boolean,
      },
    ]);
  }
  const out = new Map<number, TableInfo>();
  for (const rel of ts.all.values()) {
    const columns = cols.get(rel.oid) ?? [];
    const byAttnum = new Map(columns.map((c) => [c.attnum, c]));
    const names = (keys: readonly number[]) => keys.map((k) => byAttnum.get(k)?.name).filter((x): x is string => x !== undefined);
    const root = rootOf(rel, ts);
    const uniques = [
      ...cat.constraints.filter((c) => c.rel === root.oid && (c.type === 'p' || c.type === 'u')).map((c) => ({ name: c.name, columns: names(c.keys) })),
      ...cat.indexes.filter((i) => i.rel === root.oid && i.unique && !i.backsConstraint).map((i) => ({ name: i.name, columns: names(i.keys.filter((k) => k > 0)) })),
    ];
    const fks = cat.constraints
      .filter((c) => c.rel === root.oid && c.type === 'f' && ts.all.has(c.refRel))
      .map((c) => {
        const target = ts.all.get(c.refRel) as Relation;
        const tcols = cols.get(target.oid) ?? [];
        return { name: c.name, columns: names(c.keys), target: c.refRel, targetColumns: c.refKeys.map((k) => tcols.find((x) => x.attnum === k)?.name ?? '?') };
      });
    out.set(rel.oid, { rel, columns, byAttnum, uniques, fks });
  }
  return out;
}

function rootOf(rel: Relation, ts: TenantSet): Relation {
  let cur = rel;
  while (cur.isPartition && cur.parent !== null && ts.all.has(cur.parent)) cur = ts.all.get(cur.parent) as Relation;
  return cur;
}

/** Two tenant ids: from the table the tenant column references (the registry), else from the data. */
async function pickTenants(owner: pg.ClientBase, cat: Catalog, ts: TenantSet, tables: Map<number, TableInfo>, column: string): Promise<[string, string]> {
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

/** FK order: a table's referenced tenant tables come first, so their rows exist when its rows are made. */
function fkOrder(tables: readonly Relation[], info: Map<number, TableInfo>): Relation[] {
  const out: Relation[] = [];
  const state = new Map<number, number>();
  const visit = (r: Relation) => {
    if (state.get(r.oid) !== undefined) return;
    state.set(r.oid, 1);
    for (const fk of info.get(r.oid)?.fks ?? []) {
      const t = tables.find((x) => x.oid === fk.target);
      if (t && t.oid !== r.oid) visit(t);
    }
    state.set(r.oid, 2);
    out.push(r);
  };
  for (const t of tables) visit(t);
  return out;
}

async function attack(
  s: AttackSession,
  cat: Catalog,
  ts: TenantSet,
  info: Map<number, TableInfo>,
  A: string,
  B: string,
  column: string,
  roles: readonly string[],
  notes: string[],
  progress: (p: VerifyProgress) => void,
): Promise<{ findings: Finding[]; attempts: number }> {
  let attempts = 0;
  const findings: Finding[] = [];
  const qcol = quoteIdent(column);
  const found = (rule: string, kind: ObjectKind, object: string, message: string, fix: string) => findings.push(make(rule, kind, object, message, fix));
  const tcast = (t: TableInfo) => t.columns.find((c) => c.name === column)?.type ?? 'uuid';
  const selectList = (t: TableInfo) => t.columns.map((c) => `${quoteIdent(c.name)}::text AS ${quoteIdent(c.name)}`).join(', ');
  const tries = async (sql: string, params: unknown[] = [], keep = false) => {
    attempts++;
    return s.attempt(sql, params, keep);
  };

  /** INSERT of `values` (text forms cast to each column's type). */
  const insertSql = (t: TableInfo, values: RowValues, returning: boolean) => {
    const cols = t.columns.filter((c) => !c.generated && c.name in values);
    const identity = cols.some((c) => c.identity !== '');
    const sql = `INSERT INTO ${qi(t.rel)} (${cols.map((c) => quoteIdent(c.name)).join(', ')})${identity ? ' OVERRIDING SYSTEM VALUE' : ''} VALUES (${cols.map((c, i) => `$${i + 1}::${c.type}`).join(', ')})${returning ? ` RETURNING ${selectList(t)}` : ''}`;
    return { sql, params: cols.map((c) => values[c.name] ?? null) };
  };
  /** Copy of `row` for `tenant` with fresh values in every unique column except the tenant and FK columns. */
  const variant = (t: TableInfo, row: RowValues, tenant: string, keep: readonly string[] = []): RowValues => {
    const fkCols = new Set(t.fks.flatMap((f) => f.columns));
    const out: RowValues = {};
    for (const c of t.columns) if (!c.generated) out[c.name] = row[c.name] ?? null;
    out[column] = tenant;
    for (const u of t.uniques) {
      for (const c of u.columns) {
        if (c === column || fkCols.has(c) || keep.includes(c)) continue;
        const col = t.columns.find((x) => x.name === c);
        if (col) out[c] = freshValue(col.type);
      }
    }
    return out;
  };

  // 1. rows of both tenants in every tenant table: picked when visible, made (in this transaction) otherwise
  const rows = new Map<number, { a: RowValues; b: RowValues }>();
  const roots = fkOrder(ts.tables, info);
  for (const [i, rel] of roots.entries()) {
    progress({ phase: 'rows', done: i, total: roots.length });
    const t = info.get(rel.oid) as TableInfo;
    const got: Partial<Record<'a' | 'b', RowValues>> = {};
    for (const [k, tenant] of [['a', A], ['b', B]] as const) {
      await s.setTenant(tenant);
      const seen = await tries(`SELECT ${selectList(t)} FROM ${qi(rel)} WHERE ${qcol} = $1::${tcast(t)} LIMIT 1`, [tenant]);
      if (seen.ok && seen.rows[0]) got[k] = seen.rows[0] as RowValues;
    }
    for (const [k, other, tenant] of [['a', 'b', A], ['b', 'a', B]] as const) {
      if (got[k]) continue;
      await s.setTenant(tenant);
      // The other tenant's row satisfies the table's checks: copy it, re-pointed at this tenant's parents.
      const model = got[other];
      const candidates: RowValues[] = [];
      if (model) candidates.push(variant(t, model, tenant));
      for (const style of [0, 1, 2]) {
        const values: RowValues = { [column]: tenant };
        for (const c of t.columns) {
          if (c.generated || c.name === column || t.fks.some((f) => f.columns.includes(c.name))) continue;
          if (c.identity !== '' || c.sequenceDefault) values[c.name] = freshValue(c.type, style);
          else if (c.hasDefault || !c.notNull) continue;
          else values[c.name] = freshValue(c.type, style);
        }
        candidates.push(values);
      }
      let lastError = '';
      for (const values of candidates) {
        for (const fk of t.fks) {
          const ref = rows.get(fk.target)?.[k];
          fk.columns.forEach((c, idx) => {
            if (c === column) return;
            const col = t.columns.find((x) => x.name === c);
            values[c] = ref ? (ref[fk.targetColumns[idx] ?? ''] ?? null) : col?.notNull ? freshValue(col.type) : null;
          });
        }
        const ins = insertSql(t, values, true);
        const made = await tries(ins.sql, ins.params, true);
        if (made.ok && made.rows[0]) {
          got[k] = made.rows[0] as RowValues;
          break;
        }
        lastError = made.message;
      }
      if (!got[k]) notes.push(`${qn(rel)}: could not pick or make a row for tenant ${tenant} (${lastError || 'not visible'}); row-based attacks skipped`);
    }
    if (got.a && got.b) rows.set(rel.oid, { a: got.a, b: got.b });
  }

  /** Tenant tables referencing `oid` through a foreign key, transitively, the farthest first. */
  const referencing = (oid: number, seen = new Set<number>()): Relation[] => {
    const direct = ts.tables.filter((x) => !seen.has(x.oid) && x.oid !== oid && (info.get(x.oid)?.fks ?? []).some((f) => f.target === oid));
    for (const d of direct) seen.add(d.oid);
    return direct.flatMap((d) => [...referencing(d.oid, seen), d]);
  };

  // 2. per relation: read, update, delete, insert, move; DDL, TRUNCATE, triggers
  const readLeak = new Set<number>();
  const targets = [...ts.all.values()].filter((r) => !r.isPartition || (r.app && (r.app.select || r.app.update || r.app.delete || r.app.insert)));
  for (const [i, rel] of targets.entries()) {
    progress({ phase: 'tables', done: i, total: targets.length });
    const t = info.get(rel.oid) as TableInfo;
    const root = rootOf(rel, ts);
    const kind: ObjectKind = rel.isPartition ? 'partition' : 'table';
    const name = qn(rel);
    const type = tcast(t);
    const pair = rows.get(root.oid);
    await s.setTenant(A);
    const others = `SELECT count(*)::int AS n FROM ${qi(rel)} WHERE ${qcol} IS DISTINCT FROM $1::${type}`;
    const read = await tries(others, [A]);
    const readOff = await s.isolated(async () => {
      await s.raw('SET LOCAL row_security = off');
      return tries(others, [A]);
    });
    await s.setTenant(A);
    if ((read.ok && read.rows[0]?.n > 0) || (readOff.ok && readOff.rows[0]?.n > 0)) {
      readLeak.add(rel.oid);
      const n = read.ok && read.rows[0]?.n > 0 ? read.rows[0]?.n : readOff.rows[0]?.n;
      found('attack-read-cross-tenant', kind, name, `With tenant ${A} set, ${n} row(s) of other tenants were readable from ${name}${read.ok && read.rows[0]?.n > 0 ? '' : ' after SET row_security = off'}.`, `-- run tenantwall audit on ${name}: RLS enabled and forced, one tight policy, app role neither owner nor BYPASSRLS`);
    }
    const own = await tries(`SELECT count(*)::int AS n FROM ${qi(rel)}`);
    const ownCount = own.ok ? Number(own.rows[0]?.n ?? 0) : 0;
    // No WHERE clause: a WHERE that reads columns would bring in the SELECT policies and hide a weak UPDATE or
    // DELETE policy that a blind statement (the usual injection) still reaches. Setting the tenant column to A
    // leaves A's own rows unchanged, so any constraint error means another tenant's row was hit.
    const upd = await tries(`UPDATE ${qi(rel)} SET ${qcol} = $1::${type}`, [A]);
    if ((upd.ok && upd.rowCount > ownCount) || (!upd.ok && upd.code !== undefined && upd.code.startsWith('23'))) {
      found('attack-update-cross-tenant', kind, name, `With tenant ${A} set, UPDATE ${name} without WHERE reached ${upd.ok ? upd.rowCount - ownCount : 'some'} row(s) of other tenants${upd.ok ? '' : ` (then failed on ${upd.code})`}.`, `-- the UPDATE policy of ${name} must have USING (${column} = <tenant setting>)`);
    }
    // On a foreign key error, retry with A's rows in referencing tables deleted first: an error then can only come
    // from another tenant's row.
    let del = await tries(`DELETE FROM ${qi(rel)}`);
    if (!del.ok && del.code === '23503') {
      del = await s.isolated(async () => {
        for (const child of referencing(root.oid)) await tries(`DELETE FROM ${qi(child)}`, [], true);
        return tries(`DELETE FROM ${qi(rel)}`);
      });
    }
    if ((del.ok && del.rowCount > ownCount) || (!del.ok && del.code === '23503')) {
      found('attack-delete-cross-tenant', kind, name, `With tenant ${A} set, DELETE FROM ${name} reached ${del.ok ? del.rowCount - ownCount : 'some'} row(s) of other tenants.`, `-- the DELETE policy of ${name} must have USING (${column} = <tenant setting>)`);
    }
    if (!rel.isPartition) {
      const mv = await tries(`UPDATE ${qi(rel)} SET ${qcol} = $1::${type}`, [B]);
      if (ownCount > 0 && ((mv.ok && mv.rowCount > 0) || (mv.code !== undefined && mv.code.startsWith('23')))) {
        found('attack-update-move-tenant', kind, name, `With tenant ${A} set, rows of ${A} in ${name} could be re-assigned to ${B}.`, `-- the UPDATE policy of ${name} must have WITH CHECK (${column} = <tenant setting>)`);
      }
    }
    if (pair && !rel.isPartition) {
      const ins = insertSql(t, variant(t, pair.b, B), false);
      const r = await tries(ins.sql, ins.params);
      if (r.ok || (r.code !== undefined && r.code.startsWith('23'))) {
        found('attack-insert-cross-tenant', kind, name, `With tenant ${A} set, a row with ${column} = ${B} was accepted by ${name}${r.ok ? '' : ` (RLS passed; it then failed on ${r.code})`}.`, `-- the INSERT policy of ${name} must have WITH CHECK (${column} = <tenant setting>)`);
      }
    }
    // Privilege checks happen before locks are taken, so a refused attempt never blocks other sessions; a
    // permitted one waits at most 50 ms for its lock (a lock timeout then proves the permission).
    const ddlTry = (sql: string) =>
      s.isolated(async () => {
        await s.raw(`SET LOCAL lock_timeout = '50ms'`);
        return tries(sql);
      });
    const ddl = await ddlTry(`ALTER TABLE ${qi(rel)} NO FORCE ROW LEVEL SECURITY`);
    const owns = ddl.ok || (ddl.code !== undefined && ddl.code !== '42501');
    if (owns) found('attack-ddl', kind, name, `The application role could ALTER TABLE ${name} (it can turn its row-level security off; TRUNCATE and triggers follow).`, `ALTER TABLE ${qi(rel)} OWNER TO <migration owner>; -- and REVOKE the owner role from the application role`);
    const tr = await ddlTry(`TRUNCATE ${qi(rel)}`);
    if (!owns && (tr.ok || (tr.code !== undefined && tr.code !== '42501'))) {
      found('attack-truncate', kind, name, `The application role could TRUNCATE ${name}${tr.ok ? '' : ` (permitted; stopped by ${tr.code})`}.`, `REVOKE TRUNCATE ON ${qi(rel)} FROM <app role>;`);
    }
    const trig = await ddlTry(`CREATE TRIGGER tw_verify_probe BEFORE UPDATE ON ${qi(rel)} FOR EACH ROW EXECUTE FUNCTION pg_catalog.suppress_redundant_updates_trigger()`);
    if (!owns && (trig.ok || (trig.code !== undefined && trig.code !== '42501'))) {
      found('attack-trigger', kind, name, `The application role could create a trigger on ${name}.`, `REVOKE TRIGGER ON ${qi(rel)} FROM <app role>;`);
    }
  }

  // 3. the tenant setting: RESET (back to the session/role default) and an empty value must show nothing
  progress({ phase: 'setting', done: 0, total: 1 });
  for (const rel of ts.tables) {
    if (readLeak.has(rel.oid)) continue;
    const variants: string[] = [];
    await s.setTenant(A);
    const reset = await s.isolated(async () => {
      await s.resetTenant();
      return tries(`SELECT count(*)::int AS n FROM ${qi(rel)}`);
    }).catch(() => undefined);
    if (reset?.ok && reset.rows[0]?.n > 0) variants.push(`after RESET: ${reset.rows[0]?.n} row(s)`);
    await s.setTenant(null);
    const empty = await tries(`SELECT count(*)::int AS n FROM ${qi(rel)}`);
    if (empty.ok && empty.rows[0]?.n > 0) variants.push(`with an empty value: ${empty.rows[0]?.n} row(s)`);
    if (variants.length > 0) {
      found('attack-no-tenant-setting', 'table', qn(rel), `With no tenant set, ${qn(rel)} returned rows (${variants.join('; ')}).`, `-- remove role/database defaults of the tenant setting (tenantwall audit: setting-*-default) and make the policy fail closed: ${column} = (SELECT nullif(current_setting('<setting>', true), '')::<type>)`);
    }
  }

  // 4. existence probes: unique keys and foreign keys
  progress({ phase: 'probes', done: 0, total: 1 });
  for (const rel of ts.tables) {
    const t = info.get(rel.oid) as TableInfo;
    const pair = rows.get(rel.oid);
    if (!pair) continue;
    await s.setTenant(A);
    for (const u of t.uniques) {
      const ins = insertSql(t, variant(t, pair.b, A, u.columns), false);
      const r = await tries(ins.sql, ins.params);
      if (!r.ok && r.code === '23505' && r.constraint === u.name) {
        // Not a leak when the colliding row is tenant A's own.
        const cols = u.columns.filter((c) => c !== column);
        const mine = cols.length === 0 ? undefined : await tries(`SELECT 1 FROM ${qi(rel)} WHERE ${cols.map((c, i) => `${quoteIdent(c)}::text = $${i + 1}`).join(' AND ')}`, cols.map((c) => pair.b[c]));
        if (!mine?.ok || mine.rows.length === 0) {
          found('attack-unique-probe', 'constraint', `${qn(rel)}.${u.name}`, `As tenant ${A}, inserting tenant ${B}'s value of (${u.columns.join(', ')}) failed on ${u.name}: A learns that B has it.`, `-- lead ${u.name} with ${column}: UNIQUE (${[column, ...u.columns.filter((c) => c !== column)].join(', ')})`);
        }
      }
    }
    for (const fk of t.fks) {
      const target = rows.get(fk.target);
      if (!target) continue;
      const probeRow = variant(t, pair.a, A);
      const controlRow = variant(t, pair.a, A);
      fk.columns.forEach((c, i) => {
        const tc = fk.targetColumns[i] ?? '';
        probeRow[c] = c === column ? A : (target.b[tc] ?? null);
        const col = t.columns.find((x) => x.name === c);
        controlRow[c] = c === column ? A : col ? freshValue(col.type) : null;
      });
      const probe = insertSql(t, probeRow, false);
      const control = insertSql(t, controlRow, false);
      const p = await tries(probe.sql, probe.params);
      const c = await tries(control.sql, control.params);
      if ((p.ok || p.code !== '23503') && !c.ok && c.code === '23503') {
        found('attack-fk-probe', 'constraint', `${qn(rel)}.${fk.name}`, `As tenant ${A}, a row of ${qn(rel)} referencing tenant ${B}'s row was ${p.ok ? 'accepted' : `past the foreign key (${p.code})`}, while a random key was refused: A learns which keys B has.`, `-- include ${column} in ${fk.name}: FOREIGN KEY (${column}, ${fk.columns.filter((x) => x !== column).join(', ')})`);
      }
    }
  }

  // 5. SET ROLE to the owners and the roles the application role belongs to
  for (const [i, role] of roles.entries()) {
    progress({ phase: 'roles', done: i, total: roles.length });
    const leaked = await s.isolated(async () => {
      const set = await tries(`SET LOCAL ROLE ${quoteIdent(role)}`, [], true);
      if (!set.ok) return [];
      await s.raw(`SET LOCAL lock_timeout = '50ms'`);
      await s.setTenant(A);
      const hits: string[] = [];
      for (const rel of ts.tables) {
        if (readLeak.has(rel.oid)) continue;
        const q = `SELECT count(*)::int AS n FROM ${qi(rel)} WHERE ${quoteIdent(column)} IS DISTINCT FROM $1::${tcast(info.get(rel.oid) as TableInfo)}`;
        let r = await tries(q, [A]);
        if (!(r.ok && r.rows[0]?.n > 0)) {
          r = await s.isolated(async () => {
            await tries(`ALTER TABLE ${qi(rel)} NO FORCE ROW LEVEL SECURITY`, [], true);
            await tries(`ALTER TABLE ${qi(rel)} DISABLE ROW LEVEL SECURITY`, [], true);
            return tries(q, [A]);
          });
        }
        if (r.ok && r.rows[0]?.n > 0) hits.push(qn(rel));
      }
      return hits;
    });
    if (leaked.length > 0) {
      found('attack-set-role', 'role', role, `The application role could SET ROLE ${role} and then read other tenants' rows of ${leaked.slice(0, 5).join(', ')}${leaked.length > 5 ? ', ...' : ''}.`, `REVOKE ${quoteIdent(role)} FROM <app role>;`);
    }
  }

  // 6. views and functions: does what A sees change when only B's data changes?
  progress({ phase: 'views-functions', done: 0, total: 1 });
  const depsOf = new Map<number, number[]>();
  for (const d of cat.viewDeps) depsOf.set(d.view, [...(depsOf.get(d.view) ?? []), d.ref]);
  const tenantDeps = (oid: number, seen = new Set<number>()): number[] => {
    if (seen.has(oid)) return [];
    seen.add(oid);
    return (depsOf.get(oid) ?? []).flatMap((r) => (ts.all.has(r) ? [rootOf(ts.all.get(r) as Relation, ts).oid] : tenantDeps(r, seen)));
  };
  /** Adds one more row for tenant B to each table; returns false when none could be added. */
  const growB = async (tableOids: readonly number[]) => {
    let any = false;
    await s.setTenant(B);
    for (const oid of new Set(tableOids)) {
      const t = info.get(oid);
      const pair = rows.get(oid);
      if (!t || !pair) continue;
      const ins = insertSql(t, variant(t, pair.b, B), false);
      const r = await tries(ins.sql, ins.params, true);
      any ||= r.ok;
    }
    await s.setTenant(A);
    return any;
  };
  const differential = async (query: string, deps: readonly number[]) => {
    await s.setTenant(A);
    const r1 = await tries(query);
    const r2 = await tries(query);
    if (!r1.ok || !r2.ok || r1.rows[0]?.h !== r2.rows[0]?.h) return false;
    return s.isolated(async () => {
      if (!(await growB(deps))) return false;
      const r3 = await tries(query);
      return r3.ok && r3.rows[0]?.h !== r1.rows[0]?.h;
    });
  };
  for (const v of cat.relations) {
    if ((v.kind !== 'v' && v.kind !== 'm') || !v.app?.select) continue;
    const deps = [...new Set(tenantDeps(v.oid))];
    if (deps.length === 0 || deps.some((d) => readLeak.has(d))) continue;
    const hash = `SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) AS h FROM ${qi(v)} x`;
    let leak = v.tenantAttnum !== null && ((await tries(`SELECT count(*)::int AS n FROM ${qi(v)} WHERE ${qcol} IS DISTINCT FROM $1::${v.tenantType ?? 'uuid'}`, [A])).rows[0]?.n ?? 0) > 0;
    if (!leak && v.kind === 'm') {
      await s.setTenant(null);
      leak = ((await tries(`SELECT count(*)::int AS n FROM ${qi(v)}`)).rows[0]?.n ?? 0) > 0;
    }
    if (!leak) leak = await differential(hash, deps);
    if (leak) {
      found('attack-view-read', v.kind === 'v' ? 'view' : 'materialized-view', qn(v), `Through ${qn(v)}, tenant ${A} saw data of tenant ${B}.`, v.kind === 'v' ? `ALTER VIEW ${qi(v)} SET (security_invoker = true);` : `REVOKE SELECT ON ${qi(v)} FROM <app role>;`);
    }
  }
  const tenantNames = new Set([...ts.all.values()].map((r) => r.name.toLowerCase()));
  const fnDeps = new Map<number, number[]>();
  for (const d of cat.functionDeps) fnDeps.set(d.fn, [...(fnDeps.get(d.fn) ?? []), d.ref]);
  const byName = new Map([...ts.all.values()].map((r) => [qn(r), rootOf(r, ts).oid]));
  for (const f of functionsTouchingTenants(cat, ts, tenantNames, fnDeps).all) {
    if (f.tables.length === 0 || f.fn.appExecute === false || f.fn.kind !== 'f') continue;
    if (f.fn.nargs > f.fn.nargDefaults) {
      notes.push(`${f.fn.schema}.${f.fn.name}(${f.fn.args}) reads ${f.tables.join(', ')} but was not called: it has arguments without defaults (tenantwall audit still checks it)`);
      continue;
    }
    const deps = f.tables.map((n) => byName.get(n)).filter((x): x is number => x !== undefined);
    if (deps.some((d) => readLeak.has(d))) continue;
    const obj = `${f.fn.schema}.${f.fn.name}(${f.fn.args})`;
    const call = `SELECT md5(coalesce(string_agg(x::text, ',' ORDER BY x::text), '')) AS h FROM ${quoteIdent(f.fn.schema)}.${quoteIdent(f.fn.name)}() x`;
    if (await differential(call, deps)) {
      found('attack-function-read', 'function', obj, `${obj} returned a result that changed when only tenant ${B}'s data changed, while tenant ${A} was set.`, `ALTER FUNCTION ${quoteIdent(f.fn.schema)}.${quoteIdent(f.fn.name)}(${f.fn.args}) SECURITY INVOKER;`);
    }
  }
  return { findings, attempts };
}
