import fs from 'node:fs';
import path from 'node:path';
import type pg from 'pg';
import { quoteLiteral } from '../schema/ddl.ts';
import { make } from './finding.ts';
import type { Finding } from './types.ts';

/** Paths allowed to use the plain cross-tenant handle when no allow-list is given. */
export const DEFAULT_SOURCE_ALLOW: readonly string[] = Object.freeze(['**/migrations/**', '**/migrate*', '**/lifecycle/**']);

const SKIP_DIRS = new Set(['node_modules', '.git', 'dist', 'build', 'coverage', '.next']);
const SOURCE_EXT = /\.(?:[cm]?[jt]s|[jt]sx)$/;
/** A comment on the line or the line above that allows one use, with a reason. */
const MARKER = /tenantwall-audit-allow:\s*(\S.*)$/;

/** `**` any path, `*` any name part, `?` one character; matched against the path relative to the source root. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i] as string;
    if (ch === '*' && glob[i + 1] === '*') {
      re += glob[i + 2] === '/' ? '(?:.*/)?' : '.*';
      i += glob[i + 2] === '/' ? 2 : 1;
    } else if (ch === '*') re += '[^/]*';
    else if (ch === '?') re += '[^/]';
    else re += ch.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

function* files(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    if (e.isDirectory()) {
      if (!SKIP_DIRS.has(e.name)) yield* files(path.join(dir, e.name));
    } else if (e.isFile() && SOURCE_EXT.test(e.name) && !e.name.endsWith('.d.ts')) yield path.join(dir, e.name);
  }
}

/**
 * Static scan: every `dangerouslyCrossTenant(` in the JavaScript/TypeScript files under `root` whose path
 * (relative, `/`-separated) matches none of `allow` and that carries no `tenantwall-audit-allow: <reason>` comment.
 */
export function scanSource(root: string, allow: readonly string[]): { findings: Finding[]; files: number; allowed: number } {
  const res = allow.map(globToRegExp);
  const findings: Finding[] = [];
  let count = 0;
  let allowed = 0;
  for (const file of files(root)) {
    count++;
    const rel = path.relative(root, file).split(path.sep).join('/');
    const text = fs.readFileSync(file, 'utf8');
    if (!text.includes('dangerouslyCrossTenant')) continue;
    const lines = text.split('\n');
    lines.forEach((line, i) => {
      if (!/\bdangerouslyCrossTenant\s*\(/.test(line)) return;
      if (res.some((r) => r.test(rel)) || MARKER.test(line) || MARKER.test(lines[i - 1] ?? '')) {
        allowed++;
        return;
      }
      const object = `${rel}:${i + 1}`;
      findings.push(
        make('cross-tenant-handle-in-source', 'source', object, `${object} uses the plain cross-tenant handle outside migrations and lifecycle code: ${line.trim().slice(0, 160)}`, `// use dangerouslyBreakGlass(db, { actor, reason, tenant, ttlMs }) for a person's access (docs/break-glass.md); for code that must stay cross-tenant, move it under an allowed path (--source-allow) or add: // tenantwall-audit-allow: <reason>`, {
          confirm: `SELECT NULL::boolean AS fixed -- a source finding: re-run tenantwall audit --source ${root}`,
          details: { file: rel, line: i + 1, code: line.trim().slice(0, 400), allow: [...allow] },
        }),
      );
    });
  }
  return { findings, files: count, allowed };
}

/** Dynamic: all-tenant break-glass grants opened in the last `days` days, from tw_access_log_all (none without it). */
export async function accessLogFindings(client: pg.ClientBase, days: number): Promise<Finding[]> {
  const exists = await client.query<{ t: string | null }>(`SELECT to_regclass('tw_access_log_all')::text AS t`);
  const table = exists.rows[0]?.t;
  if (!table) return [];
  const since = `now() - interval ${quoteLiteral(`${days} days`)}`;
  const { rows } = await client.query<{ grant_id: string; actor: string; reason: string; opened: Date; statements: string; failed: string }>(
    `SELECT grant_id::text, min(actor) AS actor, min(reason) AS reason, min(at) AS opened,
       count(*) FILTER (WHERE kind = 'statement') AS statements, count(*) FILTER (WHERE kind = 'failed') AS failed
     FROM ${table} WHERE at > ${since} GROUP BY grant_id HAVING count(*) FILTER (WHERE kind IN ('statement', 'failed')) > 0 ORDER BY min(at)`,
  );
  return rows.map((r) =>
    make('break-glass-all-tenants', 'table', `${table}#${r.grant_id}`, `${r.actor} read or wrote every tenant through all-tenant break-glass grant ${r.grant_id} (opened ${new Date(r.opened).toISOString()}, ${r.statements} statement(s), ${r.failed} failed) for: ${r.reason}`, `-- review the statements: SELECT at, statement, rows FROM ${table} WHERE grant_id = ${quoteLiteral(r.grant_id)} ORDER BY at; scope the next grant to one tenant`, {
      confirm: `SELECT NOT EXISTS (SELECT 1 FROM ${table} WHERE grant_id = ${quoteLiteral(r.grant_id)} AND at > ${since}) AS fixed`,
      details: { grantId: r.grant_id, actor: r.actor, reason: r.reason, opened: new Date(r.opened).toISOString(), statements: Number(r.statements), failed: Number(r.failed), days },
    }),
  );
}
