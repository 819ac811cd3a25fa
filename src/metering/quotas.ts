import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import type { ResolvedMeteringOptions } from './options.ts';
import type { Plans } from './plans.ts';
import { periodBounds } from './spec.ts';

/** The result of a quota check: allowed, used, limit, remaining, period. */
export interface QuotaDecision {
  readonly quota: string;
  readonly meter: string;
  readonly admitted: boolean;
  readonly enforcement: 'hard' | 'soft';
  readonly used: number;
  readonly limit: number;
  readonly remaining: number;
  readonly resetsAt: Date;
  readonly periodStart: Date;
  /** Soft quota at or above its first threshold (or over the limit). */
  readonly warning: boolean;
}

/** Per-period quotas of the tenant's plan: sharded counters in PostgreSQL (tw_quota_consume, tables.ts). */
export class Quotas {
  readonly #db: Tenantwall;
  readonly #plans: Plans;
  readonly #options: ResolvedMeteringOptions;

  constructor(db: Tenantwall, plans: Plans, options: ResolvedMeteringOptions) {
    this.#db = db;
    this.#plans = plans;
    this.#options = options;
  }

  async consume(tenantId: TenantId | string, quotaName: string, amount = 1): Promise<QuotaDecision | undefined> {
    const tid = TenantId.parse(tenantId);
    if (!Number.isSafeInteger(amount) || amount < 0) throw new TenantwallError('config_invalid', 'Quota amounts are integers >= 0.', { details: { field: 'amount' } });
    const plan = await this.#plans.planOf(tid);
    const q = plan.quotas[quotaName];
    if (!q) return undefined;
    const { start, end } = periodBounds(q.period, new Date());
    let rows: Array<{ admitted: boolean; used: string; quota_limit: string }>;
    for (let attempt = 1; ; attempt++) {
      try {
        ({ rows } = await this.#db.forTenant(tid).query<{ admitted: boolean; used: string; quota_limit: string }>(
          `SELECT admitted, used, quota_limit FROM tw_quota_consume($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
          [tid, q.name, q.meter, start, end, amount, q.limit, this.#options.quotaShards, q.enforcement === 'hard', q.thresholds],
        ));
        break;
      } catch (err) {
        // Lock waits are ordered by shard, so deadlocks should not happen; if one does, the statement was rolled
        // back as a whole and is safe to run again.
        const code = (err as { code?: string }).code;
        if ((code !== 'transaction_conflict' && code !== '40P01') || attempt >= 3) throw err;
      }
    }
    const r = rows[0];
    const used = Number(r?.used ?? 0);
    const limit = Number(r?.quota_limit ?? q.limit);
    const first = q.thresholds[0] ?? 100;
    return Object.freeze({
      quota: q.name,
      meter: q.meter,
      admitted: r?.admitted === true,
      enforcement: q.enforcement,
      used,
      limit,
      remaining: Math.max(0, limit - used),
      resetsAt: end,
      periodStart: start,
      warning: limit === 0 ? used > 0 : used * 100 >= first * limit,
    });
  }

  /** Current state of a quota without consuming. */
  status(tenantId: TenantId | string, quotaName: string): Promise<QuotaDecision | undefined> {
    return this.consume(tenantId, quotaName, 0);
  }

  /** Gives back units admitted in the period starting `periodStart` (the work they paid for failed). */
  async release(tenantId: TenantId | string, quotaName: string, periodStart: Date, amount = 1): Promise<number> {
    const tid = TenantId.parse(tenantId);
    const { rows } = await this.#db.forTenant(tid).query<{ n: string }>(`SELECT tw_quota_release($1, $2, $3, $4) AS n`, [tid, quotaName, periodStart, amount]);
    return Number(rows[0]?.n ?? 0);
  }

  /** Throws `quota_exceeded` (429, used/limit/resets_at) when a hard quota refuses. */
  async requireQuota(tenantId: TenantId | string, quotaName: string, amount = 1): Promise<QuotaDecision | undefined> {
    const d = await this.consume(tenantId, quotaName, amount);
    if (d && !d.admitted) throw quotaExceeded(d);
    return d;
  }
}

/** The `quota_exceeded` (429) error for a refused quota decision. */
export function quotaExceeded(d: QuotaDecision): TenantwallError {
  return new TenantwallError('quota_exceeded', `Quota ${d.quota} is used up for this period (${d.used} of ${d.limit}).`, {
    details: {
      quota: d.quota,
      used: d.used,
      limit: d.limit,
      resets_at: d.resetsAt.toISOString(),
      retry_after: Math.max(1, Math.ceil((d.resetsAt.getTime() - Date.now()) / 1000)),
    },
  });
}
