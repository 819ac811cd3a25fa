import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { type Tenant, parseSlug } from '../db/tenant-registry.ts';
import type { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { withTransaction } from '../db/transaction.ts';
import { dedicatedPartitionSql, quoteIdent } from '../schema/ddl.ts';
import { TenantId } from '../tenant/tenant-id.ts';
import { type ExportManifest, MANIFEST, type ManifestTable } from './export.ts';
import { isolateNewTenant } from './citus.ts';
import { type Placement, bucketOf, columnsOf, dedicatedCapable, lockTenant, openSession, q, tableSum, mapLifecycleErrors } from './internal.ts';
import type { ProgressListener } from './progress.ts';

/** Options of `importTenant`: source folder, target tenant, progress. */
export interface ImportOptions {
  /** A directory written by `exportTenant`. */
  readonly dir: string;
  /** Slug of the NEW tenant. */
  readonly slug: string;
  /** Default: the exported tenant's name. */
  readonly name?: string;
  /** Default: a new random id. Must not exist yet. */
  readonly id?: TenantId | string;
  readonly placement?: Placement;
  /** Rows per INSERT. Default 1000. */
  readonly batchSize?: number;
  /**
   * Citus, dedicated placement: how long isolating the new tenant's shard waits for another shard operation that
   * holds the shards (a rebalance) before giving up with `transaction_conflict`, nothing imported. Default 30000.
   */
  readonly lockWaitMs?: number;
  readonly onProgress?: ProgressListener;
}

/** What `importTenant` loaded: rows per table. */
export interface ImportResult {
  readonly tenant: Tenant;
  readonly tables: ReadonlyArray<{ readonly table: string; readonly rows: number }>;
  readonly rows: number;
  readonly ms: number;
}

function invalid(message: string): never {
  throw new TenantwallError('import_invalid', message);
}

function readManifest(dir: string): ExportManifest {
  let text: string;
  try {
    text = fs.readFileSync(path.join(dir, MANIFEST), 'utf8');
  } catch (cause) {
    throw new TenantwallError('import_invalid', `No readable ${MANIFEST} in ${dir} (an export without one is incomplete).`, { cause });
  }
  let m: ExportManifest;
  try {
    m = JSON.parse(text) as ExportManifest;
  } catch (cause) {
    throw new TenantwallError('import_invalid', `${MANIFEST} in ${dir} is not valid JSON.`, { cause });
  }
  if (m?.kind !== 'tenantwall-export' || m.version !== 1 || !Array.isArray(m.tables) || (m.format !== 'ndjson' && m.format !== 'csv')) {
    invalid(`${MANIFEST} in ${dir} is not a tenantwall export (version 1).`);
  }
  for (const t of m.tables) {
    if (typeof t.file !== 'string' || path.basename(t.file) !== t.file) invalid(`Manifest entry ${JSON.stringify(t.table)} names an unsafe file.`);
  }
  return m;
}

async function fileSha256(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of fs.createReadStream(file)) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Streams the records of one CSV file (RFC 4180; an unquoted empty field is NULL, `""` the empty string). */
export async function* readCsv(file: string): AsyncGenerator<Array<string | null>> {
  let record: Array<string | null> = [];
  let field = '';
  let quoted = false;
  let inQuotes = false;
  let pendingQuote = false; // a quote inside quotes: either an escaped quote or the closing one
  let any = false;
  const endField = () => {
    record.push(!quoted && field === '' ? null : field);
    field = '';
    quoted = false;
  };
  for await (const chunk of fs.createReadStream(file, { encoding: 'utf8' })) {
    for (const ch of chunk as string) {
      any = true;
      if (inQuotes) {
        if (pendingQuote) {
          pendingQuote = false;
          if (ch === '"') {
            field += '"';
            continue;
          }
          inQuotes = false; // it was the closing quote; fall through to handle ch outside quotes
        } else if (ch === '"') {
          pendingQuote = true;
          continue;
        } else {
          field += ch;
          continue;
        }
      }
      if (ch === '"' && field === '' && !quoted) {
        inQuotes = true;
        quoted = true;
      } else if (ch === ',') {
        endField();
      } else if (ch === '\n') {
        endField();
        yield record;
        record = [];
        any = false;
      } else if (ch !== '\r') {
        field += ch;
      }
    }
  }
  if (pendingQuote) inQuotes = false;
  if (inQuotes) invalid(`${path.basename(file)} ends inside a quoted field.`);
  if (any) {
    endField();
    yield record;
  }
}

async function* readRows(file: string, format: 'ndjson' | 'csv', table: ManifestTable): AsyncGenerator<Record<string, unknown>> {
  if (format === 'ndjson') {
    const rl = readline.createInterface({ input: fs.createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
    for await (const line of rl) {
      if (line === '') continue;
      yield JSON.parse(line) as Record<string, unknown>;
    }
    return;
  }
  const jsonCols = new Set(table.columns.filter((c) => c.type === 'json' || c.type === 'jsonb').map((c) => c.name));
  let header: Array<string | null> | undefined;
  for await (const rec of readCsv(file)) {
    if (!header) {
      header = rec;
      continue;
    }
    const obj: Record<string, unknown> = {};
    header.forEach((h, i) => {
      const v = rec[i] ?? null;
      // Cast by json_populate_recordset: a JSON string would become a json string value, so parse json columns.
      obj[h ?? ''] = v !== null && jsonCols.has(h ?? '') ? JSON.parse(v) : v;
    });
    yield obj;
  }
}

/**
 * Imports an export into a NEW tenant: the manifest's sizes and sha256 sums are verified before anything is
 * written; then the registry row, the placement and every row are written in ONE transaction, and each table's
 * row count and data checksum must equal the manifest's before it commits: all or nothing.
 */
export async function importTenant(db: Tenantwall, options: ImportOptions): Promise<ImportResult> {
  // PostgreSQL's lock waits, deadlocks and lost connections reach the caller as TenantwallErrors
  // (transaction_conflict, database_unreachable): nothing of the operation was applied, and it can be run again.
  return mapLifecycleErrors(() => importTenantImpl(db, options));
}

async function importTenantImpl(db: Tenantwall, options: ImportOptions): Promise<ImportResult> {
  const started = performance.now();
  const dir = path.resolve(options.dir);
  const slug = parseSlug(options.slug);
  const id = options.id === undefined ? TenantId.generate() : TenantId.parse(options.id);
  const batchSize = options.batchSize ?? 1000;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new TenantwallError('config_invalid', 'batchSize must be a positive integer.');
  const manifest = readManifest(dir);
  const name = (options.name ?? manifest.tenant?.name ?? slug).trim();
  if (name === '' || name.length > 200) throw new TenantwallError('config_invalid', 'Tenant name must be 1-200 characters.', { status: 400, details: { field: 'name' } });
  const byName = new Map(manifest.tables.map((t) => [t.table, t]));
  for (const t of manifest.tables) {
    if (!db.schema.isTenantTable(t.table)) invalid(`The export has table ${t.table}, which is not a tenant table of this schema.`);
  }
  for (const [i, t] of manifest.tables.entries()) {
    const file = path.join(dir, t.file);
    let actual: { sha256: string; bytes: number };
    try {
      actual = await fileSha256(file);
    } catch (cause) {
      throw new TenantwallError('import_invalid', `File ${t.file} of the export is missing or unreadable.`, { cause });
    }
    if (actual.bytes !== t.bytes || actual.sha256 !== t.sha256) {
      throw new TenantwallError('import_checksum_mismatch', `File ${t.file}: sha256 ${actual.sha256.slice(0, 12)}, ${actual.bytes} bytes; the manifest says ${String(t.sha256).slice(0, 12)}, ${t.bytes} bytes.`, {
        details: { file: t.file },
      });
    }
    options.onProgress?.({ operation: 'import', phase: 'verify', table: t.table, done: i + 1, total: manifest.tables.length });
  }
  // Citus: the new tenant's hash value gets a shard group of its own first (online, src/lifecycle/citus.ts), then
  // its rows go there in the one transaction below; a failed isolation has written nothing of the tenant.
  const citusDedicated = db.citusVersion !== undefined && options.placement === 'dedicated';
  const placement = citusDedicated ? 'shared' : (options.placement ?? 'shared');
  const client = await openSession(db);
  const tc = db.schema.tenantColumn;
  const imported: Array<{ table: string; rows: number }> = [];
  try {
    await lockTenant(client, id);
    if (citusDedicated) {
      options.onProgress?.({ operation: 'import', phase: 'isolate', done: 0, total: 1 });
      await isolateNewTenant(client, db, id, slug, options.lockWaitMs);
      options.onProgress?.({ operation: 'import', phase: 'isolate', done: 1, total: 1 });
    }
    try {
      await withTransaction(client, async () => {
        await client.query(`INSERT INTO ${quoteIdent(db.schema.registryTable)} (id, slug, name) VALUES ($1, $2, $3)`, [id, slug, name]);
        if (placement === 'dedicated') {
          const tables = dedicatedCapable(db);
          if (tables.length === 0) throw new TenantwallError('placement_unsupported', 'No tenant table of this schema is partitioned for dedicated placement.');
          for (const t of tables) for (const sql of dedicatedPartitionSql(t, db.ddlContext, id, await bucketOf(client, t, id))) await client.query(sql);
        }
        // Declaration order is dependency order: referenced tables are filled first.
        for (const decl of db.schema.tenantTables) {
          const t = byName.get(decl.name);
          if (!t) continue;
          const live = new Set(await columnsOf(client, decl.name));
          for (const c of t.columns) if (!live.has(c.name)) invalid(`Column ${decl.name}.${c.name} of the export does not exist in the database.`);
          const cols = [tc, ...t.columns.map((c) => c.name)].map(q).join(', ');
          const sql = `INSERT INTO ${q(decl.name)} (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::${q(decl.name)}, $1::json)`;
          let batch: Array<Record<string, unknown>> = [];
          let rows = 0;
          const flush = async () => {
            if (batch.length === 0) return;
            await client.query(sql, [JSON.stringify(batch)]);
            rows += batch.length;
            batch = [];
            options.onProgress?.({ operation: 'import', phase: 'rows', table: decl.name, done: rows, total: t.rows });
          };
          for await (const row of readRows(path.join(dir, t.file), manifest.format, t)) {
            row[tc] = id; // the new tenant owns every row, whatever the file says
            batch.push(row);
            if (batch.length >= batchSize) await flush();
          }
          await flush();
          const sum = await tableSum(client, decl.name, id, tc);
          if (rows !== t.rows || sum.rows !== t.rows || sum.checksum !== t.dataChecksum) {
            throw new TenantwallError('import_checksum_mismatch', `Table ${decl.name}: imported ${sum.rows} rows (checksum ${sum.checksum}); the manifest says ${t.rows} (${t.dataChecksum}).`, {
              details: { table: decl.name },
            });
          }
          imported.push({ table: decl.name, rows });
        }
      });
    } catch (err) {
      if ((err as { code?: string }).code === '23505' && (err as { table?: string }).table === db.schema.registryTable) {
        throw new TenantwallError('tenant_exists', `A tenant with id ${id} or slug ${slug} already exists.`, { cause: err });
      }
      if (err instanceof SyntaxError) throw new TenantwallError('import_invalid', `A row of the export is not valid: ${err.message}.`, { cause: err });
      throw err;
    }
  } finally {
    await client.end().catch(() => undefined);
  }
  const tenant = (await db.tenants.get(id)) as Tenant;
  return { tenant, tables: imported, rows: imported.reduce((a, t) => a + t.rows, 0), ms: performance.now() - started };
}
