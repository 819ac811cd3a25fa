/**
 * The consumer check: the package as a user gets it. Packs the repository (`npm pack`, which builds dist/),
 * installs the tarball into a fresh app in a temp folder (the npm registry is the only network it needs), and
 * there:
 *   1. plain `node` imports `tenantwall` and every subpath (no tsx, no TypeScript);
 *   2. the consumer's `tsc --noEmit` (strict, moduleResolution nodenext, skipLibCheck false) passes on the
 *      README's "Use tenantwall in your app" example and on a file importing every subpath;
 *   3. the README example, compiled by the consumer's tsc, runs against a fresh database;
 *   4. `npx tenantwall --help` runs from dist on plain Node;
 *   5. step 2 again with the oldest fastify 5, kysely, drizzle-orm and graphile-worker versions the peer ranges claim;
 *   6. publint and @arethetypeswrong/cli (esm-only profile) report nothing on the tarball.
 *
 * Usage: `npm run check:package` (DATABASE_URL: a superuser URL to create the scratch database on; without it an
 * embedded PostgreSQL is started). Exits non-zero on the first failure, with the command's output.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync, type ExecFileSyncOptions } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { startEmbeddedPostgres, type EmbeddedServer } from '../../src/index.ts';
import { freePort } from '../helpers/port.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
  exports: Record<string, unknown>;
  peerDependencies: Record<string, string>;
};
/** The oldest versions the peer ranges claim; step 5 type-checks against them. */
const OLDEST = { fastify: '5.10.0', kysely: '0.28.0', drizzle: '0.45.0', graphileWorker: '0.18.0' };
const LATEST = { fastify: '^5', kysely: '^0.28', drizzle: '^0.45', graphileWorker: '^0.18' };

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantwall-consumer-'));
const app = path.join(work, 'app');
fs.mkdirSync(app);

function run(cmd: string, args: string[], opts: ExecFileSyncOptions = {}): string {
  const started = performance.now();
  try {
    const out = execFileSync(cmd, args, { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts }) as string;
    console.log(`ok   ${cmd} ${args.join(' ')} (${Math.round(performance.now() - started)} ms)`);
    return out;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; status?: number };
    console.error(`FAIL ${cmd} ${args.join(' ')} (exit ${e.status})\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
    process.exit(1);
  }
}

function readmeExample(): string {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Use tenantwall in your app'));
  const m = /```ts\n([\s\S]*?)```/.exec(section);
  if (!m?.[1]) throw new Error('README.md has no ts code block under "## Use tenantwall in your app"');
  return m[1];
}

const subpaths = Object.keys(pkg.exports).filter((k) => k !== './package.json').map((k) => (k === '.' ? 'tenantwall' : `tenantwall/${k.slice(2)}`));

// 1. Pack (prepare builds dist/).
const tarball = path.join(work, run('npm', ['pack', '--silent', '--pack-destination', work], { cwd: ROOT }).trim().split('\n').pop() as string);

// The consumer app.
fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }, null, 2));
fs.writeFileSync(
  path.join(app, 'tsconfig.json'),
  JSON.stringify(
    {
      compilerOptions: {
        target: 'ES2022',
        module: 'nodenext',
        moduleResolution: 'nodenext',
        strict: true,
        skipLibCheck: false,
        outDir: 'out',
        types: ['node'],
        lib: ['ES2023'],
      },
      include: ['*.ts'],
    },
    null,
    2,
  ),
);
fs.writeFileSync(path.join(app, 'readme.ts'), readmeExample());
/** A file importing each subpath (for tsc) and a script importing each with plain node. */
function writeSubpathFiles(list: readonly string[]): void {
  const ts = list.map((s, i) => `import * as m${i} from '${s}';\nexport const n${i}: number = Object.keys(m${i}).length;`);
  // drizzle-orm's own declarations need skipLibCheck (docs/drizzle.md): tenantwall/drizzle is checked in its own project.
  fs.writeFileSync(path.join(app, 'subpaths.ts'), ts.filter((_, i) => list[i] !== 'tenantwall/drizzle').join('\n') + '\n');
  fs.writeFileSync(path.join(app, 'drizzle.mts'), `import * as d from 'tenantwall/drizzle';\nexport const n: number = Object.keys(d).length;\n`);
  fs.writeFileSync(path.join(app, 'tsconfig.drizzle.json'), JSON.stringify({ extends: './tsconfig.json', compilerOptions: { skipLibCheck: true, noEmit: true }, include: ['drizzle.mts'] }));
  fs.writeFileSync(path.join(app, 'smoke.mjs'), `for (const s of ${JSON.stringify(list)}) { const m = await import(s); console.log(s, Object.keys(m).length); }\n`);
}
writeSubpathFiles(subpaths);

const npmInstall = (specs: string[]) => run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error', ...specs]);
npmInstall([tarball, 'pg', `fastify@${LATEST.fastify}`, `kysely@${LATEST.kysely}`, `drizzle-orm@${LATEST.drizzle}`, `graphile-worker@${LATEST.graphileWorker}`, '@sinclair/typebox@^0.34', 'typescript@^5.9', '@types/node@^20']);

// 2. Plain node imports every subpath.
const smoke = run('node', ['smoke.mjs']);
for (const s of subpaths) if (!new RegExp(`^${s} [1-9]\\d*$`, 'm').test(smoke)) throw new Error(`plain node import of ${s} gave no exports:\n${smoke}`);
console.log(smoke.trim());

// 3. The consumer's type check, then the README example compiled and run against a fresh database.
run('npx', ['tsc', '-p', '.']);
run('npx', ['tsc', '-p', 'tsconfig.drizzle.json']);
let embedded: EmbeddedServer | undefined;
let adminUrl = process.env.DATABASE_URL;
if (!adminUrl) {
  embedded = await startEmbeddedPostgres({
    dataDir: path.join(work, 'pgdata'),
    port: await freePort(),
    persistent: false,
    settings: { fsync: 'off' },
  });
  adminUrl = embedded.url;
}
const dbName = `tw_consumer_${process.pid}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`CREATE DATABASE ${dbName}`);
try {
  const url = new URL(adminUrl);
  url.pathname = `/${dbName}`;
  // The server asks for passwords (scram): tenantwall creates the application role with the one it is given and
  // never invents or changes one (docs/credentials.md).
  const appPassword = randomBytes(12).toString('hex');
  const out = run('node', ['out/readme.js'], { env: { ...process.env, DATABASE_URL: url.toString(), TENANTWALL_APP_ROLE: 'tw_consumer_app', TENANTWALL_APP_PASSWORD: appPassword, NODE_OPTIONS: '' } });
  if (!/^200 \[.*Initech.*\]/m.test(out.replace(/\s+/g, ' '))) throw new Error(`README example printed:\n${out}`);
  console.log(out.trim());
} finally {
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
  await admin.query('DROP ROLE IF EXISTS tw_consumer_app');
  await admin.end();
  await embedded?.stop();
}

// 4. The CLI from dist on plain Node.
const help = run('npx', ['--no-install', 'tenantwall', '--help'], { env: { ...process.env, NODE_OPTIONS: '' } });
if (!/migrate/.test(help)) throw new Error(`tenantwall --help printed:\n${help}`);

// 5. The oldest peer versions claimed.
npmInstall([`fastify@${OLDEST.fastify}`, `kysely@${OLDEST.kysely}`, `drizzle-orm@${OLDEST.drizzle}`, `graphile-worker@${OLDEST.graphileWorker}`]);
run('npx', ['tsc', '-p', '.', '--noEmit']);
run('npx', ['tsc', '-p', 'tsconfig.drizzle.json']);
run('node', ['smoke.mjs']);

// 6. Packaging lint.
run('npx', ['publint', 'run', '--strict', tarball], { cwd: ROOT });
run('npx', ['attw', tarball, '--profile', 'esm-only'], { cwd: ROOT });

fs.rmSync(work, { recursive: true, force: true });
console.log('consumer check passed');
