/**
 * The service's OpenAPI contract (/openapi.json). Routes declare what they are with `op()` (operationId, summary,
 * description, tag, who may call, schemas, and the error codes of their own); `contract()` turns what
 * @fastify/swagger generates into the published document:
 *
 * - every error status an operation can answer, with the enum of its codes, derived from the one error registry
 *   (src/errors.ts): the codes of the route plus those of its kind (tenant, admin, public; body or not; metered);
 * - named component schemas (Customer, Invoice, Error, ...) referenced with `$ref` wherever a schema equals one;
 * - response headers as reusable components (rate limits, quotas, Retry-After);
 * - examples for every request body and response; servers, license and declared tags.
 *
 * The five usage routes of the metering plugin are described here too (`USAGE_OPERATIONS`): the plugin hides
 * them, the document shows them as the service exposes them.
 */
import { type TSchema, Type } from '@sinclair/typebox';
import { ERROR_CODES, type ErrorCode } from 'tenantwall';
import * as S from './schemas.ts';

export type Tag = 'customers' | 'invoices' | 'line-items' | 'usage' | 'admin' | 'health';
export type Kind = 'tenant' | 'admin' | 'public';

export const TAGS: ReadonlyArray<{ name: Tag; description: string }> = [
  { name: 'customers', description: 'Customers of the calling tenant' },
  { name: 'invoices', description: 'Invoices of the calling tenant: drafts, issuing, payment' },
  { name: 'line-items', description: 'Line items of a draft invoice; the invoice total follows them' },
  { name: 'usage', description: 'Usage metering: events, usage reports, quotas and plans' },
  { name: 'admin', description: 'Operator API across tenants (admin tokens only)' },
  { name: 'health', description: 'Liveness and readiness probes' },
];

const SECURITY: Record<Kind, Array<Record<string, string[]>>> = { tenant: [{ bearer: [] }], admin: [{ admin: [] }], public: [] };

export interface OperationSpec {
  id: string;
  summary: string;
  description: string;
  tag: Tag;
  security: Kind;
  params?: TSchema;
  querystring?: TSchema;
  body?: TSchema;
  /** Success statuses; `null`: no content. */
  ok: Record<number, TSchema | null>;
  /** Error codes of this operation besides those of its kind (see `kindCodes`). */
  errors?: ErrorCode[];
  /** `false`: the route has no query-string schema (the metering plugin's routes read their own). Default true. */
  checksQuery?: boolean;
}

/**
 * Route options of one operation. Runtime validation and serialization use the TypeBox schemas; error answers
 * are serialized with the one error shape; `x-tw-*` keys carry the kind and codes to `contract()`.
 */
export function op(spec: OperationSpec) {
  const response: Record<string, unknown> = {};
  for (const [status, schema] of Object.entries(spec.ok)) response[status] = schema ?? { type: 'null', description: 'No content' };
  return {
    schema: {
      operationId: spec.id,
      summary: spec.summary,
      description: spec.description,
      tags: [spec.tag],
      security: SECURITY[spec.security],
      querystring: spec.querystring ?? S.NoQuery,
      ...(spec.params ? { params: spec.params } : {}),
      ...(spec.body ? { body: spec.body } : {}),
      response: { ...response, '4xx': S.ErrorResponse, '5xx': S.ErrorResponse },
      'x-tw-kind': spec.security,
      'x-tw-errors': spec.errors ?? [],
      'x-tw-checks-query': spec.checksQuery ?? true,
    },
  };
}

/** Codes every operation of a kind can answer (the resolver, the parsers, the database). */
export function kindCodes(kind: Kind, method: string, opts: { metering: boolean; quota: boolean; checksQuery: boolean }): ErrorCode[] {
  const codes: ErrorCode[] = ['internal_error'];
  // The service's routes validate their query string (unknown parameters such as tenant_id are refused).
  if (opts.checksQuery) codes.push('validation_failed');
  if (['POST', 'PUT', 'PATCH', 'DELETE'].includes(method)) codes.push('bad_request', 'invalid_json', 'unsupported_media_type', 'payload_too_large');
  if (kind === 'tenant') {
    codes.push('unauthenticated', 'tenant_suspended', 'tenant_conflict', 'database_unreachable', 'pool_exhausted', 'statement_timeout', 'transaction_conflict');
    if (opts.metering) codes.push('rate_limited', 'rate_limit_unavailable');
    if (opts.quota) codes.push('quota_exceeded');
  }
  // operator_unavailable: a web process with the application role only relays admin requests to an operator (operator.ts).
  if (kind === 'admin') codes.push('admin_unauthorized', 'rate_limited', 'database_unreachable', 'pool_exhausted', 'transaction_conflict', 'operator_unavailable');
  return codes;
}

// ---- the usage routes of the metering plugin, described from the service side ----

/** Answers declare every field: an undocumented one fails the contract check of the tests. */
const closed = { additionalProperties: false } as const;

const UsageRow = Type.Object({
  tenant_id: S.Uuid,
  meter: Type.String(),
  aggregation: Type.String({ description: 'count, sum, max or unique' }),
  bucket: Type.String({ format: 'date-time', description: 'Start of the bucket (UTC)' }),
  value: Type.Number(),
  events: Type.Integer({ minimum: 0, description: 'Raw events in the bucket' }),
}, closed);
export const UsageReport = Type.Object({ data: Type.Array(UsageRow) }, { ...closed, description: 'Usage per meter and bucket' });
const UsageQuery = Type.Object(
  {
    meter: Type.Optional(Type.String({ pattern: S.NO_NUL, description: 'Comma-separated meters; default all' })),
    from: Type.Optional(Type.String({ format: 'date-time', description: 'Inclusive start; default start of the month (UTC)' })),
    to: Type.Optional(Type.String({ format: 'date-time', description: 'Exclusive end; default now' })),
    granularity: Type.Optional(Type.Union([Type.Literal('minute'), Type.Literal('hour'), Type.Literal('day'), Type.Literal('month')])),
    format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')], { default: 'json' })),
    tenant_id: Type.Optional(Type.String({ format: 'uuid', description: 'Own tenant id only; another tenant reads as no usage' })),
  },
  { additionalProperties: false },
);
const AdminUsageQuery = Type.Object(
  { ...UsageQuery.properties, tenant_id: Type.Optional(Type.String({ format: 'uuid', description: 'One tenant; default all' })) },
  { additionalProperties: false },
);
export const UsageEvent = Type.Object(
  {
    event_id: Type.String({ minLength: 1, maxLength: 200, pattern: S.NO_NUL, description: 'Idempotency key: a repeated id is recorded once' }),
    meter: Type.String({ minLength: 1, pattern: S.NO_NUL }),
    quantity: Type.Optional(Type.Number({ description: 'Default 1' })),
    timestamp: Type.Optional(Type.String({ format: 'date-time', description: 'Default now' })),
    properties: Type.Optional(Type.Object({}, { additionalProperties: true })),
  },
  { additionalProperties: false },
);
export const UsageEventBatch = Type.Object({ events: Type.Array(UsageEvent, { minItems: 1 }) }, { additionalProperties: false });
const RecordResult = Type.Object({ event_id: Type.String(), duplicate: Type.Boolean() }, closed);
export const UsageBatchResult = Type.Object({ accepted: Type.Integer({ minimum: 0 }), duplicates: Type.Integer({ minimum: 0 }), results: Type.Array(RecordResult) }, closed);
export const UsageQuotas = Type.Object({
  plan: Type.String(),
  quotas: Type.Array(
    Type.Object({
      quota: Type.String(),
      meter: Type.String(),
      enforcement: Type.Union([Type.Literal('hard'), Type.Literal('soft')]),
      used: Type.Number(),
      limit: Type.Number(),
      remaining: Type.Number(),
      resets_at: S.Timestamp,
    }, closed),
  ),
  rate_limits: Type.Array(
    Type.Object({
      scope: Type.Union([Type.Literal('tenant'), Type.Literal('apiKey')]),
      per: Type.Union([Type.Literal('second'), Type.Literal('minute'), Type.Literal('hour')]),
      limit: Type.Integer(),
      enforcement: Type.Optional(Type.Union([Type.Literal('hard'), Type.Literal('soft')])),
    }, closed),
  ),
}, closed);
export const PlanAssignment = Type.Object({ plan: Type.String({ minLength: 1, pattern: S.NO_NUL }) }, { additionalProperties: false });
export const PlanChange = Type.Object({ tenant_id: S.Uuid, plan: Type.String(), changed: Type.Boolean(), version: Type.Integer() }, closed);

const csvOrJson = (json: TSchema, description: string) => ({
  description,
  headers: { 'content-disposition': { type: 'string', description: 'attachment; filename="usage.csv" (CSV only)' } },
  content: { 'application/json': { schema: json }, 'text/csv': { schema: Type.String({ description: 'tenant_id,meter,aggregation,bucket,value,events' }) } },
});

/** The metering plugin's routes (it registers them hidden), keyed "<METHOD> <url>", as `op()` specs. */
export function usageOperations(prefix = '/usage', adminPrefix = '/admin/usage'): Record<string, OperationSpec & { response?: Record<number, unknown> }> {
  const usageErrors: ErrorCode[] = ['invalid_usage_query'];
  return {
    [`POST ${prefix}/events`]: {
      id: 'recordUsageEvents',
      checksQuery: false,
      summary: 'Record usage events',
      description: 'One event, or `{ "events": [...] }` for a batch (all or nothing). Events are deduplicated by `event_id`; the answer says which were duplicates.',
      tag: 'usage',
      security: 'tenant',
      body: Type.Union([UsageEvent, UsageEventBatch]),
      ok: { 200: Type.Union([RecordResult, UsageBatchResult]) },
      errors: ['invalid_usage_event', 'unknown_meter', 'meter_not_writable', 'batch_too_large'],
    },
    [`GET ${prefix}`]: {
      id: 'getUsage',
      checksQuery: false,
      summary: "The calling tenant's usage",
      description: 'Usage per meter and bucket, as JSON or CSV (`format=csv`).',
      tag: 'usage',
      security: 'tenant',
      querystring: UsageQuery,
      ok: {},
      response: { 200: csvOrJson(UsageReport, 'Usage per meter and bucket') },
      errors: usageErrors,
    },
    [`GET ${prefix}/quotas`]: {
      id: 'getUsageQuotas',
      checksQuery: false,
      summary: "The calling tenant's plan, quotas and rate limits",
      description: 'The state of every quota of the plan in the current period, and the plan\'s rate limits.',
      tag: 'usage',
      security: 'tenant',
      ok: { 200: UsageQuotas },
    },
    [`GET ${adminPrefix}`]: {
      id: 'getAdminUsage',
      checksQuery: false,
      summary: 'Usage of all tenants',
      description: 'Usage per tenant, meter and bucket, as JSON or CSV; `tenant_id` narrows it to one tenant.',
      tag: 'usage',
      security: 'admin',
      querystring: AdminUsageQuery,
      ok: {},
      response: { 200: csvOrJson(UsageReport, 'Usage per tenant, meter and bucket') },
      errors: [...usageErrors, 'invalid_tenant_id'],
    },
    [`PUT ${adminPrefix}/tenants/:id/plan`]: {
      id: 'setTenantPlan',
      checksQuery: false,
      summary: "Assign a tenant's plan",
      description: 'Assigns a plan declared in the metering configuration; quotas and rate limits follow at once.',
      tag: 'usage',
      security: 'admin',
      params: S.IdParams,
      body: PlanAssignment,
      ok: { 200: PlanChange },
      errors: ['validation_failed', 'invalid_tenant_id', 'unknown_plan', 'tenant_not_found'],
    },
  };
}

// ---- the published document ----

type Json = Record<string, unknown>;
type Doc = Json & { paths: Record<string, Record<string, Json>>; components?: Json };

/** Schemas published under components.schemas and referenced wherever an inline schema equals one. */
export const NAMED_SCHEMAS: Record<string, TSchema> = {
  Error: S.ErrorResponse,
  Customer: S.Customer,
  CustomerCreate: S.CustomerCreate,
  CustomerPatch: S.CustomerPatch,
  CustomerPage: S.Page(S.Customer),
  Invoice: S.Invoice,
  InvoiceWithItems: S.InvoiceWithItems,
  InvoiceCreate: S.InvoiceCreate,
  InvoicePatch: S.InvoicePatch,
  InvoicePage: S.Page(S.Invoice),
  LineItem: S.LineItem,
  LineItemCreate: S.LineItemCreate,
  LineItemPatch: S.LineItemPatch,
  LineItemPage: S.Page(S.LineItem),
  Tenant: S.Tenant,
  TenantCreate: S.TenantCreate,
  TenantPage: S.Page(S.Tenant),
  TenantDeleted: S.TenantDeleted,
  TenantMove: S.TenantMove,
  Job: S.Job,
  DocumentPending: S.DocumentPending,
  ApiKey: S.ApiKey,
  ApiKeyCreate: S.ApiKeyCreate,
  CreatedApiKey: S.CreatedApiKey,
  ApiKeyPage: S.Page(S.ApiKey),
  AdminToken: S.AdminToken,
  AdminTokenCreate: S.AdminTokenCreate,
  CreatedAdminToken: S.CreatedAdminToken,
  AdminTokenPage: S.Page(S.AdminToken),
  Health: S.Health,
  UsageEvent,
  UsageEventBatch,
  UsageBatchResult,
  UsageReport,
  UsageQuotas,
  PlanAssignment,
  PlanChange,
};

/**
 * What the document publishes instead of the validation schema, where JSON Schema says more than the route's
 * TypeBox schema: an invoice names its customer by `customer`, by `customer_id`, or both (two alternatives with
 * their own `required`, which client generators turn into a union).
 */
const PUBLISHED: Record<string, (validation: Json) => Json> = {
  InvoiceCreate: (v) => {
    const props = v.properties as Json;
    return {
      description: 'Give `customer` (the printed name), `customer_id` (a customer of the tenant), or both.',
      anyOf: [
        { ...v, title: 'InvoiceCreateByName', required: ['customer'] },
        { ...v, title: 'InvoiceCreateByCustomerId', properties: { ...props, customer_id: S.Uuid }, required: ['customer_id'] },
      ],
    };
  },
};

const T0 = '2026-01-15T12:00:00.000Z';
const ids = { tenant: '0b6f9a3e-3c1d-4a8e-9a51-2f0c6d1e7b42', customer: '5d2c8f7e-1a4b-4c3d-8e9f-0a1b2c3d4e5f', invoice: '7e1f2a3b-4c5d-4e6f-8a9b-0c1d2e3f4a5b', item: '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d', key: '3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f' };
const lineItem = { id: ids.item, invoice_id: ids.invoice, position: 1, description: 'Consulting', quantity: 10, unit_amount_cents: 12000, amount_cents: 120000, created_at: T0 };
const invoice = { id: ids.invoice, customer: 'Initech', customer_id: ids.customer, amount_cents: 120000, currency: 'EUR', status: 'issued', issued_at: T0, created_at: T0, updated_at: T0 };
const tenant = { id: ids.tenant, slug: 'acme', name: 'Acme Corp', status: 'active', placement: 'dedicated', created_at: T0 };
const apiKey = { id: ids.key, name: 'ci', created_at: T0, revoked_at: null };
const usageEvent = { event_id: 'evt_0001', meter: 'reports.exported', quantity: 1, timestamp: T0, properties: { table: 'invoices' } };
const page = (x: unknown) => ({ data: [x], next_cursor: null });

/** Examples of the named schemas (valid against them: the lint checks it). */
export const EXAMPLES: Record<string, unknown> = {
  Customer: { id: ids.customer, name: 'Initech', email: 'billing@initech.example', created_at: T0, updated_at: T0 },
  CustomerCreate: { name: 'Initech', email: 'billing@initech.example' },
  CustomerPatch: { email: 'accounts@initech.example' },
  Invoice: invoice,
  InvoiceWithItems: { ...invoice, line_items: [lineItem] },
  InvoiceCreate: { customer_id: ids.customer, currency: 'EUR', status: 'issued', line_items: [{ description: 'Consulting', quantity: 10, unit_amount_cents: 12000 }] },
  InvoicePatch: { status: 'paid' },
  LineItem: lineItem,
  LineItemCreate: { description: 'Consulting', quantity: 10, unit_amount_cents: 12000 },
  LineItemPatch: { quantity: 12 },
  Tenant: tenant,
  TenantCreate: { slug: 'acme', name: 'Acme Corp', placement: 'dedicated' },
  TenantMove: { to: 'dedicated' },
  DocumentPending: { invoice_id: ids.invoice, status: 'rendering', issued_at: T0 },
  Job: {
    id: '4d5e6f7a-8b9c-4d0e-8f1a-2b3c4d5e6f7a',
    kind: 'move',
    tenant_id: ids.tenant,
    status: 'succeeded',
    progress: { phase: 'switch', table: null, done: 3, total: 3 },
    result: { from: 'shared', to: 'dedicated', resumed: false, rows: 360, write_blocked_ms: 41, read_blocked_ms: 12 },
    error: null,
    created_at: T0,
    finished_at: T0,
  },
  TenantDeleted: { tenant: { ...tenant, status: 'deleted' }, rows_deleted: 42, dropped_partitions: [] },
  ApiKey: apiKey,
  ApiKeyCreate: { name: 'ci' },
  CreatedApiKey: { ...apiKey, key: 'tw_0b6f9a3e3c1d4a8e9a512f0c6d1e7b42_3c4d5e6f7a8b4c9d8e0f1a2b3c4d5e6f_c2VjcmV0' },
  AdminToken: { ...apiKey, name: 'alice' },
  AdminTokenCreate: { name: 'alice' },
  CreatedAdminToken: { ...apiKey, name: 'alice', token: 'twadm_3c4d5e6f7a8b4c9d8e0f1a2b3c4d5e6f_c2VjcmV0' },
  Health: { status: 'ok' },
  UsageEvent: usageEvent,
  UsageEventBatch: { events: [usageEvent] },
  UsageBatchResult: { accepted: 1, duplicates: 0, results: [{ event_id: 'evt_0001', duplicate: false }] },
  UsageReport: { data: [{ tenant_id: ids.tenant, meter: 'rows.created', aggregation: 'count', bucket: '2026-01-01T00:00:00.000Z', value: 12, events: 12 }] },
  UsageQuotas: {
    plan: 'free',
    quotas: [{ quota: 'invoices', meter: 'invoices.created', enforcement: 'hard', used: 12, limit: 100, remaining: 88, resets_at: '2026-02-01T00:00:00.000Z' }],
    rate_limits: [{ scope: 'tenant', per: 'second', limit: 50, enforcement: 'hard' }],
  },
  PlanAssignment: { plan: 'pro' },
  PlanChange: { tenant_id: ids.tenant, plan: 'pro', changed: true, version: 2 },
};
for (const n of ['Customer', 'Invoice', 'LineItem', 'Tenant', 'ApiKey', 'AdminToken']) EXAMPLES[`${n}Page`] = page(EXAMPLES[n]);

const header = (description: string, schema: Json = { type: 'string' }) => ({ description, schema });
/** Response headers as reusable components (metering plugin: docs/metering.md). */
export const HEADERS: Record<string, Json> = {
  'RateLimit-Limit': header('Requests allowed in the tightest rate-limit window of the plan', { type: 'integer' }),
  'RateLimit-Remaining': header('Requests left in that window', { type: 'integer' }),
  'RateLimit-Reset': header('Seconds until that window resets', { type: 'integer' }),
  'X-RateLimit-Warning': header('A soft rate limit was exceeded (the request was admitted)'),
  'X-RateLimit-Degraded': header('The rate-limit store did not answer; the request was admitted (fail open)'),
  'X-Quota-Limit': header('Quota limits of the plan, "quota=limit, ..."'),
  'X-Quota-Used': header('Quota used in this period, "quota=used, ..."'),
  'X-Quota-Remaining': header('Quota left in this period, "quota=remaining, ..."'),
  'X-Quota-Reset': header('End of the quota periods, "quota=ISO 8601 timestamp, ..."'),
  'X-Quota-Warning': header('Quotas past their warning threshold, "quota=percent%, ..."'),
  'Retry-After': header('Seconds to wait before retrying', { type: 'integer', minimum: 0 }),
};
const METERED_HEADERS = Object.keys(HEADERS).filter((h) => h !== 'Retry-After');
/** Answers of this status with one of these codes carry Retry-After (429s, and the transient 503s). */
const retryAfter = (status: number, codes: readonly ErrorCode[]) => status === 429 || codes.includes('transaction_conflict') || codes.includes('pool_exhausted');

/**
 * One spelling of the same schema, whoever wrote it: `const` as a one-value enum (as @fastify/swagger writes it)
 * and a union of string literals as one string enum (what client generators read best).
 */
function normalize(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(normalize);
  if (v === null || typeof v !== 'object') return v;
  const out: Json = {};
  for (const [k, x] of Object.entries(v)) {
    if (k === 'const') out.enum = [x];
    else out[k] = normalize(x);
  }
  const union = out.anyOf as Json[] | undefined;
  if (Array.isArray(union) && union.length > 0 && union.every((b) => b.type === 'string' && Array.isArray(b.enum) && Object.keys(b).length === 2)) {
    delete out.anyOf;
    return { ...out, type: 'string', enum: union.flatMap((b) => b.enum as unknown[]) };
  }
  return out;
}

/** Canonical JSON (sorted keys, TypeBox symbols dropped) to compare schemas. */
function canonical(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonical).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((v as Json)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const STATUS_TEXT: Record<number, string> = { 400: 'Bad request', 401: 'Unauthenticated', 403: 'Forbidden', 404: 'Not found', 409: 'Conflict', 410: 'Gone', 413: 'Payload too large', 415: 'Unsupported media type', 429: 'Too many requests', 500: 'Server error', 503: 'Unavailable' };

export interface ContractOptions {
  metering: boolean;
  /** "<METHOD> <route url>" of routes that consume a quota. */
  quotaRoutes: ReadonlySet<string>;
  servers: Array<{ url: string; description: string }>;
}

/** The document @fastify/swagger generated, made into the published contract (see the file comment). */
export function contract(generated: Json, options: ContractOptions): Json {
  const doc = structuredClone(generated) as Doc;
  const named = new Map<string, string>();
  const components: Record<string, unknown> = {};
  for (const [name, schema] of Object.entries(NAMED_SCHEMAS)) {
    const plain = normalize(JSON.parse(JSON.stringify(schema))) as Json;
    named.set(canonical(plain), name);
    components[name] = PUBLISHED[name]?.(plain) ?? plain;
  }
  const used = new Set<string>();
  // Replaces, depth first from the top, every subschema equal to a named one by a reference.
  const refs = (raw: unknown, self?: string): unknown => {
    const schema = normalize(raw);
    if (Array.isArray(schema)) return schema.map((s) => refs(s));
    if (schema === null || typeof schema !== 'object') return schema;
    const name = named.get(canonical(schema));
    if (name !== undefined && name !== self) {
      used.add(name);
      return ref(name);
    }
    return Object.fromEntries(Object.entries(schema).map(([k, v]) => [k, k === 'properties' ? Object.fromEntries(Object.entries(v as Json).map(([p, s]) => [p, refs(s)])) : refs(v)]));
  };
  const media = (content: Json | undefined) => {
    for (const m of Object.values(content ?? {}) as Json[]) {
      m.schema = refs(m.schema);
      const r = (m.schema as { $ref?: string }).$ref;
      const example = r ? EXAMPLES[r.split('/').pop() as string] : undefined;
      if (example !== undefined) m.example = example;
    }
  };

  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, o] of Object.entries(item)) {
      const kind = (o['x-tw-kind'] ?? 'public') as Kind;
      const own = (o['x-tw-errors'] ?? []) as ErrorCode[];
      delete o['x-tw-kind'];
      delete o['x-tw-errors'];
      const checksQuery = o['x-tw-checks-query'] !== false;
      delete o['x-tw-checks-query'];
      const url = path.replace(/\{(\w+)\}/g, ':$1');
      const M = method.toUpperCase();
      const codes = [...new Set([...kindCodes(kind, M, { metering: options.metering, quota: options.quotaRoutes.has(`${M} ${url}`), checksQuery }), ...own])];
      const responses = o.responses as Record<string, Json>;
      delete responses['4XX'];
      delete responses['5XX'];
      const metered = kind === 'tenant' && options.metering;
      const headerRefs = (names: string[]) => Object.fromEntries(names.map((h) => [h, { $ref: `#/components/headers/${h}` }]));
      for (const [status, r] of Object.entries(responses)) {
        if (r.description === 'Default Response') r.description = status === '204' ? 'No content' : 'Success';
        media(r.content as Json | undefined);
        if (metered) r.headers = { ...(r.headers as Json), ...headerRefs(METERED_HEADERS) };
      }
      const byStatus = new Map<number, ErrorCode[]>();
      for (const c of codes) byStatus.set(ERROR_CODES[c].status, [...(byStatus.get(ERROR_CODES[c].status) ?? []), c]);
      for (const [status, list] of [...byStatus].sort((a, b) => a[0] - b[0])) {
        used.add('Error');
        const first = list[0] as ErrorCode;
        responses[String(status)] = {
          description: `${STATUS_TEXT[status] ?? 'Error'}: ${list.map((c) => `\`${c}\``).join(', ')}`,
          ...(metered || retryAfter(status, list)
            ? { headers: headerRefs([...(metered ? METERED_HEADERS : []), ...(retryAfter(status, list) ? ['Retry-After'] : [])]) }
            : {}),
          content: {
            'application/json': {
              // The Error shape, its code narrowed to this status's codes (message and details repeated so that
              // both branches evaluate every property).
              schema: {
                allOf: [
                  ref('Error'),
                  { type: 'object', properties: { error: { type: 'object', properties: { code: { type: 'string', enum: list }, message: { type: 'string' }, details: { type: 'object' } } } } },
                ],
              },
              example: { error: { code: first, message: `${ERROR_CODES[first].hint}`, details: {} } },
            },
          },
        };
      }
      const body = o.requestBody as Json | undefined;
      if (body) media(body.content as Json | undefined);
      for (const p of (o.parameters ?? []) as Json[]) if (p.schema) p.schema = refs(p.schema);
    }
  }
  const schemas: Record<string, unknown> = {};
  // Components may reference each other (a page references its item): resolve until nothing new is used.
  for (let before = -1; before !== used.size; ) {
    before = used.size;
    for (const name of [...used]) schemas[name] = { ...(refs(components[name], name) as Json), ...(EXAMPLES[name] !== undefined ? { examples: [EXAMPLES[name]] } : {}) };
  }
  const sorted = Object.fromEntries(Object.keys(schemas).sort().map((k) => [k, schemas[k]]));
  const usedHeaders = JSON.stringify(doc.paths);
  return {
    ...doc,
    info: { ...(doc.info as Json), license: { name: 'MIT', identifier: 'MIT' } },
    servers: options.servers,
    tags: TAGS.filter((t) => usedHeaders.includes(`"${t.name}"`)),
    components: {
      ...doc.components,
      schemas: sorted,
      headers: Object.fromEntries(Object.entries(HEADERS).filter(([h]) => usedHeaders.includes(`#/components/headers/${h}"`))),
    },
  };
}
