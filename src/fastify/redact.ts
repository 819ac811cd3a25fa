// Log hygiene of tenantwall/fastify: query-string values and credentials never reach the logs by default.

/** What query values are replaced with in logged URLs. */
export const REDACTED = '[redacted]';

/**
 * The URL with every query-string value replaced by `[redacted]` (keys are kept: they say what was asked, the
 * values are personal data such as `?email=`). `keepValues: true` returns the URL unchanged.
 */
export function redactUrl(url: string, keepValues = false): string {
  if (keepValues) return url;
  const q = url.indexOf('?');
  if (q < 0) return url;
  const query = url.slice(q + 1);
  if (query === '') return url;
  const parts = query.split('&').map((p) => {
    const eq = p.indexOf('=');
    return eq < 0 ? (p === '' ? p : `${p}=${REDACTED}`) : `${p.slice(0, eq)}=${REDACTED}`;
  });
  return `${url.slice(0, q)}?${parts.join('&')}`;
}

/**
 * pino `redact` paths for the credentials a request or response may carry (Authorization, X-API-Key, cookies),
 * should anything log headers: `Fastify({ logger: { redact: tenantwallLogRedactPaths } })`.
 */
export const tenantwallLogRedactPaths: readonly string[] = Object.freeze([
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'req.headers["proxy-authorization"]',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers.cookie',
  'headers["proxy-authorization"]',
]);

interface LoggedRequest {
  method?: string;
  url?: string;
  hostname?: string;
  ip?: string;
  socket?: { remotePort?: number };
  raw?: { socket?: { remotePort?: number } };
}

/**
 * pino serializers for apps that keep Fastify's own request logging (without `TenantwallLogController`):
 * `Fastify({ logger: { serializers: tenantwallLogSerializers } })`. The `req` serializer logs method, URL with
 * query values redacted, host and remote address, never headers.
 */
export const tenantwallLogSerializers = Object.freeze({
  req(req: LoggedRequest): Record<string, unknown> {
    return {
      method: req.method,
      url: redactUrl(req.url ?? ''),
      host: req.hostname,
      remoteAddress: req.ip,
      remotePort: req.socket?.remotePort ?? req.raw?.socket?.remotePort,
    };
  },
});
