/**
 * Import cost (issue: the parser used to load at import): time for a fresh `node` process to import `pg` alone,
 * `tenantwall` (the built dist/, as a user gets it; no SQL verified), and `tenantwall` plus the first
 * `guard.ready()` (the WebAssembly parser, now loaded on demand). Each figure is measured inside the child
 * (import start to end), median and range over ROUNDS fresh processes, in alternating order.
 */
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import type { BenchHarness } from './harness.ts';

const ROOT = path.resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_IMPORT_ROUNDS ?? 15);

const CASES: Record<string, string> = {
  pg: `const t = performance.now(); await import('pg'); console.log(performance.now() - t);`,
  tenantwall: `const t = performance.now(); await import('tenantwall'); console.log(performance.now() - t);`,
  'tenantwall + guard.ready()': `const t = performance.now(); const m = await import('tenantwall'); await m.createGuard(m.defineSchema({ tables: [] })).ready(); console.log(performance.now() - t);`,
};

function once(code: string): number {
  // No NODE_OPTIONS: the tenantwall-source condition would resolve to src/ (TypeScript) instead of dist/.
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', code], { cwd: ROOT, encoding: 'utf8', env: { ...process.env, NODE_OPTIONS: '' } });
  return Number(out.trim());
}

export default async function run(_h: BenchHarness): Promise<void> {
  execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: ROOT, stdio: 'inherit' });
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(CASES).map((k) => [k, []]));
  for (let r = 0; r < ROUNDS; r++) for (const [name, code] of Object.entries(CASES)) samples[name]?.push(once(code));
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const pgMedian = median(samples.pg as number[]);
  console.log(`import time in a fresh process, ms (median, range over ${ROUNDS} rounds)`);
  for (const [name, xs] of Object.entries(samples)) {
    const m = median(xs);
    console.log(`  ${name.padEnd(28)} ${m.toFixed(1).padStart(7)}  (${Math.min(...xs).toFixed(1)}-${Math.max(...xs).toFixed(1)})  ${(m / pgMedian).toFixed(2)}x pg`);
  }
}
