import { quoteLiteral } from '../schema/ddl.ts';
import { qi } from './tenant-set.ts';

/**
 * Confirmation queries: each returns one row with a boolean `fixed`, false while the hole is there and true once
 * the fix is applied (or the object is gone). They read the catalog only, so any role can run them.
 */
const lit = quoteLiteral;

/** `cond` over `pg_class c` for the relation (true when it no longer exists). */
export const confirmRel = (r: { schema: string; name: string }, cond: string) =>
  `SELECT coalesce((SELECT ${cond} FROM pg_class c WHERE c.oid = to_regclass(${lit(qi(r))})), true) AS fixed`;

/** The role no longer holds any of `privs` on the relation. */
export const confirmNoTablePrivilege = (role: string, r: { schema: string; name: string }, privs: readonly string[]) =>
  `SELECT coalesce(NOT (${privs.map((p) => `has_table_privilege(${lit(role)}, to_regclass(${lit(qi(r))}), ${lit(p)})`).join(' OR ')}), true) AS fixed`;

/** `cond` over `pg_roles r` for the role (true when it no longer exists). */
export const confirmRole = (role: string, cond: string) => `SELECT coalesce((SELECT ${cond} FROM pg_roles r WHERE r.rolname = ${lit(role)}), true) AS fixed`;

/** `query` returns no row. */
export const confirmNone = (query: string) => `SELECT NOT EXISTS (${query}) AS fixed`;

/** `cond` over `pg_proc p` for the function (true when it no longer exists). */
export const confirmFunction = (signature: string, cond: string) =>
  `SELECT coalesce((SELECT ${cond} FROM pg_proc p WHERE p.oid = to_regprocedure(${lit(signature)})), true) AS fixed`;

/** The policy no longer has this USING / WITH CHECK text (it was dropped or rewritten). */
export const confirmPolicyChanged = (r: { schema: string; name: string }, policy: string, qual: string | null, check: string | null) =>
  confirmNone(
    `SELECT 1 FROM pg_policy p WHERE p.polrelid = to_regclass(${lit(qi(r))}) AND p.polname = ${lit(policy)}` +
      ` AND pg_get_expr(p.polqual, p.polrelid) IS NOT DISTINCT FROM ${qual === null ? 'NULL' : lit(qual)}` +
      ` AND pg_get_expr(p.polwithcheck, p.polrelid) IS NOT DISTINCT FROM ${check === null ? 'NULL' : lit(check)}`,
  );

/** `query` returns at least one row. */
export const confirmSome = (query: string) => `SELECT EXISTS (${query}) AS fixed`;
