// tenantwall/jobs: tenant-aware background jobs on graphile-worker (peer dependency `graphile-worker`).
export { jobTables, jobsMigrationSql, type JobsMigrationOptions } from './tables.ts';
export { enqueueJob, dangerouslyEnqueueCrossTenantJob, installJobQueue, type EnqueueOptions } from './enqueue.ts';
export {
  startTenantWorker,
  type TenantWorker,
  type TenantWorkerOptions,
  type TenantTaskHandler,
  type TenantJobContext,
  type CrossTenantTaskHandler,
  type CrossTenantJobContext,
} from './worker.ts';
