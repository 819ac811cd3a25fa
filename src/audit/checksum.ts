import { createHash } from 'node:crypto';
import type pg from 'pg';

const USER_NS = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname !~ '^pg_(toast_)?temp_'`;

/**
 * A checksum of the content of every table, materialized view and sequence of the database: per relation, the
 * sorted md5 of each row's text form. Run it as a role that bypasses RLS (superuser or BYPASSRLS), otherwise
 * it only covers the rows that role can see.
 */
export async function databaseChecksum(client: pg.ClientBase): Promise<string> {
  const hash = createHash('sha256');
  for (const line of (await relationChecksums(client)).values()) hash.update(line);
  return hash.digest('hex');
}

/** Per relation (quoted `schema.name`, in checksum order): the line `databaseChecksum` hashes for it. */
export async function relationChecksums(client: pg.ClientBase): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const rels = await client.query<{ rel: string; kind: string }>(
    `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS rel, c.relkind AS kind
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm', 'S') AND ${USER_NS} ORDER BY 1`,
  );
  const tables = rels.rows.filter((r) => r.kind !== 'S');
  // A few relations per statement: one round trip per table would dominate on large schemas.
  for (let i = 0; i < tables.length; i += 200) {
    const batch = tables.slice(i, i + 200);
    const sql = batch
      .map((t) => `SELECT ${`'${t.rel.replace(/'/g, "''")}'`} AS rel, coalesce(md5(string_agg(md5(x::text), '' ORDER BY md5(x::text))), '') AS h, count(*) AS n FROM ${t.rel} x`)
      .join('\nUNION ALL\n');
    const { rows } = await client.query<{ rel: string; h: string; n: string }>(sql);
    for (const r of rows.sort((a, b) => a.rel.localeCompare(b.rel))) out.set(r.rel, `${r.rel}:${r.n}:${r.h}\n`);
  }
  for (const s of rels.rows.filter((r) => r.kind === 'S')) {
    const { rows } = await client.query<{ v: string }>(`SELECT last_value::text || ':' || is_called::text AS v FROM ${s.rel}`);
    out.set(s.rel, `${s.rel}=${rows[0]?.v ?? ''}\n`);
  }
  return out;
}
