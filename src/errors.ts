/**
 * Every error tenantwall raises is a TenantwallError with one of these stable codes. The message says how to
 * fix it; `status` is the HTTP status the Fastify integration answers with. docs/errors.md lists the same
 * codes; test/errors.test.ts keeps the two in sync.
 */
export const ERROR_CODES = {
  // tenant identity and context
  invalid_tenant_id: { status: 400, hint: 'Tenant ids are of the configured key type (tenantKey): lowercase UUIDs by default, e.g. 0b6f9a3e-3c1d-4a8e-9a51-2f0c6d1e7b42 (docs/tenant-scope.md).' },
  tenant_not_found: { status: 404, hint: 'Create the tenant first (tenantwall tenants create) or check the id.' },
  tenant_suspended: { status: 403, hint: 'Resume the tenant (tenantwall tenants resume) before using it.' },
  tenant_deleted: { status: 410, hint: 'The tenant was deleted; only its tombstone remains.' },
  tenant_context_missing: {
    status: 500,
    hint: 'Run the query through db.forTenant(id), inside runWithTenant(id, fn), or in a request the tenantwall Fastify plugin resolved.',
  },
  tenant_conflict: { status: 403, hint: 'Send credentials that name one tenant only.' },
  tenant_exists: { status: 409, hint: 'Choose another id or slug.' },
  invalid_slug: { status: 400, hint: 'Slugs are 1-63 characters of a-z, 0-9 and "-", starting with a letter or digit.' },
  // configuration and connection
  config_invalid: { status: 500, hint: 'Fix the option named in the message (see docs/configuration.md).' },
  database_url_invalid: { status: 500, hint: 'DATABASE_URL must look like postgres://user:password@host:5432/dbname.' },
  database_unreachable: { status: 503, hint: 'Check that PostgreSQL is running and DATABASE_URL points at it.' },
  pool_exhausted: {
    status: 503,
    hint: 'Every connection of the pool was in use for connectTimeoutMs: retry later, raise poolSize (or adminPoolSize), or shorten what holds connections (long transactions, slow statements).',
  },
  server_version_unsupported: { status: 500, hint: 'tenantwall needs PostgreSQL 15 or newer.' },
  app_role_unsafe: {
    status: 500,
    hint: 'The application role must be NOSUPERUSER NOBYPASSRLS, own nothing and not be a member of the owner role.',
  },
  admin_role_insufficient: {
    status: 500,
    hint: 'Cross-tenant admin work needs an owner connection that is superuser or BYPASSRLS.',
  },
  citus_propagation_invalid: {
    status: 500,
    hint: "On Citus set citus.propagate_set_commands = 'local' on the coordinator (ALTER SYSTEM ... ; SELECT pg_reload_conf()); with any other value the tenant never reaches the workers.",
  },
  // schema and migrations
  schema_invalid: { status: 500, hint: 'Fix the table declaration named in the message.' },
  migration_checksum_mismatch: {
    status: 500,
    hint: 'An applied migration must never be edited: restore its original text and add a new migration instead.',
  },
  migration_invalid: { status: 500, hint: 'Migrations need unique positive integer versions in increasing order and non-empty SQL.' },
  migration_failed: { status: 500, hint: 'The migration was rolled back; fix its SQL and run migrate again.' },
  // tenant lifecycle (tenantwall tenants ...)
  placement_unchanged: { status: 409, hint: 'The tenant already has that placement; nothing was changed.' },
  placement_unsupported: {
    status: 500,
    hint: 'Dedicated placement needs at least one tenant table declared with partition: { hashPartitions } (dedicated not false).',
  },
  move_in_progress: {
    status: 409,
    hint: 'A move of this tenant was started and not finished: run the same move again to resume it, or tenants move --abort to roll it back.',
  },
  move_verification_failed: { status: 500, hint: 'The move was rolled back because row counts or checksums differed; nothing was changed.' },
  tenant_busy: { status: 409, hint: 'Another lifecycle operation holds this tenant right now; wait for it to finish and retry.' },
  confirmation_required: { status: 400, hint: 'Deleting a tenant is irreversible: repeat its slug with --confirm <slug> (confirm: slug in the library).' },
  export_path_unwritable: { status: 500, hint: 'Choose a directory this process can create and write to.' },
  import_invalid: { status: 400, hint: 'Point at a directory written by tenants export (manifest.json and one file per table), unchanged.' },
  import_checksum_mismatch: { status: 400, hint: 'A file of the export does not match its manifest (size, sha256 or row count); re-export it. Nothing was imported.' },
  // data path
  statement_timeout: { status: 503, hint: 'The statement ran longer than statementTimeoutMs; retry or narrow the query.' },
  transaction_conflict: {
    status: 503,
    hint: 'The transaction lost a deadlock, a serialization conflict or a lock wait to a concurrent one (for example the switch of a tenant move) and was rolled back: nothing of it was applied. Retry it after the Retry-After header.',
  },
  plan_limit_exceeded: {
    status: 422,
    hint: "The statement needed more than the tenant's plan allows (details.limit, details.limit_ms): narrow the request or move to a plan with higher database limits.",
  },
  row_security_violation: { status: 403, hint: 'A row can only be written with the tenant_id of the current tenant.' },
  unscoped_query: {
    status: 500,
    hint: 'Constrain every tenant table reference with tenant_id = <the tenant parameter>, or use the query builder.',
  },
  guard_not_ready: { status: 500, hint: 'Await guard.ready() (Tenantwall.connect does) before the first check: the SQL parser loads asynchronously.' },
  query_failed: { status: 500, hint: 'See the cause for the database error.' },
  // break-glass access (src/access)
  break_glass_invalid: {
    status: 400,
    hint: "Open break-glass access with actor (who), reason (why), tenant (an id or 'all') and ttlMs (1000..28800000); details.field names the bad one.",
  },
  break_glass_expired: { status: 403, hint: 'The break-glass grant expired or was closed: open a new one (with its own reason) to continue.' },
  // HTTP (tenantwall/fastify and the reference service)
  unauthenticated: {
    status: 401,
    hint: 'Send Authorization: Bearer <API key or JWT> naming an existing tenant (or use a configured subdomain / gateway header).',
  },
  admin_unauthorized: { status: 401, hint: 'Admin routes need Authorization: Bearer <admin token> (TENANTWALL_ADMIN_TOKEN); tenant credentials are not accepted.' },
  validation_failed: { status: 400, hint: 'Fix the value named in the message (details.location and details.field say where it was: params, querystring, headers or body).' },
  invalid_json: { status: 400, hint: 'Send a well-formed JSON body with Content-Type: application/json.' },
  unsupported_media_type: { status: 415, hint: 'Send request bodies as application/json.' },
  payload_too_large: { status: 413, hint: 'Send a smaller body; the limit is in details.limit_bytes.' },
  bad_request: { status: 400, hint: 'The request could not be read; check the method, headers and body.' },
  not_found: { status: 404, hint: 'Check the id and the credentials: resources of other tenants are never visible.' },
  invalid_cursor: { status: 400, hint: 'Pass back the next_cursor of a previous page unchanged, with the same sort and order.' },
  conflict: { status: 409, hint: 'The request conflicts with existing data (duplicate key or a row still referenced); see details.' },
  internal_error: { status: 500, hint: 'An unexpected server error; the request id in the logs identifies it.' },
  // metering, quotas and billing hooks (src/metering)
  invalid_usage_event: {
    status: 400,
    hint: 'Send events as {event_id, meter, quantity?, timestamp?, properties?}; details.index and details.field name the bad one (see docs/metering.md).',
  },
  unknown_meter: { status: 400, hint: 'Use a meter declared in the metering configuration; details.meter names the unknown one.' },
  meter_not_writable: { status: 403, hint: 'This meter is recorded by the server (source: server); clients may send usage only to meters declared with source: \'client\'. details.meter names it.' },
  batch_too_large: { status: 413, hint: 'Split the batch; details.limit is the maximum number of events per request.' },
  invalid_usage_query: { status: 400, hint: 'Fix the query parameter named in details.field (from/to ISO timestamps, granularity minute|hour|day|month).' },
  unknown_plan: { status: 400, hint: 'Assign a plan declared in the metering configuration.' },
  rate_limited: { status: 429, hint: 'Slow down: retry after the Retry-After header (details.resets_at), or move to a plan with a higher rate limit.' },
  quota_exceeded: { status: 429, hint: 'The quota of this billing period is used up (details.used/limit/resets_at); wait for the reset or upgrade the plan.' },
  rate_limit_unavailable: {
    status: 503,
    hint: 'The rate-limit store (PostgreSQL or Redis) did not answer and the limiter fails closed; retry shortly or check the store.',
  },
  webhook_signature_invalid: { status: 401, hint: 'Verify with the endpoint secret (whsec_...) over the raw body and the webhook-id/-timestamp/-signature headers.' },
  webhook_url_invalid: { status: 400, hint: 'Give an absolute http(s) URL without user:password@ or #fragment whose host resolves (see docs/webhooks.md).' },
  webhook_url_forbidden: {
    status: 400,
    hint: 'The host resolves to a loopback, private, link-local or metadata address; use a public address, or list the network in the allowNetworks webhook option.',
  },
  webhook_secret_invalid: { status: 400, hint: 'Omit the secret to get a generated one, or pass whsec_ + base64 of 24 to 64 random bytes.' },
  unknown_event_type: { status: 400, hint: 'Filter on quota.threshold_crossed, period.closed, plan.changed or tenant.suspended, or omit the filter for all.' },
  webhook_endpoint_not_found: { status: 404, hint: 'Pass the id of an existing endpoint (tenantwall webhooks endpoints list).' },
  // HTTP input refused by tenantwall/fastify (issue 16)
  duplicate_json_key: { status: 400, hint: 'Send each key at most once per JSON object: details.field names the repeated key (a proxy reading the first copy would see another request).' },
  client_aborted: { status: 400, hint: 'The client closed the connection or sent a malformed body before the request was read; nothing was done. Logged at info level, never as a server error.' },
  csrf_token_invalid: { status: 403, hint: 'Console actions need the CSRF token of the session: reload the page and submit the form again.' },
  activity_source_unreachable: { status: 502, hint: 'tenantwall top reads the activity report of a running service: check --url (the service base URL) and --token (its admin token).' },
  owner_connection_required: {
    status: 500,
    hint: 'This process runs with the application role only; run migrations and lifecycle work with the owner (tenantwall migrate, the CLI, or connect with databaseUrl). See docs/credentials.md.',
  },
  operator_unavailable: {
    status: 503,
    hint: 'This process holds the application role only and hands admin requests to an operator process (the owner side); none answered. Start one (npm run operator in the reference service, docs/credentials.md) and retry after the Retry-After header.',
  },
  app_login_failed: {
    status: 500,
    hint: "tenantwall never changes a role's password: give the application role's password (TENANTWALL_APP_PASSWORD) or its URL (TENANTWALL_APP_DATABASE_URL). See docs/credentials.md.",
  },
} as const satisfies Record<string, { status: number; hint: string }>;

/** One of the stable error codes of `ERROR_CODES` (docs/errors.md). */
export type ErrorCode = keyof typeof ERROR_CODES;

export interface TenantwallErrorOptions {
  cause?: unknown;
  details?: Record<string, unknown>;
  status?: number;
  /** Replaces the code's registry hint when a better one fits this error (e.g. the page documenting a CLI flag). */
  hint?: string;
}

export class TenantwallError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: TenantwallErrorOptions = {}) {
    super(`${message} ${options.hint ?? ERROR_CODES[code].hint}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TenantwallError';
    this.code = code;
    this.status = options.status ?? ERROR_CODES[code].status;
    this.details = Object.freeze({ ...options.details });
  }

  /** The HTTP status under the name Fastify's own error handler reads (`status`). */
  get statusCode(): number {
    return this.status;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return Object.keys(this.details).length > 0
      ? { code: this.code, message: this.message, details: { ...this.details } }
      : { code: this.code, message: this.message };
  }
}

/** True when a value is a `TenantwallError` (also across module copies). */
export function isTenantwallError(err: unknown, code?: ErrorCode): err is TenantwallError {
  return err instanceof TenantwallError && (code === undefined || err.code === code);
}
