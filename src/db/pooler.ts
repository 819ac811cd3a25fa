import { TenantwallError } from '../errors.ts';

/**
 * PgBouncer (and other poolers) refuse startup parameters they do not track, such as `options` (the statement
 * cache's plan_cache_mode) and `statement_timeout`: a sign that `pooler: 'transaction'` is missing. docs/poolers.md.
 */
export function poolerStartupError(err: unknown): TenantwallError | undefined {
  const message = (err as { message?: string } | undefined)?.message ?? '';
  const m = /unsupported startup parameter: (\w+)/.exec(message);
  if (!m) return undefined;
  return new TenantwallError(
    'config_invalid',
    `The application connection goes through a pooler that refuses the startup parameter ${m[1]} (PgBouncer?): set pooler: 'transaction' (TENANTWALL_POOLER=transaction) so tenantwall sends none and uses unnamed statements.`,
    { cause: err, details: { field: 'pooler' } },
  );
}
