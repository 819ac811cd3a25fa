import { randomUUID } from 'node:crypto';
import { fingerprint, loadModule, normalize } from 'libpg-query';
import type pg from 'pg';
import type { Params, Row, TenantScope, Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { type DdlContext, quoteIdent, tableSql } from '../schema/ddl.ts';
import { defineSchema, globalTable, tenantTable, type TableDecl } from '../schema/declare.ts';
import { TenantId } from '../tenant/tenant-id.ts';

/**
 * Break-glass access: a person (support, on-call) looks at one tenant's data, or explicitly at all tenants',
 * for a stated reason and a bounded time, and every statement is recorded in an append-only access log the
 * tenant can read (its own entries). docs/break-glass.md.
 */

const LOG_COLUMNS = {
  id: { type: 'uuid', default: 'gen_random_uuid()' },
  grant_id: { type: 'uuid' },
  actor: { type: 'text', check: 'length(actor) BETWEEN 1 AND 200' },
  reason: { type: 'text', check: 'length(reason) BETWEEN 1 AND 2000' },
  kind: { type: 'text', check: "kind IN ('open', 'statement', 'failed', 'close')" },
  at: { type: 'timestamptz', default: 'clock_timestamp()' },
  expires_at: { type: 'timestamptz' },
  fingerprint: { type: 'text', nullable: true },
  statement: { type: 'text', nullable: true },
  rows: { type: 'bigint', nullable: true },
  error_code: { type: 'text', nullable: true },
} as const;

/**
 * `tw_access_log`: one tenant's break-glass entries, a tenant table (RLS: a tenant reads its own). The
 * application role may only SELECT and INSERT it. `tw_access_log_all`: entries of all-tenant access, which
 * the application role cannot touch at all. Migrate with `accessLogMigrationSql(ctx)`; declare them in your
 * schema too (`defineSchema({ tables: [...yours, ...accessLogTables] })`) when a guard checks tenant statements.
 */
export const accessLogTables: readonly TableDecl[] = Object.freeze([
  tenantTable({ name: 'tw_access_log', columns: LOG_COLUMNS, indexes: [{ columns: ['at'] }] }),
  globalTable({ name: 'tw_access_log_all', columns: LOG_COLUMNS, appAccess: 'none' }),
]);

/** The access-log tables, with UPDATE, DELETE and TRUNCATE taken from the application role. */
export function accessLogMigrationSql(ctx: DdlContext): string {
  const app = quoteIdent(ctx.appRole);
  // Tables already declared in the application's schema (so the guard knows them) were made by createSchema().
  const missing = accessLogTables.filter((t) => !ctx.schema.tables.some((d) => d.name === t.name));
  const schema = defineSchema({ tables: missing, registryTable: ctx.schema.registryTable, policyForm: ctx.schema.policyForm });
  const tables = missing.map((t) => tableSql(t, { ...ctx, schema })).join('\n');
  return `${tables}
REVOKE UPDATE, DELETE, TRUNCATE ON tw_access_log, tw_access_log_all FROM ${app};
-- Append-only for every role that fires triggers: entries are never changed; whole tenants are deleted by lifecycle.
CREATE FUNCTION tw_access_log_immutable() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'the break-glass access log is append-only (% refused)', TG_OP USING ERRCODE = '42501';
END
$fn$;
CREATE TRIGGER tw_access_log_no_update BEFORE UPDATE ON tw_access_log FOR EACH ROW EXECUTE FUNCTION tw_access_log_immutable();
CREATE TRIGGER tw_access_log_no_truncate BEFORE TRUNCATE ON tw_access_log FOR EACH STATEMENT EXECUTE FUNCTION tw_access_log_immutable();
CREATE TRIGGER tw_access_log_all_no_update BEFORE UPDATE OR DELETE ON tw_access_log_all FOR EACH ROW EXECUTE FUNCTION tw_access_log_immutable();
CREATE TRIGGER tw_access_log_all_no_truncate BEFORE TRUNCATE ON tw_access_log_all FOR EACH STATEMENT EXECUTE FUNCTION tw_access_log_immutable();
`;
}

/** Options of `dangerouslyBreakGlass`: actor, reason, tenant (or `all`), time to live. */
export interface BreakGlassOptions {
  /** Who looks: a person's stable identifier (e-mail, staff id). 1..200 characters. */
  actor: string;
  /** Why: the ticket or incident, shown to the tenant. 1..2000 characters. */
  reason: string;
  /** The one tenant to access, or `'all'` for every tenant (owner connection, logged apart). */
  tenant: TenantId | string | 'all';
  /** How long the handle works, ms: 1 s .. 8 h. */
  ttlMs: number;
}

/** A break-glass grant: scoped queries that are logged, until it expires or is closed. */
export interface BreakGlassHandle {
  /** Identifies this grant in every log entry. */
  readonly id: string;
  readonly tenant: TenantId | 'all';
  readonly expiresAt: Date;
  /** Runs one statement and records it (fingerprint, normalized text, rows) in the same transaction. */
  query<R extends Row = Row>(sql: string, params?: Params): Promise<pg.QueryResult<R>>;
  /** Ends the grant before it expires (recorded). Later queries answer `break_glass_expired`. */
  close(): Promise<void>;
}

const MAX_TTL_MS = 8 * 3600_000;
await loadModule();

function invalid(field: string, why: string): TenantwallError {
  return new TenantwallError('break_glass_invalid', `Break-glass ${field} ${why}.`, { details: { field } });
}

interface Entry {
  kind: 'open' | 'statement' | 'failed' | 'close';
  fingerprint?: string | null;
  statement?: string | null;
  rows?: number | null;
  errorCode?: string | null;
}

const INSERT_COLUMNS = '(grant_id, actor, reason, kind, expires_at, fingerprint, statement, rows, error_code)';

/**
 * Opens audited cross-tenant (or one-tenant) access for a person. A one-tenant handle runs as the application
 * role in that tenant's scope (row-level security and the guard apply: it cannot reach another tenant); an
 * `'all'` handle runs on the owner connection. Either way each statement's log entry is written in the
 * statement's own transaction, so no statement runs unrecorded; a failed statement is recorded after its
 * rollback. The grant itself is recorded when it opens and when it is closed.
 */
export async function dangerouslyBreakGlass(db: Tenantwall, options: BreakGlassOptions): Promise<BreakGlassHandle> {
  const { actor, reason, ttlMs } = options ?? ({} as BreakGlassOptions);
  if (typeof actor !== 'string' || actor.trim().length === 0 || actor.length > 200) throw invalid('actor', 'must name the person (1..200 characters)');
  if (typeof reason !== 'string' || reason.trim().length === 0 || reason.length > 2000) throw invalid('reason', 'must say why (1..2000 characters), e.g. the ticket');
  if (!Number.isInteger(ttlMs) || ttlMs < 1000 || ttlMs > MAX_TTL_MS) throw invalid('ttlMs', `must be an integer number of ms in 1000..${MAX_TTL_MS}`);
  if (options.tenant === undefined) throw invalid('tenant', "must be a tenant id or 'all'");
  const tenant = options.tenant === 'all' ? 'all' : TenantId.parse(options.tenant);
  const id = randomUUID();
  const expiresAt = new Date(Date.now() + ttlMs);
  let closed = false;

  const values = (e: Entry) => [id, actor, reason, e.kind, expiresAt, e.fingerprint ?? null, e.statement ?? null, e.rows ?? null, e.errorCode ?? null];
  const scope: TenantScope | undefined = tenant === 'all' ? undefined : db.forTenant(tenant);
  const record = async (e: Entry, client?: { query: (sql: string, params: unknown[]) => Promise<unknown> }): Promise<void> => {
    if (scope) {
      await (client ?? scope).query(`INSERT INTO tw_access_log (tenant_id, ${INSERT_COLUMNS.slice(1)} VALUES ($10, $1, $2, $3, $4, $5, $6, $7, $8, $9)`, [...values(e), tenant]);
    } else {
      await (client ?? db.dangerouslyCrossTenant()).query(`INSERT INTO tw_access_log_all ${INSERT_COLUMNS} VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, values(e));
    }
  };
  const assertLive = () => {
    if (closed || Date.now() >= expiresAt.getTime()) {
      throw new TenantwallError('break_glass_expired', `Break-glass grant ${id} ${closed ? 'was closed' : `expired at ${expiresAt.toISOString()}`}.`, {
        details: { grant_id: id },
      });
    }
  };

  await record({ kind: 'open' });
  return Object.freeze({
    id,
    tenant,
    expiresAt,
    async query<R extends Row = Row>(sql: string, params: Params = []): Promise<pg.QueryResult<R>> {
      assertLive();
      let fp: string;
      let normalized: string;
      try {
        [fp, normalized] = await Promise.all([fingerprint(sql), normalize(sql)]);
      } catch (cause) {
        throw invalid('statement', `could not be parsed: ${(cause as Error).message}`);
      }
      try {
        if (scope) {
          return await scope.transaction(async (tx) => {
            const result = await tx.query<R>(sql, params);
            await record({ kind: 'statement', fingerprint: fp, statement: normalized, rows: result.rowCount ?? null }, tx);
            return result;
          });
        }
        return await db.dangerouslyCrossTenant().transaction(async (client) => {
          const result = await client.query<R>(sql, params as unknown[]);
          await record({ kind: 'statement', fingerprint: fp, statement: normalized, rows: result.rowCount ?? null }, client);
          return result;
        });
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        await record({ kind: 'failed', fingerprint: fp, statement: normalized, errorCode: typeof code === 'string' ? code : 'error' });
        throw err;
      }
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await record({ kind: 'close' });
    },
  });
}

/** One access-log entry: actor, reason, time, statement fingerprint, rows. */
export interface AccessLogEntry {
  id: string;
  grant_id: string;
  actor: string;
  reason: string;
  kind: 'open' | 'statement' | 'failed' | 'close';
  at: Date;
  expires_at: Date;
  fingerprint: string | null;
  statement: string | null;
  rows: number | null;
  error_code: string | null;
}

/**
 * The break-glass entries of the scope's tenant, newest first: what a tenant may see of who accessed its data
 * (`limit` 1..1000, default 100; `before`: entries older than this time, for paging).
 */
export async function readAccessLog(scope: TenantScope, options: { limit?: number; before?: Date } = {}): Promise<AccessLogEntry[]> {
  const limit = options.limit ?? 100;
  if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new TenantwallError('validation_failed', 'limit must be an integer in 1..1000.', { details: { field: 'limit' } });
  const before = options.before ?? null;
  if (before !== null && (!(before instanceof Date) || Number.isNaN(before.getTime()))) {
    throw new TenantwallError('validation_failed', 'before must be a valid time.', { details: { field: 'before' } });
  }
  const { rows } = await scope.query<AccessLogEntry & { rows: string | null }>(
    `SELECT id, grant_id, actor, reason, kind, at, expires_at, fingerprint, statement, rows, error_code FROM tw_access_log
      WHERE tenant_id = $1 AND ($2::timestamptz IS NULL OR at < $2) ORDER BY at DESC, id LIMIT $3`,
    [scope.tenantId, before, limit],
  );
  return rows.map((r) => ({ ...r, rows: r.rows === null ? null : Number(r.rows) }));
}
