/**
 * Every fenced code block in README.md and docs/*.md (every page, also ones added later) is checked, the way
 * Kysely type-checks its examples:
 * - every block names its language (```ts, ```sh, ```json, ```sql, ```text ...);
 * - every ```ts block is type-checked as its own module against the package's entry points (`tenantwall`,
 *   `tenantwall/kysely`, ...), with a prelude declaring the names a snippet may use without defining them
 *   (`db`, `schema`, `tenantId`, `app`, ...; the list is PRELUDE below);
 * - a ```ts block is also RUN (node + tsx, against a fresh database as DATABASE_URL) unless its info string
 *   says `no-run` (```ts no-run: a fragment that needs an app around it). ```ts no-check is for text that is
 *   deliberately not valid TypeScript; use it sparingly;
 * - a run block named in AFTER_RUN (page#heading) also has its output or its database checked there: the page
 *   says what the example prints or leaves behind, and this holds it to that.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import pg from 'pg';
import { createTestDatabase } from '../helpers/db.ts';

const exec = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '../..');

interface Block {
  readonly file: string;
  /** 1-based line of the block's first code line in the page. */
  readonly line: number;
  readonly lang: string;
  /** The nearest `## ` heading above the block. */
  readonly heading: string;
  readonly flags: readonly string[];
  readonly code: string;
}

/** The fenced blocks of every page: README.md and each docs/*.md. */
export function docBlocks(): Block[] {
  const pages = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];
  const out: Block[] = [];
  for (const file of pages) {
    const lines = fs.readFileSync(path.join(ROOT, file), 'utf8').split('\n');
    let heading = '';
    for (let i = 0; i < lines.length; i++) {
      if ((lines[i] as string).startsWith('## ')) heading = (lines[i] as string).slice(3).trim();
      const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i] as string);
      if (!open) continue;
      const fence = open[2] as string;
      const [lang = '', ...flags] = (open[3] as string).trim().split(/\s+/).filter((x) => x !== '');
      const start = i + 1;
      let end = start;
      while (end < lines.length && !(lines[end] as string).trim().startsWith(fence)) end++;
      out.push({ file, line: start + 1, lang, heading, flags, code: lines.slice(start, end).join('\n') });
      i = end;
    }
  }
  return out;
}

/**
 * Names a snippet may use without declaring them. Each is declared only when the block does not define the
 * name itself, from `import type * as` namespaces, so a block's own imports never clash with the prelude.
 */
const PRELUDE: Record<string, string> = {
  db: '__tw.Tenantwall',
  schema: '__tw.Schema',
  migrations: '__tw.Migration[]',
  myTables: '__tw.TableDecl[]',
  tenantId: '__tw.TenantId',
  id: '__tw.TenantId',
  idB: '__tw.TenantId',
  invoiceId: 'string',
  app: '__fastify.FastifyInstance',
  metering: '__tw.Metering',
  adminToken: 'string',
  events: '__tw.UsageEventInput[]',
  rows: '__tw.UsageRow[]',
  optionalFilter: '__tw.TenantId | undefined',
  k: 'import("kysely").Kysely<{ invoices: { tenant_id: import("tenantwall/kysely").TenantColumn; id: string; customer: string; amount_cents: string } }>',
  DB: 'type',
  alreadyProcessed: '(id: string) => boolean',
  coordinatorUrl: 'string',
};

function defines(source: string, name: string): boolean {
  const code = source.replace(/\/\/.*$/gm, '').replace(/\/\*[\s\S]*?\*\//g, '');
  const n = name.replace(/\$/g, '\\$');
  return new RegExp(`\\b(const|let|var|function|class|interface|type)\\s+${n}\\b`).test(code)
    || new RegExp(`\\b(const|let|var)\\s*[{[][^=]*\\b${n}\\b[^=]*[}\\]]\\s*=`).test(code)
    || new RegExp(`import\\s+(type\\s+)?(\\{[^}]*\\b${n}\\b[^}]*\\}|${n}\\b)`).test(code);
}

function prelude(code: string): string {
  const decls = Object.entries(PRELUDE)
    .filter(([name]) => new RegExp(`\\b${name}\\b`).test(code) && !defines(code, name))
    .map(([name, type]) => (type === 'type' ? `type ${name} = { invoices: { tenant_id: import("tenantwall/kysely").TenantColumn; id: string; customer: string; amount_cents: string } };` : `declare const ${name}: ${type};`));
  return [
    // At the end of the file, so compiler line numbers are the block's own.
    '',
    `import type * as __tw from 'tenantwall';`,
    `import type * as __fastify from 'fastify';`,
    ...decls,
    'export {};',
  ].join('\n');
}

/** What a runnable example must print or leave in its database, by `page#heading` of its block. */
const AFTER_RUN: Record<string, (run: { stdout: string; url: string }) => void | Promise<void>> = {
  'docs/drizzle.md#Runnable example': ({ stdout }) => {
    assert.match(stdout, /acme sees \[ 'Roadrunner' \]/);
    assert.match(stdout, /globex sees \[ 'Hammock' \]/);
  },
  'docs/lifecycle.md#Library calls': ({ stdout }) => {
    assert.match(stdout, /^succeeded \{ rows: 1 \}$/m);
  },
  'docs/jobs.md#Setup': async ({ url }) => {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT task, payload ? 'invoiceId' AS has_id FROM tw_jobs`);
      assert.deepEqual(rows, [{ task: 'render-invoice-pdf', has_id: true }]);
    } finally {
      await client.end();
    }
  },
};
const keyOf = (b: Block) => `${b.file}#${b.heading}`;

const blocks = docBlocks();
const tsBlocks = blocks.filter((b) => (b.lang === 'ts' || b.lang === 'typescript') && !b.flags.includes('no-check'));
const dir = path.join(ROOT, '.tmp', `doc-blocks-${randomBytes(4).toString('hex')}`);
const fileOf = (b: Block) => path.join(dir, `${b.file.replace(/[/.]/g, '_')}_L${b.line}.ts`);
before(async () => {
  fs.mkdirSync(dir, { recursive: true });
  for (const b of tsBlocks) fs.writeFileSync(fileOf(b), `${b.code}\n${prelude(b.code)}\n`);
  fs.writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ extends: '../../tsconfig.json', compilerOptions: { noEmit: true }, include: ['*.ts'] }));
});
after(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

test('every code block names its language', () => {
  const bare = blocks.filter((b) => b.lang === '').map((b) => `${b.file}:${b.line}`);
  assert.deepEqual(bare, [], 'give these blocks a language (```ts, ```sh, ```text ...)');
});

test('every ts block in README.md and docs/*.md type-checks', async () => {
  assert.ok(tsBlocks.length > 10);
  const r = await exec('node', [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', path.join(dir, 'tsconfig.json')], { cwd: ROOT }).then(
    () => '',
    (e: { stdout: string }) => e.stdout,
  );
  // Map `<dir>/docs_guard_md_L15.ts(3,7): error ...` back to `docs/guard.md:17: error ...`.
  const errors = r.split('\n').filter((l) => l.includes('error TS')).map((l) => {
    const m = /([^/\\]+)\.ts\((\d+),\d+\): (.*)$/.exec(l);
    const b = m && tsBlocks.find((x) => path.basename(fileOf(x)) === `${m[1]}.ts`);
    return b && m ? `${b.file}:${b.line + Number(m[2]) - 1}: ${m[3]}` : l;
  });
  assert.deepEqual(errors, []);
});

test('every AFTER_RUN check names exactly one runnable ts block', () => {
  const runnable = tsBlocks.filter((x) => !x.flags.includes('no-run')).map(keyOf);
  for (const key of Object.keys(AFTER_RUN)) assert.equal(runnable.filter((k) => k === key).length, 1, `${key}: no single runnable ts block under that heading`);
});

for (const b of tsBlocks.filter((x) => !x.flags.includes('no-run'))) {
  test(`${b.file}:${b.line} runs`, async () => {
    // Its own fresh database: pages declare different schemas under the same migration versions.
    const own = await createTestDatabase();
    try {
      const { stdout } = await exec('node', ['--import', 'tsx', fileOf(b)], { cwd: ROOT, env: { ...process.env, DATABASE_URL: own.url } }).catch(
        (e: Error & { stdout: string; stderr: string }) => assert.fail(`${b.file}:${b.line} failed:\n${e.stderr}\n${e.stdout}`),
      );
      await AFTER_RUN[keyOf(b)]?.({ stdout, url: own.url });
    } finally {
      await own.drop();
    }
  });
}
