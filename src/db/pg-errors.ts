import type pg from 'pg';
import { TenantwallError } from '../errors.ts';

const CONNECTION_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EHOSTUNREACH', 'ETIMEDOUT', 'EPIPE', 'EAI_AGAIN']);

/** True for errors that mean the server cannot be reached or the connection died. */
export function isConnectionError(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | undefined;
  if (!e) return false;
  if (e.code !== undefined && CONNECTION_CODES.has(e.code)) return true;
  // FATAL ends the session whatever the code, e.g. PgBouncer's 08P01 "server conn crashed?" when the server
  // connection of a client's transaction died (docs/poolers.md).
  if ((err as { severity?: string }).severity === 'FATAL') return true;
  // 57P01 admin shutdown / terminate_backend, 57P02 crash shutdown, 57P03 cannot connect now, 08xxx connection.
  // 28xxx: authentication failed, which also means no usable connection. 08P01 (protocol violation, e.g. a
  // wrong parameter count) is the caller's mistake on a healthy connection.
  if (e.code !== undefined && e.code !== '08P01' && (/^(08|28)/.test(e.code) || /^57P0[123]$/.test(e.code))) return true;
  const m = e.message ?? '';
  return /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connect ECONNREFUSED/.test(m);
}

/**
 * Maps the database errors tenantwall gives a meaning to; other errors (unique violations, ...) pass through
 * unchanged so applications can handle them.
 */
export function mapPgError(err: unknown): unknown {
  if (err instanceof TenantwallError) return err;
  const e = err as { code?: string; message?: string; constraint?: string; table?: string } | undefined;
  if (!e) return err;
  if (e.code === '57014' && /statement timeout/.test(e.message ?? '')) {
    return new TenantwallError('statement_timeout', 'The statement was cancelled by statement_timeout.', { cause: err });
  }
  if (e.code === '42501' && /row-level security/.test(e.message ?? '')) {
    return new TenantwallError('row_security_violation', `Row-level security refused the write on ${e.table ?? 'a tenant table'}.`, {
      cause: err,
      details: e.table ? { table: e.table } : {},
    });
  }
  if (e.code === '23503' && e.constraint?.endsWith('_tenant_id_fkey') && /is not present in table/.test((err as { detail?: string }).detail ?? '')) {
    return new TenantwallError('tenant_not_found', 'The tenant of this write does not exist in the registry.', { cause: err });
  }
  // 40P01 deadlock_detected, 40001 serialization_failure, 55P03 lock_not_available (a lock_timeout or NOWAIT; a
  // tenant's own lock_timeout limit is mapped before this, by the data path): the statement failed and its
  // transaction can only be rolled back, so running it again is safe. A move's switch locks the tenant's tables,
  // and a request that holds a row of one of them while it waits for another of them is such a victim.
  const conflict = e.code === '40P01' ? 'deadlock detected' : e.code === '40001' ? 'serialization failure' : e.code === '55P03' ? 'lock not available' : undefined;
  if (conflict !== undefined) {
    return new TenantwallError('transaction_conflict', `The transaction was rolled back by PostgreSQL (${conflict}, SQLSTATE ${e.code}); nothing of it was applied.`, {
      cause: err,
      details: { sqlstate: e.code },
    });
  }
  if (isConnectionError(err)) {
    return new TenantwallError('database_unreachable', `The database connection failed: ${e.message ?? String(err)}.`, { cause: err });
  }
  return err;
}

/** pg-pool's error for a checkout that waited in its queue (every slot taken) for connectionTimeoutMillis. */
const QUEUE_TIMEOUT = /timeout exceeded when trying to connect/;

const watched = new WeakMap<pg.Pool, { busy: number; readonly max: number }>();

/**
 * Counts the clients of `pool` that are checked out (between pg-pool's `acquire` and `release` events), so that
 * `mapCheckoutError` can tell a pool whose every connection stayed in use from a server that does not answer:
 * pg-pool gives both the same queue timeout while its slots are taken by connections still being opened.
 */
export function watchPool(pool: pg.Pool, max: number): void {
  const w = { busy: 0, max };
  watched.set(pool, w);
  pool.on('acquire', () => void w.busy++);
  pool.on('release', () => void w.busy--);
}

/**
 * `mapPgError` for an error of a checkout from `pool` (or of `pool.query`): a queue timeout while every
 * connection of a watched pool was checked out is `pool_exhausted`, not `database_unreachable`.
 */
export function mapCheckoutError(err: unknown, pool: pg.Pool): unknown {
  const w = watched.get(pool);
  if (w !== undefined && w.busy >= w.max && QUEUE_TIMEOUT.test((err as { message?: string } | undefined)?.message ?? '')) {
    return new TenantwallError('pool_exhausted', `All ${w.max} connections of the pool stayed in use while this statement waited for one (connectTimeoutMs); nothing was sent.`, {
      cause: err,
      details: { poolSize: w.max },
    });
  }
  return mapPgError(err);
}
