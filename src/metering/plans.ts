import type { Tenantwall, TenantQueryable } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { TtlCache } from '../util/ttl-cache.ts';
import type { ResolvedMeteringOptions } from './options.ts';
import { type MeteringModel, type Plan, periodBounds } from './spec.ts';
import { writeOutboxEvent } from './webhooks.ts';

/** One plan and the part of a period it was in force: [from, to). */
export interface PlanSpan {
  readonly plan: string;
  readonly from: Date;
  readonly to: Date;
}

/** Plan assignment: the cached current plan, changes (with their outbox event) and the plan history. */
export class Plans {
  readonly #db: Tenantwall;
  readonly #model: MeteringModel;
  readonly #cache: TtlCache<TenantId, Plan>;

  constructor(db: Tenantwall, model: MeteringModel, options: ResolvedMeteringOptions) {
    this.#db = db;
    this.#model = model;
    this.#cache = new TtlCache(100_000, options.planCacheTtlMs);
  }

  /** The plan if cached (no round trip). */
  cached(tid: TenantId): Plan | undefined {
    return this.#cache.get(tid);
  }

  #byName(name: string): Plan {
    // A plan removed from code falls back to the default instead of failing every request of the tenant.
    return this.#model.plans.get(name) ?? (this.#model.plans.get(this.#model.defaultPlan) as Plan);
  }

  async planOf(tenantId: TenantId | string): Promise<Plan> {
    const tid = TenantId.parse(tenantId);
    const cached = this.#cache.get(tid);
    if (cached) return cached;
    const { rows } = await this.#db.forTenant(tid).query<{ plan: string }>(`SELECT plan FROM tw_tenant_plans WHERE tenant_id = $1`, [tid]);
    const plan = this.#byName(rows[0]?.plan ?? this.#model.defaultPlan);
    this.#cache.set(tid, plan);
    return plan;
  }

  async setPlan(tenantId: TenantId | string, planName: string): Promise<{ changed: boolean; version: number }> {
    const tid = TenantId.parse(tenantId);
    const plan = this.#model.plans.get(planName);
    if (!plan) throw new TenantwallError('unknown_plan', `Plan ${JSON.stringify(planName)} is not declared.`, { details: { plan: planName } });
    const result = await this.#db.forTenant(tid).transaction(async (tx) => {
      const before = await tx.query<{ plan: string; version: number }>(`SELECT plan, version FROM tw_tenant_plans WHERE tenant_id = $1 FOR UPDATE`, [tid]);
      const previous = before.rows[0]?.plan ?? this.#model.defaultPlan;
      if (before.rows[0] && previous === planName) return { changed: false, version: before.rows[0].version };
      const { rows } = await tx.query<{ version: number; changed_at: Date }>(
        `INSERT INTO tw_tenant_plans (tenant_id, plan) VALUES ($1, $2)
         ON CONFLICT (tenant_id, slot) DO UPDATE SET plan = excluded.plan, version = tw_tenant_plans.version + 1, changed_at = now()
         RETURNING version, changed_at`,
        [tid, planName],
      );
      const version = rows[0]?.version ?? 1;
      const changedAt = rows[0]?.changed_at ?? new Date();
      // The history answers "which plan was in force then" (period.closed) after later changes.
      await tx.query(`INSERT INTO tw_plan_history (tenant_id, version, plan, valid_from) VALUES ($1, $2, $3, $4)`, [tid, version, planName, changedAt]);
      for (const q of Object.values(plan.quotas)) {
        const { start } = periodBounds(q.period, changedAt);
        await tx.query(`SELECT tw_quota_rebalance($1, $2, $3, $4, $5)`, [tid, q.name, start, q.limit, q.enforcement === 'hard']);
      }
      if (previous !== planName) {
        await writeOutboxEvent(tx, `plan.changed:${tid}:${version}`, 'plan.changed', {
          tenant_id: tid,
          previous_plan: previous,
          plan: planName,
          version,
          changed_at: changedAt.toISOString(),
        });
      }
      return { changed: previous !== planName, version };
    });
    this.#cache.delete(tid);
    return result;
  }

  /**
   * The plans in force over [from, to), oldest first, from the plan history (in the caller's transaction). A
   * tenant never assigned a plan was on the default plan; an assignment made before the history existed counts
   * from its `changed_at`.
   */
  async during(tx: TenantQueryable, from: Date, to: Date): Promise<PlanSpan[]> {
    const { rows } = await tx.query<{ version: number; plan: string; valid_from: Date }>(
      `SELECT version, plan, valid_from FROM tw_plan_history WHERE tenant_id = $1 AND valid_from < $2
       UNION
       SELECT version, plan, changed_at FROM tw_tenant_plans WHERE tenant_id = $1 AND changed_at < $2
       ORDER BY version`,
      [tx.tenantId, to],
    );
    let atFrom = this.#model.defaultPlan;
    const spans: Array<{ plan: string; from: Date; to: Date }> = [];
    let seen = -1;
    for (const r of rows) {
      if (r.version === seen) continue; // the same change, from both tables
      seen = r.version;
      if (r.valid_from <= from) {
        atFrom = r.plan;
        continue;
      }
      if (spans.length === 0) spans.push({ plan: atFrom, from, to });
      const last = spans.at(-1) as { plan: string; to: Date };
      if (r.plan === last.plan) continue;
      last.to = r.valid_from;
      spans.push({ plan: r.plan, from: r.valid_from, to });
    }
    if (spans.length === 0) spans.push({ plan: atFrom, from, to });
    return spans.map((s) => Object.freeze(s));
  }

  forget(tid: TenantId): void {
    this.#cache.delete(tid);
  }
}
