/**
 * `npm start`: the invoicing API with no configuration. Without DATABASE_URL an embedded PostgreSQL keeps its
 * data in .data/postgres; migrations run; the server listens on PORT (default 3000). The statement guard is on
 * unless TENANTWALL_GUARD=off.
 *
 * Demo data: two demo tenants get fresh demo API keys (printed once, the previous demo keys are revoked) only
 * in the database tenantwall created itself (the embedded default), or when asked for with `--seed-demo`
 * (`npm start -- --seed-demo`) or TENANTWALL_SEED_DEMO=1. A database named by DATABASE_URL is never seeded
 * and no tenant key is printed for it otherwise. The first demo tenant is large (DEMO_BIG_INVOICES invoices)
 * and has DEDICATED placement (its own partition of every partitioned table); the other is shared. The banner
 * lists the tenants and where each one is.
 *
 * Background jobs: issuing an invoice enqueues the rendering of its PDF (tenantwall/jobs on graphile-worker). The
 * document worker runs in this process unless TENANTWALL_WORKER=off (then run `npm run worker`, service/worker.ts,
 * as many processes as wanted, with the same DATABASE_URL).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Metering, Tenantwall, type Tenant, createTenant, dedicatedPartitionName, listTenants } from 'tenantwall';
import { buildApp } from './app.ts';
import { startDocumentWorker } from './documents.ts';
import { serviceGuard } from './guard.ts';
import { meteringSpec } from './metering.ts';
import { createCustomer } from './repo/customers.ts';
import { serviceKysely } from './repo/db.ts';
import { createInvoice } from './repo/invoices.ts';
import { HASH_PARTITIONS, migrations, schema } from './schema.ts';
import { stopOnSignals } from './shutdown.ts';

if (!process.env.DATABASE_URL && process.env.TENANTWALL_APP_DATABASE_URL) {
  console.error('TENANTWALL_APP_DATABASE_URL without DATABASE_URL is the web process of a split deployment: start it with npm run web, and the owner side with npm run operator (docs/credentials.md).');
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const DEMO = [
  { slug: 'acme', name: 'Acme Corp', placement: 'dedicated' as const, big: true },
  { slug: 'globex', name: 'Globex Inc', placement: 'shared' as const, big: false },
];
/** Invoices (each with one line item) of the large demo tenant. */
const DEMO_BIG_INVOICES = Number(process.env.TENANTWALL_DEMO_INVOICES ?? 20_000);

console.log(process.env.DATABASE_URL ? 'Connecting to DATABASE_URL ...' : 'Starting the embedded PostgreSQL in .data/postgres (first start takes a few seconds) ...');
// The statement guard verifies every tenant-scoped statement (docs/guard.md); TENANTWALL_GUARD=off turns it off.
const guardOff = process.env.TENANTWALL_GUARD === 'off';
const db = await Tenantwall.connect({ schema, ...(guardOff ? {} : { guard: serviceGuard() }) });
if (guardOff) console.log('TENANTWALL_GUARD=off: statements are not verified by the guard (row-level security still applies).');
const migrated = await db.migrate(migrations);
console.log(`Migrations: ${migrated.applied.length} applied, ${migrated.alreadyApplied} already there.`);

let adminToken = process.env.TENANTWALL_ADMIN_TOKEN;
const generatedToken = !adminToken;
adminToken ??= `adm_${randomBytes(24).toString('base64url')}`;

// Metering: quotas and rate limits per plan, usage at /usage, billing webhooks through the outbox relay.
const metering = new Metering(db, { spec: meteringSpec });
const relay = metering.webhooks.relay();
relay.start((err) => console.error(`webhook relay: ${(err as Error).message}`));

const app = await buildApp({
  db,
  adminToken,
  logger: { level: process.env.LOG_LEVEL ?? 'info' },
  metering,
});

// The document worker (embedded default): renders the PDF of each issued invoice in its tenant's scope.
const embeddedWorker = process.env.TENANTWALL_WORKER !== 'off' && db.citusVersion === undefined;
const worker = embeddedWorker ? await startDocumentWorker(db) : undefined;

async function demoTenant(spec: (typeof DEMO)[number]): Promise<{ tenant: Tenant; key: string }> {
  let tenant = await db.tenants.getBySlug(spec.slug);
  if (!tenant) {
    // A dedicated tenant's partitions are created with it, so its rows go straight into them.
    tenant = (await createTenant(db, { slug: spec.slug, name: spec.name, placement: spec.placement })).tenant;
    const k = serviceKysely(db, tenant.id);
    await k.transaction().execute(async (tx) => {
      const customer = await createCustomer(tx, { name: `${spec.name} Customer`, email: `billing@${spec.slug}.example` });
      await createInvoice(tx, {
        customer_id: customer.id,
        status: 'issued',
        line_items: [
          { description: 'Consulting', quantity: 10, unit_amount_cents: 12_000 },
          { description: 'Support plan', quantity: 1, unit_amount_cents: 4_900 },
        ],
      });
      await createInvoice(tx, { customer: 'Walk-in', amount_cents: 2_500, currency: 'USD' });
    });
    if (spec.big && DEMO_BIG_INVOICES > 0) {
      // Large enough that placement matters: multi-row inserts through the tenant's scope, 1,000 per statement.
      process.stdout.write(`Seeding ${DEMO_BIG_INVOICES} invoices for ${spec.slug} ...`);
      for (let done = 0; done < DEMO_BIG_INVOICES; done += 1000) {
        const n = Math.min(1000, DEMO_BIG_INVOICES - done);
        const rows = Array.from({ length: n }, (_, i) => ({ id: randomUUID(), cents: 1_000 + ((done + i) * 37) % 90_000, i: done + i }));
        await k.transaction().execute(async (tx) => {
          await tx.insertInto('invoices').values(rows.map((r) => ({ id: r.id, customer: `Customer ${r.i % 500}`, amount_cents: r.cents, currency: 'EUR', status: 'draft' as const }))).execute();
          await tx
            .insertInto('invoice_line_items')
            .values(rows.map((r) => ({ invoice_id: r.id, position: 1, description: 'Subscription', quantity: 1, unit_amount_cents: r.cents, amount_cents: r.cents })))
            .execute();
        });
      }
      process.stdout.write(' done.\n');
    }
  }
  if (tenant.status === 'suspended') tenant = await db.tenants.resume(tenant.id);
  // Keys are shown only when created, so every start makes new demo keys and retires the previous ones.
  for (const k of await app.tenantwall.apiKeys.list(tenant.id)) {
    if (k.name === 'demo' && k.revokedAt === null) await app.tenantwall.apiKeys.revoke(tenant.id, k.id);
  }
  const created = await app.tenantwall.apiKeys.create(tenant.id, { name: 'demo' });
  return { tenant, key: created.key };
}

const seedDemo = !process.env.DATABASE_URL || process.argv.includes('--seed-demo') || process.env.TENANTWALL_SEED_DEMO === '1';
const demos = [];
if (seedDemo) for (const spec of DEMO) demos.push(await demoTenant(spec));
await app.listen({ port, host });

const base = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}`;
// Which tenant is where: placement is read from the catalog (dedicated = its own partition of every partitioned table).
const placed = await listTenants(db, { status: 'active', limit: 21 });
const placementLines = placed.length === 0
  ? '  (no tenant yet)'
  : [
      ...placed.slice(0, 20).map(({ tenant: t, placement }) =>
        `  ${t.slug.padEnd(16)} ${placement.padEnd(9)} ${placement === 'dedicated' ? `own partitions (${dedicatedPartitionName('invoices', t.id)}, ...)` : `shared hash buckets (${HASH_PARTITIONS} per table)`}`),
      ...(placed.length > 20 ? ['  ... (GET /admin/tenants lists them all)'] : []),
    ].join('\n');
const placementBlock = `Tenants and their placement:
${placementLines}
Move one: curl -s -X POST ${base}/admin/tenants/<id>/move -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"to":"dedicated"}'`;
const workerLine = embeddedWorker
  ? 'Document worker: running in this process (TENANTWALL_WORKER=off and `npm run worker` to run it apart).'
  : 'Document worker: not in this process (TENANTWALL_WORKER=off): run `npm run worker`, or invoice PDFs stay pending.';
const tokenLine = `Admin token${generatedToken ? ' (generated; set TENANTWALL_ADMIN_TOKEN to choose one)' : ''}:
  ${generatedToken ? adminToken : '(TENANTWALL_ADMIN_TOKEN)'}`;
if (!seedDemo) {
  console.log(`
tenantwall invoicing API on ${base}   (docs: ${base}/docs, OpenAPI: ${base}/openapi.json)

${tokenLine}
${placementBlock}
${workerLine}

No demo data: DATABASE_URL names a database tenantwall did not create (npm start -- --seed-demo adds the demo tenants).
Create a tenant and a key with the admin API:
  curl -s -X POST ${base}/admin/tenants -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"slug":"acme","name":"Acme"}'
  curl -s -X POST ${base}/admin/tenants/<id>/api-keys -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"name":"first"}'
`);
} else {
  const [acme, globex] = demos as [(typeof demos)[number], (typeof demos)[number]];
  console.log(`
tenantwall invoicing API on ${base}   (docs: ${base}/docs, OpenAPI: ${base}/openapi.json)

${tokenLine}
${placementBlock}
${workerLine}

Demo API keys (shown once; a restart makes new ones):
  acme   (${acme.tenant.id}): ${acme.key}
  globex (${globex.tenant.id}): ${globex.key}

Try:
  export ACME='${acme.key}'
  export GLOBEX='${globex.key}'
  export ADMIN='${generatedToken ? adminToken : '$TENANTWALL_ADMIN_TOKEN'}'
  curl -s ${base}/invoices -H "Authorization: Bearer $ACME"
  curl -s ${base}/invoices -H "Authorization: Bearer $GLOBEX"
  curl -s ${base}/customers -H "Authorization: Bearer $ACME"
  curl -s -X POST ${base}/invoices -H "Authorization: Bearer $ACME" -H 'Content-Type: application/json' \\
    -d '{"customer":"Initech","currency":"EUR","line_items":[{"description":"Widgets","quantity":3,"unit_amount_cents":1999}]}'
  curl -s '${base}/invoices?status=issued&sort=amount_cents&order=desc&limit=10' -H "Authorization: Bearer $ACME"
  curl -s -o invoice.pdf -w '%{http_code}\\n' ${base}/invoices/<issued invoice id>/document -H "Authorization: Bearer $ACME"   # 202 while rendering
  curl -s ${base}/admin/tenants -H "Authorization: Bearer $ADMIN"
  curl -s -X POST ${base}/admin/tenants/${globex.tenant.id}/suspend -H "Authorization: Bearer $ADMIN"
  curl -s -X POST ${base}/admin/tenants/${acme.tenant.id}/move -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' -d '{"to":"shared"}'
  curl -s -X POST ${base}/admin/tenants/${globex.tenant.id}/export -H "Authorization: Bearer $ADMIN"   # then GET /admin/jobs/<job id>/download
  curl -s ${base}/readyz
`);
}

stopOnSignals('shutting down', [() => app.close(), worker && (() => worker.stop()), () => relay.stop(), () => metering.close(), () => db.close()]);
