import { LogController } from 'fastify';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Fastify logs "incoming request" before any hook runs, i.e. before the tenant is known, so that line could not
 * carry the tenant id. This controller drops it (the completion line has method, url, status and time, and is
 * written through the request's tenant-bound child logger). Use it as `Fastify({ logController: new
 * TenantwallLogController() })` so that every line of a tenant request carries request id and tenant id.
 */
export class TenantwallLogController extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (this.isLogDisabled(request)) return;
    const fields = { method: request.method, url: request.url, statusCode: reply.statusCode, responseTime: reply.elapsedTime };
    if (error) reply.log.error({ ...fields, err: error }, 'request errored');
    else reply.log.info(fields, 'request completed');
  }
}
