import type pg from 'pg';
import { TenantwallError } from '../errors.ts';

/**
 * Citus support (docs/scale-out.md). A database with the `citus` extension is a Citus coordinator: the tenant
 * must travel as `SET LOCAL` inside an explicit transaction (the only form Citus forwards to the workers, and
 * only with `citus.propagate_set_commands = 'local'`), and policies must not contain a sub-select.
 */

/** The installed Citus version, or undefined on a plain PostgreSQL. */
export async function detectCitus(pool: pg.Pool | pg.ClientBase): Promise<string | undefined> {
  const { rows } = await pool.query<{ v: string }>(`SELECT extversion AS v FROM pg_extension WHERE extname = 'citus'`);
  return rows[0]?.v;
}

/**
 * Refuses to start when the application role's sessions would not forward `SET LOCAL` to the workers: with
 * `citus.propagate_set_commands = 'none'` (Citus' default) every routed statement runs without a tenant.
 * Checked on an application connection, so per-role and per-database settings count too.
 */
export async function checkCitusSettings(appPool: pg.Pool): Promise<void> {
  const { rows } = await appPool.query<{ v: string | null }>(`SELECT current_setting('citus.propagate_set_commands', true) AS v`);
  const value = rows[0]?.v ?? null;
  if (value !== 'local') {
    throw new TenantwallError(
      'citus_propagation_invalid',
      `Refusing to start: citus.propagate_set_commands is ${JSON.stringify(value)} for the application role on the Citus coordinator; set it to 'local' (ALTER SYSTEM SET citus.propagate_set_commands = 'local'; SELECT pg_reload_conf()), otherwise the tenant setting never reaches the workers and every scoped statement returns nothing.`,
      { details: { setting: 'citus.propagate_set_commands', value } },
    );
  }
}
