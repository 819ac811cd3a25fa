import { CITUS_RULES } from './citus-rules.ts';
import type { RuleInfo, Severity } from './types.ts';

function r(id: string, severity: Severity, title: string, why: string): RuleInfo {
  return Object.freeze({ id, severity, title, why });
}

/**
 * Catalog rules of `tenantwall audit`. Ids are stable: exception files and CI baselines refer to them, so an id is
 * never renamed or reused. docs/audit.md documents each one.
 */
export const AUDIT_RULES: readonly RuleInfo[] = Object.freeze([
  // configuration
  r('no-tenant-tables', 'info', 'No tenant table found', 'Nothing has the tenant column, so nothing was checked: the column name or table list is probably wrong.'),
  r('tenant-table-not-found', 'error', 'Listed tenant table does not exist', 'A table named in the tenant table list is missing, so its isolation cannot be checked.'),
  r('tenant-column-missing', 'error', 'Listed tenant table has no tenant column', 'Rows without a tenant column cannot be isolated by a tenant policy.'),
  // row-level security on tenant tables
  r('rls-disabled', 'error', 'Row-level security is not enabled', 'Without ENABLE ROW LEVEL SECURITY the policies are ignored and every tenant sees every row.'),
  r('rls-not-forced', 'error', 'Row-level security is not forced', 'The table owner bypasses RLS unless FORCE is set; any connection or SECURITY DEFINER code running as the owner sees all tenants.'),
  r('rls-no-policy', 'error', 'Tenant table has no policy', 'RLS without a policy denies everything to the application, so the usual "fix" is to disable RLS or add a permissive policy in a hurry; the tenant policy must exist.'),
  r('partition-rls-disabled', 'error', 'Partition without row-level security', 'Policies are per table: a query that names the partition directly is not filtered by the parent\'s policies.'),
  r('partition-rls-not-forced', 'warn', 'Partition with row-level security not forced', 'The owner reading the partition directly bypasses its policies.'),
  r('partition-no-policy', 'error', 'Partition without policy', 'A query that names the partition directly is checked against the partition\'s own policies, not the parent\'s.'),
  // policies
  r('policy-always-true', 'error', 'Policy is always true', 'Permissive policies are OR-ed: one that is always true lets every tenant see (or write) every row.'),
  r('policy-no-tenant-setting', 'error', 'Policy does not compare the tenant column with the tenant setting', 'A policy that does not bind the tenant column to the per-transaction tenant setting does not isolate tenants.'),
  r('policy-permissive-or-bypass', 'error', 'Permissive policies OR into a bypass', 'Permissive policies are combined with OR: any branch that does not require tenant = setting lets rows of other tenants through.'),
  r('policy-missing-with-check', 'warn', 'Write policy without WITH CHECK', 'Without an explicit WITH CHECK, writes are checked against USING (FOR ALL/UPDATE) or refused (FOR INSERT); an explicit WITH CHECK on the tenant makes the write rule visible and keeps it right when USING changes.'),
  r('policy-per-row-call', 'warn', 'Policy calls a function per row', 'A function call not wrapped in a sub-select is evaluated for every row instead of once per statement (an InitPlan); on large tables that is slow, and slow policies get "fixed" by disabling them.'),
  r('policy-not-for-app-role', 'warn', 'No policy applies to the application role', 'Policies exist but none is granted to the application role (TO ...), so it sees nothing: usually a typo in the role list.'),
  // the application role
  r('app-role-missing', 'error', 'Application role does not exist', 'The role the application connects as could not be found, so none of the role checks could run.'),
  r('app-role-superuser', 'error', 'Application role is superuser', 'Superusers bypass row-level security entirely.'),
  r('app-role-bypassrls', 'error', 'Application role has BYPASSRLS', 'BYPASSRLS roles are never subject to row-level security.'),
  r('app-role-replication', 'error', 'Application role has REPLICATION', 'A replication role can stream every row of every tenant through a replication slot, outside of RLS.'),
  r('app-role-server-files', 'error', 'Application role can read or write server files', 'pg_read_server_files / pg_write_server_files / pg_execute_server_program reach the data files and COPY to programs, outside of RLS.'),
  r('app-role-member-of-privileged', 'error', 'Application role can become a superuser or BYPASSRLS role', 'Membership lets the application SET ROLE to a role that bypasses RLS.'),
  r('app-role-owns-tenant-table', 'error', 'Application role owns a tenant table', 'The owner can disable or drop the policies and bypasses RLS unless FORCE is set.'),
  r('app-role-member-of-owner', 'error', 'Application role is a member of a tenant table owner', 'Through the membership the application can SET ROLE to the owner and alter or disable the policies.'),
  r('app-role-createrole', 'warn', 'Application role has CREATEROLE', 'CREATEROLE can create and grant roles; the application should not manage roles.'),
  r('app-role-owns-objects', 'warn', 'Application role owns database objects', 'The application role should own nothing: owners can replace functions, views and tables that other code trusts.'),
  // grants
  r('grant-truncate', 'error', 'Application role may TRUNCATE a tenant table', 'TRUNCATE ignores row-level security: one call empties the table for every tenant.'),
  r('grant-references', 'warn', 'Application role has REFERENCES on a tenant table', 'REFERENCES lets the role create foreign keys to the table, whose checks ignore RLS: an existence oracle on other tenants\' keys.'),
  r('grant-trigger', 'error', 'Application role may create triggers on a tenant table', 'A trigger function sees the rows of every tenant\'s writes, outside of RLS.'),
  r('grant-public', 'warn', 'Tenant table privileges granted to PUBLIC', 'Every role, present and future, gets these privileges; only the application role should.'),
  // objects around tenant tables
  r('view-no-security-invoker', 'error', 'View over tenant tables without security_invoker', 'A view runs with its owner\'s rights; when the owner is superuser, BYPASSRLS or exempt owner, it returns every tenant\'s rows.'),
  r('matview-over-tenant', 'error', 'Materialized view over tenant tables', 'Materialized views have no row-level security: they hold a copy of every tenant\'s rows.'),
  r('function-definer-reads-tenant', 'error', 'SECURITY DEFINER function reads tenant tables', 'It runs with its owner\'s rights, so RLS is bypassed when the owner is superuser, BYPASSRLS or the exempt table owner.'),
  r('function-definer-search-path', 'warn', 'SECURITY DEFINER function with a mutable search_path', 'A caller can put objects earlier on the search_path and have them run with the owner\'s rights.'),
  r('foreign-table', 'warn', 'Foreign table', 'Row-level security cannot be enabled on foreign tables; the remote side must isolate tenants.'),
  r('rule-on-tenant-table', 'warn', 'Rewrite rule on a tenant table', 'Rule actions run with the table owner\'s rights and can copy rows elsewhere, outside of the caller\'s RLS.'),
  r('publication-tenant-table', 'info', 'Tenant table published for logical replication', 'Subscribers receive every tenant\'s rows; RLS does not filter replication.'),
  // keys and indexes
  r('tenant-column-nullable', 'error', 'Tenant column is nullable', 'A row without tenant belongs to nobody and compares NULL with every tenant; it cannot be isolated or deleted with its tenant.'),
  r('pk-not-tenant-led', 'error', 'Primary key not led by the tenant column', 'Uniqueness is checked across all tenants and ignores RLS: inserting another tenant\'s key fails and reveals that it exists. Composite keys (tenant_id, id) also enable composite foreign keys.'),
  r('unique-not-tenant-led', 'error', 'Unique constraint not led by the tenant column', 'Unique checks ignore RLS: a duplicate-key error reveals another tenant\'s value (e-mail, invoice number...).'),
  r('unique-index-not-tenant-led', 'error', 'Unique index not led by the tenant column', 'Unique checks ignore RLS: a duplicate-key error reveals another tenant\'s value.'),
  r('fk-without-tenant', 'error', 'Foreign key between tenant tables without the tenant column', 'Referential checks ignore RLS: a row can point at another tenant\'s row, and the error/success is an existence oracle.'),
  r('no-tenant-index', 'warn', 'No index led by the tenant column', 'Every query filters on the tenant; without an index led by it each one scans the table, and slow isolation gets switched off.'),
  r('sequence-shared', 'warn', 'Sequence shared by all tenants', 'Ids drawn from one sequence for all tenants are guessable and reveal other tenants\' activity (how many invoices were created since).'),
  // settings, schemas
  r('setting-role-default', 'error', 'Role default for the tenant setting', 'ALTER ROLE ... SET gives every new session a tenant: queries that forgot to set one run as that tenant instead of failing closed.'),
  r('setting-database-default', 'error', 'Database default for the tenant setting', 'ALTER DATABASE ... SET gives every session a tenant: queries that forgot to set one run as that tenant instead of failing closed.'),
  r('schema-public-create', 'warn', 'Application role may CREATE in schema public', 'It can plant functions and operators that shadow the ones policies and SECURITY DEFINER code call, and create tables referencing tenant keys.'),
  r('schema-create', 'warn', 'Application role may CREATE in a schema', 'It can plant objects that shadow the ones other code resolves through the search_path.'),
]);

/** Attacks of `tenantwall verify`; a finding means the attack succeeded. */
export const VERIFY_ATTACKS: readonly RuleInfo[] = Object.freeze([
  r('attack-read-cross-tenant', 'error', 'Read another tenant\'s rows', 'With tenant A set, rows of tenant B were returned (plainly, or with row_security = off).'),
  r('attack-update-cross-tenant', 'error', 'Update another tenant\'s rows', 'With tenant A set, an UPDATE without WHERE changed rows of tenant B.'),
  r('attack-delete-cross-tenant', 'error', 'Delete another tenant\'s rows', 'With tenant A set, a DELETE without WHERE removed rows of tenant B.'),
  r('attack-insert-cross-tenant', 'error', 'Insert a row for another tenant', 'With tenant A set, a row with tenant B was accepted.'),
  r('attack-update-move-tenant', 'error', 'Move a row to another tenant', 'With tenant A set, one of A\'s rows could be re-assigned to tenant B.'),
  r('attack-no-tenant-setting', 'error', 'Read with no tenant set', 'With no tenant set (fresh transaction, RESET, or empty value) rows were returned instead of none.'),
  r('attack-unique-probe', 'error', 'Existence leak through a unique constraint', 'Inserting tenant B\'s key as tenant A raised a duplicate-key error: A learns that B has that value.'),
  r('attack-fk-probe', 'error', 'Existence leak through a foreign key', 'As tenant A, a row referencing tenant B\'s row was accepted while a random key was refused.'),
  r('attack-truncate', 'error', 'TRUNCATE a tenant table', 'The application role emptied the table for all tenants (rolled back).'),
  r('attack-trigger', 'error', 'Create a trigger on a tenant table', 'The application role attached a trigger, which would see every tenant\'s writes.'),
  r('attack-ddl', 'error', 'Disable the policies', 'The application role could alter the table\'s row-level security (it owns the table or can act as its owner).'),
  r('attack-set-role', 'error', 'Escape through SET ROLE', 'The application role switched to another role and read tenant B\'s rows (directly, or after turning the table\'s RLS off as that role).'),
  r('attack-view-read', 'error', 'Read another tenant\'s rows through a view', 'A view showed tenant B\'s data to tenant A.'),
  r('attack-function-read', 'error', 'Read another tenant\'s rows through a function', 'A function the application can call returned a result that depends on tenant B\'s data while tenant A was set.'),
]);

const BY_ID = new Map<string, RuleInfo>([...AUDIT_RULES, ...VERIFY_ATTACKS, ...CITUS_RULES].map((x) => [x.id, x]));

export function ruleInfo(id: string): RuleInfo {
  const info = BY_ID.get(id);
  if (!info) throw new Error(`unknown rule ${id}`);
  return info;
}
