import { randomBytes } from 'node:crypto';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import type { TenantQueryable } from '../db/tenantwall.ts';

/** Event types the billing hooks emit. */
export type BillingEventType = 'quota.threshold_crossed' | 'period.closed' | 'plan.changed' | 'tenant.suspended';

export interface WebhookEndpoint {
  readonly id: string;
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

export interface RelayOptions {
  /** Outbox rows fanned out and deliveries claimed per round. Default 50. */
  batchSize?: number;
  /** Pause between rounds when there was nothing to do, ms. Default 1000. */
  pollIntervalMs?: number;
  /** Timeout of one HTTP delivery, ms. Default 10000. */
  deliveryTimeoutMs?: number;
  /** A claimed delivery whose relay died is claimed again after this long, ms (must exceed the timeout). Default 30000. */
  leaseMs?: number;
  /** Attempts before a delivery is dead-lettered (status `dead`). Default 8. */
  maxAttempts?: number;
  /** First retry delay, ms; doubles per attempt with +-20% jitter. Default 5000. */
  backoffBaseMs?: number;
  /** Upper bound of the retry delay, ms. Default 3600000 (1 h). */
  backoffMaxMs?: number;
}

type ResolvedRelay = Required<RelayOptions>;

function resolveRelay(o: RelayOptions): ResolvedRelay {
  const r = {
    batchSize: o.batchSize ?? 50,
    pollIntervalMs: o.pollIntervalMs ?? 1000,
    deliveryTimeoutMs: o.deliveryTimeoutMs ?? 10_000,
    leaseMs: o.leaseMs ?? 30_000,
    maxAttempts: o.maxAttempts ?? 8,
    backoffBaseMs: o.backoffBaseMs ?? 5000,
    backoffMaxMs: o.backoffMaxMs ?? 3_600_000,
  };
  for (const [k, v] of Object.entries(r)) {
    if (!Number.isInteger(v) || v < (k === 'backoffBaseMs' || k === 'pollIntervalMs' ? 0 : 1)) {
      throw new TenantwallError('config_invalid', `Relay option ${k} must be a positive integer.`, { details: { field: k } });
    }
  }
  if (r.leaseMs <= r.deliveryTimeoutMs) throw new TenantwallError('config_invalid', 'Relay option leaseMs must exceed deliveryTimeoutMs.', { details: { field: 'leaseMs' } });
  return Object.freeze(r);
}

/** Retry delay before attempt `attempts + 1`. */
export function backoffMs(attempts: number, baseMs: number, maxMs: number, random = Math.random): number {
  const exp = Math.min(maxMs, baseMs * 2 ** Math.max(0, attempts - 1));
  return Math.round(Math.min(maxMs, exp * (0.8 + 0.4 * random())));
}

type ClaimedRow = {
  event_tenant_id: string;
  event_id: string;
  endpoint_id: string;
  type: string;
  payload: unknown;
  event_created_at: Date;
  attempts: number;
  url: string;
  secret: string;
};

export interface RelayRound {
  readonly dispatched: number;
  readonly delivered: number;
  readonly failed: number;
  readonly dead: number;
}

/**
 * Delivers the outbox. Each round (1) fans pending outbox rows out to the matching endpoints and (2) claims due
 * deliveries, both with `FOR UPDATE SKIP LOCKED` by status - never by an id cursor, which skips rows of
 * transactions that commit out of id order. Deliveries are signed per attempt (fresh webhook-timestamp and
 * webhook-signature, same webhook-id), retried with exponential backoff, and dead-lettered after
 * `maxAttempts`. Any number of relays may run; a relay killed mid-delivery leaves a lease that expires.
 */
export class WebhookRelay {
  readonly #db: Tenantwall;
  readonly #o: ResolvedRelay;
  #running = false;
  #loop: Promise<void> | undefined;
  #wake: (() => void) | undefined;

  constructor(db: Tenantwall, options: RelayOptions = {}) {
    this.#db = db;
    this.#o = resolveRelay(options);
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

  /** Claims due deliveries and sends them; returns counts. */
  async deliver(): Promise<Omit<RelayRound, 'dispatched'>> {
    const { rows } = await this.#db.dangerouslyCrossTenant().query<ClaimedRow>(
      `WITH due AS (
         SELECT event_tenant_id, event_id, endpoint_id FROM tw_webhook_deliveries
          WHERE (status = 'pending' AND next_attempt_at <= now()) OR (status = 'in_flight' AND lease_until < now())
          ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED
       )
       UPDATE tw_webhook_deliveries d
          SET status = 'in_flight', lease_until = now() + make_interval(secs => $2::double precision), attempts = d.attempts + 1
         FROM due, tw_webhook_endpoints e
        WHERE d.event_tenant_id = due.event_tenant_id AND d.event_id = due.event_id AND d.endpoint_id = due.endpoint_id
          AND e.id = d.endpoint_id
       RETURNING d.event_tenant_id, d.event_id, d.endpoint_id, d.type, d.payload, d.event_created_at, d.attempts, e.url, e.secret`,
      [this.#o.batchSize, this.#o.leaseMs / 1000],
    );
    const outcomes = await Promise.all(rows.map((r) => this.#send(r)));
    let delivered = 0;
    let failed = 0;
    let dead = 0;
    for (const o of outcomes) {
      if (o === 'delivered') delivered++;
      else if (o === 'dead') dead++;
      else failed++;
    }
    return { delivered, failed, dead };
  }

  /** One round: dispatch, then deliver. */
  async runOnce(): Promise<RelayRound> {
    const dispatched = await this.dispatch();
    const r = await this.deliver();
    return { dispatched, ...r };
  }

  /** Runs rounds until `stop()`; errors of a round (database restarts) are retried after the poll interval. */
  start(onError: (err: unknown) => void = () => undefined): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        let busy = false;
        try {
          const r = await this.runOnce();
          busy = r.dispatched + r.delivered + r.failed + r.dead > 0;
        } catch (err) {
          onError(err);
        }
        if (!busy && this.#running) {
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

  async stop(): Promise<void> {
    this.#running = false;
    this.#wake?.();
    await this.#loop;
  }

  async #send(r: ClaimedRow): Promise<'delivered' | 'retry' | 'dead'> {
    const body = JSON.stringify({ type: r.type, timestamp: r.event_created_at.toISOString(), data: r.payload });
    let status: number | null = null;
    let error: string;
    try {
      // Signed now, for this attempt: receivers reject old timestamps, so a retry must not reuse one.
      const now = new Date();
      const signature = new Webhook(r.secret).sign(r.event_id, now, body);
      const res = await fetch(r.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'webhook-id': r.event_id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': signature,
          'user-agent': 'tenantwall-webhooks/1',
        },
        body,
        signal: AbortSignal.timeout(this.#o.deliveryTimeoutMs),
        redirect: 'manual',
      });
      status = res.status;
      await res.arrayBuffer().catch(() => undefined);
      if (res.status >= 200 && res.status < 300) {
        await this.#finish(r, `status = 'delivered', delivered_at = now(), last_status = $5, last_error = NULL, lease_until = NULL`, [status]);
        return 'delivered';
      }
      error = `HTTP ${res.status}`;
    } catch (err) {
      error = (err as Error).message ?? String(err);
    }
    if (r.attempts >= this.#o.maxAttempts) {
      await this.#finish(r, `status = 'dead', last_status = $5, last_error = $6, lease_until = NULL`, [status, error]);
      return 'dead';
    }
    const delay = backoffMs(r.attempts, this.#o.backoffBaseMs, this.#o.backoffMaxMs);
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

export interface ReplayFilter {
  /** One event (its webhook-id). */
  eventId?: string;
  tenantId?: string;
  endpointId?: string;
  /** Which deliveries to send again. Default `['dead']`. */
  statuses?: readonly ('dead' | 'delivered' | 'pending')[];
}

/** Endpoint registry, replay and relay construction. Owner-side (admin) operations only. */
export class Webhooks {
  readonly #db: Tenantwall;
  constructor(db: Tenantwall) {
    this.#db = db;
  }

  async addEndpoint(input: { url: string; secret?: string; tenantId?: string; eventTypes?: readonly string[] }): Promise<WebhookEndpoint> {
    let url: URL;
    try {
      url = new URL(input.url);
    } catch (cause) {
      throw new TenantwallError('config_invalid', `Webhook URL ${JSON.stringify(input.url)} is not a URL.`, { cause, details: { field: 'url' } });
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TenantwallError('config_invalid', 'Webhook URLs use http or https.', { details: { field: 'url' } });
    const secret = input.secret ?? `whsec_${randomBytes(24).toString('base64')}`;
    if (!/^whsec_[A-Za-z0-9+/]+={0,2}$/.test(secret)) throw new TenantwallError('config_invalid', 'Webhook secrets look like whsec_<base64>.', { details: { field: 'secret' } });
    const tenantId = input.tenantId === undefined ? null : TenantId.parse(input.tenantId);
    const { rows } = await this.#db.dangerouslyCrossTenant().query(
      `INSERT INTO tw_webhook_endpoints (url, secret, scope_tenant_id, event_types) VALUES ($1, $2, $3, $4) RETURNING *`,
      [url.toString(), secret, tenantId, input.eventTypes ? [...input.eventTypes] : null],
    );
    return toEndpoint(rows[0]);
  }

  async listEndpoints(): Promise<WebhookEndpoint[]> {
    const { rows } = await this.#db.dangerouslyCrossTenant().query(`SELECT * FROM tw_webhook_endpoints ORDER BY created_at, id`);
    return rows.map(toEndpoint);
  }

  /** Deactivates an endpoint: no new deliveries are fanned out to it. */
  async disableEndpoint(id: string): Promise<boolean> {
    const { rowCount } = await this.#db.dangerouslyCrossTenant().query(`UPDATE tw_webhook_endpoints SET active = false WHERE id = $1`, [id]);
    return (rowCount ?? 0) > 0;
  }

  relay(options: RelayOptions = {}): WebhookRelay {
    return new WebhookRelay(this.#db, options);
  }

  /** Puts matching deliveries back to `pending` with a fresh attempt budget; returns how many. Same webhook-id. */
  async replay(filter: ReplayFilter = {}): Promise<number> {
    const statuses = filter.statuses ?? ['dead'];
    const { rowCount } = await this.#db.dangerouslyCrossTenant().query(
      `UPDATE tw_webhook_deliveries SET status = 'pending', attempts = 0, next_attempt_at = now(), lease_until = NULL
        WHERE status = ANY ($1::text[])
          AND ($2::text IS NULL OR event_id = $2) AND ($3::uuid IS NULL OR event_tenant_id = $3) AND ($4::uuid IS NULL OR endpoint_id = $4)`,
      [statuses, filter.eventId ?? null, filter.tenantId === undefined ? null : TenantId.parse(filter.tenantId), filter.endpointId ?? null],
    );
    return rowCount ?? 0;
  }

  /** Delivery states, for operators and tests. */
  async deliveries(filter: { status?: string; eventId?: string } = {}): Promise<Array<{ eventId: string; tenantId: string; endpointId: string; type: string; status: string; attempts: number; lastError: string | null }>> {
    const { rows } = await this.#db.dangerouslyCrossTenant().query(
      `SELECT event_id, event_tenant_id, endpoint_id, type, status, attempts, last_error FROM tw_webhook_deliveries
        WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR event_id = $2) ORDER BY created_at, event_id`,
      [filter.status ?? null, filter.eventId ?? null],
    );
    return rows.map((r) => ({ eventId: r.event_id, tenantId: r.event_tenant_id, endpointId: r.endpoint_id, type: r.type, status: r.status, attempts: r.attempts, lastError: r.last_error }));
  }
}

function toEndpoint(r: Record<string, any> | undefined): WebhookEndpoint {
  if (!r) throw new TenantwallError('query_failed', 'The endpoint row was not returned.');
  return Object.freeze({ id: r.id, url: r.url, secret: r.secret, tenantId: r.scope_tenant_id, eventTypes: r.event_types, active: r.active });
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
