import { randomBytes, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import type { Catalog, Relation } from '../catalog.ts';
import { type TenantSet, qi, rootOf } from '../tenant-set.ts';
import type { ResolvedCheckOptions } from '../options.ts';
import type { ObjectKind, RuleInfo, Severity } from '../types.ts';

export interface VerifyProgress {
  readonly phase: 'rows' | 'tables' | 'privileges' | 'setting' | 'probes' | 'roles' | 'views-functions';
  readonly done: number;
  readonly total: number;
}

export interface Column {
  readonly name: string;
  readonly attnum: number;
  readonly type: string;
  readonly notNull: boolean;
  readonly hasDefault: boolean;
  readonly sequenceDefault: boolean;
  readonly identity: string;
  readonly generated: boolean;
}

export type RowValues = Record<string, string | null>;

export interface AttemptResult {
  ok: boolean;
  rows: Record<string, any>[];
  rowCount: number;
  code: string | undefined;
  message: string;
  detail: string;
  constraint: string | undefined;
}

export interface TableInfo {
  readonly rel: Relation;
  readonly columns: readonly Column[];
  readonly byAttnum: ReadonlyMap<number, Column>;
  /** Column sets of primary keys, unique constraints and unique indexes (plain columns only). */
  readonly uniques: readonly { name: string; columns: readonly string[] }[];
  /** Foreign keys to other tenant tables. */
  readonly fks: readonly { name: string; columns: readonly string[]; target: number; targetColumns: readonly string[] }[];
}

/**
 * A value of `type` (text form) unlikely to collide with existing data; null when unknown. `style` 0 is "large
 * and unique", 1 "small" (fits range checks), 2 "digest-shaped" (fits length checks on hashes).
 */
export function freshValue(type: string, style = 0): string | null {
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
export class AttackSession {
  readonly #client: pg.ClientBase;
  readonly #setting: string;
  #sp = 0;
  /** Statements tried so far (the report's `attempts`). */
  attempts = 0;

  /** NOTICE / WARNING messages the server sent during the current `attempt` (what a RAISE in a function prints). */
  notices: string[] = [];

  constructor(client: pg.ClientBase, setting: string) {
    this.#client = client;
    this.#setting = setting;
    client.on('notice', (n: { message?: string | undefined }) => {
      this.notices.push(n.message ?? '');
    });
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
    this.attempts++;
    this.notices = [];
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

/** Everything an attack family shares: the session, the catalog, the two tenants and the rows picked for them. */
export interface AttackContext {
  readonly s: AttackSession;
  readonly cat: Catalog;
  readonly ts: TenantSet;
  readonly info: ReadonlyMap<number, TableInfo>;
  /** Tenant A attacks tenant B. */
  readonly A: string;
  readonly B: string;
  readonly column: string;
  readonly qcol: string;
  /** Roles the application role may SET ROLE to (memberships and tenant table owners). */
  readonly roles: readonly string[];
  readonly notes: string[];
  /** A row of each tenant per tenant table (by root oid), picked or made by the rows step. */
  readonly rows: Map<number, { a: RowValues; b: RowValues }>;
  /** Tenant relations whose plain read already leaks: not reported again through views, functions, the setting. */
  readonly readLeak: Set<number>;
  readonly opts: ResolvedCheckOptions;
  /** The tenant setting. */
  readonly setting: string;
  /** Relations outside the tenant tables that an attack ran on (`attacked`) or could not run on (the reason). */
  readonly covered: Map<number, string>;
  /**
   * Tenant tables (root oids) whose triggers have effects a rollback does not undo (a sequence advanced, dblink):
   * no attack writes to them; the reason is in the notes and the coverage.
   */
  readonly unsafeWrites: ReadonlyMap<number, string>;
  /** Functions the application can call whose effects outlive the rollback (oid -> why): never called. */
  readonly unsafeFunctions: ReadonlyMap<number, string>;
  progress(p: VerifyProgress): void;
  /** Reports a successful attack; `confirm` is a query returning `fixed` (see `asApp`), `details` its facts. */
  found(rule: string, kind: ObjectKind, object: string, message: string, fix: string, confirm: string, details?: Record<string, unknown>, severity?: Severity): void;
  /** `s.attempt`, counted. */
  tries(sql: string, params?: unknown[], keep?: boolean): Promise<AttemptResult>;
}

/** A family of verify attacks: its attack catalogue (docs/audit.md documents each id) and the run. */
export interface AttackFamily {
  readonly name: string;
  readonly attacks: readonly RuleInfo[];
  run(ctx: AttackContext): Promise<void>;
}

/** A confirmation script run as the application role with tenant A set, rolled back; `query` returns `fixed`. */
export function asApp(ctx: Pick<AttackContext, 'setting' | 'A'>, query: string): string {
  return `-- as the application role; nothing is kept\nBEGIN;\nSELECT set_config(${quoteLiteral(ctx.setting)}, ${quoteLiteral(ctx.A)}, true);\n${query};\nROLLBACK;`;
}

/** SQL type of the tenant column of `t`. */
export function tenantType(t: TableInfo, column: string): string {
  return t.columns.find((c) => c.name === column)?.type ?? 'uuid';
}

export function selectList(t: TableInfo): string {
  return t.columns.map((c) => `${quoteIdent(c.name)}::text AS ${quoteIdent(c.name)}`).join(', ');
}

/** INSERT of `values` (text forms cast to each column's type). */
export function insertSql(t: TableInfo, values: RowValues, returning: boolean): { sql: string; params: (string | null)[] } {
  const cols = t.columns.filter((c) => !c.generated && c.name in values);
  const identity = cols.some((c) => c.identity !== '');
  const sql = `INSERT INTO ${qi(t.rel)} (${cols.map((c) => quoteIdent(c.name)).join(', ')})${identity ? ' OVERRIDING SYSTEM VALUE' : ''} VALUES (${cols.map((c, i) => `$${i + 1}::${c.type}`).join(', ')})${returning ? ` RETURNING ${selectList(t)}` : ''}`;
  return { sql, params: cols.map((c) => values[c.name] ?? null) };
}

/** Copy of `row` for `tenant` with fresh values in every unique column except the tenant and FK columns. */
export function variant(t: TableInfo, row: RowValues, column: string, tenant: string, keep: readonly string[] = []): RowValues {
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
}

/** Tenant tables referencing `oid` through a foreign key, transitively, the farthest first. */
export function referencing(ctx: AttackContext, oid: number, seen = new Set<number>()): Relation[] {
  const direct = ctx.ts.tables.filter((x) => !seen.has(x.oid) && x.oid !== oid && (ctx.info.get(x.oid)?.fks ?? []).some((f) => f.target === oid));
  for (const d of direct) seen.add(d.oid);
  return direct.flatMap((d) => [...referencing(ctx, d.oid, seen), d]);
}

/** Describes every tenant relation: columns, unique keys and foreign keys to other tenant tables. */
export async function describeTables(owner: pg.ClientBase, cat: Catalog, ts: TenantSet): Promise<Map<number, TableInfo>> {
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
