import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { formatPgTap, runVerify } from '../../src/index.ts';
import { superQuery } from '../helpers/db.ts';
import { type Baseline, createBaseline } from './baseline.ts';

// verify --format pgtap against a real pgTAP (Debian: postgresql-15-pgtap, which .ci/run installs): the script
// runs as the application role and the pgTAP functions judge it. Skipped, with the reason, on a server without
// the extension (the embedded PostgreSQL 18 of npm test has none; the PostgreSQL 15 run of .ci/run has it).
const available = (await superQuery('postgres', `SELECT 1 FROM pg_available_extensions WHERE name = 'pgtap'`)).rows.length > 0;
const skip = available ? false : 'pgTAP is not installed on this server (Debian: apt-get install postgresql-15-pgtap)';

let base: Baseline;
before(async () => {
  if (available) base = await createBaseline();
});
after(async () => {
  await base?.close();
});

/** Runs the script through the pg driver as the application role and returns the TAP lines it printed. */
async function tapLines(appUrl: string, script: string): Promise<string[]> {
  const c = new pg.Client({ connectionString: appUrl });
  await c.connect();
  try {
    const results = (await c.query(script)) as unknown as pg.QueryResult[];
    return results.flatMap((r) => (r.rows ?? []).map((row: Record<string, unknown>) => String(Object.values(row)[0] ?? ''))).flatMap((t) => t.split('\n'));
  } finally {
    await c.end();
  }
}

async function fixtureWithPgTap(sql: string) {
  const fx = await base.fixture(sql);
  await superQuery(fx.name, 'CREATE EXTENSION pgtap');
  return fx;
}

test('verify --format pgtap runs under real pgTAP as the application role: all pass on a clean database, the hole fails', { skip }, async () => {
  const clean = await fixtureWithPgTap('');
  const holed = await fixtureWithPgTap('GRANT TRUNCATE ON customers TO :app');
  for (const [fx, expectFail] of [
    [clean, false],
    [holed, true],
  ] as const) {
    const report = await runVerify({ databaseUrl: fx.url, appDatabaseUrl: fx.appUrl, globalTables: ['currencies'] });
    const script = formatPgTap(report);
    const lines = await tapLines(fx.appUrl, script);
    const plan = lines.find((l) => /^1\.\.\d+$/.test(l));
    assert.ok(plan, lines.join('\n'));
    const planned = Number(plan.slice(3));
    const oks = lines.filter((l) => /^ok \d+/.test(l));
    const notOks = lines.filter((l) => /^not ok \d+/.test(l));
    assert.equal(oks.length + notOks.length, planned, lines.join('\n'));
    assert.ok(oks.some((l) => /tenant A sees no row of another tenant/.test(l)), lines.join('\n'));
    if (expectFail) assert.ok(notOks.some((l) => /attack-truncate public\.customers/.test(l)), lines.join('\n'));
    else assert.deepEqual(notOks, [], lines.join('\n'));
    // The TAP harness itself, when installed (Debian: libtap-parser-sourcehandler-pgtap-perl): pg_prove's verdict.
    const prove = ['/usr/bin/pg_prove', '/usr/local/bin/pg_prove'].find((p) => fs.existsSync(p));
    if (prove) {
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'tw-pgtap-')), 'verify.sql');
      fs.writeFileSync(file, script);
      const u = new URL(fx.appUrl);
      const env = { ...process.env, PGHOST: u.hostname, PGPORT: u.port || '5432', PGUSER: decodeURIComponent(u.username), PGPASSWORD: decodeURIComponent(u.password), PGDATABASE: u.pathname.slice(1) };
      let status = 0;
      let out: string;
      try {
        out = execFileSync(prove, ['--verbose', file], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        const e = err as { status?: number; stdout?: string; stderr?: string };
        status = e.status ?? -1;
        out = `${e.stdout ?? ''}${e.stderr ?? ''}`;
      }
      assert.equal(status === 0, !expectFail, out);
      assert.match(out, expectFail ? /Failed/ : /All tests successful/, out);
    }
  }
});
