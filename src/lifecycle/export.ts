import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { once } from 'node:events';
import path from 'node:path';
import type { Tenant } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { quoteLiteral } from '../schema/ddl.ts';
import { lockTenant, openSession, primaryKeyOf, q, resolveTenant, tableSum, mapLifecycleErrors } from './internal.ts';
import type { ProgressListener } from './progress.ts';

/** File format of a tenant export: `ndjson` or `csv`. */
export type ExportFormat = 'ndjson' | 'csv';

/** Options of `exportTenant`: target folder, format, progress. */
export interface ExportOptions {
  /** Directory to write into (created if missing). Files: `<table>.ndjson|csv` and `manifest.json`. */
  readonly dir: string;
  /** Default `ndjson`. */
  readonly format?: ExportFormat;
  /** Rows per cursor FETCH: memory stays bounded by one batch. Default 2000. */
  readonly batchSize?: number;
  readonly onProgress?: ProgressListener;
}

/** One table of an export manifest: file, rows, bytes, sha256. */
export interface ManifestTable {
  readonly table: string;
  readonly file: string;
  readonly rows: number;
  readonly bytes: number;
  /** sha256 of the file's bytes. */
  readonly sha256: string;
  /** Order-independent checksum of the rows without tenant_id (also what a verified import must reproduce). */
  readonly dataChecksum: string;
  readonly columns: ReadonlyArray<{ readonly name: string; readonly type: string }>;
}

/** The manifest of a tenant export: tables, files, row counts and checksums. */
export interface ExportManifest {
  readonly kind: 'tenantwall-export';
  readonly version: 1;
  readonly format: ExportFormat;
  readonly tenant: { readonly id: string; readonly slug: string; readonly name: string; readonly status: string };
  readonly exportedAt: string;
  readonly serverVersion: string;
  readonly tables: readonly ManifestTable[];
}

/** What `exportTenant` wrote: the manifest and its folder. */
export interface ExportResult {
  readonly manifest: ExportManifest;
  readonly dir: string;
  readonly rows: number;
  readonly ms: number;
}

export const MANIFEST = 'manifest.json';

/** Raw text values from the server: nothing is re-parsed (and rounded) by the driver on the way to the file. */
const RAW_TYPES = { getTypeParser: () => (v: string) => v };
const JSON_OIDS = new Set([114, 3802]);

/** Fails early, before any database work, when `dir` cannot be created or written. */
function prepareDir(dir: string): string {
  const abs = path.resolve(dir);
  try {
    fs.mkdirSync(abs, { recursive: true });
    const probe = path.join(abs, `.tenantwall-probe-${process.pid}`);
    fs.writeFileSync(probe, '');
    fs.unlinkSync(probe);
    // A manifest from an earlier export must not sit next to the partial files of a killed one.
    fs.rmSync(path.join(abs, MANIFEST), { force: true });
  } catch (cause) {
    throw new TenantwallError('export_path_unwritable', `Cannot write to ${abs}: ${(cause as Error).message}.`, { cause, details: { path: abs } });
  }
  return abs;
}

export function csvField(v: string | null): string {
  if (v === null) return '';
  // Quote empty strings too: an unquoted empty field means NULL (the COPY CSV convention).
  return v === '' || /[",\r\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
}

/**
 * Every row of every tenant table of one tenant, from ONE snapshot (a REPEATABLE READ READ ONLY transaction),
 * streamed through server-side cursors into one file per table, then a manifest with counts and checksums,
 * written last (atomically renamed): a directory without manifest.json is an incomplete export.
 */
export async function exportTenant(db: Tenantwall, ref: string, options: ExportOptions): Promise<ExportResult> {
  // PostgreSQL's lock waits, deadlocks and lost connections reach the caller as TenantwallErrors
  // (transaction_conflict, database_unreachable): nothing of the operation was applied, and it can be run again.
  return mapLifecycleErrors(() => exportTenantImpl(db, ref, options));
}

async function exportTenantImpl(db: Tenantwall, ref: string, options: ExportOptions): Promise<ExportResult> {
  const started = performance.now();
  const format = options.format ?? 'ndjson';
  if (format !== 'ndjson' && format !== 'csv') throw new TenantwallError('config_invalid', `Unknown export format ${JSON.stringify(format)}: ndjson or csv.`);
  const batchSize = options.batchSize ?? 2000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new TenantwallError('config_invalid', 'batchSize must be a positive integer.');
  const tenant: Tenant = await resolveTenant(db, ref);
  if (tenant.status === 'deleted') throw new TenantwallError('tenant_deleted', `Tenant ${tenant.slug} was deleted; nothing is left to export.`);
  const dir = prepareDir(options.dir);
  const tc = db.schema.tenantColumn;
  const client = await openSession(db);
  const tables: ManifestTable[] = [];
  let serverVersion: string | undefined;
  try {
    // Before the snapshot: no move or delete of this tenant can commit while the export reads (lockTenant).
    await lockTenant(client, tenant.id, 2000, 'shared');
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    serverVersion = String((await client.query(`SELECT current_setting('server_version') AS v`)).rows[0]?.v ?? '');
    for (const t of db.schema.tenantTables) {
      const { rows: colRows } = await client.query<{ name: string; type: string }>(
        `SELECT attname AS name, format_type(atttypid, atttypmod) AS type FROM pg_attribute
          WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped AND attname <> $2 ORDER BY attnum`,
        [q(t.name), tc],
      );
      const columns = colRows.map((r) => ({ name: r.name, type: r.type }));
      const total = Number((await client.query(`SELECT count(*)::text AS n FROM ${q(t.name)} WHERE ${q(tc)} = ${quoteLiteral(tenant.id)}`)).rows[0]?.n ?? 0);
      const file = `${t.name}.${format}`;
      const out = fs.createWriteStream(path.join(dir, file));
      const failed = new Promise<never>((_, reject) => out.once('error', reject));
      failed.catch(() => undefined);
      const hash = createHash('sha256');
      let bytes = 0;
      let rows = 0;
      const write = async (chunk: string): Promise<void> => {
        hash.update(chunk);
        bytes += Buffer.byteLength(chunk);
        if (!out.write(chunk)) await Promise.race([once(out, 'drain'), failed]);
      };
      if (format === 'csv') await write(`${columns.map((c) => csvField(c.name)).join(',')}\n`);
      // The literal (a validated UUID) lets the planner prune to this tenant's partition at plan time.
      await client.query(
        `DECLARE tw_export NO SCROLL CURSOR FOR SELECT ${columns.map((c) => q(c.name)).join(', ')} FROM ${q(t.name)}
          WHERE ${q(tc)} = ${quoteLiteral(tenant.id)} ORDER BY ${primaryKeyOf(t, tc).map(q).join(', ')}`,
      );
      options.onProgress?.({ operation: 'export', phase: 'rows', table: t.name, done: 0, total });
      for (;;) {
        const res = await client.query({ text: `FETCH FORWARD ${batchSize} FROM tw_export`, types: RAW_TYPES });
        if (res.rows.length === 0) break;
        const jsonCols = new Set(res.fields.filter((f) => JSON_OIDS.has(f.dataTypeID)).map((f) => f.name));
        let chunk = '';
        for (const row of res.rows as Array<Record<string, string | null>>) {
          if (format === 'csv') {
            chunk += `${columns.map((c) => csvField(row[c.name] ?? null)).join(',')}\n`;
          } else {
            const obj: Record<string, unknown> = {};
            for (const c of columns) {
              const v = row[c.name] ?? null;
              obj[c.name] = v !== null && jsonCols.has(c.name) ? JSON.parse(v) : v;
            }
            chunk += `${JSON.stringify(obj)}\n`;
          }
        }
        await write(chunk);
        rows += res.rows.length;
        options.onProgress?.({ operation: 'export', phase: 'rows', table: t.name, done: rows, total });
      }
      await client.query('CLOSE tw_export');
      out.end();
      await Promise.race([once(out, 'finish'), failed]);
      const sum = await tableSum(client, t.name, tenant.id, tc);
      tables.push({ table: t.name, file, rows, bytes, sha256: hash.digest('hex'), dataChecksum: sum.checksum, columns });
    }
    await client.query('COMMIT');
  } catch (err) {
    await client.query('ROLLBACK').catch(() => undefined);
    if ((err as NodeJS.ErrnoException).syscall !== undefined) {
      throw new TenantwallError('export_path_unwritable', `Writing the export to ${dir} failed: ${(err as Error).message}.`, { cause: err, details: { path: dir } });
    }
    throw err;
  } finally {
    await client.end().catch(() => undefined);
  }
  const manifest: ExportManifest = {
    kind: 'tenantwall-export',
    version: 1,
    format,
    tenant: { id: tenant.id, slug: tenant.slug, name: tenant.name, status: tenant.status },
    exportedAt: new Date().toISOString(),
    serverVersion: serverVersion ?? '',
    tables,
  };
  const tmp = path.join(dir, `${MANIFEST}.tmp`);
  fs.writeFileSync(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  fs.renameSync(tmp, path.join(dir, MANIFEST));
  return { manifest, dir, rows: tables.reduce((a, t) => a + t.rows, 0), ms: performance.now() - started };
}
