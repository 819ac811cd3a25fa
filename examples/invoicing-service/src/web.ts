/**
 * `npm run web`: the web process of a split deployment, with the application role only (docs/credentials.md,
 * "The reference service without the owner"). It connects with TENANTWALL_APP_DATABASE_URL and must not be given
 * DATABASE_URL; it serves the tenant routes, health, the OpenAPI document and /metrics itself, and relays the admin
 * API and the console to an operator process (`npm run operator`, with DATABASE_URL and the same
 * TENANTWALL_ADMIN_TOKEN), which also runs the migrations, the document worker and the webhook relay.
 */
import { Metering, Tenantwall } from 'tenantwall';
import { buildApp } from './app.ts';
import { serviceGuard } from './guard.ts';
import { meteringSpec } from './metering.ts';
import { schema } from './schema.ts';
import { stopOnSignals } from './shutdown.ts';

const appUrl = process.env.TENANTWALL_APP_DATABASE_URL;
const adminToken = process.env.TENANTWALL_ADMIN_TOKEN;
if (!appUrl || process.env.DATABASE_URL) {
  console.error('npm run web needs TENANTWALL_APP_DATABASE_URL (the application role) and no DATABASE_URL: the owner belongs to npm run operator.');
  process.exit(1);
}
if (!adminToken) {
  console.error('npm run web needs TENANTWALL_ADMIN_TOKEN, the one the operator has (it guards /metrics here).');
  process.exit(1);
}
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? '127.0.0.1';
const guardOff = process.env.TENANTWALL_GUARD === 'off';
const db = await Tenantwall.connect({ schema, appDatabaseUrl: appUrl, ...(guardOff ? {} : { guard: serviceGuard() }) });
const metering = new Metering(db, { spec: meteringSpec });
const app = await buildApp({ db, adminToken, logger: { level: process.env.LOG_LEVEL ?? 'info' }, metering });
await app.listen({ port, host });
console.log(`
tenantwall invoicing API (web process, application role ${db.options.appRole} only) on http://${host}:${port}
Admin API and console: relayed to an operator process (npm run operator with DATABASE_URL); 503 operator_unavailable while none runs.
`);

stopOnSignals('shutting down', [() => app.close(), () => metering.close(), () => db.close()]);
