import { randomUUID } from 'node:crypto';
import type { Tenantwall } from '../db/tenantwall.ts';
import { isConnectionError } from '../db/pg-errors.ts';
import { TenantwallError, isTenantwallError } from '../errors.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { type EventLimits, type UsageEvent, type UsageEventInput, parseUsageBatch, parseUsageEvent } from './events.ts';
import type { ResolvedMeteringOptions } from './options.ts';
import { API_REQUESTS_METER, type MeterSource, type MeteringModel } from './spec.ts';

/** The result of recording one event: its id and whether it was new. */
export interface RecordResult {
  readonly event_id: string;
  /** True when an event with this id was already recorded for the tenant (nothing was written). */
  readonly duplicate: boolean;
}

/** What `recordBatch` stored: per-event results (accepted or duplicate) in input order. */
export interface BatchResult {
  readonly accepted: number;
  readonly duplicates: number;
  readonly results: readonly RecordResult[];
}

/** Options of `record`/`recordBatch`: the event source (`server` or `client`). */
export interface RecordOptions {
  /**
   * Who sends the events. `server` (default): the application's own code, any declared meter. `client`: a
   * tenant over HTTP (the ingestion route); events of server-only meters refuse the batch with
   * `meter_not_writable`.
   */
  source?: MeterSource | undefined;
}

/**
 * A failed statement wrote nothing; these failures pass (a database that is down or restarting, a pool whose
 * connections all stayed busy, a statement cancelled by its timeout), so the events are kept for the next flush. Others (a deleted tenant) drop them.
 */
const passing = (err: unknown) => isTenantwallError(err, 'database_unreachable') || isTenantwallError(err, 'pool_exhausted') || isTenantwallError(err, 'statement_timeout') || isConnectionError(err);

/** Events kept for the next flush after failed flushes, at most this many times `requestFlushEvents`. */
const RETAINED_FLUSHES = 50;

type RequestGroup = { tenantId: TenantId; minute: number; properties: { route: string; status: number; api_key_id?: string | undefined }; count: number };

/**
 * Usage events in: validation, the deduplicating write, and the in-memory buffer of server-side events (the
 * request hook's `api_requests`, rows created, quota units) flushed in batches.
 */
export class EventIngestion {
  readonly #db: Tenantwall;
  readonly #model: MeteringModel;
  readonly #options: ResolvedMeteringOptions;
  readonly #limits: EventLimits;
  readonly #buffer: Map<TenantId, UsageEvent[]> = new Map();
  #buffered = 0;
  /** Events in the buffer put back by failed flushes (not counted in #buffered: they do not trigger flushes). */
  #retained = 0;
  readonly #requests = new Map<string, RequestGroup>();
  #flushTimer: NodeJS.Timeout | undefined;
  #flushing: Promise<void> = Promise.resolve();

  constructor(db: Tenantwall, model: MeteringModel, options: ResolvedMeteringOptions) {
    this.#db = db;
    this.#model = model;
    this.#options = options;
    this.#limits = options;
  }

  parse(raw: unknown, source: MeterSource = 'server'): UsageEvent {
    return parseUsageEvent(raw, this.#model, this.#limits, Date.now(), undefined, source);
  }

  async recordBatch(tenantId: TenantId | string, events: readonly unknown[], options: RecordOptions = {}): Promise<BatchResult> {
    const tid = TenantId.parse(tenantId);
    const parsed = parseUsageBatch(events, this.#model, this.#limits, Date.now(), options.source ?? 'server');
    const fresh = await this.#insert(tid, parsed);
    const seen = new Set<string>();
    let accepted = 0;
    const results = parsed.map((e) => {
      // Within a batch the first occurrence of an id is the one that counts.
      const duplicate = !fresh.has(e.eventId) || seen.has(e.eventId);
      seen.add(e.eventId);
      if (!duplicate) accepted++;
      return Object.freeze({ event_id: e.eventId, duplicate });
    });
    return Object.freeze({ accepted, duplicates: results.length - accepted, results: Object.freeze(results) });
  }

  /** Inserts validated events; returns the ids that were new. One statement, one round trip. */
  async #insert(tid: TenantId, events: readonly UsageEvent[]): Promise<Set<string>> {
    const ids: string[] = [];
    const meters: string[] = [];
    const qty: string[] = [];
    const at: string[] = [];
    const props: (string | null)[] = [];
    const dedup = new Set<string>();
    for (const e of events) {
      if (dedup.has(e.eventId)) continue;
      dedup.add(e.eventId);
      ids.push(e.eventId);
      meters.push(e.meter);
      qty.push(String(e.quantity));
      at.push(e.occurredAt.toISOString());
      props.push(e.properties);
    }
    // The tenant is checked once per statement (the events table has no per-row foreign key, see tables.ts):
    // unknown and deleted tenants record nothing. First an anti-join and a plain INSERT: no speculative
    // insertion, about 15% less database CPU per event than ON CONFLICT (docs/benchmarks.md, metering-split).
    // Ids stored before the statement's snapshot are skipped by the anti-join; an id that a concurrent batch
    // stores meanwhile makes the unique key refuse the whole statement (nothing of it is written), and the
    // batch is then written with ON CONFLICT DO NOTHING, which waits for and skips it: dedup stays exact.
    const params = [tid, ids, meters, qty, at, props];
    let rows: { status: string | null; ids: string[] }[];
    try {
      ({ rows } = await this.#db.forTenant(tid).query<{ status: string | null; ids: string[] }>(this.#sql(false), params));
    } catch (err) {
      const e = err as { code?: string; constraint?: string };
      if (e.code !== '23505' || e.constraint !== 'tw_usage_events_pkey') throw err;
      ({ rows } = await this.#db.forTenant(tid).query<{ status: string | null; ids: string[] }>(this.#sql(true), params));
    }
    const r = rows[0];
    if (!r || r.status === null) throw new TenantwallError('tenant_not_found', `Tenant ${tid} does not exist.`);
    if (r.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${tid} was deleted.`);
    return new Set(r.ids);
  }

  #sql(onConflict: boolean): string {
    return `WITH t AS (SELECT status FROM ${quoteIdent(this.#db.schema.registryTable)} WHERE id = $1),
       ins AS (
         INSERT INTO tw_usage_events (tenant_id, event_id, meter, quantity, occurred_at, properties)
         SELECT $1, u.e, u.m, u.q, u.t, u.p FROM unnest($2::text[], $3::text[], $4::numeric[], $5::timestamptz[], $6::jsonb[]) AS u(e, m, q, t, p)
          WHERE (SELECT status FROM t) IN ('active', 'suspended')${
            onConflict ? '' : `
            AND NOT EXISTS (SELECT 1 FROM tw_usage_events x WHERE x.tenant_id = $1 AND x.event_id = u.e)`
          }${onConflict ? `
         ON CONFLICT (tenant_id, event_id) DO NOTHING` : ''}
         RETURNING event_id)
       SELECT (SELECT status FROM t) AS status, ARRAY(SELECT event_id FROM ins) AS ids`;
  }

  enqueue(tenantId: TenantId, event: UsageEventInput): void {
    const e = parseUsageEvent(event, this.#model, this.#limits, Date.now());
    let list = this.#buffer.get(tenantId);
    if (!list) {
      list = [];
      this.#buffer.set(tenantId, list);
    }
    list.push(e);
    this.#buffered++;
    if (this.#buffered >= this.#options.requestFlushEvents) void this.flush();
    else this.#armTimer();
  }

  countRequest(tenantId: TenantId, properties: { route: string; status: number; api_key_id?: string | undefined }): void {
    const minute = Math.floor(Date.now() / 60_000) * 60_000;
    const key = `${tenantId}\u0000${minute}\u0000${properties.route}\u0000${properties.status}\u0000${properties.api_key_id ?? ''}`;
    const g = this.#requests.get(key);
    if (g) g.count++;
    else {
      this.#requests.set(key, { tenantId, minute, properties, count: 1 });
      this.#armTimer();
    }
  }

  #armTimer(): void {
    if (this.#flushTimer) return;
    this.#flushTimer = setTimeout(() => void this.flush(), this.#options.requestFlushMs);
    this.#flushTimer.unref();
  }

  flush(): Promise<void> {
    if (this.#flushTimer) clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    for (const g of this.#requests.values()) {
      const props: Record<string, unknown> = { route: g.properties.route, status: g.properties.status };
      if (g.properties.api_key_id !== undefined) props.api_key_id = g.properties.api_key_id;
      let list = this.#buffer.get(g.tenantId);
      if (!list) {
        list = [];
        this.#buffer.set(g.tenantId, list);
      }
      list.push(Object.freeze({ eventId: `r_${randomUUID()}`, meter: API_REQUESTS_METER, quantity: g.count, occurredAt: new Date(g.minute), properties: JSON.stringify(props) }));
    }
    this.#requests.clear();
    const batches = [...this.#buffer];
    this.#buffer.clear();
    this.#buffered = 0;
    this.#retained = 0;
    this.#flushing = this.#flushing.then(async () => {
      for (const [tid, list] of batches) {
        for (let i = 0; i < list.length; i += this.#options.maxBatchSize) {
          const part = list.slice(i, i + this.#options.maxBatchSize);
          await this.#insert(tid, part).catch((err: unknown) => {
            if (passing(err)) this.#retain(tid, part);
          });
        }
      }
    });
    return this.#flushing;
  }

  /**
   * Puts the events of a failed flush back for the next one (dedup by event id makes a retry of a statement that
   * did commit harmless). Bounded: past RETAINED_FLUSHES x requestFlushEvents retained events, the newest
   * failures are dropped, so a long outage costs bounded memory.
   */
  #retain(tid: TenantId, events: readonly UsageEvent[]): void {
    const room = RETAINED_FLUSHES * this.#options.requestFlushEvents - this.#retained;
    if (room <= 0) return;
    const kept = events.slice(0, room);
    let list = this.#buffer.get(tid);
    if (!list) {
      list = [];
      this.#buffer.set(tid, list);
    }
    list.unshift(...kept);
    this.#retained += kept.length;
    this.#armTimer();
  }
}
