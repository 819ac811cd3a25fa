import type { Socket } from 'node:net';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { mapPgError } from '../db/pg-errors.ts';
import { TenantwallError, isTenantwallError } from '../errors.ts';
import { redactUrl } from './redact.ts';

/** An Ajv-shaped error, so Fastify's `error.validation` looks the same whichever compiler produced it. */
export interface FieldError {
  instancePath: string;
  message: string;
  keyword: string;
  params: Record<string, unknown>;
}

/** The body of every error response. */
export interface ErrorBody {
  error: { code: string; message: string; details: Record<string, unknown> };
}

/**
 * The parts of a request a refused value can come from. A `FastifyRequest` is one; pass it so that a value the
 * database refused is named by its source (`params.id`, `querystring.limit`, `body.customer_id`).
 */
export interface RequestValues {
  params?: unknown;
  query?: unknown;
  body?: unknown;
}

function fieldOf(e: Partial<FieldError> | undefined): string {
  if (!e) return '';
  const params = e.params ?? {};
  const path = (e.instancePath ?? '').split('/').filter(Boolean).join('.');
  const extra = (params.missingProperty ?? params.additionalProperty) as string | undefined;
  return [path, extra].filter(Boolean).join('.');
}

/** `params.id`, `body.line_items.0.quantity`, or `body` for the whole body. */
const sourceName = (location: string, field: string) => (field && field !== location ? `${location}.${field}` : location);

// Class 22 (data exception: bad text encoding such as NUL bytes, out of range, invalid datetime) and CHECK /
// NOT NULL violations are caused by the values a client sent.
const isClientInput = (code: string) => code.startsWith('22') || code === '23514' || code === '23502';

const ABORT_CODES = new Set(['ECONNRESET', 'ECONNABORTED', 'ERR_STREAM_PREMATURE_CLOSE']);

/**
 * The client went away (or broke the chunked framing) while its body was being read. Fastify reports this as a
 * 400 carrying the socket's `ECONNRESET`, which must not be read as the database connection failing.
 */
function isClientAbort(err: unknown, request: FastifyRequest | RequestValues | undefined): boolean {
  const e = err as { code?: unknown; statusCode?: unknown; message?: unknown };
  if (typeof e?.code !== 'string' || !ABORT_CODES.has(e.code)) return false;
  const raw = (request as Partial<FastifyRequest> | undefined)?.raw;
  if (raw && (raw.aborted || raw.readableAborted)) return true;
  // Without the request: database connection errors never carry an HTTP status; Fastify's body reader sets one.
  return typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500;
}

const MAX_SEARCH = 10_000;

/**
 * Where in the request a value the database refused came from: the first string equal to `value` (or containing
 * a NUL when `value` is undefined and the refusal was about NUL), searched in params, query string and body.
 */
function locate(request: RequestValues | undefined, match: (s: string) => boolean): { location: string; field: string } | undefined {
  if (!request) return undefined;
  const parts: Array<[string, unknown]> = [
    ['params', request.params],
    ['querystring', request.query],
    ['body', request.body],
  ];
  let budget = MAX_SEARCH;
  for (const [location, root] of parts) {
    const stack: Array<[unknown, string]> = [[root, '']];
    while (stack.length > 0 && budget-- > 0) {
      const [v, path] = stack.pop() as [unknown, string];
      if (typeof v === 'string' || typeof v === 'number' || typeof v === 'bigint') {
        if (match(String(v))) return { location, field: path };
      } else if (v !== null && typeof v === 'object') {
        const entries = Object.entries(v);
        for (let i = entries.length - 1; i >= 0; i--) {
          const [k, x] = entries[i] as [string, unknown];
          stack.push([x, path ? `${path}.${k}` : k]);
        }
      }
    }
  }
  return undefined;
}

function databaseRefusal(err: unknown, pgCode: string, request: RequestValues | undefined): TenantwallError {
  const pg = err as { column?: string; message?: string };
  const text = pg.message ?? '';
  // Class 22 messages name the refused value last, quoted: `invalid input syntax for type uuid: "abc"`.
  const quoted = pgCode.startsWith('22') ? /: "((?:[^"]|"")*)"$/.exec(text)?.[1]?.replaceAll('""', '"') : undefined;
  const nul = pgCode.startsWith('22') && /0x00|\\u0000/.test(text);
  const found =
    quoted !== undefined ? locate(request, (s) => s === quoted) : nul ? locate(request, (s) => s.includes('\u0000')) : undefined;
  // The database's own reason for class 22 (the kind of value it expected), without the value itself. CHECK
  // constraint names are schema internals and never shown.
  const reason = pgCode.startsWith('22') ? text.split(/: "|: 0x/)[0]?.trim() : undefined;
  const why = reason ? `: ${reason}` : '';
  if (found) {
    const name = sourceName(found.location, found.field);
    return new TenantwallError('validation_failed', `The database refused the value of ${name}${why}.`, {
      cause: err,
      details: { field: found.field || found.location, location: found.location },
    });
  }
  // Only a column the database names (NOT NULL) is a field.
  const field = pg.column;
  return new TenantwallError('validation_failed', field ? `The database refused the value of "${field}"${why}.` : `The database refused a value of the request${why}.`, {
    cause: err,
    details: field ? { field } : {},
  });
}

/**
 * Maps anything thrown while serving a request to a TenantwallError. Whatever a client can send ends as a 4xx
 * with a stable code; only genuine server faults become 5xx. Pass the request (or its params/query/body) so
 * that a value the database refused is named by where it came from.
 */
export function toTenantwallError(err: unknown, bodyLimit: number, request?: FastifyRequest | RequestValues): TenantwallError {
  if (isTenantwallError(err)) return err;
  // A query builder's wrapper around the database error (Drizzle's DrizzleQueryError: no code of its own, the
  // PostgreSQL error as its cause) is answered as that error: a unique violation is a conflict, not a 500.
  const cause = (err as { cause?: unknown } | null)?.cause;
  const causeCode = cause instanceof Error ? (cause as Error & { code?: unknown }).code : undefined;
  if (err instanceof Error && (err as Error & { code?: unknown }).code === undefined && typeof causeCode === 'string' && /^[0-9A-Z]{5}$/.test(causeCode)) {
    return toTenantwallError(cause, bodyLimit, request);
  }
  const e = err as Partial<FastifyError> & { validation?: Partial<FieldError>[]; validationContext?: string; type?: string };
  if (Array.isArray(e.validation)) {
    const location = e.validationContext ?? 'body';
    const first = e.validation[0];
    const field = fieldOf(first) || location;
    return new TenantwallError('validation_failed', `Invalid ${sourceName(location, field)}: ${first?.message ?? 'invalid value'}.`, {
      cause: err,
      details: { field, location, errors: e.validation.map((v) => ({ field: fieldOf(v) || location, message: v.message })) },
    });
  }
  if (isClientAbort(err, request)) {
    return new TenantwallError('client_aborted', 'The client closed the connection before the request body was read.', { cause: err });
  }
  switch (e.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new TenantwallError('payload_too_large', `The request body exceeds ${bodyLimit} bytes.`, { cause: err, details: { limit_bytes: bodyLimit } });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new TenantwallError('unsupported_media_type', 'Unsupported Content-Type.', { cause: err });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new TenantwallError('invalid_json', `The body is not valid JSON: ${e.message ?? ''}`.trim(), { cause: err, details: { field: 'body' } });
  }
  if (err instanceof SyntaxError && e.statusCode === 400) {
    return new TenantwallError('invalid_json', 'The body is not valid JSON.', { cause: err, details: { field: 'body' } });
  }
  const pgCode = (err as { code?: unknown }).code;
  if (typeof pgCode === 'string' && /^[0-9A-Z]{5}$/.test(pgCode)) {
    const pg = err as { constraint?: string };
    if (pgCode === '23505') return new TenantwallError('conflict', 'A row with the same unique value already exists.', { cause: err, details: pg.constraint ? { constraint: pg.constraint } : {} });
    if (pgCode === '23503') return new TenantwallError('conflict', 'The row references, or is referenced by, another row.', { cause: err, details: pg.constraint ? { constraint: pg.constraint } : {} });
    if (isClientInput(pgCode)) return databaseRefusal(err, pgCode, request);
  }
  const mapped = mapPgError(err);
  if (isTenantwallError(mapped)) return mapped;
  const status = typeof e.statusCode === 'number' ? e.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new TenantwallError('bad_request', e.message ?? 'Bad request.', { cause: err, status });
  }
  return new TenantwallError('internal_error', 'Internal server error.', { cause: err });
}

/** The JSON error body `{ error: { code, message, details } }` for a TenantwallError. */
export function errorBody(err: TenantwallError): ErrorBody {
  return { error: { code: err.code, message: err.message, details: { ...err.details } } };
}

/** What `toHttpError` answers: the status, the JSON body and the TenantwallError both come from. */
export interface HttpError {
  statusCode: number;
  body: ErrorBody;
  error: TenantwallError;
}

/** The body limit that applied to a request: the route's own `bodyLimit`, else the server's, else Fastify's 1 MiB. */
function bodyLimitOf(request: FastifyRequest | undefined, fallback?: number): number {
  const route = (request?.routeOptions as { bodyLimit?: number } | undefined)?.bodyLimit;
  return route ?? fallback ?? request?.server?.initialConfig?.bodyLimit ?? 1_048_576;
}

/**
 * The tenantwall answer for any error: `{ statusCode, body: { error: { code, message, details } }, error }`.
 * For apps that keep their own error handler and want tenantwall's mapping for some errors, e.g.
 * `if (isTenantwallError(err)) { const h = toHttpError(err, request); return reply.code(h.statusCode).send(h.body); }`.
 */
export function toHttpError(err: unknown, request?: FastifyRequest): HttpError {
  const error = toTenantwallError(err, bodyLimitOf(request), request);
  return { statusCode: error.status, body: errorBody(error), error };
}

function handle(error: unknown, request: FastifyRequest, reply: FastifyReply, bodyLimit: number | undefined): void {
  const tw = toTenantwallError(error, bodyLimitOf(request, bodyLimit), request);
  // Client aborts are not server faults: info level with their own code, so no client can raise an outage alert.
  if (tw.code === 'client_aborted') request.log.info({ code: tw.code, status: tw.status, cause: (error as { code?: string }).code }, 'client aborted the request');
  // A lost deadlock or serialization conflict is transient and expected next to lifecycle work: warn, not error.
  else if (tw.code === 'transaction_conflict') request.log.warn({ code: tw.code, status: tw.status, sqlstate: tw.details.sqlstate }, 'transaction rolled back by a conflict');
  // Every pooled connection busy: a capacity signal, transient, nothing was sent.
  else if (tw.code === 'pool_exhausted') request.log.warn({ code: tw.code, status: tw.status, poolSize: tw.details.poolSize }, 'no free database connection');
  else if (tw.status >= 500) request.log.error({ err: error, code: tw.code }, 'request failed');
  else request.log.info({ code: tw.code, status: tw.status }, 'request refused');
  // The rest of an oversized body is not read; the connection cannot be reused.
  if (tw.code === 'payload_too_large') reply.header('connection', 'close');
  // Nothing was applied and the conflict (or the wait for a connection) is over soon: the client may send it again.
  if (tw.code === 'transaction_conflict' || tw.code === 'pool_exhausted') reply.header('retry-after', '1');
  void reply.code(tw.status).send(errorBody(tw));
}

/**
 * A Fastify error handler mapping every error to the tenantwall error shape and status:
 * `app.setErrorHandler(tenantwallErrorHandler)` (or the plugin's `errorHandler: true`). Errors the client caused
 * are logged at info level, server faults at error level with the error.
 */
export function tenantwallErrorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
  handle(error, request, reply, undefined);
}

/** `tenantwallErrorHandler` with a fixed body limit for the 413 message (the route's own limit still wins). */
export function makeErrorHandler(bodyLimit: number) {
  return function tenantwallErrorHandlerWithLimit(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
    handle(error, request, reply, bodyLimit);
  };
}

/** A Fastify not-found handler answering 404 `not_found` in the tenantwall error shape (the path, never the query). */
export function tenantwallNotFoundHandler(request: FastifyRequest, reply: FastifyReply): void {
  const err = new TenantwallError('not_found', `No route ${request.method} ${redactUrl(request.url, false).split('?')[0]}.`);
  void reply.code(404).send(errorBody(err));
}

interface ClientErrorLogger {
  log?: { info(obj: object, msg: string): void; debug(obj: object, msg: string): void };
}

/**
 * Fastify `clientErrorHandler` (`Fastify({ clientErrorHandler: tenantwallClientErrorHandler })`, or the plugin's
 * `errorHandler: true` at the root): requests Node's HTTP parser refuses before Fastify sees them (bad framing,
 * malformed chunks, 431 headers too large, 408) answer the tenantwall error shape. A connection the client
 * reset is logged at debug level as `client_aborted`. Only the parser's code is logged, never the raw bytes
 * (they hold the request's headers, credentials included).
 */
export function tenantwallClientErrorHandler(this: ClientErrorLogger | undefined, err: Error & { code?: string }, socket: Socket): void {
  const log = this?.log;
  if (err.code === 'ECONNRESET' || socket.destroyed) {
    log?.debug({ code: 'client_aborted', cause: err.code }, 'client aborted the connection');
    return;
  }
  const [status, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'The request headers are too large.']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'The request was not received in time.']
        : [400, `The request could not be parsed as HTTP/1.1 (${err.code ?? 'parse error'}).`];
  const tw = new TenantwallError('bad_request', message, { status, details: { reason: err.code ?? 'parse_error' } });
  log?.info({ code: tw.code, status, cause: err.code }, 'request refused by the HTTP parser');
  // As Node's own handler: only answer when no response to this connection has started.
  const inFlight = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !inFlight?.headersSent) {
    const body = JSON.stringify(errorBody(tw));
    const reason = status === 431 ? 'Request Header Fields Too Large' : status === 408 ? 'Request Timeout' : 'Bad Request';
    socket.write(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
  socket.destroy();
}

/**
 * Fastify `frameworkErrors` (`Fastify({ frameworkErrors: tenantwallFrameworkErrors })`): errors Fastify raises
 * before routing (a URL it cannot decode such as `%FF`, an invalid request id) answer 400 `bad_request` in
 * the tenantwall error shape instead of Fastify's default body.
 */
export function tenantwallFrameworkErrors(error: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
  const err = new TenantwallError('bad_request', `The request could not be routed (${error.code}).`, { cause: error, details: { reason: error.code } });
  request.log.info({ code: err.code, status: err.status, cause: error.code }, 'request refused before routing');
  void reply.code(err.status).send(errorBody(err));
}
