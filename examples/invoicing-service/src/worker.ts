/**
 * `npm run worker`: the document worker alone (for `npm start` with TENANTWALL_WORKER=off, or more workers). It
 * connects with DATABASE_URL (the owner: graphile-worker's queue and the liveness locks of crashed-worker recovery,
 * docs/jobs.md) and runs each job in its tenant's scope. Run the migrations first (`npm start` does).
 */
import { Tenantwall } from 'tenantwall';
import { startDocumentWorker } from './documents.ts';
import { serviceGuard } from './guard.ts';
import { schema } from './schema.ts';
import { stopOnSignals } from './shutdown.ts';

if (!process.env.DATABASE_URL) {
  // The embedded PostgreSQL belongs to `npm start`, which runs the worker in its own process already.
  console.error('npm run worker needs DATABASE_URL (the owner URL the service was migrated with); with the embedded default, npm start runs the worker.');
  process.exit(1);
}
const guardOff = process.env.TENANTWALL_GUARD === 'off';
const db = await Tenantwall.connect({ schema, ...(guardOff ? {} : { guard: serviceGuard() }) });
const worker = await startDocumentWorker(db, { concurrency: Number(process.env.TENANTWALL_WORKER_CONCURRENCY ?? 2) });
console.log('Document worker running (SIGTERM or SIGINT stops it after the running jobs).');

stopOnSignals('stopping the worker', [() => worker.stop(), () => db.close()]);
