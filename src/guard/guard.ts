import type { Params, StatementGuard } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import type { Schema } from '../schema/declare.ts';
import type { TenantId } from '../tenant/tenant-id.ts';
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
}

/** The tenantwall SQL verifier: a StatementGuard for Tenantwall.connect({ guard }). */
export interface Guard extends StatementGuard {
  /** Resolves when the SQL parser is loaded (Tenantwall.connect awaits it); `check` before that throws `guard_not_ready`. */
  ready(): Promise<void>;
  /** The analysis of one statement text (cached); never throws. */
  analyze(sql: string): Analysis;
  /** Throws `unscoped_query` unless `sql` with `params` is provably scoped to `tenantId`. */
  check(sql: string, params: Params, tenantId: TenantId): void;
  /** Number of cached analyses (tests, metrics). */
  readonly cacheEntries: number;
}

export function createGuard(schema: Schema, options: GuardOptions = {}): Guard {
  const cacheSize = options.cacheSize ?? 2000;
  if (!Number.isInteger(cacheSize) || cacheSize < 1) throw new TenantwallError('config_invalid', 'guard cacheSize must be a positive integer.');
  const analyzer = new Analyzer({
    schema,
    safeFunctions: new Set([...(options.safeFunctions ?? DEFAULT_SAFE_FUNCTIONS), ...(options.allowFunctions ?? [])].map((f) => f.toLowerCase())),
    safeOperators: new Set([...DEFAULT_SAFE_OPERATORS, ...(options.allowOperators ?? [])]),
    globalRelations: new Set(options.allowRelations ?? []),
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
    check(sql: string, params: Params, tenantId: TenantId): void {
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
  return new TenantwallError('unscoped_query', `Refused statement${where}: ${a.reason}.`, { details });
}

function excerpt(sql: string, at: number): string {
  const s = sql.slice(Math.max(0, at - 10), at + 30).replace(/\s+/g, ' ');
  return `near "${s}"`;
}
