import pg from 'pg';
import type { PoolerMode } from '../config/options.ts';
import { TenantwallError } from '../errors.ts';

/** How `pooler` was chosen: given as an option, or detected by a probe connection (`pooler: 'auto'`). */
export interface PoolerDetection {
  readonly mode: PoolerMode;
  readonly source: 'option' | 'detected';
  /** What the probe saw (detected only): the process id the connection announced and the server's. */
  readonly evidence?: string | undefined;
}

/**
 * Tells a pooler from a direct connection with one probe connection of the application role. PostgreSQL
 * announces the serving backend's process id in BackendKeyData at startup, so on a direct connection it equals
 * `pg_backend_pid()`. A pooler that shares server connections between clients cannot announce a server's process
 * id (the server connection changes from one transaction to the next): PgBouncer, in every mode and version,
 * makes up its own cancel key. A difference therefore means "behind a pooler"; tenantwall then takes the
 * transaction-mode path, which is correct in session mode too (docs/poolers.md#detection).
 */
export async function detectPooler(appUrl: string, connectTimeoutMs: number): Promise<PoolerDetection> {
  // No startup parameters: PgBouncer refuses the ones it does not track.
  const client = new pg.Client({ connectionString: appUrl, connectionTimeoutMillis: connectTimeoutMs });
  client.on('error', () => undefined);
  await client.connect();
  try {
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const announced = (client as unknown as { processID?: number | null }).processID;
    const server = rows[0]?.pid;
    const evidence = `the connection announced process id ${String(announced)}, pg_backend_pid() is ${String(server)}`;
    return { mode: announced === server ? 'none' : 'transaction', source: 'detected', evidence };
  } finally {
    await client.end().catch(() => undefined);
  }
}

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
    `The application connection goes through a pooler that refuses the startup parameter ${m[1]} (PgBouncer?): set pooler: 'transaction' (TENANTWALL_POOLER=transaction) so tenantwall sends none and uses unnamed statements, or pooler: 'auto' to detect it.`,
    { cause: err, details: { field: 'pooler' } },
  );
}
