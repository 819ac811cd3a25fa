import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { mapPgError } from '../db/pg-errors.ts';
import { TenantwallError, isTenantwallError } from '../errors.ts';

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

function fieldOf(e: Partial<FieldError> | undefined): string {
  if (!e) return '';
  const params = e.params ?? {};
  const path = (e.instancePath ?? '').split('/').filter(Boolean).join('.');
  const extra = (params.missingProperty ?? params.additionalProperty) as string | undefined;
  return [path, extra].filter(Boolean).join('.');
}

// Class 22 (data exception: bad text encoding such as NUL bytes, out of range, invalid datetime) and CHECK /
// NOT NULL violations are caused by the values a client sent.
const isClientInput = (code: string) => code.startsWith('22') || code === '23514' || code === '23502';

/**
 * Maps anything thrown while serving a request to a TenantwallError. Whatever a client can send ends as a 4xx
 * with a stable code; only genuine server faults become 5xx.
 */
export function toTenantwallError(err: unknown, bodyLimit: number): TenantwallError {
  if (isTenantwallError(err)) return err;
  const e = err as Partial<FastifyError> & { validation?: Partial<FieldError>[]; validationContext?: string; type?: string };
  if (Array.isArray(e.validation)) {
    const location = e.validationContext ?? 'body';
    const first = e.validation[0];
    const field = fieldOf(first) || location;
    return new TenantwallError('validation_failed', `Invalid ${location} field "${field}": ${first?.message ?? 'invalid value'}.`, {
      cause: err,
      details: { field, location, errors: e.validation.map((v) => ({ field: fieldOf(v) || location, message: v.message })) },
    });
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
    const pg = err as { constraint?: string; column?: string };
    if (pgCode === '23505') return new TenantwallError('conflict', 'A row with the same unique value already exists.', { cause: err, details: pg.constraint ? { constraint: pg.constraint } : {} });
    if (pgCode === '23503') return new TenantwallError('conflict', 'The row references, or is referenced by, another row.', { cause: err, details: pg.constraint ? { constraint: pg.constraint } : {} });
    if (isClientInput(pgCode)) {
      // Only a column the database names (NOT NULL) is a field; constraint names are schema internals, never shown.
      const field = pg.column;
      return new TenantwallError('validation_failed', field ? `A value of "${field}" was refused by the database.` : 'A value was refused by the database.', {
        cause: err,
        details: field ? { field } : {},
      });
    }
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

/** A Fastify error handler mapping every error to the tenantwall error shape and status. */
export function makeErrorHandler(bodyLimit: number) {
  return function tenantwallErrorHandler(error: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const tw = toTenantwallError(error, bodyLimit);
    if (tw.status >= 500) request.log.error({ err: error, code: tw.code }, 'request failed');
    else request.log.info({ code: tw.code, status: tw.status }, 'request refused');
    // The rest of an oversized body is not read; the connection cannot be reused.
    if (tw.code === 'payload_too_large') reply.header('connection', 'close');
    void reply.code(tw.status).send(errorBody(tw));
  };
}
