/**
 * A document worker process for the crash test of test/service/documents.test.ts: the service's worker
 * (startDocumentWorker) whose rendering prints `started <invoice> <tenant> visible|invisible <attempt>` (whether the
 * job's scope sees the invoice: RLS shows it only under the tenant's setting) and then never
 * finishes (the test kills this process with SIGKILL mid-job). Env: TW_DOCS_DATABASE_URL (owner URL).
 */
import { Tenantwall } from '../../src/index.ts';
import { startDocumentWorker } from '../../examples/invoicing-service/src/documents.ts';
import { serviceGuard } from '../../examples/invoicing-service/src/guard.ts';
import { schema } from '../../examples/invoicing-service/src/schema.ts';

const db = await Tenantwall.connect({ schema, guard: serviceGuard(), databaseUrl: process.env.TW_DOCS_DATABASE_URL, manageRoles: false });
await startDocumentWorker(db, {
  concurrency: 1,
  pollIntervalMs: 200,
  beforeRender: async (ctx, invoiceId) => {
    const { rowCount } = await ctx.scope.query('SELECT id FROM invoices WHERE tenant_id = $1 AND id = $2', [ctx.tenantId, invoiceId]);
    process.stdout.write(`started ${invoiceId} ${ctx.tenantId} ${rowCount === 1 ? 'visible' : 'invisible'} ${ctx.attempt}\n`);
    await new Promise(() => undefined); // mid-job forever: only SIGKILL ends this attempt
  },
});
process.stdout.write('ready\n');
