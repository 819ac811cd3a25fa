import { TenantwallError } from '../errors.ts';
import { quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import type pg from 'pg';

/** Lifecycle state of a tenant: `active`, `suspended` or `deleted`. */
export type TenantStatus = 'active' | 'suspended' | 'deleted';

export interface Tenant {
  readonly id: TenantId;
  readonly slug: string;
  readonly name: string;
  readonly status: TenantStatus;
  readonly createdAt: Date;
}

/** Input of `db.tenants.create`: slug, name and optional id. */
export interface CreateTenantInput {
  slug: string;
  name: string;
  /** Default: a new random id of the configured key type (`TenantId.generate`). */
  id?: TenantId | string;
}

const SLUG_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

/** Validates a tenant slug (used in subdomains); throws `invalid_slug`. */
export function parseSlug(value: unknown): string {
  if (typeof value !== 'string' || !SLUG_RE.test(value)) {
    throw new TenantwallError('invalid_slug', `Invalid tenant slug ${JSON.stringify(String(value).slice(0, 80))}.`, {
      details: { field: 'slug' },
    });
  }
  return value;
}

type TenantRow = { id: string; slug: string; name: string; status: TenantStatus; created_at: Date };

function toTenant(r: TenantRow): Tenant {
  return Object.freeze({ id: String(r.id) as TenantId, slug: r.slug, name: r.name, status: r.status, createdAt: r.created_at });
}

/**
 * What the registry needs of its Tenantwall: the registry table's name and the owner handle (not the whole
 * instance, so the registry does not depend on the module that creates it).
 */
export interface RegistryHost {
  readonly schema: { readonly registryTable: string };
  /** A registry read through the application role (SELECT on the registry): no owner connection needed. */
  readRegistry<R extends pg.QueryResultRow = Record<string, any>>(sql: string, params: readonly unknown[]): Promise<pg.QueryResult<R>>;
  dangerouslyCrossTenant(): {
    query<R extends pg.QueryResultRow = Record<string, any>>(sql: string, params?: readonly unknown[]): Promise<pg.QueryResult<R>>;
    transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T>;
  };
}

/** The tenants registry: a global table written only through the owner connection. */
export class TenantRegistry {
  readonly #db: RegistryHost;
  #listeners: Array<(tenant: Tenant) => void> = [];

  constructor(db: RegistryHost) {
    this.#db = db;
  }

  get #table(): string {
    return quoteIdent(this.#db.schema.registryTable);
  }

  /** Called with the new state whenever a tenant's status or slug changes (caches subscribe). */
  onChange(listener: (tenant: Tenant) => void): () => void {
    this.#listeners.push(listener);
    return () => {
      this.#listeners = this.#listeners.filter((l) => l !== listener);
    };
  }

  async create(input: CreateTenantInput): Promise<Tenant> {
    const slug = parseSlug(input.slug);
    if (typeof input.name !== 'string' || input.name.trim() === '' || input.name.length > 200) {
      throw new TenantwallError('config_invalid', 'Tenant name must be 1-200 characters.', { status: 400, details: { field: 'name' } });
    }
    const id = input.id === undefined ? TenantId.generate() : TenantId.parse(input.id);
    try {
      const { rows } = await this.#db
        .dangerouslyCrossTenant()
        .query<TenantRow>(`INSERT INTO ${this.#table} (id, slug, name) VALUES ($1, $2, $3) RETURNING *`, [id, slug, input.name.trim()]);
      return toTenant(rows[0] as TenantRow);
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw new TenantwallError('tenant_exists', `A tenant with id ${id} or slug ${slug} already exists.`, { cause: err });
      }
      throw err;
    }
  }

  /** The tenant with this id (any status), read through the application role. */
  async get(id: TenantId | string): Promise<Tenant | undefined> {
    const { rows } = await this.#db.readRegistry<TenantRow>(`SELECT * FROM ${this.#table} WHERE id = $1`, [TenantId.parse(id)]);
    return rows[0] ? toTenant(rows[0]) : undefined;
  }

  /**
   * Reads the tenant again and tells the `onChange` listeners (the Fastify plugin's tenant and API-key caches drop
   * it): for a change made by another process, e.g. an operator process that suspended it.
   */
  async refresh(id: TenantId | string): Promise<Tenant | undefined> {
    const tenant = await this.get(id);
    return tenant ? this.#notify(tenant) : undefined;
  }

  /** The live (not deleted) tenant with this slug, read through the application role. */
  async getBySlug(slug: string): Promise<Tenant | undefined> {
    if (!SLUG_RE.test(slug)) return undefined;
    const { rows } = await this.#db.readRegistry<TenantRow>(`SELECT * FROM ${this.#table} WHERE slug = $1 AND status <> 'deleted'`, [slug]);
    return rows[0] ? toTenant(rows[0]) : undefined;
  }

  /**
   * A tenant by id or slug (what every CLI command accepts): an id of the configured key type first, then a
   * slug. Deleted tenants are found by id only (their slug may be reused).
   */
  async resolve(ref: string): Promise<Tenant | undefined> {
    const byId = TenantId.is(ref) || TenantId.is(ref.toLowerCase()) ? await this.get(TenantId.parse(ref)) : undefined;
    return byId ?? (await this.getBySlug(ref));
  }

  /** The tenant if it exists and is active; `tenant_not_found`, `tenant_suspended` or `tenant_deleted` otherwise. */
  async requireActive(id: TenantId | string): Promise<Tenant> {
    const tenant = await this.get(id);
    return assertActive(tenant, String(id));
  }

  async list(options: { status?: TenantStatus; limit?: number; after?: string } = {}): Promise<Tenant[]> {
    const limit = Math.min(Math.max(options.limit ?? 100, 1), 1000);
    const { rows } = await this.#db.readRegistry<TenantRow>(
      `SELECT * FROM ${this.#table}
        WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR slug > $2)
        ORDER BY slug LIMIT $3`,
      [options.status ?? null, options.after ?? null, limit],
    );
    return rows.map(toTenant);
  }

  /**
   * Suspends a tenant (idempotent). `onSuspended` runs in the same owner transaction, only when the tenant was
   * active until now: what must happen exactly once with the suspension (the `tenant.suspended` billing event
   * of lifecycle's `suspendTenant`) commits or rolls back with it. Listeners are told after the commit.
   */
  suspend(id: TenantId | string, options: { onSuspended?: (client: pg.PoolClient, tenant: Tenant) => Promise<void> } = {}): Promise<Tenant> {
    return this.#setStatus(id, 'suspended', 'active', options.onSuspended);
  }

  resume(id: TenantId | string): Promise<Tenant> {
    return this.#setStatus(id, 'active', 'suspended');
  }

  /** Changes a tenant's slug (deleted tenants keep theirs); `tenant_exists` when another live tenant has it. */
  async rename(id: TenantId | string, slug: string): Promise<Tenant> {
    const tid = TenantId.parse(id);
    const newSlug = parseSlug(slug);
    let rows: TenantRow[];
    try {
      ({ rows } = await this.#db
        .dangerouslyCrossTenant()
        .query<TenantRow>(`UPDATE ${this.#table} SET slug = $2 WHERE id = $1 AND status <> 'deleted' RETURNING *`, [tid, newSlug]));
    } catch (err) {
      if ((err as { code?: string }).code === '23505') {
        throw new TenantwallError('tenant_exists', `Another tenant already uses the slug ${newSlug}.`, { cause: err });
      }
      throw err;
    }
    if (!rows[0]) assertActive(await this.get(tid), tid); // throws not_found / deleted
    return this.#notify(toTenant(rows[0] as TenantRow));
  }

  /**
   * Leaves the tombstone of a deleted tenant: status `deleted`, `deleted_at` set, slug free for reuse. Called by
   * the lifecycle delete once no row of the tenant is left.
   */
  async tombstone(id: TenantId | string): Promise<Tenant> {
    const tid = TenantId.parse(id);
    // least() keeps the first deletion time (it skips NULL); Citus refuses now() inside coalesce() in an UPDATE.
    const { rows } = await this.#db
      .dangerouslyCrossTenant()
      .query<TenantRow>(
        `UPDATE ${this.#table} SET status = 'deleted', deleted_at = least(deleted_at, now()) WHERE id = $1 RETURNING *`,
        [tid],
      );
    if (!rows[0]) throw new TenantwallError('tenant_not_found', `Tenant ${tid} does not exist.`);
    return this.#notify(toTenant(rows[0]));
  }

  #notify(tenant: Tenant): Tenant {
    for (const l of this.#listeners) l(tenant);
    return tenant;
  }

  async #setStatus(id: TenantId | string, to: TenantStatus, from: TenantStatus, onChanged?: (client: pg.PoolClient, tenant: Tenant) => Promise<void>): Promise<Tenant> {
    const tid = TenantId.parse(id);
    const tenant = await this.#db.dangerouslyCrossTenant().transaction(async (client) => {
      // The previous status (row locked) tells a change from a repeat.
      const { rows } = await client.query<TenantRow & { previous: TenantStatus }>(
        `WITH prev AS (SELECT status FROM ${this.#table} WHERE id = $1 FOR UPDATE)
         UPDATE ${this.#table} r SET status = $2 FROM prev WHERE r.id = $1 AND r.status IN ($2, $3) RETURNING r.*, prev.status AS previous`,
        [tid, to, from],
      );
      const row = rows[0];
      if (!row) return undefined;
      const t = toTenant(row);
      if (onChanged && row.previous !== to) await onChanged(client, t);
      return t;
    });
    if (!tenant) {
      assertActive(await this.get(tid), tid); // throws not_found / deleted
      throw new TenantwallError('tenant_not_found', `Tenant ${tid} cannot change to ${to}.`);
    }
    return this.#notify(tenant);
  }
}

/** Throws `tenant_suspended` / `tenant_deleted` unless the tenant is active. */
export function assertActive(tenant: Tenant | undefined, shown: string): Tenant {
  if (!tenant) throw new TenantwallError('tenant_not_found', `Tenant ${shown} does not exist.`);
  if (tenant.status === 'suspended') throw new TenantwallError('tenant_suspended', `Tenant ${tenant.slug} is suspended.`);
  if (tenant.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${tenant.slug} was deleted.`);
  return tenant;
}
