/**
 * A bounded map whose entries expire. Insertion order doubles as recency order (a hit re-inserts), so the
 * first key is always the least recently used one and eviction is O(1).
 */
export class TtlCache<K, V> {
  readonly #entries = new Map<K, { value: V; expires: number }>();
  readonly #max: number;
  readonly #ttlMs: number;

  constructor(max: number, ttlMs: number) {
    this.#max = max;
    this.#ttlMs = ttlMs;
  }

  /** The most recently used key: a hit on it needs no re-insert (the common case of one hot key). */
  #newest: K | undefined;

  get(key: K): V | undefined {
    const e = this.#entries.get(key);
    if (!e) return undefined;
    if (e.expires <= Date.now()) {
      this.#entries.delete(key);
      return undefined;
    }
    if (key !== this.#newest) {
      this.#entries.delete(key);
      this.#entries.set(key, e);
      this.#newest = key;
    }
    return e.value;
  }

  set(key: K, value: V): void {
    if (this.#max === 0 || this.#ttlMs === 0) return;
    this.#entries.delete(key);
    this.#entries.set(key, { value, expires: Date.now() + this.#ttlMs });
    this.#newest = key;
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done) break;
      this.#entries.delete(oldest.value);
    }
  }

  delete(key: K): void {
    this.#entries.delete(key);
  }

  /** Drops every entry whose value matches (e.g. all cached keys of one tenant). */
  deleteWhere(pred: (value: V, key: K) => boolean): void {
    for (const [k, e] of this.#entries) if (pred(e.value, k)) this.#entries.delete(k);
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
