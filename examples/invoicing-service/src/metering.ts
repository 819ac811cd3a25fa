/**
 * Metering of the invoicing service (tenantwall metering, docs/metering.md): meters, plans, and which routes
 * consume which quota. Everything metering-related the service does is declared here; app.ts registers the
 * plugin when a Metering instance is passed, schema.ts adds the metering migration.
 */
import type { MeteringSpec } from 'tenantwall';

export const meteringSpec: MeteringSpec = {
  meters: [
    { name: 'invoices.created', aggregation: 'count', description: 'Invoices admitted by the invoices quota' },
    { name: 'rows.created', aggregation: 'count', description: 'Rows created through the API, property "table"' },
    // The one meter tenants may write (POST /usage/events): the others are the server's own and bill from them.
    { name: 'reports.exported', aggregation: 'count', source: 'client', description: 'Reports a tenant exported from its own systems' },
  ],
  plans: {
    free: {
      rateLimits: [
        { scope: 'tenant', per: 'second', limit: 50 },
        { scope: 'apiKey', per: 'minute', limit: 1200 },
      ],
      quotas: { invoices: { meter: 'invoices.created', limit: 100, period: 'month', enforcement: 'hard' } },
    },
    pro: {
      rateLimits: [
        { scope: 'tenant', per: 'second', limit: 1000 },
        { scope: 'apiKey', per: 'minute', limit: 30_000 },
      ],
      quotas: { invoices: { meter: 'invoices.created', limit: 10_000, period: 'month', enforcement: 'soft' } },
    },
  },
  defaultPlan: 'free',
};

export const routeQuotas = { 'POST /invoices': 'invoices' } as const;

export const createdRows = {
  'POST /invoices': 'invoices',
  'POST /customers': 'customers',
  'POST /invoices/:id/line-items': 'invoice_line_items',
} as const;
