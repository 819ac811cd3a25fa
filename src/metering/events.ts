import { TenantwallError } from '../errors.ts';
import type { MeterSource, MeteringModel } from './spec.ts';

/** A usage event as callers send it. */
export interface UsageEventInput {
  /** Caller-supplied idempotency id, unique per tenant: a retry with the same id is counted once. */
  event_id: string;
  meter: string;
  /** Finite number >= 0. Default 1. */
  quantity?: number;
  /** ISO 8601 instant the usage happened. Default: now. */
  timestamp?: string | Date;
  /** Free-form JSON object (e.g. `{ "user_id": "u1" }` for unique-count meters). */
  properties?: Record<string, unknown>;
}

/** A validated event, ready to write. */
export interface UsageEvent {
  readonly eventId: string;
  readonly meter: string;
  readonly quantity: number;
  readonly occurredAt: Date;
  readonly properties: string | null;
}

/** Bounds on usage events: batch size, property size, clock skew and age. */
export interface EventLimits {
  readonly maxBatchSize: number;
  readonly maxFutureSkewMs: number;
  readonly maxEventAgeMs: number;
  readonly maxPropertiesBytes: number;
}

const EVENT_ID_RE = /^[\x21-\x7e]{1,200}$/;
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const FIELDS = new Set(['event_id', 'meter', 'quantity', 'timestamp', 'properties']);
// numeric has no upper bound, but a JS number beyond 2^53 is no longer exact; refuse instead of rounding.
const MAX_QUANTITY = Number.MAX_SAFE_INTEGER;

function bad(index: number | undefined, field: string, why: string): TenantwallError {
  const where = index === undefined ? '' : ` (event ${index})`;
  return new TenantwallError('invalid_usage_event', `Invalid usage event${where}: ${field} ${why}.`, {
    details: index === undefined ? { field } : { index, field },
  });
}

/**
 * Validates one event; throws `invalid_usage_event` or `unknown_meter` naming the event and field, and
 * `meter_not_writable` when `source` is `client` and the meter is written by the server only.
 */
export function parseUsageEvent(raw: unknown, model: MeteringModel, limits: EventLimits, now: number, index?: number, source: MeterSource = 'server'): UsageEvent {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(index, 'event', 'must be a JSON object');
  const e = raw as Record<string, unknown>;
  for (const k of Object.keys(e)) if (!FIELDS.has(k)) throw bad(index, k, `is not a usage event field (known: ${[...FIELDS].join(', ')})`);
  if (typeof e.event_id !== 'string' || !EVENT_ID_RE.test(e.event_id)) throw bad(index, 'event_id', 'must be 1-200 printable ASCII characters without spaces');
  if (typeof e.meter !== 'string') throw bad(index, 'meter', 'must be a string');
  const meter = model.meters.get(e.meter);
  if (!meter || (source === 'client' && meter.source !== 'client')) {
    const where = index === undefined ? '' : ` (event ${index})`;
    const details = index === undefined ? { field: 'meter', meter: e.meter.slice(0, 80) } : { index, field: 'meter', meter: e.meter.slice(0, 80) };
    if (!meter) throw new TenantwallError('unknown_meter', `Unknown meter ${JSON.stringify(e.meter.slice(0, 80))}${where}.`, { details });
    throw new TenantwallError('meter_not_writable', `Meter ${e.meter}${where} is recorded by the server; clients can only send events to meters declared with source 'client'.`, { details });
  }
  let quantity = 1;
  if (e.quantity !== undefined) {
    if (typeof e.quantity !== 'number' || !Number.isFinite(e.quantity)) throw bad(index, 'quantity', 'must be a finite JSON number');
    if (e.quantity < 0) throw bad(index, 'quantity', 'must not be negative');
    if (e.quantity > MAX_QUANTITY) throw bad(index, 'quantity', `must be at most ${MAX_QUANTITY}`);
    quantity = e.quantity;
  }
  let occurredAt = new Date(now);
  if (e.timestamp !== undefined) {
    if (e.timestamp instanceof Date) occurredAt = e.timestamp;
    else if (typeof e.timestamp === 'string' && DATE_TIME_RE.test(e.timestamp)) occurredAt = new Date(e.timestamp);
    else throw bad(index, 'timestamp', 'must be an ISO 8601 date-time with a zone, e.g. 2026-01-31T12:00:00Z');
    const t = occurredAt.getTime();
    if (Number.isNaN(t)) throw bad(index, 'timestamp', 'is not a valid date');
    if (t > now + limits.maxFutureSkewMs) throw bad(index, 'timestamp', `lies more than ${limits.maxFutureSkewMs} ms in the future`);
    if (t < now - limits.maxEventAgeMs) throw bad(index, 'timestamp', `is older than ${limits.maxEventAgeMs} ms`);
  }
  let properties: string | null = null;
  if (e.properties !== undefined && e.properties !== null) {
    if (typeof e.properties !== 'object' || Array.isArray(e.properties)) throw bad(index, 'properties', 'must be a JSON object');
    properties = JSON.stringify(e.properties);
    if (Buffer.byteLength(properties) > limits.maxPropertiesBytes) throw bad(index, 'properties', `exceed ${limits.maxPropertiesBytes} bytes`);
    // jsonb refuses \u0000; say so here instead of failing the whole batch in the database.
    if (properties.includes('\\u0000')) throw bad(index, 'properties', 'must not contain NUL characters');
  }
  return Object.freeze({ eventId: e.event_id, meter: e.meter, quantity, occurredAt, properties });
}

/**
 * Validates a whole batch first: one bad event refuses the batch, so nothing of it is written. `source`
 * `client` (the ingestion route) refuses events of server-only meters.
 */
export function parseUsageBatch(raw: unknown, model: MeteringModel, limits: EventLimits, now: number, source: MeterSource = 'server'): UsageEvent[] {
  if (!Array.isArray(raw)) throw bad(undefined, 'events', 'must be an array');
  if (raw.length === 0) throw bad(undefined, 'events', 'must contain at least one event');
  if (raw.length > limits.maxBatchSize) {
    throw new TenantwallError('batch_too_large', `The batch has ${raw.length} events; at most ${limits.maxBatchSize} are accepted.`, {
      details: { limit: limits.maxBatchSize, size: raw.length },
    });
  }
  return raw.map((e, i) => parseUsageEvent(e, model, limits, now, i, source));
}
