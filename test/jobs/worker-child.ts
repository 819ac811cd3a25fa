/**
 * A worker process for the crash test: runs task `crashy`, prints `started <job> <tenant> <attempt>` when a job
 * begins and never finishes the first attempt (the test kills this process with SIGKILL mid-job).
 * Env: TW_JOBS_DATABASE_URL (owner URL of the test database).
 */
import { Tenantwall } from '../../src/index.ts';
import { startTenantWorker } from '../../src/jobs/index.ts';
import { jobsSchema } from './fixture.ts';

const db = await Tenantwall.connect({ schema: jobsSchema, databaseUrl: process.env.TW_JOBS_DATABASE_URL, manageRoles: false });
await startTenantWorker(db, {
  concurrency: 1,
  pollIntervalMs: 200,
  tasks: {
    crashy: async (_payload, ctx) => {
      const { rows } = await ctx.scope.query<{ t: string }>(`SELECT current_setting('${db.options.settingName}', true) AS t`);
      process.stdout.write(`started ${ctx.jobId} ${rows[0]?.t} ${ctx.attempt}\n`);
      await new Promise(() => undefined); // mid-job forever: only SIGKILL ends this attempt
    },
  },
});
process.stdout.write('ready\n');
