import { createHash, randomBytes } from 'node:crypto';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import type { TenantQueryable } from '../db/tenantwall.ts';
import { AddressPolicy, createAgents, postWebhook, type PostOptions } from './webhook-http.ts';

/** Event types the billing hooks emit. */
export const BILLING_EVENT_TYPES = ['quota.threshold_crossed', 'period.closed', 'plan.changed', 'tenant.suspended'] as const;
/** A billing event type: `quota.threshold_crossed`, `period.closed`, `plan.changed` or `tenant.suspended`. */
export type BillingEventType = (typeof BILLING_EVENT_TYPES)[number];

/** A webhook endpoint: URL, optional tenant and event-type filters, active flag. */
export interface WebhookEndpoint {
  readonly id: string;
  /** Never holds credentials (refused at registration). */
  readonly url: string;
  /** `whsec_<base64>`: the Standard Webhooks secret format. */
  readonly secret: string;
  /** Only this tenant's events; null = every tenant of the deployment. */
  readonly tenantId: string | null;
  /** Only these event types; null = all. */
  readonly eventTypes: readonly string[] | null;
  readonly active: boolean;
}

/**
 * Writes one outbox event in the caller's transaction, for the tenant `tx.tenantId` (a tenant transaction, or
 * an owner transaction wrapped as `{ tenantId, query }`). Every outbox row is written through this one SQL
 * function, `tw_outbox_write` (tables.ts; the quota function calls it too). The id is deterministic for the
 * fact it describes, so a re-run of the same change inserts nothing and no receiver is billed twice.
 * Returns true when the row was written.
 */
export async function writeOutboxEvent(tx: TenantQueryable, id: string, type: BillingEventType, payload: Record<string, unknown>): Promise<boolean> {
  const { rows } = await tx.query<{ written: boolean }>(`SELECT tw_outbox_write($1, $2, $3, $4::jsonb) AS written`, [tx.tenantId, id, type, JSON.stringify(payload)]);
  return rows[0]?.written === true;
}

/**
 * The `webhook-id` of an outbox event: `msg_` + 32 hex digits of SHA-256 over `<tenant id>:<event id>`. Outbox ids
 * name the fact (`plan.changed:<tenant>:<version>`) and contain `.`, which the Standard Webhooks signature scheme
 * forbids in ids (the signed content is `<id>.<timestamp>.<body>`); the digest is stable across attempts and
 * replays and unique across tenants. `WEBHOOK_ID_SQL` is the same function in SQL (filters, listings).
 */
export function webhookId(tenantId: string, eventId: string): string {
  return `msg_${createHash('sha256').update(`${tenantId}:${eventId}`).digest('hex').slice(0, 32)}`;
}

const WEBHOOK_ID_SQL = (t: string, e: string) => `('msg_' || substr(encode(sha256(convert_to(${t}::text || ':' || ${e}, 'UTF8')), 'hex'), 1, 32))`;

/** The Standard Webhooks retry schedule (spec, "Deliverability and reliability"): 10 attempts over about 3 days. */
export const DEFAULT_RETRY_SCHEDULE_MS: readonly number[] = Object.freeze([5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 50_400_000, 72_000_000, 86_400_000]);

/** Options of `metering.webhooks`: the endpoint address allow-list and production checks. */
export interface WebhooksOptions {
  /**
   * Networks (CIDR or single address) endpoints may reach although they are not global unicast: loopback,
   * private, link-local and metadata addresses are refused otherwise. Env `TENANTWALL_WEBHOOK_ALLOW_NETWORKS`
   * (comma list). Default none.
   */
  allowNetworks?: readonly string[] | undefined;
  /** Warn (process warning TENANTWALL_WEBHOOK_HTTP) when an `http://` endpoint is added. Default `NODE_ENV === 'production'`. */
  production?: boolean | undefined;
}

/** Options of the webhook relay: concurrency, timeouts, retry schedule, response cap. */
export interface RelayOptions {
  /** Outbox rows fanned out per dispatch and most deliveries claimed at once. Default 50. */
  batchSize?: number;
  /** Pause between rounds when there was nothing to do, ms. Default 1000. */
  pollIntervalMs?: number;
  /** Timeout of one HTTP delivery up to its status line, ms. Default 15000 (the spec recommends 15-30 s). */
  deliveryTimeoutMs?: number;
  /** A claimed delivery whose relay died is claimed again after this long, ms (must exceed the timeout). Default 60000. */
  leaseMs?: number;
  /** Delay before retry n (n-th entry, the last one repeats), ms, +-20% jitter. Default the spec's: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h. */
  retrySchedule?: readonly number[];
  /** Attempts before a delivery is dead-lettered (status `dead`). Default: the schedule's length + 1 (10). */
  maxAttempts?: number;
  /** Upper bound of an honoured Retry-After (429/503), ms. Default 3600000 (1 h). */
  maxRetryAfterMs?: number;
  /** Upper bound of an endpoint's pause after consecutive failures, ms. Default 60000. */
  endpointBackoffMaxMs?: number;
  /** Deliveries in flight per endpoint and relay. Default 4. */
  endpointConcurrency?: number;
  /** Deliveries in flight per relay, all endpoints. Default 256. */
  concurrency?: number;
  /** Response bytes read (and discarded) before the connection is dropped. Default 65536. */
  maxResponseBytes?: number;
}

type ResolvedRelay = Readonly<Required<Omit<RelayOptions, 'retrySchedule'>> & { retrySchedule: readonly number[] }>;

function resolveRelay(o: RelayOptions): ResolvedRelay {
  const retrySchedule = Object.freeze([...(o.retrySchedule ?? DEFAULT_RETRY_SCHEDULE_MS)]);
  if (retrySchedule.length === 0 || retrySchedule.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new TenantwallError('config_invalid', 'Relay option retrySchedule must be a non-empty list of delays in ms (integers >= 0).', { details: { field: 'retrySchedule' } });
  }
  const r = {
    batchSize: o.batchSize ?? 50,
    pollIntervalMs: o.pollIntervalMs ?? 1000,
    deliveryTimeoutMs: o.deliveryTimeoutMs ?? 15_000,
    leaseMs: o.leaseMs ?? 60_000,
    maxAttempts: o.maxAttempts ?? retrySchedule.length + 1,
    maxRetryAfterMs: o.maxRetryAfterMs ?? 3_600_000,
    endpointBackoffMaxMs: o.endpointBackoffMaxMs ?? 60_000,
    endpointConcurrency: o.endpointConcurrency ?? 4,
    concurrency: o.concurrency ?? 256,
    maxResponseBytes: o.maxResponseBytes ?? 65_536,
  };
  for (const [k, v] of Object.entries(r)) {
    if (!Number.isInteger(v) || v < (k === 'pollIntervalMs' || k.startsWith('max') || k === 'endpointBackoffMaxMs' ? 0 : 1)) {
      throw new TenantwallError('config_invalid', `Relay option ${k} must be a positive integer.`, { details: { field: k } });
    }
  }
  if (r.maxAttempts < 1) throw new TenantwallError('config_invalid', 'Relay option maxAttempts must be at least 1.', { details: { field: 'maxAttempts' } });
  if (r.leaseMs <= r.deliveryTimeoutMs) throw new TenantwallError('config_invalid', 'Relay option leaseMs must exceed deliveryTimeoutMs.', { details: { field: 'leaseMs' } });
  return Object.freeze({ ...r, retrySchedule });
}

/** Retry delay after `attempts` failed attempts: the schedule's entry (the last repeats), +-20% jitter. */
export function retryDelayMs(attempts: number, schedule: readonly number[], random = Math.random): number {
  const base = schedule[Math.min(Math.max(1, attempts), schedule.length) - 1] ?? 0;
  return Math.round(base * (0.8 + 0.4 * random()));
}

type ClaimedRow = {
  event_tenant_id: string;
  event_id: string;
  endpoint_id: string;
  webhook_id: string;
  type: string;
  payload: Record<string, unknown>;
  event_created_at: Date;
  attempts: number;
  url: string;
  secret: string;
};

/** What one relay round did: dispatched, delivered, failed and dead deliveries. */
export interface RelayRound {
  readonly dispatched: number;
  readonly delivered: number;
  readonly failed: number;
  readonly dead: number;
}

type Outcome = 'delivered' | 'retry' | 'dead';

// PostgreSQL renders timestamptz inside jsonb as 2026-12-01T00:00:00+00:00; JS as 2026-12-01T00:00:00.000Z.
const PG_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?([+-]\d{2}:\d{2}|Z)$/;

/** Every top-level timestamp of `data` in one format: ISO 8601 UTC with milliseconds (`toISOString`). */
function oneTimestampFormat(data: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(data)) out[k] = typeof v === 'string' && PG_TIMESTAMP.test(v) ? new Date(v).toISOString() : v;
  return out;
}

/**
 * Delivers the outbox. `dispatch` fans pending outbox rows out to the matching active endpoints; `deliver`
 * claims due deliveries of active endpoints, at most `endpointConcurrency` per endpoint and round-robin across
 * endpoints, both with `FOR UPDATE SKIP LOCKED` by status - never by an id cursor, which skips rows of
 * transactions that commit out of id order. `start()` never waits for a round: each request runs on its own and
 * frees its slot when it ends, so a slow or dead endpoint holds at most its own slots and delays nobody else.
 * Deliveries are signed per attempt (fresh webhook-timestamp and webhook-signature, same webhook-id), retried on
 * the retry schedule (Retry-After honoured, bounded), and dead-lettered after `maxAttempts`; a 410 disables the
 * endpoint. Any number of relays may run; a relay killed mid-delivery leaves a lease that expires.
 */
export class WebhookRelay {
  readonly #db: Tenantwall;
  readonly #o: ResolvedRelay;
  readonly #post: PostOptions;
  /** Deliveries in flight per endpoint, in this relay. */
  readonly #busy = new Map<string, number>();
  #inFlight = 0;
  /** Endpoints that failed lately (or asked to wait): no delivery of theirs is claimed before `until`. */
  readonly #paused = new Map<string, { streak: number; until: number }>();
  readonly #running = new Set<Promise<Outcome>>();
  #started = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(db: Tenantwall, policy: AddressPolicy, options: RelayOptions = {}) {
    this.#db = db;
    this.#o = resolveRelay(options);
    this.#post = { timeoutMs: this.#o.deliveryTimeoutMs, maxResponseBytes: this.#o.maxResponseBytes, policy, agents: createAgents(policy, this.#o.concurrency) };
  }

  get options(): ResolvedRelay {
    return this.#o;
  }

  /** Fans out pending outbox rows; returns how many were dispatched. */
  async dispatch(): Promise<number> {
    const { rows } = await this.#db.dangerouslyCrossTenant().query<{ id: string }>(
      `WITH claimed AS (
         SELECT tenant_id, id, type, payload, created_at FROM tw_outbox
          WHERE status = 'pending' ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED
       ), fanned AS (
         INSERT INTO tw_webhook_deliveries (event_tenant_id, event_id, endpoint_id, type, payload, event_created_at)
         SELECT c.tenant_id, c.id, e.id, c.type, c.payload, c.created_at
           FROM claimed c JOIN tw_webhook_endpoints e
             ON e.active AND (e.scope_tenant_id IS NULL OR e.scope_tenant_id = c.tenant_id)
            AND (e.event_types IS NULL OR c.type = ANY (e.event_types))
         ON CONFLICT DO NOTHING
       )
       UPDATE tw_outbox o SET status = 'dispatched', dispatched_at = now()
         FROM claimed c WHERE o.tenant_id = c.tenant_id AND o.id = c.id
       RETURNING o.id`,
      [this.#o.batchSize],
    );
    return rows.length;
  }

  /**
   * Claims due deliveries of active, unpaused endpoints with a free slot: per endpoint the earliest due first,
   * across endpoints round-robin (rank within its endpoint first), so one endpoint's backlog cannot fill a claim.
   */
  async #claim(): Promise<ClaimedRow[]> {
    const free = Math.min(this.#o.batchSize, this.#o.concurrency - this.#inFlight);
    if (free <= 0) return [];
    const now = Date.now();
    const skip: string[] = [];
    for (const [id, p] of this.#paused) if (p.until > now) skip.push(id);
    const busy: Record<string, number> = {};
    for (const [id, n] of this.#busy) {
      if (n >= this.#o.endpointConcurrency) skip.push(id);
      else busy[id] = n;
    }
    const due = `((d.status = 'pending' AND d.next_attempt_at <= now()) OR (d.status = 'in_flight' AND d.lease_until < now()))`;
    const { rows } = await this.#db.dangerouslyCrossTenant().query<ClaimedRow>(
      `WITH ranked AS (
         SELECT d.event_tenant_id, d.event_id, d.endpoint_id,
                row_number() OVER (PARTITION BY d.endpoint_id ORDER BY d.next_attempt_at, d.created_at) AS rank
           FROM tw_webhook_deliveries d JOIN tw_webhook_endpoints e ON e.id = d.endpoint_id AND e.active
          WHERE ${due} AND NOT (d.endpoint_id = ANY ($3::uuid[]))
       ), claimed AS (
         SELECT d.event_tenant_id, d.event_id, d.endpoint_id FROM tw_webhook_deliveries d
           JOIN ranked r ON r.event_tenant_id = d.event_tenant_id AND r.event_id = d.event_id AND r.endpoint_id = d.endpoint_id
          WHERE ${due} AND r.rank <= $4 - coalesce(($5::jsonb ->> d.endpoint_id::text)::int, 0)
          ORDER BY r.rank, d.next_attempt_at LIMIT $1 FOR UPDATE OF d SKIP LOCKED
       )
       UPDATE tw_webhook_deliveries d
          SET status = 'in_flight', lease_until = now() + make_interval(secs => $2::double precision), attempts = d.attempts + 1
         FROM claimed c, tw_webhook_endpoints e
        WHERE d.event_tenant_id = c.event_tenant_id AND d.event_id = c.event_id AND d.endpoint_id = c.endpoint_id
          AND e.id = d.endpoint_id AND e.active
       RETURNING d.event_tenant_id, d.event_id, d.endpoint_id, ${WEBHOOK_ID_SQL('d.event_tenant_id', 'd.event_id')} AS webhook_id,
                 d.type, d.payload, d.event_created_at, d.attempts, e.url, e.secret`,
      [free, this.#o.leaseMs / 1000, skip, this.#o.endpointConcurrency, JSON.stringify(busy)],
    );
    return rows;
  }

  /** Starts one delivery; its slot is held until it ends. */
  #launch(r: ClaimedRow): Promise<Outcome> {
    this.#inFlight++;
    this.#busy.set(r.endpoint_id, (this.#busy.get(r.endpoint_id) ?? 0) + 1);
    const p = this.#send(r).finally(() => {
      // Only a slot that was the limit wakes the loop early (due work of other endpoints is found by polling):
      // a wake per finished request would cost two statements per delivery.
      const full = this.#inFlight >= this.#o.concurrency || (this.#busy.get(r.endpoint_id) ?? 0) >= this.#o.endpointConcurrency;
      this.#inFlight--;
      const n = (this.#busy.get(r.endpoint_id) ?? 1) - 1;
      if (n === 0) this.#busy.delete(r.endpoint_id);
      else this.#busy.set(r.endpoint_id, n);
      this.#running.delete(p);
      if (full) this.#wake?.();
    });
    this.#running.add(p);
    return p;
  }

  /** Claims due deliveries and sends them, waiting for these sends; returns counts. */
  async deliver(): Promise<Omit<RelayRound, 'dispatched'>> {
    const outcomes = await Promise.all((await this.#claim()).map((r) => this.#launch(r)));
    return {
      delivered: outcomes.filter((o) => o === 'delivered').length,
      failed: outcomes.filter((o) => o === 'retry').length,
      dead: outcomes.filter((o) => o === 'dead').length,
    };
  }

  /** One round: dispatch, then deliver (waiting for the round's requests: for tests and `relay --once`). */
  async runOnce(): Promise<RelayRound> {
    const dispatched = await this.dispatch();
    const r = await this.deliver();
    return { dispatched, ...r };
  }

  /**
   * Runs until `stop()`: dispatches, claims what has a free slot and launches it without waiting; wakes when a
   * delivery ends or after the poll interval. Errors of a step (database restarts) are retried after the poll
   * interval.
   */
  start(onError: (err: unknown) => void = () => undefined): void {
    if (this.#started) return;
    this.#started = true;
    this.#loop = (async () => {
      while (this.#started) {
        let busy = false;
        try {
          const dispatched = await this.dispatch();
          const claimed = await this.#claim();
          for (const r of claimed) void this.#launch(r).catch(onError);
          busy = dispatched > 0 || claimed.length > 0;
        } catch (err) {
          onError(err);
        }
        if (!busy && this.#started) {
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, this.#o.pollIntervalMs);
            this.#wake = () => {
              clearTimeout(t);
              resolve();
            };
          });
          this.#wake = undefined;
        }
      }
    })();
  }

  /** Stops claiming and waits for the deliveries in flight. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#wake?.();
    await this.#loop;
    await Promise.allSettled([...this.#running]);
    this.#post.agents.http.destroy();
    this.#post.agents.https.destroy();
  }

  async #send(r: ClaimedRow): Promise<Outcome> {
    const body = JSON.stringify({ type: r.type, timestamp: r.event_created_at.toISOString(), data: oneTimestampFormat(r.payload) });
    let status: number | null = null;
    let retryAfter: number | undefined;
    let error: string;
    try {
      // Signed now, for this attempt: receivers reject old timestamps, so a retry must not reuse one.
      const now = new Date();
      const res = await postWebhook(
        new URL(r.url),
        {
          'content-type': 'application/json',
          'webhook-id': r.webhook_id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': new Webhook(r.secret).sign(r.webhook_id, now, body),
          'user-agent': 'tenantwall-webhooks/1',
        },
        body,
        this.#post,
      );
      status = res.status;
      retryAfter = res.retryAfterMs === undefined ? undefined : Math.min(res.retryAfterMs, this.#o.maxRetryAfterMs);
      if (status >= 200 && status < 300) {
        this.#paused.delete(r.endpoint_id);
        await this.#finish(r, `status = 'delivered', delivered_at = now(), last_status = $5, last_error = NULL, lease_until = NULL`, [status]);
        return 'delivered';
      }
      error = `HTTP ${status}`;
    } catch (err) {
      error = (err as Error).message ?? String(err);
    }
    if (status === 410) {
      // Gone: the receiver wants nothing more from us (spec). The endpoint is disabled; its other deliveries wait.
      await this.#db.dangerouslyCrossTenant().query(`UPDATE tw_webhook_endpoints SET active = false WHERE id = $1`, [r.endpoint_id]);
      await this.#finish(r, `status = 'dead', last_status = $5, last_error = $6, lease_until = NULL`, [status, 'HTTP 410 Gone: endpoint disabled']);
      return 'dead';
    }
    const streak = (this.#paused.get(r.endpoint_id)?.streak ?? 0) + 1;
    const pause = Math.max(retryAfter ?? 0, Math.min(this.#o.endpointBackoffMaxMs, retryDelayMs(streak, this.#o.retrySchedule)));
    this.#paused.set(r.endpoint_id, { streak, until: Date.now() + pause });
    if (r.attempts >= this.#o.maxAttempts) {
      await this.#finish(r, `status = 'dead', last_status = $5, last_error = $6, lease_until = NULL`, [status, error]);
      return 'dead';
    }
    const delay = Math.max(retryAfter ?? 0, retryDelayMs(r.attempts, this.#o.retrySchedule));
    await this.#finish(
      r,
      `status = 'pending', last_status = $5, last_error = $6, lease_until = NULL, next_attempt_at = now() + make_interval(secs => $7::double precision)`,
      [status, error, delay / 1000],
    );
    return 'retry';
  }

  // Guarded by status and attempt number: when our lease expired and another relay took the delivery over, its
  // outcome wins and ours is dropped.
  async #finish(r: ClaimedRow, set: string, extra: unknown[]): Promise<void> {
    await this.#db.dangerouslyCrossTenant().query(
      `UPDATE tw_webhook_deliveries SET ${set}
        WHERE event_tenant_id = $1 AND event_id = $2 AND endpoint_id = $3 AND status = 'in_flight' AND attempts = $4`,
      [r.event_tenant_id, r.event_id, r.endpoint_id, r.attempts, ...extra],
    );
  }
}

/** Which deliveries `replay` sends again: endpoint, event, status, time range. */
export interface ReplayFilter {
  /** One event: its webhook-id (`msg_...`) or its outbox id. */
  eventId?: string;
  tenantId?: string;
  endpointId?: string;
  /** Which deliveries to send again. Default `['dead']`. */
  statuses?: readonly ('dead' | 'delivered' | 'pending')[];
}

/** A webhook delivery as listed: event, endpoint, status, attempts, timestamps. */
export interface WebhookDelivery {
  readonly webhookId: string;
  readonly eventId: string;
  readonly tenantId: string;
  readonly endpointId: string;
  /** The endpoint's URL. */
  readonly endpoint: string;
  readonly type: string;
  readonly status: string;
  readonly attempts: number;
  readonly lastStatus: number | null;
  readonly lastError: string | null;
  /** ISO 8601 UTC, like every timestamp tenantwall prints. */
  readonly createdAt: string;
  readonly nextAttemptAt: string | null;
  readonly deliveredAt: string | null;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function endpointId(id: string): string {
  if (!UUID.test(id)) throw new TenantwallError('webhook_endpoint_not_found', `No webhook endpoint ${JSON.stringify(id)}: endpoint ids are UUIDs.`, { details: { field: 'endpointId' } });
  return id.toLowerCase();
}

/** Resolves the webhook options: explicit value > environment variable > default. */
export function resolveWebhooksOptions(o: WebhooksOptions = {}, env: NodeJS.ProcessEnv = process.env): Readonly<{ allowNetworks: readonly string[]; production: boolean }> {
  const fromEnv = env.TENANTWALL_WEBHOOK_ALLOW_NETWORKS?.split(',').map((s) => s.trim()).filter(Boolean);
  return Object.freeze({ allowNetworks: Object.freeze([...(o.allowNetworks ?? fromEnv ?? [])]), production: o.production ?? env.NODE_ENV === 'production' });
}

/** Endpoint registry, replay and relay construction. Owner-side (admin) operations only. */
export class Webhooks {
  readonly #db: Tenantwall;
  readonly #policy: AddressPolicy;
  readonly options: ReturnType<typeof resolveWebhooksOptions>;

  constructor(db: Tenantwall, options: WebhooksOptions = {}) {
    this.#db = db;
    this.options = resolveWebhooksOptions(options);
    this.#policy = new AddressPolicy(this.options.allowNetworks);
  }

  /**
   * Registers an endpoint. Refused: URLs other than http(s), with credentials (`user:pass@`) or whose host
   * resolves to a forbidden address (`webhook_url_invalid`, `webhook_url_forbidden`); secrets that are not
   * `whsec_` + base64 of 24-64 bytes (`webhook_secret_invalid`); unknown event types (`unknown_event_type`) and
   * tenants (`tenant_not_found`).
   */
  async addEndpoint(input: { url: string; secret?: string; tenantId?: string; eventTypes?: readonly string[] }): Promise<WebhookEndpoint> {
    const url = parseEndpointUrl(input.url);
    await this.#policy.checkResolved(url);
    if (url.protocol === 'http:' && this.options.production) {
      process.emitWarning(`Webhook endpoint ${url.origin} uses http://: deliveries (signed, not encrypted) can be read on the way. Use https://.`, { code: 'TENANTWALL_WEBHOOK_HTTP' });
    }
    const secret = input.secret ?? `whsec_${randomBytes(32).toString('base64')}`;
    checkSecret(secret);
    let tenantId: string | null = null;
    if (input.tenantId !== undefined) {
      tenantId = TenantId.parse(input.tenantId);
      const t = await this.#db.tenants.get(tenantId);
      if (!t || t.status === 'deleted') throw new TenantwallError('tenant_not_found', `Endpoint filter tenantId: tenant ${tenantId} does not exist.`, { details: { field: 'tenantId' } });
    }
    let eventTypes: string[] | null = null;
    if (input.eventTypes !== undefined) {
      eventTypes = [...new Set(input.eventTypes)];
      const unknown = eventTypes.filter((t) => !(BILLING_EVENT_TYPES as readonly string[]).includes(t));
      if (eventTypes.length === 0 || unknown.length > 0) {
        throw new TenantwallError('unknown_event_type', `Endpoint filter eventTypes: ${eventTypes.length === 0 ? 'empty (omit it for every type)' : `unknown ${unknown.map((t) => JSON.stringify(t)).join(', ')}`}; known: ${BILLING_EVENT_TYPES.join(', ')}.`, {
          details: { field: 'eventTypes', unknown },
        });
      }
    }
    const { rows } = await this.#db.dangerouslyCrossTenant().query(
      `INSERT INTO tw_webhook_endpoints (url, secret, scope_tenant_id, event_types) VALUES ($1, $2, $3, $4) RETURNING *`,
      [url.toString(), secret, tenantId, eventTypes],
    );
    return toEndpoint(rows[0]);
  }

  async listEndpoints(): Promise<WebhookEndpoint[]> {
    const { rows } = await this.#db.dangerouslyCrossTenant().query(`SELECT * FROM tw_webhook_endpoints ORDER BY created_at, id`);
    return rows.map(toEndpoint);
  }

  /** Deactivates an endpoint: nothing is fanned out, sent, retried or replayed to it until it is enabled again. */
  async disableEndpoint(id: string): Promise<boolean> {
    const { rowCount } = await this.#db.dangerouslyCrossTenant().query(`UPDATE tw_webhook_endpoints SET active = false WHERE id = $1`, [endpointId(id)]);
    return (rowCount ?? 0) > 0;
  }

  /** Reactivates an endpoint (after a 410 or `disableEndpoint`): its pending deliveries resume on their schedule. */
  async enableEndpoint(id: string): Promise<boolean> {
    const { rowCount } = await this.#db.dangerouslyCrossTenant().query(`UPDATE tw_webhook_endpoints SET active = true WHERE id = $1`, [endpointId(id)]);
    return (rowCount ?? 0) > 0;
  }

  relay(options: RelayOptions = {}): WebhookRelay {
    return new WebhookRelay(this.#db, this.#policy, options);
  }

  /**
   * Puts matching deliveries of active endpoints back to `pending` with a fresh attempt budget; returns how many.
   * Same webhook-id. Deliveries of disabled endpoints are not replayed.
   */
  async replay(filter: ReplayFilter = {}): Promise<number> {
    const statuses = filter.statuses ?? ['dead'];
    const { rowCount } = await this.#db.dangerouslyCrossTenant().query(
      `UPDATE tw_webhook_deliveries d SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL
         FROM tw_webhook_endpoints e
        WHERE e.id = d.endpoint_id AND e.active AND d.status = ANY ($1::text[])
          AND ($2::text IS NULL OR d.event_id = $2 OR ${WEBHOOK_ID_SQL('d.event_tenant_id', 'd.event_id')} = $2)
          AND ($3::${TenantId.sqlType()} IS NULL OR d.event_tenant_id = $3) AND ($4::uuid IS NULL OR d.endpoint_id = $4)`,
      [statuses, filter.eventId ?? null, filter.tenantId === undefined ? null : TenantId.parse(filter.tenantId), filter.endpointId === undefined ? null : endpointId(filter.endpointId)],
    );
    return rowCount ?? 0;
  }

  /**
   * Delivery states with their endpoint, for operators and tests, oldest first. `eventId`: webhook-id or outbox id.
   * `tenantId`: one tenant's deliveries (a range of the primary key). `newest`: only the newest N, newest first.
   */
  async deliveries(filter: { status?: string; eventId?: string; endpointId?: string; tenantId?: string; newest?: number } = {}): Promise<WebhookDelivery[]> {
    const newest = filter.newest;
    if (newest !== undefined && (!Number.isSafeInteger(newest) || newest < 1)) throw new TenantwallError('config_invalid', 'deliveries({ newest }) is a positive integer.', { details: { field: 'newest' } });
    const { rows } = await this.#db.dangerouslyCrossTenant().query(
      `SELECT ${WEBHOOK_ID_SQL('d.event_tenant_id', 'd.event_id')} AS webhook_id, d.event_id, d.event_tenant_id, d.endpoint_id, e.url, d.type, d.status,
              d.attempts, d.last_status, d.last_error, d.created_at, d.next_attempt_at, d.delivered_at
         FROM tw_webhook_deliveries d JOIN tw_webhook_endpoints e ON e.id = d.endpoint_id
        WHERE ($1::text IS NULL OR d.status = $1) AND ($2::text IS NULL OR d.event_id = $2 OR ${WEBHOOK_ID_SQL('d.event_tenant_id', 'd.event_id')} = $2)
          AND ($3::uuid IS NULL OR d.endpoint_id = $3) AND ($4::${TenantId.sqlType()} IS NULL OR d.event_tenant_id = $4)
        ORDER BY ${newest === undefined ? 'd.created_at, d.event_id, d.endpoint_id' : `d.created_at DESC, d.event_id DESC, d.endpoint_id DESC LIMIT ${newest}`}`,
      [filter.status ?? null, filter.eventId ?? null, filter.endpointId === undefined ? null : endpointId(filter.endpointId), filter.tenantId === undefined ? null : TenantId.parse(filter.tenantId)],
    );
    const iso = (d: Date | null) => (d ? d.toISOString() : null);
    return rows.map((r) => ({
      webhookId: r.webhook_id,
      eventId: r.event_id,
      tenantId: r.event_tenant_id,
      endpointId: r.endpoint_id,
      endpoint: redactUrl(r.url),
      type: r.type,
      status: r.status,
      attempts: r.attempts,
      lastStatus: r.last_status,
      lastError: r.last_error,
      createdAt: r.created_at.toISOString(),
      nextAttemptAt: r.status === 'pending' ? iso(r.next_attempt_at) : null,
      deliveredAt: iso(r.delivered_at),
    }));
  }
}

/** Parses an endpoint URL; the message never repeats credentials. */
function parseEndpointUrl(input: string): URL {
  let url: URL;
  try {
    url = new URL(input);
  } catch (cause) {
    throw new TenantwallError('webhook_url_invalid', 'Webhook url is not an absolute URL (https://host/path).', { cause, details: { field: 'url' } });
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TenantwallError('webhook_url_invalid', `Webhook url must use https (or http), not ${url.protocol}.`, { details: { field: 'url' } });
  if (url.username !== '' || url.password !== '') {
    throw new TenantwallError('webhook_url_invalid', `Webhook url must not contain credentials (user:password@${url.host}): authenticate deliveries by their signature.`, { details: { field: 'url' } });
  }
  if (url.hash !== '') throw new TenantwallError('webhook_url_invalid', 'Webhook url must not contain a #fragment.', { details: { field: 'url' } });
  return url;
}

/** Standard Webhooks symmetric secrets: `whsec_` + base64 of 24 to 64 random bytes. */
function checkSecret(secret: string): void {
  const b64 = secret.startsWith('whsec_') ? secret.slice(6) : undefined;
  const bytes = b64 !== undefined && /^[A-Za-z0-9+/]+={0,2}$/.test(b64) ? Buffer.from(b64, 'base64') : undefined;
  if (!bytes || bytes.toString('base64').replace(/=+$/, '') !== b64!.replace(/=+$/, '') || bytes.length < 24 || bytes.length > 64) {
    throw new TenantwallError('webhook_secret_invalid', `Webhook secret must be whsec_ followed by the base64 of 24 to 64 random bytes${bytes ? ` (got ${bytes.length} bytes)` : ''}.`, {
      details: { field: 'secret' },
    });
  }
}

/** A URL without credentials (rows stored before they were refused). */
function redactUrl(raw: string): string {
  try {
    const u = new URL(raw);
    if (u.username === '' && u.password === '') return raw;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(invalid url)';
  }
}

function toEndpoint(r: Record<string, any> | undefined): WebhookEndpoint {
  if (!r) throw new TenantwallError('query_failed', 'The endpoint row was not returned.');
  return Object.freeze({ id: r.id, url: redactUrl(r.url), secret: r.secret, tenantId: r.scope_tenant_id, eventTypes: r.event_types, active: r.active });
}

/** A verified delivery. */
export interface VerifiedWebhook {
  readonly id: string;
  readonly type: string;
  readonly timestamp: string;
  readonly data: Record<string, unknown>;
}

/**
 * For receivers: checks the Standard Webhooks signature of a delivery over the RAW body (not re-serialized
 * JSON) and the timestamp tolerance (5 minutes, the standard's), then parses it. Dedup on the returned `id`:
 * delivery is at least once. Throws `webhook_signature_invalid`.
 */
export function verifyWebhook(secret: string, rawBody: string | Buffer, headers: Record<string, string | string[] | undefined>): VerifiedWebhook {
  const pick = (name: string): string => {
    const v = headers[name] ?? headers[name.toLowerCase()];
    const s = Array.isArray(v) ? v[0] : v;
    if (typeof s !== 'string' || s === '') throw new TenantwallError('webhook_signature_invalid', `Header ${name} is missing.`, { details: { header: name } });
    return s;
  };
  const h = { 'webhook-id': pick('webhook-id'), 'webhook-timestamp': pick('webhook-timestamp'), 'webhook-signature': pick('webhook-signature') };
  let parsed: unknown;
  try {
    parsed = new Webhook(secret).verify(typeof rawBody === 'string' ? rawBody : rawBody.toString('utf8'), h);
  } catch (err) {
    const why = err instanceof WebhookVerificationError ? err.message : (err as Error).message;
    throw new TenantwallError('webhook_signature_invalid', `Webhook refused: ${why}.`, { cause: err });
  }
  const p = parsed as { type?: unknown; timestamp?: unknown; data?: unknown };
  return Object.freeze({ id: h['webhook-id'], type: String(p.type), timestamp: String(p.timestamp), data: (p.data ?? {}) as Record<string, unknown> });
}
