// tenantwall/fastify: tenant resolution, request context and error mapping for Fastify 5.
export { tenantwallPlugin, TENANTWALL_CSP_DIRECTIVES, type TenantAuth, type TenantwallFastify } from './plugin.ts';
export { resolveFastifyOptions, type TenantwallFastifyOptions, type ResolvedFastifyOptions, type ResolverName } from './options.ts';
export { ApiKeyStore, apiKeysTable, parseApiKey, type ApiKeyInfo, type CreatedApiKey, type ParsedApiKey } from './api-keys.ts';
export { createJwtVerifier, type JwtVerifier } from './jwt.ts';
export {
  toTenantwallError,
  toHttpError,
  errorBody,
  makeErrorHandler,
  tenantwallErrorHandler,
  tenantwallNotFoundHandler,
  tenantwallClientErrorHandler,
  tenantwallFrameworkErrors,
  type ErrorBody,
  type FieldError,
  type HttpError,
  type RequestValues,
} from './http-errors.ts';
export { installStrictJsonParser, duplicateKeyPath } from './json.ts';
export { redactUrl, tenantwallLogRedactPaths, tenantwallLogSerializers, REDACTED } from './redact.ts';
export { TtlCache } from '../util/ttl-cache.ts';
export { meteringPlugin, type MeteringFastifyOptions } from './metering.ts';
export { accessLogRoutes, type AccessLogRouteOptions } from './access-log.ts';
export { observabilityPlugin, type ObservabilityFastifyOptions } from './observability.ts';
export { consolePlugin, consoleHoldsOperation, type ConsoleFastifyOptions, type ConsoleFinding, type ConsoleIsolation, type ConsoleSessionStore } from './console.ts';
