import { LogController } from 'fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { redactUrl } from './redact.ts';

/**
 * Fastify logs "incoming request" before any hook runs, i.e. before the tenant is known, so that line could not
 * carry the tenant id. This controller drops it (the completion line has method, url, status and time, and is
 * written through the request's tenant-bound child logger). Use it as `Fastify({ logController: new
 * TenantwallLogController() })` so that every line of a tenant request carries request id and tenant id.
 * The logged URL has its query-string values redacted unless the plugin's `logQueryValues` option is on in the
 * request's context (with no plugin in the context they are redacted).
 */
export class TenantwallLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const fields = { method: request.method, url: loggedUrl(request), statusCode: reply.statusCode, responseTime: reply.elapsedTime };
    if (error) reply.log.error({ ...fields, err: error }, 'request errored');
    else reply.log.info(fields, 'request completed');
  }

  // Fastify's own versions log the raw URL (query string included) or the request through the `req` serializer.
  override routeNotFound(request: FastifyRequest): void {
    if (this.isLogDisabled(request)) return;
    request.log.info({ method: request.method, url: loggedUrl(request) }, 'route not found');
  }

  override defaultErrorLog(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const fields = { method: request.method, url: loggedUrl(request), statusCode: reply.statusCode };
    if (reply.statusCode >= 500) reply.log.error({ ...fields, err: error }, error?.message);
    else reply.log.info({ ...fields, err: error }, error?.message);
  }

  override writeHeadError(error: Error, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    reply.log.warn({ method: request.method, url: loggedUrl(request), err: error }, error?.message);
  }
}

/** The request URL as logged: query values redacted unless `logQueryValues` is on in the request's context. */
function loggedUrl(request: FastifyRequest): string {
  const keep = (request.server as { tenantwall?: { options?: { logQueryValues?: boolean } } } | undefined)?.tenantwall?.options?.logQueryValues === true;
  return redactUrl(request.url, keep);
}
