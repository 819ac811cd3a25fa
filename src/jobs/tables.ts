import { TenantwallError } from '../errors.ts';
import { tenantTable, type TableDecl } from '../schema/declare.ts';

/**
 * The jobs table: one row per job a tenant enqueued, a tenant table (forced RLS, written by the application role
 * in tenant scope). Its payload never leaves it: the queue entry graphile-worker sees carries only the job's id
 * and tenant, written by the trigger of `jobsMigrationSql` in the same transaction as the row. Tenant export and
 * delete cover it like every other tenant table.
 */
export const jobTables: readonly TableDecl[] = Object.freeze([
  tenantTable({
    name: 'tw_jobs',
    columns: {
      id: { type: 'uuid', default: 'gen_random_uuid()' },
      task: { type: 'text', check: "task ~ '^[A-Za-z0-9_.:-]{1,200}$'" },
      payload: { type: 'jsonb' },
      status: { type: 'text', default: "'queued'", check: "status IN ('queued', 'done')" },
      run_at: { type: 'timestamptz', nullable: true },
      max_attempts: { type: 'integer', nullable: true, check: 'max_attempts BETWEEN 1 AND 32767' },
      created_at: { type: 'timestamptz', default: 'now()' },
      finished_at: { type: 'timestamptz', nullable: true },
    },
    primaryKey: ['id'],
  }),
]);

/** Options of `jobsMigrationSql`. */
export interface JobsMigrationOptions {
  /**
   * How many of one tenant's jobs may run at the same time (default 1). A tenant's jobs are spread over this many
   * graphile-worker queues (`tw:<tenant>:<lane>`), and graphile-worker runs the jobs of one queue one at a time,
   * so a tenant's backlog occupies at most this many workers and the others stay free for other tenants.
   */
  perTenantConcurrency?: number | undefined;
}

/**
 * SQL of the migration that connects `tw_jobs` to graphile-worker (run it after the migration that creates
 * `tw_jobs`; graphile-worker's own schema is installed by `installJobQueue` or the first worker):
 * - an AFTER INSERT trigger that adds the graphile-worker job with `{ tw_job, tenant }` taken from the new row
 *   (RLS's WITH CHECK guarantees that tenant is the scope's), in the enqueuing transaction: a rollback enqueues
 *   nothing;
 * - an AFTER DELETE trigger that removes the queue entry of a deleted row (tenant delete, cancellation).
 * The queue entry's job key is `tw:<tenant>:<id>`: graphile-worker's job keys are unique across the whole queue,
 * and `tw_jobs` ids are unique per tenant only (an imported export keeps them), so a key without the tenant
 * would let one tenant's row replace, or its delete remove, another tenant's queue entry.
 * Both are SECURITY DEFINER functions of the migrating owner: the application role gets no access to
 * graphile-worker's tables, where every tenant's jobs live.
 */
export function jobsMigrationSql(options: JobsMigrationOptions = {}): string {
  const lanes = options.perTenantConcurrency ?? 1;
  if (!Number.isInteger(lanes) || lanes < 1 || lanes > 64) {
    throw new TenantwallError('config_invalid', `perTenantConcurrency must be an integer from 1 to 64, got ${String(lanes)}.`, { details: { field: 'perTenantConcurrency' } });
  }
  return `CREATE OR REPLACE FUNCTION tw_jobs_enqueue() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tw$
BEGIN
  IF NEW.status <> 'queued' THEN RETURN NULL; END IF;
  PERFORM graphile_worker.add_job(
    NEW.task,
    json_build_object('tw_job', NEW.id::text, 'tenant', NEW.tenant_id::text),
    queue_name := 'tw:' || NEW.tenant_id::text || ':' || (abs(hashtext(NEW.id::text)::bigint) % ${lanes})::text,
    run_at := NEW.run_at,
    max_attempts := NEW.max_attempts,
    job_key := 'tw:' || NEW.tenant_id::text || ':' || NEW.id::text);
  RETURN NULL;
END $tw$;
REVOKE ALL ON FUNCTION tw_jobs_enqueue() FROM PUBLIC;
CREATE OR REPLACE FUNCTION tw_jobs_remove() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $tw$
BEGIN
  IF to_regnamespace('graphile_worker') IS NOT NULL THEN
    PERFORM graphile_worker.remove_job('tw:' || OLD.tenant_id::text || ':' || OLD.id::text);
  END IF;
  RETURN NULL;
END $tw$;
REVOKE ALL ON FUNCTION tw_jobs_remove() FROM PUBLIC;
DROP TRIGGER IF EXISTS tw_jobs_enqueue ON tw_jobs;
CREATE TRIGGER tw_jobs_enqueue AFTER INSERT ON tw_jobs FOR EACH ROW EXECUTE FUNCTION tw_jobs_enqueue();
DROP TRIGGER IF EXISTS tw_jobs_remove ON tw_jobs;
CREATE TRIGGER tw_jobs_remove AFTER DELETE ON tw_jobs FOR EACH ROW EXECUTE FUNCTION tw_jobs_remove();
`;
}
