import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { type Tenantwall, TenantwallError } from 'tenantwall';

/** An admin token as listed (never its secret). */
export interface AdminTokenInfo {
  id: string;
  name: string;
  created_at: string;
  revoked_at: string | null;
}

export interface AdminAuthOptions {
  /** Failed admin authentications allowed per client address and window before it is refused. Default 10. */
  maxFailures?: number;
  /** The window of `maxFailures`, ms. Default 60000. */
  windowMs?: number;
  /**
   * How a named token's hash is checked. Default: a read of `admin_tokens` as the owner. A web process without the
   * owner passes the relay's `tokenValid` (the SECURITY DEFINER `tw_admin_token_valid`, operator.ts).
   */
  tokenValid?: (hash: Buffer) => Promise<boolean>;
}

type Row = { id: string; name: string; created_at: Date; revoked_at: Date | null };

const sha256 = (s: string) => createHash('sha256').update(s).digest();
const info = (r: Row): AdminTokenInfo => ({ id: r.id, name: r.name, created_at: r.created_at.toISOString(), revoked_at: r.revoked_at?.toISOString() ?? null });
const COLS = 'id, name, created_at, revoked_at';

/**
 * Who may call the admin API: the bootstrap token of the configuration (TENANTWALL_ADMIN_TOKEN, never stored)
 * and named tokens in `admin_tokens` (sha256 at rest, shown once, revocable at once). Failed attempts are
 * counted per client address: past `maxFailures` in a window, every attempt from it gets 429 `rate_limited`
 * until the window ends, right token or not (a guess cannot be confirmed while locked out).
 *
 * The table is not tenant data: it is read and written through the owner connection only
 * (`dangerouslyCrossTenant`); the application role has no grant on it.
 */
export class AdminAuth {
  readonly #db: Tenantwall;
  readonly #bootstrap: Buffer;
  readonly #maxFailures: number;
  readonly #windowMs: number;
  readonly #tokenValid: (hash: Buffer) => Promise<boolean>;
  readonly #failures = new Map<string, { count: number; resetAt: number }>();

  constructor(db: Tenantwall, bootstrapToken: string, options: AdminAuthOptions = {}) {
    this.#db = db;
    this.#bootstrap = sha256(bootstrapToken);
    this.#maxFailures = options.maxFailures ?? 10;
    this.#windowMs = options.windowMs ?? 60_000;
    this.#tokenValid =
      options.tokenValid ??
      (async (h) => (await this.#db.dangerouslyCrossTenant().query('SELECT 1 FROM admin_tokens WHERE token_hash = $1 AND revoked_at IS NULL', [h])).rows.length > 0);
    for (const [field, v] of [['maxFailures', this.#maxFailures], ['windowMs', this.#windowMs]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new TenantwallError('config_invalid', `adminAuth.${field} must be a positive integer.`, { details: { field: `adminAuth.${field}` } });
    }
  }

  /** onRequest hook of the admin routes. */
  readonly check = async (req: FastifyRequest, reply: FastifyReply): Promise<void> => {
    const now = Date.now();
    const client = req.ip;
    let f = this.#failures.get(client);
    if (f && f.resetAt <= now) {
      this.#failures.delete(client);
      f = undefined;
    }
    if (f && f.count >= this.#maxFailures) {
      void reply.header('retry-after', String(Math.max(1, Math.ceil((f.resetAt - now) / 1000))));
      throw new TenantwallError('rate_limited', `Too many failed admin authentications from this address; retry after ${new Date(f.resetAt).toISOString()}.`, {
        details: { resets_at: new Date(f.resetAt).toISOString() },
      });
    }
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    if (m && (await this.#valid(m[1] as string))) return;
    if (!f) {
      // Bounded: old windows are dropped before a new address is counted.
      if (this.#failures.size >= 10_000) for (const [k, v] of this.#failures) if (v.resetAt <= now) this.#failures.delete(k);
      if (this.#failures.size < 10_000) this.#failures.set(client, { count: 1, resetAt: now + this.#windowMs });
    } else f.count += 1;
    throw new TenantwallError('admin_unauthorized', 'Admin routes need an admin token.');
  };

  async #valid(token: string): Promise<boolean> {
    const h = sha256(token);
    if (timingSafeEqual(h, this.#bootstrap)) return true;
    if (!token.startsWith('twadm_')) return false;
    return this.#tokenValid(h);
  }

  /** A new named token; the secret is in the answer only. */
  async create(name: string): Promise<AdminTokenInfo & { token: string }> {
    const id = randomUUID();
    const token = `twadm_${id.replaceAll('-', '')}_${randomBytes(32).toString('base64url')}`;
    const { rows } = await this.#db
      .dangerouslyCrossTenant()
      .query<Row>(`INSERT INTO admin_tokens (id, name, token_hash) VALUES ($1, $2, $3) RETURNING ${COLS}`, [id, name, sha256(token)]);
    return { ...info(rows[0] as Row), token };
  }

  /** Tokens by (created_at, id), `limit` after the given position. */
  async list(limit: number, after?: { created_at: string; id: string }): Promise<AdminTokenInfo[]> {
    const { rows } = await this.#db
      .dangerouslyCrossTenant()
      .query<Row>(
        `SELECT ${COLS} FROM admin_tokens WHERE $1::timestamptz IS NULL OR (created_at, id) > ($1::timestamptz, $2::uuid) ORDER BY created_at, id LIMIT $3`,
        [after?.created_at ?? null, after?.id ?? null, limit],
      );
    return rows.map(info);
  }

  /** Revokes a token (idempotent); false when there is no such token. Takes effect at the next request. */
  async revoke(id: string): Promise<boolean> {
    const { rows } = await this.#db.dangerouslyCrossTenant().query('UPDATE admin_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING id', [id]);
    return rows.length > 0;
  }
}

/** Migration 3 of the service: named admin tokens, owner-only. */
export function adminTokensSql(appRole: string): string {
  return `CREATE TABLE admin_tokens (
  id uuid PRIMARY KEY,
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  token_hash bytea NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT date_trunc('milliseconds', now()),
  revoked_at timestamptz
);
REVOKE ALL ON admin_tokens FROM PUBLIC;
REVOKE ALL ON admin_tokens FROM "${appRole.replaceAll('"', '""')}";`;
}
