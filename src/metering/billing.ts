import type { Tenantwall } from '../db/tenantwall.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import type { Plans } from './plans.ts';
import { periodBounds } from './spec.ts';
import type { UsageReports } from './usage.ts';
import { writeOutboxEvent } from './webhooks.ts';

/** Input of `closePeriod`: the period kind, a time inside it, and optionally the tenants. */
export interface ClosePeriodInput {
  period?: 'month' | 'day' | 'hour';
  /** Any instant inside the period to close. */
  at: Date;
  /** Default: every tenant that is not deleted. */
  tenantIds?: readonly string[];
}

/**
 * Closes a billing period: for every tenant (or the given ones) writes one `period.closed` outbox event with the
 * final usage of every meter over the period and the plan in force during it (from the plan history, so a
 * change made after the period ended does not rewrite it). Its id is `period.closed:<tenant>:<period>:<start>`:
 * a re-run writes nothing new and cannot bill twice. Events arriving later for a closed period are still
 * recorded and queryable but not in the closed event.
 */
export async function closePeriod(db: Tenantwall, usage: UsageReports, plans: Plans, input: ClosePeriodInput): Promise<{ written: number; existing: number }> {
  const period = input.period ?? 'month';
  const { start, end } = periodBounds(period, input.at);
  let ids: string[];
  if (input.tenantIds) ids = input.tenantIds.map((t) => TenantId.parse(t));
  else {
    const { rows } = await db.dangerouslyCrossTenant().query<{ id: string }>(`SELECT id FROM ${quoteIdent(db.schema.registryTable)} WHERE status <> 'deleted' ORDER BY id`);
    ids = rows.map((r) => r.id);
  }
  let written = 0;
  let existing = 0;
  for (const id of ids) {
    const tid = TenantId.parse(id);
    const ok = await db.forTenant(tid).transaction(async (tx) => {
      const totals = await usage.totals(tx, tid, start, end);
      const spans = await plans.during(tx, start, end);
      return writeOutboxEvent(tx, `period.closed:${tid}:${period}:${start.toISOString()}`, 'period.closed', {
        tenant_id: tid,
        period,
        period_start: start.toISOString(),
        period_end: end.toISOString(),
        // The plan in force at the end of the period; `plans` lists every plan of the period when it changed.
        plan: (spans.at(-1) as { plan: string }).plan,
        plans: spans.map((s) => ({ plan: s.plan, from: s.from.toISOString(), to: s.to.toISOString() })),
        usage: totals,
      });
    });
    if (ok) written++;
    else existing++;
  }
  return { written, existing };
}
