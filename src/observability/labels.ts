/** The tenant label of the tenants past the label bound. */
export const OTHER_LABEL = 'other';
/** The tenant label of requests that have no tenant (public routes, refused credentials). */
export const NO_TENANT_LABEL = 'none';

/**
 * Which tenants keep their own metric label: at most `max`. A tenant is labelled when a slot is free; at each
 * `rebalance` (every scrape) the `max` most active tenants of the activity window keep or get a label and the
 * others lose it: their counts are folded into `other` (so every counter stays monotonic and the sum over all
 * series stays exact).
 */
export class TenantLabels {
  readonly max: number;
  readonly #labelled = new Set<string>();
  readonly #counters: Array<TenantCounterStore> = [];

  constructor(max: number) {
    this.max = max;
  }

  /** The label of a tenant right now: its id, or `other`. */
  labelOf(tenantId: string): string {
    if (this.#labelled.has(tenantId) || tenantId === NO_TENANT_LABEL) return tenantId;
    if (this.#labelled.size < this.max) {
      this.#labelled.add(tenantId);
      return tenantId;
    }
    return OTHER_LABEL;
  }

  /** The labelled tenants. */
  labelled(): ReadonlySet<string> {
    return this.#labelled;
  }

  /** Registers a store whose series follow the label choice. */
  track(store: TenantCounterStore): void {
    this.#counters.push(store);
  }

  /** Keeps the labels of the `max` tenants with the highest score; folds the others into `other`. */
  rebalance(scores: ReadonlyMap<string, number>): void {
    const keep = new Set([...scores.entries()].filter(([t]) => t !== OTHER_LABEL && t !== NO_TENANT_LABEL).sort((a, b) => b[1] - a[1]).slice(0, this.max).map(([t]) => t));
    for (const t of [...this.#labelled]) {
      if (keep.has(t)) continue;
      this.#labelled.delete(t);
      for (const c of this.#counters) c.fold(t);
    }
    for (const t of keep) if (this.#labelled.size < this.max) this.#labelled.add(t);
  }
}

/** Counter values per tenant label and the other labels (a JSON array key). */
export class TenantCounterStore {
  readonly #values = new Map<string, Map<string, number>>();
  readonly #labels: TenantLabels;

  constructor(labels: TenantLabels) {
    this.#labels = labels;
    labels.track(this);
  }

  /** Adds `value` to the series of `tenantId` (or `other`) with the other labels `key`. */
  inc(tenantId: string, key: string, value = 1): void {
    this.incLabel(this.#labels.labelOf(tenantId), key, value);
  }

  /** Adds `value` to the series of a label already chosen by `TenantLabels.labelOf` (one lookup for several stores). */
  incLabel(label: string, key: string, value: number): void {
    let m = this.#values.get(label);
    if (!m) this.#values.set(label, (m = new Map()));
    m.set(key, (m.get(key) ?? 0) + value);
  }

  /** Moves a tenant's values into `other`. */
  fold(tenantId: string): void {
    const m = this.#values.get(tenantId);
    if (!m) return;
    this.#values.delete(tenantId);
    let other = this.#values.get(OTHER_LABEL);
    if (!other) this.#values.set(OTHER_LABEL, (other = new Map()));
    for (const [k, v] of m) other.set(k, (other.get(k) ?? 0) + v);
  }

  /** Every series: tenant label, other-labels key, value. */
  *series(): Generator<[string, string, number]> {
    for (const [tenant, m] of this.#values) for (const [k, v] of m) yield [tenant, k, v];
  }
}
