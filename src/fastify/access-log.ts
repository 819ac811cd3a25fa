import type { FastifyInstance } from 'fastify';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { readAccessLog } from '../access/break-glass.ts';

/** Options of `accessLogRoutes`: the route prefix. */
export interface AccessLogRouteOptions {
  db: Tenantwall;
  /** Path of the route. Default `/access-log`. */
  path?: string;
}

function intParam(raw: unknown, field: string): number | undefined {
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !/^\d{1,4}$/.test(raw)) throw new TenantwallError('validation_failed', `${field} must be an integer in 1..1000.`, { details: { field } });
  return Number(raw);
}

/**
 * `GET /access-log?limit=&before=`: the calling tenant's break-glass access-log entries, newest first. Register
 * it after the tenantwall plugin, which resolves the tenant (the route is tenant-scoped like any other).
 */
export async function accessLogRoutes(fastify: FastifyInstance, options: AccessLogRouteOptions): Promise<void> {
  const { db } = options;
  fastify.get(options.path ?? '/access-log', async (request) => {
    const query = (request.query ?? {}) as Record<string, unknown>;
    const limit = intParam(query.limit, 'limit');
    let before: Date | undefined;
    if (query.before !== undefined) {
      before = new Date(String(query.before));
      if (typeof query.before !== 'string' || Number.isNaN(before.getTime())) {
        throw new TenantwallError('validation_failed', 'before must be an ISO 8601 time.', { details: { field: 'before' } });
      }
    }
    const entries = await readAccessLog(db.current(), { ...(limit === undefined ? {} : { limit }), ...(before ? { before } : {}) });
    return { entries };
  });
}
