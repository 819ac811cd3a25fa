import type { Params, StatementGuard, StatementVerdict } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import type { Schema } from '../schema/declare.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { DEFAULT_SAFE_FUNCTIONS, DEFAULT_SAFE_OPERATORS } from './allow-lists.ts';
import { type Analysis, Analyzer } from './analyze.ts';
import { assertParserLoaded, loadParser } from './parser.ts';

/** Options of `createGuard`: extra safe functions, operators and relations, cache size. */
export interface GuardOptions {
  /**
   * Functions (lowercase, unqualified) the application declares safe in addition to the defaults
   * (DEFAULT_SAFE_FUNCTIONS). A safe function must not read tables, run SQL or change settings.
   * Default: none.
   */
  allowFunctions?: readonly string[] | undefined;
  /** Replace the default function allow-list entirely. Default: DEFAULT_SAFE_FUNCTIONS. */
  safeFunctions?: readonly string[] | undefined;
  /** Operators allowed in addition to DEFAULT_SAFE_OPERATORS. Default: none. */
  allowOperators?: readonly string[] | undefined;
  /**
   * Relations not in the schema that hold no tenant data and may be read without a tenant predicate (reference
   * views, lookup tables). Unknown relations are refused. Default: none.
   */
  allowRelations?: readonly string[] | undefined;
  /** Statement texts whose analysis is kept (least recently used are evicted). Default 2000. */
  cacheSize?: number | undefined;
  /**
   * The schema the declared tables live in (the first schema of the migrations' search_path). `schema.table`
   * names are accepted when they name a declared table in this schema; other qualified names are refused.
   * Default `public`.
   */
  tableSchema?: string | undefined;
}

/** The tenantwall SQL verifier: a StatementGuard for Tenantwall.connect({ guard }). */
export interface Guard extends StatementGuard {
  /** Resolves when the SQL parser is loaded (Tenantwall.connect awaits it); `check` before that throws `guard_not_ready`. */
  ready(): Promise<void>;
  /** The analysis of one statement text (cached); never throws. */
  analyze(sql: string): Analysis;
  /**
   * Throws `unscoped_query` unless `sql` with `params` is provably scoped to `tenantId`; returns the verdict
   * (the plan mode the statement is safe to run with).
   */
  check(sql: string, params: Params, tenantId: TenantId): StatementVerdict;
  /** Number of cached analyses (tests, metrics). */
  readonly cacheEntries: number;
}

const GUARD_OPTIONS_HINT = 'Fix the createGuard option named in the message (docs/guard.md lists them).';

/** The SQL verifier over `schema` (docs/guard.md): a StatementGuard that refuses statements not provably scoped to the tenant. */
export function createGuard(schema: Schema, options: GuardOptions = {}): Guard {
  const cacheSize = options.cacheSize ?? 2000;
  if (!Number.isInteger(cacheSize) || cacheSize < 1) throw new TenantwallError('config_invalid', 'guard cacheSize must be a positive integer.', { hint: GUARD_OPTIONS_HINT });
  const tableSchema = options.tableSchema ?? 'public';
  if (!/^[a-z_][a-z0-9_$]{0,62}$/.test(tableSchema)) {
    throw new TenantwallError('config_invalid', `guard tableSchema must be a lowercase SQL identifier (got ${JSON.stringify(tableSchema)}).`, { hint: GUARD_OPTIONS_HINT, details: { field: 'tableSchema' } });
  }
  const analyzer = new Analyzer({
    schema,
    safeFunctions: new Set([...(options.safeFunctions ?? DEFAULT_SAFE_FUNCTIONS), ...(options.allowFunctions ?? [])].map((f) => f.toLowerCase())),
    safeOperators: new Set([...DEFAULT_SAFE_OPERATORS, ...(options.allowOperators ?? [])]),
    globalRelations: new Set(options.allowRelations ?? []),
    tableSchema,
  });
  // Map iteration order is insertion order: re-inserting on a hit makes the first key the least recently used.
  const cache = new Map<string, Analysis>();

  const ready = loadParser();
  ready.catch(() => undefined); // surfaced by ready() and by assertParserLoaded
  const analyze = (sql: string): Analysis => {
    const hit = cache.get(sql);
    if (hit !== undefined) {
      cache.delete(sql);
      cache.set(sql, hit);
      return hit;
    }
    assertParserLoaded();
    const a = analyzer.analyze(sql);
    if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string);
    cache.set(sql, a);
    return a;
  };

  return {
    ready: () => ready,
    analyze,
    check(sql: string, params: Params, tenantId: TenantId): StatementVerdict {
      // The id the proof compares against must itself be an id: '' or 'x' would match a '' or 'x' parameter.
      if (!TenantId.is(tenantId)) {
        TenantId.parse(tenantId); // throws invalid_tenant_id for anything that is not an id
        throw new TenantwallError('invalid_tenant_id', `Tenant id ${JSON.stringify(String(tenantId).slice(0, 80))} is not in canonical form (lowercase).`, { details: { field: 'tenant_id' } });
      }
      const a = analyze(sql);
      if (!a.ok) throw refusal(sql, a);
      const tp = a.tenantParams;
      for (let i = 0; i < tp.length; i++) {
        const n = tp[i] as number;
        const p = params[n - 1];
        // bigint tenant keys may be bound as a number or a bigint of the same value.
        if (p !== tenantId && !((typeof p === 'number' || typeof p === 'bigint') && String(p) === tenantId)) {
          throw new TenantwallError('unscoped_query', `Parameter $${n} constrains tenant_id but is not the current tenant id.`, {
            details: { parameter: n, reason: 'tenant parameter mismatch' },
          });
        }
      }
      return a;
    },
    get cacheEntries() {
      return cache.size;
    },
  };
}

function refusal(sql: string, a: Extract<Analysis, { ok: false }>): TenantwallError {
  const where = a.location === undefined ? '' : ` at offset ${a.location} (${excerpt(sql, a.location)})`;
  const details: Record<string, unknown> = { reason: a.reason };
  if (a.table !== undefined) details.table = a.table;
  if (a.location !== undefined) details.location = a.location;
  return new TenantwallError('unscoped_query', `Refused statement${where}: ${a.reason}.`, a.hint === undefined ? { details } : { details, hint: a.hint });
}

function excerpt(sql: string, at: number): string {
  const s = sql.slice(Math.max(0, at - 10), at + 30).replace(/\s+/g, ' ');
  return `near "${s}"`;
}
