import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { suspendTenant } from '../lifecycle/suspend.ts';
import type { TenantId } from '../tenant/tenant-id.ts';
import { closePeriod, type ClosePeriodInput } from './billing.ts';
import type { UsageEvent, UsageEventInput } from './events.ts';
import { type BatchResult, EventIngestion, type RecordOptions, type RecordResult } from './ingest.ts';
import { type MeteringOptions, type ResolvedMeteringOptions, resolveMeteringOptions } from './options.ts';
import { type PlanRateDecision, PlanRateLimits } from './plan-rate-limits.ts';
import { Plans } from './plans.ts';
import { type QuotaDecision, Quotas } from './quotas.ts';
import type { RateLimiter } from './rate-limit.ts';
import { type MeteringModel, type MeteringSpec, type Plan, defineMetering } from './spec.ts';
import { type UsageQuery, UsageReports, type UsageRow } from './usage.ts';
import { Webhooks } from './webhooks.ts';

/**
 * Usage metering, quotas, rate limits and billing hooks on one Tenantwall instance: a facade over the modules
 * that do the work (docs/metering.md, "Layout"): ingestion (ingest.ts), usage reports (usage.ts), plans
 * (plans.ts), quotas (quotas.ts), rate limits (plan-rate-limits.ts over rate-limit.ts), billing events
 * (billing.ts, webhooks.ts). Options are resolved once by `resolveMeteringOptions` (options.ts).
 */
export class Metering {
  readonly db: Tenantwall;
  readonly model: MeteringModel;
  readonly options: ResolvedMeteringOptions;
  readonly webhooks: Webhooks;
  readonly #events: EventIngestion;
  readonly #reports: UsageReports;
  readonly #plans: Plans;
  readonly #quotas: Quotas;
  readonly #rateLimits: PlanRateLimits;

  constructor(db: Tenantwall, options: MeteringOptions) {
    this.db = db;
    const { spec, ...rest } = options;
    this.model = 'meters' in spec && spec.meters instanceof Map ? (spec as MeteringModel) : defineMetering(spec as MeteringSpec);
    this.options = resolveMeteringOptions(rest);
    this.webhooks = new Webhooks(db, rest.webhooks);
    this.#events = new EventIngestion(db, this.model, this.options);
    this.#reports = new UsageReports(db, this.model, this.options);
    this.#plans = new Plans(db, this.model, this.options);
    this.#quotas = new Quotas(db, this.#plans, this.options);
    this.#rateLimits = new PlanRateLimits(db, this.#plans, this.options, rest.rateLimitStore);
  }

  get limiter(): RateLimiter {
    return this.#rateLimits.limiter;
  }

  // ---------------------------------------------------------------- events

  /** Validates one event (throws `invalid_usage_event` / `unknown_meter` / `meter_not_writable`) without writing it. */
  parseEvent(raw: unknown, options: RecordOptions = {}): UsageEvent {
    return this.#events.parse(raw, options.source);
  }

  /** Records one event in the tenant's scope; a known event_id is answered `duplicate: true`. */
  async record(tenantId: TenantId | string, event: UsageEventInput, options: RecordOptions = {}): Promise<RecordResult> {
    const r = await this.#events.recordBatch(tenantId, [event], options);
    return r.results[0] as RecordResult;
  }

  /**
   * Records a batch for one tenant, all-or-nothing: the whole batch is validated first, then written by one
   * statement (dedup and write in the same transaction). Results are per event, in input order. `source:
   * 'client'` (the ingestion route) refuses events of server-only meters with `meter_not_writable`.
   */
  recordBatch(tenantId: TenantId | string, events: readonly unknown[], options: RecordOptions = {}): Promise<BatchResult> {
    return this.#events.recordBatch(tenantId, events, options);
  }

  /**
   * Buffers one event for a background batch write (the request hook's events). Cheap on the request path;
   * events still in the buffer when the process dies are lost, so use `record` for usage that is billed per event.
   */
  enqueue(tenantId: TenantId, event: UsageEventInput): void {
    this.#events.enqueue(tenantId, event);
  }

  /**
   * Counts one API request for the `api_requests` meter. Requests are summed in memory per (tenant, minute,
   * route, status, API key) and written as one event per group at the next flush. Lost if the process dies
   * before the flush.
   */
  countRequest(tenantId: TenantId, properties: { route: string; status: number; api_key_id?: string | undefined }): void {
    this.#events.countRequest(tenantId, properties);
  }

  /** Writes buffered events now. */
  flush(): Promise<void> {
    return this.#events.flush();
  }

  // ---------------------------------------------------------------- usage

  /** A tenant's own usage, through its scope: row-level security applies to the query. */
  usage(tenantId: TenantId | string, query: UsageQuery = {}): Promise<UsageRow[]> {
    return this.#reports.usage(tenantId, query);
  }

  /** Every tenant's usage (or one tenant's with `tenantId`), for operators: owner connection. */
  adminUsage(query: UsageQuery = {}): Promise<UsageRow[]> {
    return this.#reports.adminUsage(query);
  }

  // ---------------------------------------------------------------- plans

  /** The tenant's plan (cached for `planCacheTtlMs`). */
  planOf(tenantId: TenantId | string): Promise<Plan> {
    return this.#plans.planOf(tenantId);
  }

  /**
   * Assigns a plan. In one transaction: the assignment, its plan-history row, the `plan.changed` outbox event,
   * and the re-split of every hard quota counter of the current periods to the new limits.
   */
  setPlan(tenantId: TenantId | string, planName: string): Promise<{ changed: boolean; version: number }> {
    return this.#plans.setPlan(tenantId, planName);
  }

  // ---------------------------------------------------------------- quotas

  /**
   * Admits `amount` units against a quota of the tenant's plan. Hard: refused (admitted false) when it would
   * exceed the limit. Soft: always admitted. Threshold events are written in the same transaction. A plan
   * without this quota admits everything (unlimited).
   */
  consume(tenantId: TenantId | string, quotaName: string, amount = 1): Promise<QuotaDecision | undefined> {
    return this.#quotas.consume(tenantId, quotaName, amount);
  }

  /** Current state of a quota without consuming. */
  status(tenantId: TenantId | string, quotaName: string): Promise<QuotaDecision | undefined> {
    return this.#quotas.status(tenantId, quotaName);
  }

  /** Gives back units admitted in the period starting `periodStart` (the work they paid for failed). */
  release(tenantId: TenantId | string, quotaName: string, periodStart: Date, amount = 1): Promise<number> {
    return this.#quotas.release(tenantId, quotaName, periodStart, amount);
  }

  /** Throws `quota_exceeded` (429, used/limit/resets_at) when a hard quota refuses. */
  requireQuota(tenantId: TenantId | string, quotaName: string, amount = 1): Promise<QuotaDecision | undefined> {
    return this.#quotas.requireQuota(tenantId, quotaName, amount);
  }

  // ---------------------------------------------------------------- rate limits

  /**
   * Checks every rate limit of the tenant's plan for one request. Returns the decisions (tightest first);
   * throws `rate_limited` when a hard one refuses.
   */
  rateLimit(tenantId: TenantId | string, apiKeyId?: string): Promise<PlanRateDecision[]> {
    return this.#rateLimits.rateLimit(tenantId, apiKeyId);
  }

  /**
   * `rateLimit` when it can be answered without a round trip (plan cached, every limit served from the local
   * lease or known exhausted); undefined otherwise, and then nothing was taken. Throws `rate_limited` like it.
   */
  rateLimitLocal(tenantId: TenantId, apiKeyId?: string): PlanRateDecision[] | undefined {
    return this.#rateLimits.rateLimitLocal(tenantId, apiKeyId);
  }

  // ---------------------------------------------------------------- billing events

  /**
   * Closes a billing period: one `period.closed` outbox event per tenant with the final usage of every meter
   * and the plan in force during the period (billing.ts). Deterministic ids: a re-run bills nothing twice.
   */
  closePeriod(input: ClosePeriodInput): Promise<{ written: number; existing: number }> {
    return closePeriod(this.db, this.#reports, this.#plans, input);
  }

  /**
   * Suspends a tenant with its `tenant.suspended` event: lifecycle's `suspendTenant` (kept here for callers of
   * the metering API).
   */
  suspendTenant(tenantId: TenantId | string, reason = 'suspended'): Promise<Tenant> {
    return suspendTenant(this.db, tenantId, { reason });
  }

  async close(): Promise<void> {
    await this.flush();
    await this.limiter.store.close?.();
  }
}
