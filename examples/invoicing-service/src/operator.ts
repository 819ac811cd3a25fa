/**
 * Admin requests of a web process that holds the application role only (docs/credentials.md, "The reference
 * service without the owner").
 *
 * The admin API, the console and the metering admin routes work across tenants and change the schema (tenant
 * creation, moves, deletes): they need the owner. A web process started with only TENANTWALL_APP_DATABASE_URL
 * cannot run them, so it hands each such request over, through the database, to an operator process that holds
 * the owner's URL (`npm run operator`) and runs the very same Fastify app:
 *
 * - the web process writes the request (method, URL, headers, client address, the body in chunks) into
 *   `admin_requests` / `admin_request_chunks` (the application role may INSERT and read them, nothing else)
 *   and wakes the operators with NOTIFY;
 * - an operator claims it (FOR UPDATE SKIP LOCKED: several operators share the work), runs it with Fastify's
 *   `inject` against its own app (admin auth, lockout per client address, validation: all as in one process),
 *   writes the response the same way and NOTIFYs;
 * - the web process streams the response to its client and deletes the request.
 *
 * Admin tokens are checked by the operator's app, as ever; the web process never needs to know them. Operators
 * announce themselves in `admin_operators` every few seconds: without a live one, a relayed request fails at once
 * with 503 `operator_unavailable` (nothing is written); a request no operator claimed in time is withdrawn and
 * answers the same. What is not relayed is served by the web process itself: tenant routes, health, the OpenAPI
 * document, /metrics and the noisy-neighbour report (they describe this process).
 */
import { randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import pg from 'pg';
import { type MigrationContext, type Tenantwall, TenantwallError, mapPgError } from 'tenantwall';
import { type ConsoleSessionStore, consoleHoldsOperation, errorBody } from 'tenantwall/fastify';
import { appJobs } from './jobs.ts';

/** Bytes per chunk row of a relayed body. */
const CHUNK_BYTES = 256 * 1024;
const REQUEST_CHANNEL = 'tw_admin_request';
const DONE_CHANNEL = 'tw_admin_done';
/** Headers that belong to one HTTP connection, not to the request or response relayed. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'upgrade', 'proxy-connection', 'te', 'trailer']);

const q = (s: string) => `"${s.replaceAll('"', '""')}"`;

/**
 * The relay's tables, which the application role reaches: global, not tenant data (admin requests in flight and
 * the operators' heartbeats). The audit is told so (`globalTables`); a web process that can read a request in
 * flight sees no more than it relays anyway.
 */
export const RELAY_TABLES: readonly string[] = ['admin_requests', 'admin_request_chunks', 'admin_operators'];

/**
 * Migration 7 of the service: console login sessions (SHA-256 of the session id and its expiry), shared by every
 * process that serves the console, so a session works whichever operator claims the request. Owner only.
 */
export const consoleSessionsMigrationSql = `CREATE TABLE console_sessions (
  id_hash text PRIMARY KEY,
  expires_at timestamptz NOT NULL
);
REVOKE ALL ON console_sessions FROM PUBLIC;`;

/** The console's session store on the `console_sessions` table (owner connection); expired rows go at each login. */
export function consoleSessionsTable(db: Tenantwall): ConsoleSessionStore {
  const owner = () => db.dangerouslyCrossTenant();
  return {
    async create(idHash, expiresAt) {
      await owner().query(`WITH expired AS (DELETE FROM console_sessions WHERE expires_at <= now()) INSERT INTO console_sessions (id_hash, expires_at) VALUES ($1, $2)`, [idHash, expiresAt]);
    },
    async expiresAt(idHash) {
      const { rows } = await owner().query<{ expires_at: Date }>(`SELECT expires_at FROM console_sessions WHERE id_hash = $1`, [idHash]);
      return rows[0]?.expires_at;
    },
    async delete(idHash) {
      await owner().query(`DELETE FROM console_sessions WHERE id_hash = $1`, [idHash]);
    },
  };
}

/**
 * Migration 6 of the service: the relay tables and the admin-token check the application role may call. The
 * web process inserts requests and reads their answers; only an operator (owner) claims, answers or expires them.
 */
export function operatorMigrationSql(ctx: MigrationContext): string {
  const app = q(ctx.appRole);
  return `CREATE TABLE admin_requests (
  id uuid PRIMARY KEY,
  method text NOT NULL,
  url text NOT NULL,
  headers jsonb NOT NULL,
  remote_address text NOT NULL,
  status text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done')),
  operator_id uuid,
  -- Operators that passed the request on (a job's status asked of an operator that does not run the job).
  declined_by uuid[] NOT NULL DEFAULT '{}',
  response_status int,
  response_headers jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  claimed_at timestamptz,
  finished_at timestamptz
);
CREATE INDEX admin_requests_pending ON admin_requests (created_at) WHERE status = 'pending';
CREATE TABLE admin_request_chunks (
  request_id uuid NOT NULL REFERENCES admin_requests (id) ON DELETE CASCADE,
  part text NOT NULL CHECK (part IN ('request', 'response')),
  seq int NOT NULL CHECK (seq >= 0),
  data bytea NOT NULL,
  PRIMARY KEY (request_id, part, seq)
);
CREATE TABLE admin_operators (
  id uuid PRIMARY KEY,
  started_at timestamptz NOT NULL DEFAULT now(),
  seen_at timestamptz NOT NULL DEFAULT now()
);
REVOKE ALL ON admin_requests, admin_request_chunks, admin_operators FROM PUBLIC;
GRANT SELECT, INSERT, DELETE ON admin_requests TO ${app};
GRANT SELECT, INSERT ON admin_request_chunks TO ${app};
GRANT SELECT ON admin_operators TO ${app};
-- Whether a named admin token is valid, for the routes a web process serves itself (/metrics, the activity
-- report): one static lookup by hash, no secret returned, search_path pinned.
CREATE FUNCTION tw_admin_token_valid(token_hash bytea) RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$ SELECT EXISTS (SELECT 1 FROM public.admin_tokens t WHERE t.token_hash = $1 AND t.revoked_at IS NULL) $fn$;
REVOKE ALL ON FUNCTION tw_admin_token_valid(bytea) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tw_admin_token_valid(bytea) TO ${app};`;
}

/** Which requests a web process without the owner relays: the admin API (but its activity report), the console. */
export function isRelayed(url: string): boolean {
  const path = url.split('?', 1)[0] as string;
  if (path.startsWith('/admin/observability/')) return false;
  return path.startsWith('/admin/') || path === '/admin' || path === '/console' || path.startsWith('/console/');
}

/** The tenant a relayed request changed, for the caches of the web process (suspension, keys, deletion). */
function changedTenant(method: string, url: string): string | undefined {
  if (method === 'GET' || method === 'HEAD') return undefined;
  return /^\/(?:admin|console)\/(?:usage\/)?tenants\/([0-9A-Za-z_.:-]+)(?:[/?]|$)/.exec(url)?.[1];
}

async function* chunksOf(stream: AsyncIterable<Buffer | string>): AsyncGenerator<Buffer> {
  let pending: Buffer[] = [];
  let size = 0;
  for await (const piece of stream) {
    const b = typeof piece === 'string' ? Buffer.from(piece) : piece;
    pending.push(b);
    size += b.length;
    while (size >= CHUNK_BYTES) {
      const all = Buffer.concat(pending);
      yield all.subarray(0, CHUNK_BYTES);
      pending = [all.subarray(CHUNK_BYTES)];
      size = all.length - CHUNK_BYTES;
    }
  }
  if (size > 0) yield Buffer.concat(pending);
}

/**
 * The chunks of one part of a request, read one at a time (a large export is never held whole); `first` are chunks
 * 0.. already read by the caller.
 */
function readChunks(pool: pg.Pool, id: string, part: 'request' | 'response', onEnd?: () => Promise<void>, first: readonly Buffer[] = []): Readable {
  let seq = first.length;
  return Readable.from(
    (async function* () {
      try {
        yield* first;
        for (;;) {
          const { rows } = await pool.query<{ data: Buffer }>('SELECT data FROM admin_request_chunks WHERE request_id = $1 AND part = $2 AND seq = $3', [id, part, seq]);
          if (!rows[0]) return;
          seq++;
          yield rows[0].data;
        }
      } finally {
        await onEnd?.();
      }
    })(),
    { objectMode: false },
  );
}

export interface AdminRelayOptions {
  /** The application role's URL (default: the Tenantwall's). */
  connectionString?: string;
  /** Largest relayed request body, bytes (the operator's app applies its own limits too). Default 1 GiB. */
  maxRequestBytes?: number;
  /** An operator must have announced itself this recently, ms. Default 15000. */
  operatorFreshMs?: number;
  /** A request not claimed within this while no operator is alive is withdrawn (503 operator_unavailable), ms. Default 15000. */
  claimTimeoutMs?: number;
  /** Longest wait for a claimed request's answer, ms. Default 600000 (a delete of a large shared tenant). */
  answerTimeoutMs?: number;
}

/**
 * The web process's side: relays admin requests to an operator and serves its answers. Holds the application role
 * only: a small pool and one LISTEN connection.
 */
export class AdminRelay {
  readonly #pool: pg.Pool;
  readonly #listener: pg.Client;
  readonly #waiting = new Map<string, () => void>();
  readonly #options: Required<Omit<AdminRelayOptions, 'connectionString'>>;
  #poll: NodeJS.Timeout | undefined;

  private constructor(pool: pg.Pool, listener: pg.Client, options: AdminRelayOptions) {
    this.#pool = pool;
    this.#listener = listener;
    this.#options = {
      maxRequestBytes: options.maxRequestBytes ?? 1024 * 1024 * 1024,
      operatorFreshMs: options.operatorFreshMs ?? 15_000,
      claimTimeoutMs: options.claimTimeoutMs ?? 15_000,
      answerTimeoutMs: options.answerTimeoutMs ?? 600_000,
    };
  }

  static async connect(db: Tenantwall, options: AdminRelayOptions = {}): Promise<AdminRelay> {
    const connectionString = options.connectionString ?? db.options.appDatabaseUrl;
    if (!connectionString) throw new TenantwallError('config_invalid', 'The admin relay needs the application role URL.', { details: { field: 'appDatabaseUrl' } });
    const pool = new pg.Pool({ connectionString, max: 4, application_name: 'tenantwall-admin-relay' });
    pool.on('error', () => undefined);
    const listener = new pg.Client({ connectionString, application_name: 'tenantwall-admin-relay-listen' });
    listener.on('error', () => undefined);
    await listener.connect();
    await listener.query(`LISTEN ${DONE_CHANNEL}`);
    const relay = new AdminRelay(pool, listener, options);
    listener.on('notification', (n) => relay.#waiting.get(n.payload ?? '')?.());
    // Notifications are not queued for a listener that reconnects: every waiting request also looks by itself.
    relay.#poll = setInterval(() => {
      for (const wake of relay.#waiting.values()) wake();
    }, 500);
    relay.#poll.unref();
    return relay;
  }

  /** Whether a named admin token (`twadm_...`) is valid, through the SECURITY DEFINER lookup. */
  async tokenValid(hash: Buffer): Promise<boolean> {
    const { rows } = await this.#pool.query<{ ok: boolean }>('SELECT tw_admin_token_valid($1) AS ok', [hash]);
    return rows[0]?.ok === true;
  }

  /** Relays one request and sends the operator's answer. */
  async forward(db: Tenantwall, req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply> {
    if (!(await this.#operatorLive())) throw unavailable('No operator process is running');
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > this.#options.maxRequestBytes) throw tooLarge(this.#options.maxRequestBytes);
    const id = randomUUID();
    const headers: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(req.headers)) if (v !== undefined && !HOP_BY_HOP.has(k)) headers[k] = v;
    // One transaction: an operator sees the request only with its whole body (a failed upload leaves nothing).
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      await client.query('INSERT INTO admin_requests (id, method, url, headers, remote_address) VALUES ($1, $2, $3, $4, $5)', [id, req.method, req.url, headers, req.ip]);
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        let seq = 0;
        let bytes = 0;
        for await (const chunk of chunksOf(req.raw)) {
          bytes += chunk.length;
          if (bytes > this.#options.maxRequestBytes) throw tooLarge(this.#options.maxRequestBytes);
          await client.query(`INSERT INTO admin_request_chunks (request_id, part, seq, data) VALUES ($1, 'request', $2, $3)`, [id, seq++, chunk]);
        }
      }
      await client.query('SELECT pg_notify($1, $2)', [REQUEST_CHANNEL, id]);
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined);
      throw err;
    } finally {
      client.release();
    }
    const answer = await this.#await(id);
    const tenant = changedTenant(req.method, req.url);
    if (tenant !== undefined) {
      // The caches of this process drop the tenant at once; if the read fails they expire within their TTL.
      try {
        await db.tenants.refresh(tenant);
      } catch (err) {
        req.log.warn({ err, tenant }, 'admin relay: could not re-read the changed tenant');
      }
    }
    void reply.code(answer.status);
    for (const [k, v] of Object.entries(answer.headers)) if (!HOP_BY_HOP.has(k)) void reply.header(k, v);
    const forget = async () => {
      await this.#pool.query('DELETE FROM admin_requests WHERE id = $1', [id]).catch(() => undefined);
    };
    // Answers of one chunk (all JSON answers in practice) are sent as they are; longer ones (an export download)
    // are streamed a chunk at a time.
    const { rows } = await this.#pool.query<{ data: Buffer }>(`SELECT data FROM admin_request_chunks WHERE request_id = $1 AND part = 'response' AND seq < 2 ORDER BY seq`, [id]);
    if (rows.length < 2) {
      await forget();
      return rows[0] ? reply.send(rows[0].data) : reply.send();
    }
    return reply.send(readChunks(this.#pool, id, 'response', forget, rows.map((r) => r.data)));
  }

  async #operatorLive(): Promise<boolean> {
    const { rows } = await this.#pool.query('SELECT 1 FROM admin_operators WHERE seen_at > now() - make_interval(secs => $1::double precision / 1000) LIMIT 1', [this.#options.operatorFreshMs]);
    return rows.length > 0;
  }

  async #await(id: string): Promise<{ status: number; headers: Record<string, string | string[]> }> {
    const started = Date.now();
    try {
      for (;;) {
        const woken = new Promise<void>((resolve) => this.#waiting.set(id, resolve));
        const { rows } = await this.#pool.query<{ status: string; response_status: number | null; response_headers: Record<string, string | string[]> | null }>(
          'SELECT status, response_status, response_headers FROM admin_requests WHERE id = $1',
          [id],
        );
        const row = rows[0];
        if (!row) throw unavailable('The operator dropped the request');
        if (row.status === 'done') return { status: row.response_status ?? 500, headers: row.response_headers ?? {} };
        const waited = Date.now() - started;
        if (row.status === 'pending' && waited > this.#options.claimTimeoutMs && !(await this.#operatorLive())) {
          // Busy operators are waited for; with none alive the request is withdrawn, unless one claimed it in the
          // meantime (then it runs, and is waited for).
          const { rowCount } = await this.#pool.query(`DELETE FROM admin_requests WHERE id = $1 AND status = 'pending'`, [id]);
          if (rowCount === 1) throw unavailable(`No operator took the request within ${this.#options.claimTimeoutMs} ms`);
        }
        if (waited > this.#options.answerTimeoutMs) throw unavailable(`The operator did not answer within ${this.#options.answerTimeoutMs} ms (the operation may still complete)`);
        await woken;
      }
    } finally {
      this.#waiting.delete(id);
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#poll);
    for (const wake of this.#waiting.values()) wake();
    await this.#listener.end().catch(() => undefined);
    await this.#pool.end().catch(() => undefined);
  }
}

function unavailable(what: string): TenantwallError {
  return new TenantwallError('operator_unavailable', `${what}: admin requests of this process (application role only) are run by an operator process (npm run operator) with the owner's URL.`);
}

function tooLarge(limit: number): TenantwallError {
  return new TenantwallError('payload_too_large', `The request body is larger than ${limit} bytes.`, { details: { limit_bytes: limit } });
}

/** The hook a web process without the owner installs (buildApp does): relayed requests never reach a handler. */
export function relayHook(db: Tenantwall, relay: AdminRelay) {
  return async (req: FastifyRequest, reply: FastifyReply): Promise<FastifyReply | undefined> => {
    if (!isRelayed(req.url)) return undefined;
    try {
      return await relay.forward(db, req, reply);
    } catch (err) {
      // The relay's own database errors (a server that is down) get their codes, as everywhere else.
      const tw = mapPgError(err);
      if (!(tw instanceof TenantwallError)) throw err;
      if (tw.code === 'operator_unavailable') void reply.header('retry-after', '5');
      return reply.code(tw.status).send(errorBody(tw));
    }
  };
}

export interface OperatorOptions {
  /** The owner's URL (default: the Tenantwall's `databaseUrl`). */
  connectionString?: string;
  /** Requests run at once. Default 8. */
  concurrency?: number;
  /** How often the operator announces itself and looks for work missed by NOTIFY, ms. Default 2000. */
  heartbeatMs?: number;
  /** Answered requests nobody fetched (their web process died) are removed after this, ms. Default 600000. */
  retentionMs?: number;
  onError?: (err: unknown) => void;
  /**
   * Whether this operator should run a request, or pass it on to another live operator. Default: a request about
   * an admin job (`/admin/jobs/:jobId`, its download) goes to the operator that runs the job (jobs live in the
   * process that started them); when no other live operator is left to ask, it runs here anyway (404).
   */
  accepts?: (request: { method: string; url: string }) => boolean;
}

/** A running operator (`stop()` finishes the requests it runs, then leaves). */
export interface Operator {
  readonly id: string;
  stop(): Promise<void>;
}

/**
 * The operator's side: claims relayed requests and runs them against `app` (the service built with the owner's
 * connection, not listening). Run as many as wanted; each request runs once.
 */
export async function startOperator(app: FastifyInstance, db: Tenantwall, options: OperatorOptions = {}): Promise<Operator> {
  const connectionString = options.connectionString ?? db.options.databaseUrl;
  if (!connectionString) throw new TenantwallError('owner_connection_required', 'The operator needs the owner connection (DATABASE_URL).', { details: { operation: 'operator' } });
  const concurrency = options.concurrency ?? 8;
  const heartbeatMs = options.heartbeatMs ?? 2000;
  const retentionMs = options.retentionMs ?? 600_000;
  const onError = options.onError ?? ((err: unknown) => console.error(`operator: ${(err as Error).message}`));
  const id = randomUUID();
  const jobs = appJobs.get(app);
  const accepts =
    options.accepts ??
    ((r: { url: string }) => {
      // A job's status or download, and a console operation's page, status or files, are served by the operator
      // that runs (or ran) it: the others pass the request on.
      const job = /^\/admin\/jobs\/([^/?]+)/.exec(r.url)?.[1];
      if (job !== undefined) return jobs?.get(decodeURIComponent(job)) !== undefined;
      const op = /^\/console\/operations\/([^/?]+)/.exec(r.url)?.[1];
      return op === undefined || consoleHoldsOperation(db, decodeURIComponent(op));
    });
  const pool = new pg.Pool({ connectionString, max: concurrency + 2, application_name: 'tenantwall-operator' });
  pool.on('error', () => undefined);
  const listener = new pg.Client({ connectionString, application_name: 'tenantwall-operator-listen' });
  listener.on('error', () => undefined);
  await listener.connect();
  await listener.query(`LISTEN ${REQUEST_CHANNEL}`);
  const beat = async () => {
    await pool.query('INSERT INTO admin_operators (id) VALUES ($1) ON CONFLICT (id) DO UPDATE SET seen_at = now()', [id]);
    await pool.query(`DELETE FROM admin_operators WHERE seen_at < now() - interval '1 hour'`);
    await pool.query(`DELETE FROM admin_requests WHERE status = 'done' AND finished_at < now() - make_interval(secs => $1::double precision / 1000)`, [retentionMs]);
    // Claimed by an operator that is gone (no heartbeat for a minute): withdrawn, its client answers 503.
    await pool.query(
      `DELETE FROM admin_requests r WHERE status = 'running'
          AND NOT EXISTS (SELECT 1 FROM admin_operators o WHERE o.id = r.operator_id AND o.seen_at > now() - interval '1 minute')`,
    );
  };
  await beat();
  let beating: Promise<void> | undefined;

  let running = 0;
  let stopping = false;
  const inFlight = new Set<Promise<void>>();
  const runOne = async (claimed: { id: string; method: string; url: string; headers: Record<string, string | string[]>; remote_address: string }) => {
    try {
      const hasBody = claimed.method !== 'GET' && claimed.method !== 'HEAD';
      const res = await app.inject({
        method: claimed.method as 'GET',
        url: claimed.url,
        headers: claimed.headers,
        remoteAddress: claimed.remote_address,
        // A GET's answer may be large (an export download): streamed into chunks. An upload's answer is a short
        // JSON one, buffered: Fastify ends the connection of an upload it refuses early (413), which a streamed
        // answer would report as destroyed.
        ...(hasBody ? { payload: readChunks(pool, claimed.id, 'request') } : { payloadAsStream: true }),
      });
      let seq = 0;
      const body: AsyncIterable<Buffer> = hasBody ? Readable.from([res.rawPayload]) : (res.stream() as AsyncIterable<Buffer>);
      for await (const chunk of chunksOf(body)) {
        await pool.query(`INSERT INTO admin_request_chunks (request_id, part, seq, data) VALUES ($1, 'response', $2, $3)`, [claimed.id, seq++, chunk]);
      }
      await pool.query(`UPDATE admin_requests SET status = 'done', response_status = $2, response_headers = $3, finished_at = now() WHERE id = $1`, [claimed.id, res.statusCode, res.headers]);
    } catch (err) {
      onError(err);
      const body = JSON.stringify(errorBody(new TenantwallError('internal_error', 'The operator failed to run the request.')));
      await pool.query(`DELETE FROM admin_request_chunks WHERE request_id = $1 AND part = 'response'`, [claimed.id]).catch(() => undefined);
      await pool
        .query(`WITH c AS (INSERT INTO admin_request_chunks (request_id, part, seq, data) VALUES ($1, 'response', 0, $2)) UPDATE admin_requests SET status = 'done', response_status = 500, response_headers = $3, finished_at = now() WHERE id = $1`, [
          claimed.id,
          Buffer.from(body),
          { 'content-type': 'application/json; charset=utf-8' },
        ])
        .catch(onError);
    }
    await pool.query('SELECT pg_notify($1, $2)', [DONE_CHANNEL, claimed.id]).catch(onError);
  };
  /** Hands a claimed request back for the other live operators; false when none is left to ask (run it here). */
  const passOn = async (claimed: { id: string; declined_by: string[] }): Promise<boolean> => {
    const { rows: others } = await pool.query(
      `SELECT 1 FROM admin_operators WHERE seen_at > now() - interval '15 seconds' AND NOT (id = ANY ($1::uuid[])) LIMIT 1`,
      [[...claimed.declined_by, id]],
    );
    if (others.length === 0) return false;
    await pool.query(`UPDATE admin_requests SET status = 'pending', operator_id = NULL, claimed_at = NULL, declined_by = declined_by || $2::uuid WHERE id = $1`, [claimed.id, id]);
    await pool.query('SELECT pg_notify($1, $2)', [REQUEST_CHANNEL, claimed.id]);
    return true;
  };
  // One claim loop at a time; a wake-up while it runs makes it look once more (a NOTIFY is never lost to it).
  let draining: Promise<void> | undefined;
  let again = false;
  const claimLoop = async (): Promise<void> => {
    try {
      do {
        again = false;
        while (!stopping && running < concurrency) {
          const { rows } = await pool.query<{ id: string; method: string; url: string; headers: Record<string, string | string[]>; remote_address: string; declined_by: string[] }>(
            `UPDATE admin_requests SET status = 'running', claimed_at = now(), operator_id = $1
              WHERE id = (SELECT r.id FROM admin_requests r
                           WHERE r.status = 'pending'
                             -- Passed on by this operator: taken back once no live operator it could go to is left.
                             AND (NOT ($1 = ANY (r.declined_by))
                                  OR NOT EXISTS (SELECT 1 FROM admin_operators o WHERE o.seen_at > now() - interval '15 seconds' AND NOT (o.id = ANY (r.declined_by))))
                           ORDER BY r.created_at FOR UPDATE SKIP LOCKED LIMIT 1)
              RETURNING id, method, url, headers, remote_address, declined_by`,
            [id],
          );
          const claimed = rows[0];
          if (!claimed) break;
          if (!accepts(claimed) && (await passOn(claimed))) continue;
          running++;
          const p = runOne(claimed).finally(() => {
            running--;
            inFlight.delete(p);
            drain();
          });
          inFlight.add(p);
        }
      } while (again && !stopping);
    } catch (err) {
      onError(err);
    }
  };
  const drain = (): void => {
    if (draining) {
      again = true;
      return;
    }
    draining = claimLoop().finally(() => {
      draining = undefined;
    });
  };
  listener.on('notification', () => drain());
  const timer = setInterval(() => {
    beating ??= beat()
      .catch(onError)
      .finally(() => {
        beating = undefined;
      });
    drain();
  }, heartbeatMs);
  timer.unref();
  drain();
  return {
    id,
    async stop() {
      stopping = true;
      clearInterval(timer);
      await draining;
      await Promise.all(inFlight);
      // After the last heartbeat: one still running would announce this operator again after it left.
      await beating;
      await pool.query('DELETE FROM admin_operators WHERE id = $1', [id]).catch(() => undefined);
      await listener.end().catch(() => undefined);
      await pool.end().catch(() => undefined);
    },
  };
}
