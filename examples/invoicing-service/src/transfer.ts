/**
 * The admin API's export download and import upload: one NDJSON stream per tenant export.
 *
 * Line 1 is the export's manifest (docs/lifecycle.md, "Export and import"); every further line is one row,
 * `{"table":"<table>","row":{...}}`, tables in manifest order. The row object is the export file's line
 * verbatim, so an upload rebuilds the export files byte for byte and the import checks each file's sha256 and
 * row checksum against the manifest: a row changed, added or dropped on the way is refused before anything is
 * written (`import_checksum_mismatch`).
 */
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { Readable } from 'node:stream';
import { type ExportManifest, TenantwallError } from 'tenantwall';

const FILE = /^[a-z_][a-z0-9_]{0,62}\.ndjson$/;
const prefix = (table: string) => `{"table":${JSON.stringify(table)},"row":`;

/** The export in `dir` (written by exportTenant, ndjson) as one NDJSON stream, read file by file. */
export function exportStream(dir: string): Readable {
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, 'manifest.json'), 'utf8')) as ExportManifest;
  async function* lines(): AsyncGenerator<string> {
    yield `${JSON.stringify(manifest)}\n`;
    for (const t of manifest.tables) {
      const rl = readline.createInterface({ input: fs.createReadStream(path.join(dir, t.file)), crlfDelay: Infinity });
      let chunk = '';
      for await (const line of rl) {
        chunk += `${prefix(t.table)}${line}}\n`;
        if (chunk.length >= 64 * 1024) {
          yield chunk;
          chunk = '';
        }
      }
      if (chunk) yield chunk;
    }
  }
  return Readable.from(lines(), { objectMode: false });
}

const invalid = (message: string, line?: number) =>
  new TenantwallError('import_invalid', line === undefined ? message : `Line ${line}: ${message}`, { details: { field: 'body', ...(line === undefined ? {} : { line }) } });

/**
 * Writes an uploaded export stream into `dir` as export files + manifest.json (what importTenant reads).
 * Refuses what is not such a stream (`import_invalid`), a table the manifest does not list, unsafe file names,
 * and more than `maxBytes` (`payload_too_large`). Returns the manifest.
 */
export async function writeUpload(input: Readable, dir: string, tables: ReadonlySet<string>, maxBytes: number): Promise<ExportManifest> {
  let bytes = 0;
  let failed: Error | undefined;
  input.on('error', (err) => {
    failed ??= err;
  });
  const count = (c: Buffer) => {
    bytes += c.length;
    if (bytes > maxBytes && !failed) {
      failed = new TenantwallError('payload_too_large', `The upload exceeds ${maxBytes} bytes.`, { details: { limit_bytes: maxBytes } });
      // Stop reading (not destroy: that would cut the connection before the 413 is sent); Node closes a connection
      // whose request was not read to its end once the answer is out.
      input.off('data', count);
      rl.close();
      input.pause();
    }
  };
  input.on('data', count);
  const rl = readline.createInterface({ input, crlfDelay: Infinity });
  let manifest: ExportManifest | undefined;
  const outs = new Map<string, fs.WriteStream>();
  let n = 0;
  try {
    for await (const line of rl) {
      n += 1;
      if (manifest === undefined) {
        try {
          manifest = JSON.parse(line) as ExportManifest;
        } catch {
          throw invalid('the first line must be the export manifest (JSON).', n);
        }
        if (manifest?.kind !== 'tenantwall-export' || manifest.version !== 1 || manifest.format !== 'ndjson' || !Array.isArray(manifest.tables)) {
          throw invalid('the first line is not a tenantwall export manifest (version 1, ndjson).', n);
        }
        for (const t of manifest.tables) {
          if (typeof t.table !== 'string' || !tables.has(t.table)) throw invalid(`the manifest lists ${JSON.stringify(t.table)}, which is not a tenant table of this service.`, n);
          if (typeof t.file !== 'string' || !FILE.test(t.file) || outs.has(t.table)) throw invalid(`the manifest entry of ${t.table} names an unsafe or repeated file.`, n);
          outs.set(t.table, fs.createWriteStream(path.join(dir, t.file), { flags: 'wx' }));
        }
        continue;
      }
      if (line === '') continue;
      const m = /^\{"table":"([a-z_][a-z0-9_]*)","row":/.exec(line);
      const out = m ? outs.get(m[1] as string) : undefined;
      if (!m || !out || !line.endsWith('}')) throw invalid('expected {"table":"<a table of the manifest>","row":{...}}.', n);
      if (!out.write(`${line.slice(m[0].length, -1)}\n`)) await new Promise<void>((r) => out.once('drain', () => r()));
    }
    if (failed) throw failed;
    if (manifest === undefined) throw invalid('the upload is empty: the first line must be the export manifest.');
  } catch (err) {
    throw failed ?? err;
  } finally {
    await Promise.all([...outs.values()].map((o) => new Promise<void>((r) => o.end(() => r()))));
  }
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(manifest));
  return manifest;
}
