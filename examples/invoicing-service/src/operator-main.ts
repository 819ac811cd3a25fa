/**
 * `npm run operator`: the owner side of a split deployment (docs/credentials.md). It connects with DATABASE_URL,
 * runs the migrations, and runs what needs the owner: the admin requests web processes relay (operator.ts), the
 * document worker (unless TENANTWALL_WORKER=off) and the webhook relay. It listens on no port. Run one or more,
 * with the TENANTWALL_ADMIN_TOKEN the web processes have.
 */
import { Metering, Tenantwall } from 'tenantwall';
import { buildApp } from './app.ts';
import { startDocumentWorker } from './documents.ts';
import { serviceGuard } from './guard.ts';
import { meteringSpec } from './metering.ts';
import { startOperator } from './operator.ts';
import { migrations, schema } from './schema.ts';
import { stopOnSignals } from './shutdown.ts';

const adminToken = process.env.TENANTWALL_ADMIN_TOKEN;
if (!process.env.DATABASE_URL || !adminToken) {
  console.error('npm run operator needs DATABASE_URL (the owner) and TENANTWALL_ADMIN_TOKEN (the one the web processes have).');
  process.exit(1);
}
const guardOff = process.env.TENANTWALL_GUARD === 'off';
const db = await Tenantwall.connect({ schema, ...(guardOff ? {} : { guard: serviceGuard() }) });
const migrated = await db.migrate(migrations);
console.log(`Migrations: ${migrated.applied.length} applied, ${migrated.alreadyApplied} already there.`);
const metering = new Metering(db, { spec: meteringSpec });
const relay = metering.webhooks.relay();
relay.start((err) => console.error(`webhook relay: ${(err as Error).message}`));
const app = await buildApp({ db, adminToken, logger: { level: process.env.LOG_LEVEL ?? 'info' }, metering });
await app.ready();
const worker = process.env.TENANTWALL_WORKER !== 'off' && db.citusVersion === undefined ? await startDocumentWorker(db) : undefined;
const operator = await startOperator(app, db);
console.log(`Operator ${operator.id} running: admin requests of web processes, ${worker ? 'the document worker, ' : ''}the webhook relay.`);

stopOnSignals('stopping the operator after the requests it runs', [
  () => operator.stop(),
  () => app.close(),
  worker && (() => worker.stop()),
  () => relay.stop(),
  () => metering.close(),
  () => db.close(),
]);
