import { hash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { tenantTable } from '../schema/declare.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { TenantId, tenantKeyType } from '../tenant/tenant-id.ts';
import { TtlCache } from '../util/ttl-cache.ts';

/**
 * Key format: `tw_<tenant>_<key uuid as 32 hex>_<secret, 43 base64url chars = 256 bits>`, where `<tenant>` is
 * a uuid tenant id as 32 hex, and a bigint or text tenant id as the hex of its characters (2-126 hex digits).
 * The prefix names the tenant so the lookup runs in that tenant's scope (RLS applies to the lookup itself),
 * and the key id makes it a primary-key read. Only sha256(secret) is stored: with 256 random bits a slow
 * password hash adds nothing.
 */
const KEY_RE = /^tw_([0-9a-f]{2,126})_([0-9a-f]{32})_([A-Za-z0-9_-]{43})$/;

/** An API key as listed: id, name, created and revoked times (never the secret). */
export interface ApiKeyInfo {
  readonly id: string;
  readonly name: string;
  readonly createdAt: Date;
  readonly revokedAt: Date | null;
}

/** A newly created API key: its info and the key itself, shown once. */
export interface CreatedApiKey extends ApiKeyInfo {
  /** The full key. Shown once: only its hash is stored. */
  readonly key: string;
}

/** The parts of an API key string: tenant, key id and secret. */
export interface ParsedApiKey {
  readonly tenantId: TenantId;
  readonly keyId: string;
  readonly secret: string;
}

/** The tenant part of a key: a uuid's 32 hex digits, or the hex of a bigint or text id's (ASCII) characters. */
function tenantPart(tid: TenantId): string {
  return tenantKeyType() === 'uuid' ? tid.replaceAll('-', '') : Buffer.from(tid, 'latin1').toString('hex');
}

function hexToUuid(hex: string): string {
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Splits a key into its parts; undefined when it does not have the tenantwall key shape. */
export function parseApiKey(key: string): ParsedApiKey | undefined {
  const m = KEY_RE.exec(key);
  if (!m) return undefined;
  const hex = m[1] as string;
  const type = tenantKeyType();
  if ((type === 'uuid') !== (hex.length === 32) || hex.length % 2 !== 0) return undefined;
  const tenant = type === 'uuid' ? hexToUuid(hex) : Buffer.from(hex, 'hex').toString('latin1');
  if (!TenantId.is(tenant)) return undefined;
  return { tenantId: tenant, keyId: hexToUuid(m[2] as string), secret: m[3] as string };
}

export function looksLikeApiKey(token: string): boolean {
  return token.startsWith('tw_');
}

function sha256(value: string): Buffer {
  return hash('sha256', value, 'buffer');
}

/** The declaration of the API key table; put it in your schema (`defineSchema({ tables: [apiKeysTable(), ...] })`). */
export function apiKeysTable<const N extends string = 'api_keys'>(name: N = 'api_keys' as N) {
  return tenantTable({
    name,
    columns: {
      id: { type: 'uuid' },
      name: { type: 'text', check: 'length(name) BETWEEN 1 AND 200' },
      secret_hash: { type: 'bytea', check: 'length(secret_hash) = 32' },
      created_at: { type: 'timestamptz', default: 'now()' },
      revoked_at: { type: 'timestamptz', nullable: true },
    },
  });
}

type KeyRow = { id: string; name: string; created_at: Date; revoked_at: Date | null };

function toInfo(r: KeyRow): ApiKeyInfo {
  return Object.freeze({ id: r.id, name: r.name, createdAt: r.created_at, revokedAt: r.revoked_at });
}

/** Creates, lists, revokes and verifies API keys. Every statement runs in the key's tenant scope. */
export class ApiKeyStore {
  readonly #db: Tenantwall;
  readonly #table: string;
  // sha256(full key) -> identity. Keyed by the whole key, so a cached entry can only be hit with the secret.
  readonly #verified: TtlCache<string, { tenantId: TenantId; keyId: string }>;

  constructor(db: Tenantwall, options: { table?: string; cacheTtlMs?: number; cacheSize?: number } = {}) {
    this.#db = db;
    this.#table = quoteIdent(options.table ?? 'api_keys');
    this.#verified = new TtlCache(options.cacheSize ?? 10_000, options.cacheTtlMs ?? 5_000);
  }

  async create(tenantId: TenantId | string, input: { name: string }): Promise<CreatedApiKey> {
    const tid = TenantId.parse(tenantId);
    const id = randomUUID();
    const secret = randomBytes(32).toString('base64url');
    const key = `tw_${tenantPart(tid)}_${id.replaceAll('-', '')}_${secret}`;
    const { rows } = await this.#db
      .forTenant(tid)
      .query<KeyRow>(
        `INSERT INTO ${this.#table} (tenant_id, id, name, secret_hash) VALUES ($1, $2, $3, $4) RETURNING id, name, created_at, revoked_at`,
        [tid, id, input.name, sha256(secret)],
      );
    return Object.freeze({ ...toInfo(rows[0] as KeyRow), key });
  }

  async list(tenantId: TenantId | string): Promise<ApiKeyInfo[]> {
    const tid = TenantId.parse(tenantId);
    const { rows } = await this.#db
      .forTenant(tid)
      .query<KeyRow>(`SELECT id, name, created_at, revoked_at FROM ${this.#table} WHERE tenant_id = $1 ORDER BY created_at, id`, [tid]);
    return rows.map(toInfo);
  }

  /** Revokes a key (idempotent); false when the tenant has no such key. Takes effect at once in this process. */
  async revoke(tenantId: TenantId | string, keyId: string): Promise<boolean> {
    const tid = TenantId.parse(tenantId);
    // least() keeps the first revocation time (it skips NULL); Citus refuses now() inside coalesce() in an UPDATE.
    const { rows } = await this.#db
      .forTenant(tid)
      .query<KeyRow>(
        `UPDATE ${this.#table} SET revoked_at = least(revoked_at, now()) WHERE tenant_id = $1 AND id = $2 RETURNING id`,
        [tid, keyId],
      );
    this.#verified.deleteWhere((v) => v.tenantId === tid && v.keyId === keyId);
    return rows.length > 0;
  }

  /** Drops every cached key of a tenant (its suspension must not wait for the cache). */
  forgetTenant(tenantId: TenantId): void {
    this.#verified.deleteWhere((v) => v.tenantId === tenantId);
  }

  /** The tenant and key id of a valid, unrevoked key; `unauthenticated` otherwise. */
  /** The identity of a key verified within the cache TTL (and not revoked since), without asking the database. */
  cached(key: string): { tenantId: TenantId; keyId: string } | undefined {
    return this.#verified.get(hash('sha256', key, 'base64'));
  }

  async verify(key: string): Promise<{ tenantId: TenantId; keyId: string }> {
    const cacheKey = hash('sha256', key, 'base64');
    const cached = this.#verified.get(cacheKey);
    if (cached) return cached;
    const parsed = parseApiKey(key);
    if (!parsed) throw unauthenticated('malformed_api_key');
    const { rows } = await this.#db
      .forTenant(parsed.tenantId)
      .query<{ secret_hash: Buffer; revoked_at: Date | null }>(
        `SELECT secret_hash, revoked_at FROM ${this.#table} WHERE tenant_id = $1 AND id = $2`,
        [parsed.tenantId, parsed.keyId],
      );
    const row = rows[0];
    // Compare even when the key is unknown so timing does not tell unknown ids from wrong secrets.
    const expected = row?.secret_hash ?? Buffer.alloc(32);
    const ok = timingSafeEqual(sha256(parsed.secret), expected) && row !== undefined;
    if (!ok) throw unauthenticated('invalid_api_key');
    if (row.revoked_at !== null) throw unauthenticated('revoked_api_key');
    const identity = Object.freeze({ tenantId: parsed.tenantId, keyId: parsed.keyId });
    this.#verified.set(cacheKey, identity);
    return identity;
  }
}

function unauthenticated(reason: string): TenantwallError {
  return new TenantwallError('unauthenticated', 'The API key is not valid.', { details: { reason } });
}
