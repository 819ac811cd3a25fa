/**
 * The leak oracle. It remembers which tenant owns every id and marker it has seen created, and checks that a
 * response to tenant X never contains anything of another tenant: no id, no text marker, no tenant id, slug or
 * key, no cursor that points at a foreign row. Values the request itself carried (an id the attacker sent) may
 * be echoed back in an error message; that tells the attacker nothing, so they are excluded.
 */
import { ERROR_CODES } from '../../../src/index.ts';
import type { WorldTenant } from './world.ts';

const UUID_G = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const B64URL_G = /[A-Za-z0-9_-]{24,}/g;

export class LeakError extends Error {
  override name = 'LeakError';
}

export interface Exchange {
  /** Index of the tenant that sent the request (-1: anonymous or admin). */
  readonly observer: number;
  readonly method: string;
  readonly url: string;
  readonly requestText: string;
  readonly status: number;
  readonly body: string;
}

export class Ledger {
  readonly #owner = new Map<string, number>();
  readonly #tenants: readonly WorldTenant[];
  /** Every (observer, id) that appeared in a successful response, for the database cross-check at the end. */
  readonly seen = new Map<string, number>();
  checked = 0;

  constructor(tenants: readonly WorldTenant[]) {
    this.#tenants = tenants;
    for (const t of tenants) {
      this.#owner.set(t.id, t.idx);
      this.#owner.set(t.keyId, t.idx);
    }
  }

  own(id: string, tenant: number): void {
    const prev = this.#owner.get(id.toLowerCase());
    if (prev !== undefined && prev !== tenant) throw new LeakError(`id ${id} is claimed by tenant ${tenant} but was created by tenant ${prev}`);
    this.#owner.set(id.toLowerCase(), tenant);
  }

  ownerOf(id: string): number | undefined {
    return this.#owner.get(id.toLowerCase());
  }

  /** Throws LeakError when the response shows anything of a tenant other than the observer. */
  check(x: Exchange): void {
    this.checked++;
    const where = `${x.method} ${x.url} as tenant ${x.observer} -> ${x.status}`;
    if (x.status >= 500) throw new LeakError(`${where}: server error ${x.body.slice(0, 300)}`);
    const sent = x.requestText + ' ' + x.url;
    const sentIds = new Set((sent.match(UUID_G) ?? []).map((s) => s.toLowerCase()));
    for (const raw of x.body.match(UUID_G) ?? []) {
      const id = raw.toLowerCase();
      const owner = this.#owner.get(id);
      if (owner !== undefined && owner !== x.observer && !sentIds.has(id)) {
        throw new LeakError(`${where}: response contains id ${id} of tenant ${owner}: ${x.body.slice(0, 400)}`);
      }
    }
    for (const t of this.#tenants) {
      if (t.idx === x.observer) continue;
      for (const secret of [t.key, t.marker, t.slug]) {
        if (x.body.includes(secret) && !sent.includes(secret)) {
          throw new LeakError(`${where}: response contains ${secret === t.key ? 'the API key' : secret === t.marker ? 'the marker' : 'the slug'} of tenant ${t.idx}: ${x.body.slice(0, 400)}`);
        }
      }
    }
    // Cursors are base64url JSON: decode anything that looks like one and check the position it names.
    for (const token of x.body.match(B64URL_G) ?? []) {
      let decoded: string;
      try {
        decoded = Buffer.from(token, 'base64url').toString('utf8');
      } catch {
        continue;
      }
      if (!decoded.startsWith('{')) continue;
      for (const raw of decoded.match(UUID_G) ?? []) {
        const owner = this.#owner.get(raw.toLowerCase());
        if (owner !== undefined && owner !== x.observer && !sentIds.has(raw.toLowerCase())) {
          throw new LeakError(`${where}: a cursor in the response points at id ${raw} of tenant ${owner}`);
        }
      }
      for (const t of this.#tenants) {
        if (t.idx !== x.observer && decoded.includes(t.marker) && !sent.includes(token)) {
          throw new LeakError(`${where}: a cursor in the response carries a value of tenant ${t.idx}`);
        }
      }
    }
    if (x.status >= 400) {
      const code = errorCode(x.body);
      if (code === undefined || !(code in ERROR_CODES)) throw new LeakError(`${where}: error without a stable code: ${x.body.slice(0, 300)}`);
    }
  }

  /** Records ids of a successful response as seen by the observer (checked against the database later). */
  noteSeen(observer: number, body: unknown): void {
    walkIds(body, (id) => {
      if (!this.seen.has(id)) this.seen.set(id, observer);
    });
  }
}

export function errorCode(body: string): string | undefined {
  try {
    const j = JSON.parse(body) as { error?: { code?: unknown } };
    return typeof j.error?.code === 'string' ? j.error.code : undefined;
  } catch {
    return undefined;
  }
}

function walkIds(v: unknown, f: (id: string) => void): void {
  if (Array.isArray(v)) for (const x of v) walkIds(x, f);
  else if (v !== null && typeof v === 'object') {
    for (const [k, x] of Object.entries(v)) {
      if ((k === 'id' || k.endsWith('_id')) && typeof x === 'string' && /^[0-9a-f-]{36}$/.test(x)) f(x);
      else walkIds(x, f);
    }
  }
}

/**
 * The database truth: every id some tenant saw in a 2xx response belongs to that tenant. Also refuses any
 * row whose text carries another tenant's marker (a cross-tenant write). Runs as superuser.
 */
export async function verifyAgainstDatabase(
  su: { query: (sql: string) => Promise<{ rows: any[] }> },
  tenants: readonly WorldTenant[],
  ledger: Ledger,
): Promise<{ rows: number; seen: number }> {
  const { rows } = await su.query(`
    SELECT 'customers' AS t, tenant_id::text, id::text, coalesce(name, '') || ' ' || coalesce(email, '') AS text, NULL::text AS parent FROM customers
    UNION ALL SELECT 'invoices', tenant_id::text, id::text, customer, customer_id::text FROM invoices
    UNION ALL SELECT 'invoice_line_items', tenant_id::text, id::text, description, invoice_id::text FROM invoice_line_items
    UNION ALL SELECT 'api_keys', tenant_id::text, id::text, name, NULL FROM api_keys`);
  const byId = new Map<string, { t: string; tenant_id: string; text: string }>();
  const idxOf = new Map(tenants.map((t) => [t.id, t.idx]));
  for (const r of rows as Array<{ t: string; tenant_id: string; id: string; text: string }>) {
    byId.set(r.id, r);
    const owner = idxOf.get(r.tenant_id);
    if (owner === undefined) continue;
    for (const other of tenants) {
      if (other.idx !== owner && r.text.includes(other.marker)) {
        throw new LeakError(`${r.t} ${r.id} of tenant ${owner} holds text of tenant ${other.idx}: ${r.text}`);
      }
    }
  }
  for (const [id, observer] of ledger.seen) {
    const row = byId.get(id);
    if (!row) continue; // deleted since, or an id that is not a row (tenant id)
    const tenant = tenants[observer];
    if (tenant && row.tenant_id !== tenant.id) throw new LeakError(`tenant ${observer} saw ${row.t} ${id}, which belongs to ${row.tenant_id}`);
  }
  return { rows: rows.length, seen: ledger.seen.size };
}
