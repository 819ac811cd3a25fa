import { randomBytes } from 'node:crypto';
import { TenantwallError } from '../errors.ts';

declare const tenantIdBrand: unique symbol;

/**
 * A tenant id in its canonical string form for the configured key type (`TenantKeyType`): a lowercase UUID,
 * a decimal bigint, or a text id matching `TEXT_TENANT_ID_PATTERN`. Only `TenantId.parse` (or
 * `TenantId.generate`) produce one, so a value of this type has always been validated.
 */
export type TenantId = string & { readonly [tenantIdBrand]: true };

/**
 * SQL type of tenant ids (the registry's `id`, every tenant column, the policy's cast), configured once per
 * process with the `tenantKey` option (docs/tenant-scope.md). `uuid` (default): canonical lowercase UUIDs,
 * not guessable, generated without a round trip. `bigint`: decimal 0..9223372036854775807 (no sign, no leading
 * zeros). `text`: 1-63 characters matching `TEXT_TENANT_ID_PATTERN`, case-sensitive.
 */
export type TenantKeyType = 'uuid' | 'bigint' | 'text';

/** The tenant key types, in documentation order. */
export const TENANT_KEY_TYPES: readonly TenantKeyType[] = Object.freeze(['uuid', 'bigint', 'text']);

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const BIGINT_RE = /^(0|[1-9][0-9]{0,18})$/;
const BIGINT_MAX = 9223372036854775807n;

/**
 * Text tenant ids: 1-63 characters, ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit.
 * Safe in a setting, a literal, a log line and a URL path segment without escaping.
 */
export const TEXT_TENANT_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

let configured: TenantKeyType = 'uuid';
let holders = 0;

/**
 * Sets the process's tenant key type (`Tenantwall.connect` calls it with its `tenantKey` option). A different
 * type while another connected instance holds one is `config_invalid`: ids cannot mean two things in one process.
 * Returns the release function (called by `close`).
 */
export function configureTenantKey(type: TenantKeyType): () => void {
  if (!TENANT_KEY_TYPES.includes(type)) {
    throw new TenantwallError('config_invalid', `tenantKey must be one of ${TENANT_KEY_TYPES.join(', ')}.`, { details: { field: 'tenantKey' } });
  }
  if (holders > 0 && type !== configured) {
    throw new TenantwallError('config_invalid', `tenantKey ${type} conflicts with ${configured}, already used by another open Tenantwall in this process.`, {
      details: { field: 'tenantKey' },
    });
  }
  configured = type;
  holders++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    holders--;
  };
}

/** The process's tenant key type (`uuid` until a `Tenantwall.connect` configures another). */
export function tenantKeyType(): TenantKeyType {
  return configured;
}

function canonical(value: unknown, type: TenantKeyType): string | undefined {
  if (type === 'bigint') {
    const s = typeof value === 'bigint' ? value.toString() : typeof value === 'number' && Number.isSafeInteger(value) ? String(value) : value;
    return typeof s === 'string' && BIGINT_RE.test(s) && BigInt(s) <= BIGINT_MAX ? s : undefined;
  }
  if (typeof value !== 'string') return undefined;
  if (type === 'text') return TEXT_TENANT_ID_PATTERN.test(value) ? value : undefined;
  const lower = value.toLowerCase();
  return UUID_RE.test(lower) ? lower : undefined;
}

function describe(type: TenantKeyType): string {
  return type === 'uuid' ? 'a UUID' : type === 'bigint' ? 'a non-negative 64-bit integer' : `text matching ${TEXT_TENANT_ID_PATTERN.source}`;
}

export const TenantId = {
  /**
   * Validates and normalises a tenant id of `type` (default: the process's key type); throws
   * `invalid_tenant_id`. UUIDs are lowercased; bigint ids may be given as a number or a bigint.
   */
  parse(value: unknown, type: TenantKeyType = configured): TenantId {
    const id = canonical(value, type);
    if (id !== undefined) return id as TenantId;
    const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 80)) : typeof value;
    throw new TenantwallError('invalid_tenant_id', `Invalid tenant id ${shown}: expected ${describe(type)}.`, { details: { field: 'tenant_id' } });
  },
  /** True when `value` already is a canonical tenant id of `type` (default: the process's key type). */
  is(value: unknown, type: TenantKeyType = configured): value is TenantId {
    return typeof value === 'string' && canonical(value, type) === value;
  },
  /**
   * A new random tenant id of `type`: a UUID; a random positive 62-bit integer for bigint (not guessable from
   * another tenant's id); a UUID string for text.
   */
  generate(type: TenantKeyType = configured): TenantId {
    if (type === 'bigint') return ((randomBytes(8).readBigUInt64BE() >> 2n) + 1n).toString() as TenantId;
    return crypto.randomUUID() as TenantId;
  },
  /** The SQL type of tenant ids of `type` (default: the process's key type). */
  sqlType(type: TenantKeyType = configured): TenantKeyType {
    return type;
  },
} as const;
