import type { Tenantwall } from '../db/tenantwall.ts';
import type { Tenant } from '../db/tenant-registry.ts';
import type { TenantId } from '../tenant/tenant-id.ts';
import { TtlCache } from '../util/ttl-cache.ts';

/**
 * Tenant lookups by id and slug, cached (bounded, TTL). A status change announced by `db.tenants.onChange`
 * drops the tenant at once; a generation counter keeps a lookup that raced with the change from re-inserting
 * the old state.
 */
export class TenantCache {
  readonly #db: Tenantwall;
  readonly #byId: TtlCache<string, Tenant>;
  readonly #slugToId: TtlCache<string, TenantId>;
  #generation = 0;
  // Lookups in flight by id: concurrent requests of an uncached tenant share one registry read.
  readonly #inFlight = new Map<TenantId, Promise<Tenant | undefined>>();

  constructor(db: Tenantwall, size: number, ttlMs: number) {
    this.#db = db;
    this.#byId = new TtlCache(size, ttlMs);
    this.#slugToId = new TtlCache(size, ttlMs);
  }

  /** The cached tenant, without asking the database. */
  peek(id: TenantId): Tenant | undefined {
    return this.#byId.get(id);
  }

  async get(id: TenantId): Promise<Tenant | undefined> {
    const hit = this.#byId.get(id);
    if (hit) return hit;
    let pending = this.#inFlight.get(id);
    if (!pending) {
      const gen = this.#generation;
      const p = this.#db.tenants.get(id).then(
        (tenant) => {
          if (this.#inFlight.get(id) === p) this.#inFlight.delete(id);
          if (tenant && gen === this.#generation) this.#remember(tenant);
          return tenant;
        },
        (err: unknown) => {
          if (this.#inFlight.get(id) === p) this.#inFlight.delete(id);
          throw err;
        },
      );
      this.#inFlight.set(id, (pending = p));
    }
    return pending;
  }

  async getBySlug(slug: string): Promise<Tenant | undefined> {
    const id = this.#slugToId.get(slug);
    if (id) {
      const t = await this.get(id);
      if (t && t.slug === slug) return t;
    }
    const gen = this.#generation;
    const tenant = await this.#db.tenants.getBySlug(slug);
    if (tenant && gen === this.#generation) this.#remember(tenant);
    return tenant;
  }

  forget(tenant: Pick<Tenant, 'id'>): void {
    this.#generation++;
    this.#inFlight.clear(); // a read that started before the change must not be shared after it
    this.#byId.delete(tenant.id);
    this.#slugToId.deleteWhere((id) => id === tenant.id);
  }

  #remember(t: Tenant): void {
    this.#byId.set(t.id, t);
    this.#slugToId.set(t.slug, t.id);
  }
}
