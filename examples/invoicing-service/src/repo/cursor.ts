import { TenantwallError } from 'tenantwall';

/**
 * Keyset cursor: the sort key and id of the last row of a page, base64url JSON. It is opaque to clients but not
 * secret: a forged cursor can only move the starting point, because every list query is also constrained to
 * the caller's tenant (the tenant predicate that tenantwall's Kysely plugin adds, verified by the guard, and
 * row-level security), so it never reaches another tenant's rows.
 */
export interface Cursor {
  readonly sort: string;
  readonly order: 'asc' | 'desc';
  readonly value: string | number;
  readonly id: string;
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const ISO_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;

export type CursorValueKind = 'timestamp' | 'integer' | 'text';

export function encodeCursor(c: Cursor): string {
  return Buffer.from(JSON.stringify({ s: c.sort, o: c.order, v: c.value, i: c.id })).toString('base64url');
}

function invalid(why: string): TenantwallError {
  return new TenantwallError('invalid_cursor', `Invalid cursor: ${why}.`, { details: { field: 'cursor' } });
}

/** Decodes and checks a cursor against the list request it is used with; `invalid_cursor` otherwise. */
export function decodeCursor(raw: string, expected: { sort: string; order: 'asc' | 'desc'; kind: CursorValueKind }): Cursor {
  let parsed: unknown;
  try {
    if (!/^[A-Za-z0-9_-]+$/.test(raw)) throw new Error('not base64url');
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    throw invalid('not a cursor returned by this API');
  }
  const p = parsed as { s?: unknown; o?: unknown; v?: unknown; i?: unknown } | null;
  if (typeof p !== 'object' || p === null || Array.isArray(p)) throw invalid('not a cursor returned by this API');
  if (p.s !== expected.sort || p.o !== expected.order) throw invalid(`it was made for another sort/order than ${expected.sort} ${expected.order}`);
  if (typeof p.i !== 'string' || !UUID_RE.test(p.i)) throw invalid('bad position id');
  const v = p.v;
  const ok =
    (expected.kind === 'timestamp' && typeof v === 'string' && ISO_RE.test(v) && !Number.isNaN(Date.parse(v))) ||
    (expected.kind === 'integer' && typeof v === 'number' && Number.isSafeInteger(v)) ||
    (expected.kind === 'text' && typeof v === 'string' && v.length <= 1000);
  if (!ok) throw invalid('bad position value');
  return { sort: expected.sort, order: expected.order, value: v as string | number, id: p.i };
}
