import { type SelectQueryBuilder, sql } from 'kysely';
import { TenantwallError } from 'tenantwall';
import { type CursorValueKind, decodeCursor, encodeCursor } from './cursor.ts';
import type { DB } from './db.ts';

export interface Page<T> {
  data: T[];
  next_cursor: string | null;
}

export interface PageRequest {
  limit: number;
  cursor?: string | undefined;
  order: 'asc' | 'desc';
}

export function notFound(resource: string, id: string, field = 'id'): TenantwallError {
  return new TenantwallError('not_found', `No ${resource} ${id}.`, { details: { resource, field } });
}

export function iso(d: Date | null): string | null {
  return d === null ? null : d.toISOString();
}

/** `date_trunc('milliseconds', now())`: stored timestamps are milliseconds, like the values in cursors. */
export const nowMs = sql<Date>`date_trunc('milliseconds', now())`;

const CASTS = { timestamp: 'timestamptz', integer: 'bigint', text: 'text' } as const;

/**
 * One keyset page: `(sort, id) > / < (cursor value, cursor id)`, ORDER BY sort, id and LIMIT limit + 1 (the
 * extra row tells whether another page exists). The sort column comes from a fixed whitelist (never from input).
 */
export function keysetPage<T extends keyof DB & string, O>(
  qb: SelectQueryBuilder<DB, T, O>,
  sortColumn: keyof DB[T] & string,
  kind: CursorValueKind,
  page: PageRequest,
): SelectQueryBuilder<DB, T, O> {
  let q = qb;
  if (page.cursor !== undefined) {
    const c = decodeCursor(page.cursor, { sort: sortColumn, order: page.order, kind });
    const op = page.order === 'asc' ? '>' : '<';
    q = q.where((eb) =>
      eb(eb.refTuple(sortColumn as never, 'id' as never), op, eb.tuple(eb.cast(eb.val(c.value), CASTS[kind]), eb.cast(eb.val(c.id), 'uuid')) as never),
    );
  }
  return q.orderBy(sortColumn as never, page.order).orderBy('id' as never, page.order).limit(page.limit + 1);
}

/** Cuts the extra row that tells whether another page exists and makes its cursor. */
export function toPage<R extends { id: string }, T>(
  rows: R[],
  page: PageRequest,
  sortColumn: string,
  sortValue: (r: R) => string | number,
  map: (r: R) => T,
): Page<T> {
  const more = rows.length > page.limit;
  const slice = more ? rows.slice(0, page.limit) : rows;
  const last = slice[slice.length - 1];
  return {
    data: slice.map(map),
    next_cursor: more && last ? encodeCursor({ sort: sortColumn, order: page.order, value: sortValue(last), id: last.id }) : null,
  };
}

/** Postgres error code of a driver error, if any. */
export function pgCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown }).code;
  return typeof c === 'string' ? c : undefined;
}
