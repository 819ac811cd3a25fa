import { TenantwallError } from '../errors.ts';
import type { TenantId } from '../tenant/tenant-id.ts';
import type { PreparedStep } from './pipelined-query.ts';

/**
 * Database limits of one tenant (usually of its plan), applied transaction-locally (`set_config(..., true)`,
 * the function form of `SET LOCAL`) in the same pipeline as the tenant setting: no extra round trip, and the
 * connection carries none of them into its next transaction. docs/tenant-scope.md, "Per-plan database limits".
 */
export interface DbLimits {
  /** `statement_timeout`, ms (>= 1). A statement cancelled by it answers `plan_limit_exceeded`. */
  readonly statementTimeoutMs?: number | undefined;
  /** `lock_timeout`, ms (>= 1). */
  readonly lockTimeoutMs?: number | undefined;
  /** `idle_in_transaction_session_timeout`, ms (>= 1): an interactive transaction idle longer is ended by the server. */
  readonly idleInTransactionSessionTimeoutMs?: number | undefined;
  /** `work_mem`: kB as a number, or a string with a unit (`'4MB'`, `'512kB'`, `'1GB'`); 64 kB .. 2 TB. */
  readonly workMem?: number | string | undefined;
}

/** The limits of a tenant, consulted for every scoped statement and transaction without explicit limits. */
export type LimitsProvider = (tenantId: TenantId) => DbLimits | undefined | Promise<DbLimits | undefined>;

/** Which limit cancelled a statement. */
export type LimitName = 'statement_timeout' | 'lock_timeout' | 'idle_in_transaction_session_timeout';

/** Called when a per-plan database limit cancels a statement: tenant, limit and value. */
export interface LimitExceeded {
  readonly tenantId: TenantId;
  readonly limit: LimitName;
}

/** Validated limits with their settings in a fixed order (name, value as set_config takes it). */
export interface ResolvedLimits {
  readonly limits: Readonly<DbLimits>;
  readonly settings: readonly (readonly [string, string])[];
  /** Bit i set when setting SETTINGS[i] is present: one prepared statement per combination. */
  readonly mask: number;
}

const SETTINGS = [
  ['statement_timeout', 'statementTimeoutMs'],
  ['lock_timeout', 'lockTimeoutMs'],
  ['idle_in_transaction_session_timeout', 'idleInTransactionSessionTimeoutMs'],
  ['work_mem', 'workMem'],
] as const;
const MAX_MS = 2_147_483_647;
const WORK_MEM_RE = /^(\d{1,10})(kB|MB|GB|TB)$/;
const KB = { kB: 1, MB: 1024, GB: 1024 ** 2, TB: 1024 ** 3 } as const;

function invalid(field: string, why: string): TenantwallError {
  return new TenantwallError('config_invalid', `Database limit ${field} ${why}.`, { details: { field } });
}

function workMemKb(value: number | string, field: string): number {
  let kb: number;
  if (typeof value === 'number') kb = value;
  else {
    const m = WORK_MEM_RE.exec(value);
    if (!m) throw invalid(field, `must be kB as a number or a string like '4MB' (kB, MB, GB, TB), got ${JSON.stringify(value)}`);
    kb = Number(m[1]) * KB[m[2] as keyof typeof KB];
  }
  if (!Number.isInteger(kb) || kb < 64 || kb > MAX_MS) throw invalid(field, 'must be between 64 kB and 2147483647 kB');
  return kb;
}

/** Validates limits once (plan declaration, `forTenant(id, { limits })`); `prefix` names where they came from. */
export function resolveLimits(limits: DbLimits, prefix = 'limits'): ResolvedLimits {
  if (typeof limits !== 'object' || limits === null) throw invalid(prefix, 'must be an object');
  const known = new Set<string>(SETTINGS.map(([, key]) => key));
  for (const key of Object.keys(limits)) if (!known.has(key)) throw invalid(`${prefix}.${key}`, `is unknown (use ${[...known].join(', ')})`);
  const settings: [string, string][] = [];
  const out: Record<string, number | string> = {};
  let mask = 0;
  SETTINGS.forEach(([setting, key], i) => {
    const value = limits[key];
    if (value === undefined) return;
    const field = `${prefix}.${key}`;
    if (key === 'workMem') {
      settings.push([setting, `${workMemKb(value, field)}kB`]);
    } else {
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_MS) throw invalid(field, `must be an integer number of ms in 1..${MAX_MS}`);
      settings.push([setting, `${value}ms`]);
    }
    out[key] = value;
    mask |= 1 << i;
  });
  return Object.freeze({ limits: Object.freeze(out) as DbLimits, settings: Object.freeze(settings), mask });
}

const resolved = new WeakMap<DbLimits, ResolvedLimits>();

/** `resolveLimits`, once per limits object (plans and providers hand out the same object every time). */
export function resolveLimitsOnce(limits: DbLimits, prefix: string): ResolvedLimits {
  let r = resolved.get(limits);
  if (!r) resolved.set(limits, (r = resolveLimits(limits, prefix)));
  return r;
}

const NO_LIMITS = resolveLimits({});
export { NO_LIMITS };

/**
 * The statements that carry the tenant (and the limits) before the caller's statement. One prepared statement
 * per combination of present limits (at most 16, times the generic-plan variant), so the values travel as
 * parameters and a plan's limits cost a few more set_config calls in the same statement, not a statement.
 */
export class LimitSteps {
  readonly #steps = new Map<string, Omit<PreparedStep, 'values'>>();
  readonly #named: boolean;

  /** `named` false: unnamed statements only (behind a transaction-mode pooler). */
  constructor(named: boolean) {
    this.#named = named;
  }

  /** implicit mode: `SELECT set_config(<setting>, <tenant>, true), set_config('statement_timeout', ..., true), ...`. */
  tenantStep(settingName: string, tenantId: TenantId, limits: ResolvedLimits, generic: boolean): PreparedStep {
    const key = `t${limits.mask}${generic ? 'g' : ''}`;
    let step = this.#steps.get(key);
    if (!step) {
      const calls = ['set_config($1, $2, true)', ...limits.settings.map(([name], i) => `set_config('${name}', $${i + 3}, true)`)];
      if (generic) calls.push("set_config('plan_cache_mode', 'force_generic_plan', true)");
      step = { name: this.#named ? `tenantwall_set_tenant_${key}` : '', text: `SELECT ${calls.join(', ')}`, returnsRow: true };
      this.#steps.set(key, step);
    }
    return { ...step, values: [settingName, tenantId, ...limits.settings.map(([, v]) => v)] };
  }

  /** explicit mode (after BEGIN and SET LOCAL of the tenant): the limits alone, or undefined without limits. */
  limitsStep(limits: ResolvedLimits): PreparedStep | undefined {
    if (limits.mask === 0) return undefined;
    const key = `l${limits.mask}`;
    let step = this.#steps.get(key);
    if (!step) {
      const calls = limits.settings.map(([name], i) => `set_config('${name}', $${i + 1}, true)`);
      step = { name: this.#named ? `tenantwall_limits_${key}` : '', text: `SELECT ${calls.join(', ')}`, returnsRow: true };
      this.#steps.set(key, step);
    }
    return { ...step, values: limits.settings.map(([, v]) => v) };
  }
}

/** Which of the tenant's limits cancelled the statement, if one did. */
export function limitOf(err: unknown, limits: ResolvedLimits, context: { pooled?: boolean; idleMs?: number | undefined } = {}): LimitName | undefined {
  if (limits.mask === 0) return undefined;
  const e = err as { code?: string; message?: string } | undefined;
  const l = limits.limits;
  if (e?.code === '57014' && /statement timeout/.test(e.message ?? '') && l.statementTimeoutMs !== undefined) return 'statement_timeout';
  if (e?.code === '55P03' && /lock timeout/.test(e.message ?? '') && l.lockTimeoutMs !== undefined) return 'lock_timeout';
  const idle = l.idleInTransactionSessionTimeoutMs;
  if (e?.code === '25P03' && idle !== undefined) return 'idle_in_transaction_session_timeout';
  // Behind a transaction-mode pooler the server's 25P03 may not reach the client: PgBouncer, which sees the server
  // connection end, often answers its own "server conn crashed?" (08P01) instead. When the transaction had been idle
  // longer than its idle limit before that statement, the limit is what ended it.
  if (context.pooled && idle !== undefined && context.idleMs !== undefined && context.idleMs >= idle && e?.code === '08P01' && /server conn crashed/.test(e.message ?? '')) {
    return 'idle_in_transaction_session_timeout';
  }
  return undefined;
}

/** Per-tenant count of statements cancelled by a plan limit (in this process), and an optional listener. */
export class LimitCounter {
  readonly #counts = new Map<TenantId, Record<LimitName, number>>();
  readonly #listener: ((e: LimitExceeded) => void) | undefined;

  constructor(listener?: (e: LimitExceeded) => void) {
    this.#listener = listener;
  }

  /** Counts the cancellation and returns the error the caller sees. */
  exceeded(tenantId: TenantId, limit: LimitName, limits: ResolvedLimits, cause: unknown): TenantwallError {
    let c = this.#counts.get(tenantId);
    if (!c) this.#counts.set(tenantId, (c = { statement_timeout: 0, lock_timeout: 0, idle_in_transaction_session_timeout: 0 }));
    c[limit]++;
    try {
      this.#listener?.({ tenantId, limit });
    } catch {
      // A failing listener must not replace the error the caller is owed.
    }
    const value = limit === 'statement_timeout' ? limits.limits.statementTimeoutMs : limit === 'lock_timeout' ? limits.limits.lockTimeoutMs : limits.limits.idleInTransactionSessionTimeoutMs;
    return new TenantwallError('plan_limit_exceeded', `The statement was cancelled by the tenant's ${limit} of ${value} ms.`, {
      cause,
      details: { limit, limit_ms: value },
    });
  }

  counts(tenantId: TenantId): Readonly<Record<LimitName, number>> {
    return { ...(this.#counts.get(tenantId) ?? { statement_timeout: 0, lock_timeout: 0, idle_in_transaction_session_timeout: 0 }) };
  }
}
