import type pg from 'pg';

/**
 * Runs `fn` inside one transaction on `client`: `begin` (default `BEGIN`), then `fn`, then COMMIT; ROLLBACK when
 * `fn` throws (its error is rethrown, never replaced by a failed ROLLBACK). The one transaction helper: session
 * code does not write BEGIN ... COMMIT by hand.
 */
export async function withTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>, begin = 'BEGIN'): Promise<T> {
  await client.query(begin);
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw err;
  }
}
