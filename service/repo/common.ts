import { TenantwallError, type TenantQueryable } from '../../src/index.ts';
import { type CursorValueKind, decodeCursor, encodeCursor } from './cursor.ts';

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

/**
 * Appends the keyset condition and ORDER BY/LIMIT of one page to `where`, with the sort column taken from a
 * fixed whitelist (never from input). Returns SQL text and the parameter list it extends.
 */
export function keysetSql(
  params: unknown[],
  sortColumn: string,
  kind: CursorValueKind,
  page: PageRequest,
): { condition: string; tail: string } {
  let condition = '';
  if (page.cursor !== undefined) {
    const c = decodeCursor(page.cursor, { sort: sortColumn, order: page.order, kind });
    const cast = kind === 'timestamp' ? 'timestamptz' : kind === 'integer' ? 'bigint' : 'text';
    params.push(c.value, c.id);
    const op = page.order === 'asc' ? '>' : '<';
    condition = ` AND (${sortColumn}, id) ${op} ($${params.length - 1}::${cast}, $${params.length}::uuid)`;
  }
  params.push(page.limit + 1);
  const dir = page.order === 'asc' ? 'ASC' : 'DESC';
  return { condition, tail: ` ORDER BY ${sortColumn} ${dir}, id ${dir} LIMIT $${params.length}` };
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

export type Q = TenantQueryable;

/** Postgres error code of a driver error, if any. */
export function pgCode(err: unknown): string | undefined {
  const c = (err as { code?: unknown }).code;
  return typeof c === 'string' ? c : undefined;
}
