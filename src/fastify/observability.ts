import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest, FastifySchema } from 'fastify';
import { TenantwallError, isTenantwallError } from '../errors.ts';
import { ACTIVITY_RESOURCES, type ActivityResource } from '../observability/activity.ts';
import type { TenantwallMetrics } from '../observability/metrics.ts';
import type { RequestUsage } from './metering.ts';

/**
 * Options of the observability Fastify plugin: `/metrics` (Prometheus) and the noisy-neighbour report (JSON,
 * what `tenantwall top` reads). Both are admin routes: give `adminToken` or an `authorize` hook, or set
 * `publicMetrics` for a scrape port that only the monitoring network reaches.
 */
export interface ObservabilityFastifyOptions {
  /** The metrics (`createMetrics({ db })`). */
  metrics: TenantwallMetrics;
  /** Path of the Prometheus endpoint, or `false` for none. Default `/metrics`. */
  metricsPath?: string | false | undefined;
  /** Path of the noisy-neighbour report. Default `/admin/observability/top`, `false` for none. */
  topPath?: string | false | undefined;
  /** Bearer token both routes require (at least 16 characters). */
  adminToken?: string | undefined;
  /** An onRequest-style check of both routes instead of `adminToken` (e.g. the service's own admin auth); throws or replies to refuse. */
  authorize?: ((request: FastifyRequest, reply: FastifyReply) => Promise<void>) | undefined;
  /** Serve both routes without authentication (a separate, internal port). Default `false`. */
  publicMetrics?: boolean | undefined;
}

const sha = (s: string) => createHash('sha256').update(s).digest();
const hidden = (): FastifySchema => ({ hide: true }) as FastifySchema;

/**
 * Counts every response (tenant, method, route pattern, status class, latency, 429 reason, quota use) into the
 * metrics and mounts `/metrics` and the noisy-neighbour report. Register it after the tenantwall plugin (and
 * after the metering plugin when there is one); its hooks apply to the whole application.
 */
const observabilityPlugin: FastifyPluginAsync<ObservabilityFastifyOptions> = async (fastify, opts) => {
  const metrics = opts.metrics;
  let authorize = opts.authorize;
  if (!authorize && opts.adminToken !== undefined) {
    if (opts.adminToken.length < 16) throw new TenantwallError('config_invalid', 'The observability admin token must be at least 16 characters.', { details: { field: 'adminToken' } });
    const expected = sha(opts.adminToken);
    authorize = async (request) => {
      const m = /^Bearer[ ]+(\S+)\s*$/i.exec(request.headers.authorization ?? '');
      if (!m || !timingSafeEqual(sha(m[1] as string), expected)) throw new TenantwallError('admin_unauthorized', 'The metrics and the activity report need the admin bearer token.');
    };
  }
  const metricsPath = opts.metricsPath ?? '/metrics';
  const topPath = opts.topPath ?? '/admin/observability/top';
  if (!authorize && !opts.publicMetrics && (metricsPath !== false || topPath !== false)) {
    throw new TenantwallError('config_invalid', 'The observability plugin needs adminToken or authorize (or publicMetrics: true for an internal port).', { details: { field: 'adminToken' } });
  }

  const refusals = new WeakMap<FastifyRequest, { code: string; quota: string | undefined }>();
  fastify.addHook('onError', (request, _reply, error, done) => {
    if (isTenantwallError(error)) {
      const quota = (error.details as { quota?: unknown } | undefined)?.quota;
      refusals.set(request, { code: error.code, quota: typeof quota === 'string' ? quota : undefined });
    }
    done();
  });
  fastify.addHook('onResponse', (request, reply, done) => {
    const refused = refusals.get(request);
    const tenantId = request.tenant?.id;
    metrics.recordRequest({
      tenantId,
      method: request.method,
      route: request.routeOptions.url ?? 'unmatched',
      statusCode: reply.statusCode,
      durationSeconds: reply.elapsedTime / 1000,
      errorCode: refused?.code,
      quota: refused?.quota,
    });
    const usage = (request as { usage?: RequestUsage | null }).usage;
    if (tenantId !== undefined && usage && usage.quotas.length > 0) metrics.recordQuotas(tenantId, usage.quotas);
    done();
  });

  const config = { tenant: false, metering: false };
  const onRequest = authorize ? [authorize] : [];
  if (metricsPath !== false) {
    fastify.get(metricsPath, { config, onRequest, schema: hidden() }, async (_request, reply) => {
      const text = await metrics.metrics();
      return reply.type(metrics.contentType).send(text);
    });
  }
  if (topPath !== false) {
    fastify.get(topPath, { config, onRequest, schema: hidden() }, async (request) => {
      const q = request.query as Record<string, unknown>;
      const by = q.by ?? 'dbMs';
      if (typeof by !== 'string' || !ACTIVITY_RESOURCES.includes(by as ActivityResource)) {
        throw new TenantwallError('validation_failed', `by must be one of ${ACTIVITY_RESOURCES.join(', ')}.`, { details: { field: 'by', location: 'querystring' } });
      }
      const limit = q.limit === undefined ? 20 : Number(q.limit);
      if (!Number.isSafeInteger(limit) || limit < 1 || limit > 100_000) {
        throw new TenantwallError('validation_failed', 'limit must be an integer 1..100000.', { details: { field: 'limit', location: 'querystring' } });
      }
      return metrics.activity.top({ by: by as ActivityResource, limit });
    });
  }
};

(observabilityPlugin as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;
(observabilityPlugin as unknown as Record<symbol, unknown>)[Symbol.for('fastify.display-name')] = 'tenantwall-observability';

export { observabilityPlugin };
