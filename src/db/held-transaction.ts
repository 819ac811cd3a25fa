import { TenantwallError } from '../errors.ts';
import type { TenantId } from '../tenant/tenant-id.ts';
import type { TenantTransaction, Tenantwall } from './tenantwall.ts';

/**
 * A tenant transaction held open for a query builder that drives transactions as begin / queries /
 * commit-or-rollback calls (Kysely, Drizzle), where tenantwall's transaction is a callback: the callback waits
 * on a promise until `end(commit)` resolves it (commit) or makes it throw (rollback).
 */
export class HeldTransaction {
  #tx: TenantTransaction | undefined;
  #finish: ((commit: boolean) => void) | undefined;
  #done: Promise<void> | undefined;

  /** The open transaction, while the callback runs. */
  get tx(): TenantTransaction | undefined {
    return this.#tx;
  }

  /** True from `begin` until `end`. */
  get held(): boolean {
    return this.#done !== undefined;
  }

  async begin(db: Tenantwall, tenantId: TenantId): Promise<void> {
    let started!: () => void;
    let failed!: (err: unknown) => void;
    const ready = new Promise<void>((resolve, reject) => {
      started = resolve;
      failed = reject;
    });
    const decision = new Promise<boolean>((resolve) => {
      this.#finish = resolve;
    });
    const rollback = Symbol('rollback');
    this.#done = db
      .forTenant(tenantId)
      .transaction(async (tx) => {
        this.#tx = tx;
        started();
        if (!(await decision)) throw rollback;
      })
      .then(
        () => undefined,
        (err: unknown) => {
          if (err === rollback) return;
          throw err;
        },
      )
      .finally(() => {
        this.#tx = undefined;
      });
    this.#done.catch((err: unknown) => failed(err));
    await ready;
  }

  /**
   * Commits or rolls back. The builders roll back after a failed COMMIT: that transaction already ended (its
   * error is the one the caller must see), so a rollback without a transaction does nothing; a COMMIT without
   * one is a bug (`query_failed` with `noTransaction`).
   */
  async end(commit: boolean, noTransaction: string): Promise<void> {
    const finish = this.#finish;
    const done = this.#done;
    this.#finish = undefined;
    this.#done = undefined;
    if (!finish || !done) {
      if (!commit) return;
      throw new TenantwallError('query_failed', noTransaction);
    }
    finish(commit);
    await done;
  }
}
