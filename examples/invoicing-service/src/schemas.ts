import { type TSchema, Type } from '@sinclair/typebox';

// Every request object refuses unknown properties: a `tenant_id` (or any misspelt field) is an error, not ignored.
const strict = { additionalProperties: false } as const;
/** Text without NUL (PostgreSQL text cannot hold it); the body parser refuses it too, naming the field. */
export const NO_NUL = '^[^\\u0000]*$';

export const Uuid = Type.String({ format: 'uuid', description: 'UUID' });
export const Timestamp = Type.String({ format: 'date-time' });
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);
const Cents = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'Amount in the smallest currency unit' });
const Currency = Type.String({ pattern: '^[A-Z]{3}$', description: 'ISO 4217 code, e.g. EUR' });
export const InvoiceStatus = Type.Union([Type.Literal('draft'), Type.Literal('issued'), Type.Literal('paid'), Type.Literal('void')]);

/** 202 of `GET /invoices/{id}/document`: issued, its document not rendered yet (the job is queued or running). */
export const DocumentPending = Type.Object(
  {
    invoice_id: Uuid,
    status: Type.Literal('rendering', { description: 'The rendering job is queued or running; ask again after Retry-After seconds' }),
    issued_at: Timestamp,
  },
  { ...strict, description: 'The document is being rendered' },
);

export const IdParams = Type.Object({ id: Uuid }, strict);
export const ItemParams = Type.Object({ id: Uuid, itemId: Uuid }, strict);
export const KeyParams = Type.Object({ id: Uuid, keyId: Uuid }, strict);
/** Routes without query parameters refuse any (a `tenant_id` is an error on every route, not ignored on some). */
export const NoQuery = Type.Object({}, strict);

export const ErrorResponse = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.String({ description: 'Stable error code (docs/errors.md)' }),
        message: Type.String(),
        details: Type.Object({}, { additionalProperties: true, description: 'field (the request field to fix), location, and facts of the code' }),
      },
      strict,
    ),
  },
  { ...strict, description: 'Every error response has this shape' },
);

const pageQuery = {
  limit: Type.Integer({ minimum: 1, maximum: 100, default: 20 }),
  cursor: Type.String({ minLength: 1, maxLength: 512, description: 'next_cursor of the previous page, unchanged' }),
  order: Type.Union([Type.Literal('asc'), Type.Literal('desc')], { default: 'desc' }),
};

export const Page = <T extends TSchema>(item: T) =>
  Type.Object({ data: Type.Array(item), next_cursor: Nullable(Type.String({ description: 'Pass as ?cursor= for the next page; null on the last page' })) }, strict);

// ---- customers ----
const Email = Type.String({ minLength: 3, maxLength: 320, pattern: '^[^@\\s\\u0000]+@[^@\\s\\u0000]+$' });
const Text = (min: number, max: number, description?: string) => Type.String({ minLength: min, maxLength: max, pattern: NO_NUL, ...(description ? { description } : {}) });
export const Customer = Type.Object({ id: Uuid, name: Type.String(), email: Nullable(Type.String()), created_at: Timestamp, updated_at: Timestamp }, strict);
export const CustomerCreate = Type.Object({ name: Text(1, 200), email: Type.Optional(Nullable(Email)) }, strict);
export const CustomerPatch = Type.Object(
  { name: Type.Optional(Text(1, 200)), email: Type.Optional(Nullable(Email)) },
  { ...strict, minProperties: 1 },
);
export const CustomerListQuery = Type.Object(
  {
    limit: Type.Optional(pageQuery.limit),
    cursor: Type.Optional(pageQuery.cursor),
    order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')], { default: 'asc' })),
    sort: Type.Optional(Type.Union([Type.Literal('created_at'), Type.Literal('name')], { default: 'created_at' })),
    email: Type.Optional(Email),
  },
  strict,
);

// ---- invoices and line items ----
export const LineItem = Type.Object({
  id: Uuid,
  invoice_id: Uuid,
  position: Type.Integer(),
  description: Type.String(),
  quantity: Type.Integer(),
  unit_amount_cents: Type.Integer(),
  amount_cents: Type.Integer(),
  created_at: Timestamp,
}, strict);
const lineItemFields = {
  position: Type.Integer({ minimum: 1, maximum: 1000 }),
  description: Text(1, 500),
  quantity: Type.Integer({ minimum: 1, maximum: 1_000_000 }),
  unit_amount_cents: Cents,
};
export const LineItemCreate = Type.Object(
  {
    position: Type.Optional(lineItemFields.position),
    description: lineItemFields.description,
    quantity: lineItemFields.quantity,
    unit_amount_cents: lineItemFields.unit_amount_cents,
  },
  strict,
);
export const LineItemPatch = Type.Object(
  {
    position: Type.Optional(lineItemFields.position),
    description: Type.Optional(lineItemFields.description),
    quantity: Type.Optional(lineItemFields.quantity),
    unit_amount_cents: Type.Optional(lineItemFields.unit_amount_cents),
  },
  { ...strict, minProperties: 1 },
);

export const Invoice = Type.Object({
  id: Uuid,
  customer: Type.String(),
  customer_id: Nullable(Uuid),
  amount_cents: Type.Integer(),
  currency: Type.String(),
  status: InvoiceStatus,
  issued_at: Nullable(Timestamp),
  created_at: Timestamp,
  updated_at: Timestamp,
}, strict);
export const InvoiceWithItems = Type.Composite([Invoice, Type.Object({ line_items: Type.Array(LineItem) })], strict);
const CustomerName = Text(1, 200, 'Customer name as printed on the invoice');
export const InvoiceCreate = Type.Object(
  {
    customer: Type.Optional(CustomerName),
    customer_id: Type.Optional(Nullable(Uuid)),
    amount_cents: Type.Optional(Cents),
    currency: Type.Optional(Currency),
    status: Type.Optional(Type.Union([Type.Literal('draft'), Type.Literal('issued')])),
    issued_at: Type.Optional(Timestamp),
    line_items: Type.Optional(Type.Array(LineItemCreate, { maxItems: 200 })),
  },
  // A printed name, a customer of the tenant, or both: the service checks it; the document (service/openapi.ts)
  // publishes it as two alternatives that generated clients type.
  strict,
);
export const InvoicePatch = Type.Object(
  {
    customer: Type.Optional(CustomerName),
    customer_id: Type.Optional(Nullable(Uuid)),
    amount_cents: Type.Optional(Cents),
    currency: Type.Optional(Currency),
    status: Type.Optional(InvoiceStatus),
    issued_at: Type.Optional(Timestamp),
  },
  { ...strict, minProperties: 1 },
);
export const InvoiceListQuery = Type.Object(
  {
    limit: Type.Optional(pageQuery.limit),
    cursor: Type.Optional(pageQuery.cursor),
    order: Type.Optional(pageQuery.order),
    sort: Type.Optional(Type.Union([Type.Literal('created_at'), Type.Literal('amount_cents')], { default: 'created_at' })),
    status: Type.Optional(InvoiceStatus),
    customer_id: Type.Optional(Uuid),
    customer: Type.Optional(CustomerName),
    issued_from: Type.Optional(Type.String({ format: 'date-time', description: 'issued_at >= this' })),
    issued_to: Type.Optional(Type.String({ format: 'date-time', description: 'issued_at < this' })),
  },
  strict,
);
export const LineItemListQuery = Type.Object(
  {
    limit: Type.Optional(pageQuery.limit),
    cursor: Type.Optional(pageQuery.cursor),
    order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')], { default: 'asc' })),
  },
  strict,
);

export const Health = Type.Object({ status: Type.Union([Type.Literal('ok'), Type.Literal('ready')]) }, strict);

// ---- admin ----
export const TenantStatus = Type.Union([Type.Literal('active'), Type.Literal('suspended'), Type.Literal('deleted')]);
export const Placement = Type.Union([Type.Literal('shared'), Type.Literal('dedicated')], { description: 'shared: rows in the hash buckets; dedicated: its own partition of every partitioned table' });
const TenantPlacement = Type.Union([Type.Literal('shared'), Type.Literal('dedicated'), Type.Literal('mixed')], {
  description: 'Where its rows are (read from the catalog): shared, dedicated, or mixed while a table added after its move is still shared',
});
export const Tenant = Type.Object({ id: Uuid, slug: Type.String(), name: Type.String(), status: TenantStatus, placement: TenantPlacement, created_at: Timestamp }, strict);
export const TenantCreate = Type.Object(
  {
    slug: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'Used as subdomain; reserved names (www, admin, api, ...) are refused' }),
    name: Text(1, 200),
    id: Type.Optional(Type.String({ pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$' })),
    placement: Type.Optional(Placement),
  },
  strict,
);
export const TenantListQuery = Type.Object(
  {
    status: Type.Optional(TenantStatus),
    limit: Type.Optional(pageQuery.limit),
    cursor: Type.Optional(pageQuery.cursor),
  },
  strict,
);
export const TenantDeleteQuery = Type.Object({ confirm: Type.String({ minLength: 1, maxLength: 63, description: "The tenant's slug, repeated: deleting is irreversible" }) }, strict);
export const TenantDeleted = Type.Object({
  tenant: Tenant,
  rows_deleted: Type.Integer({ minimum: 0 }),
  dropped_partitions: Type.Array(Type.String()),
}, strict);
export const PageOnlyQuery = Type.Object({ limit: Type.Optional(pageQuery.limit), cursor: Type.Optional(pageQuery.cursor) }, strict);
export const ApiKey = Type.Object({ id: Uuid, name: Type.String(), created_at: Timestamp, revoked_at: Nullable(Timestamp) }, { ...strict, title: 'ApiKey' });
export const CreatedApiKey = Type.Composite([ApiKey, Type.Object({ key: Type.String({ description: 'Shown once; only its hash is stored' }) })], strict);
export const ApiKeyCreate = Type.Object({ name: Text(1, 200) }, { ...strict, title: 'ApiKeyCreate' });
export const AdminToken = Type.Object({ id: Uuid, name: Type.String(), created_at: Timestamp, revoked_at: Nullable(Timestamp) }, { ...strict, title: 'AdminToken' });
export const CreatedAdminToken = Type.Composite([AdminToken, Type.Object({ token: Type.String({ description: 'Shown once; only its hash is stored' }) })], strict);
export const AdminTokenCreate = Type.Object({ name: Text(1, 200) }, { ...strict, title: 'AdminTokenCreate' });
export const TokenParams = Type.Object({ tokenId: Uuid }, strict);

// ---- lifecycle jobs ----
export const TenantMove = Type.Object({ to: Placement }, { ...strict, title: 'TenantMove' });
export const TenantImportQuery = Type.Object(
  {
    slug: Type.String({ pattern: '^[a-z0-9][a-z0-9-]{0,62}$', description: 'Slug of the NEW tenant the export becomes' }),
    name: Type.Optional(Text(1, 200)),
    placement: Type.Optional(Placement),
  },
  strict,
);
export const JobParams = Type.Object({ jobId: Uuid }, strict);
export const Job = Type.Object(
  {
    id: Uuid,
    kind: Type.Union([Type.Literal('move'), Type.Literal('export'), Type.Literal('import')]),
    tenant_id: Uuid,
    status: Type.Union([Type.Literal('running'), Type.Literal('succeeded'), Type.Literal('failed')]),
    progress: Nullable(
      Type.Object(
        { phase: Type.String(), table: Nullable(Type.String()), done: Type.Integer({ minimum: 0 }), total: Nullable(Type.Integer({ minimum: 0 })) },
        { ...strict, description: 'The last progress event of the operation' },
      ),
    ),
    result: Nullable(Type.Object({}, { additionalProperties: true, description: 'What the operation did (see docs/service.md); null until it succeeded' })),
    error: Nullable(Type.Object({ code: Type.String(), message: Type.String() }, { ...strict, description: 'Why it failed (an error code of docs/errors.md)' })),
    created_at: Timestamp,
    finished_at: Nullable(Timestamp),
  },
  { ...strict, title: 'Job' },
);
