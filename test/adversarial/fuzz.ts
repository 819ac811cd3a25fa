/**
 * `npm run fuzz`: the adversarial suite, longer. Runs the same test files as `npm test` (test/adversarial) with
 * bigger bounds, through test/run.ts (a throwaway embedded PostgreSQL, or DATABASE_URL).
 *
 *   npm run fuzz                                   leak fuzzer, 20000 operations or 10 minutes
 *   npm run fuzz -- --ops 100000 --time 3600       longer
 *   npm run fuzz -- --seed 12345                   replay a failing run (the seed is printed)
 *   npm run fuzz -- --ops 500000 --layer-ops 20000 the main property longer, each layer alone 20000 operations
 *   npm run fuzz -- --suite pool --requests 20000  pool poisoning, 20000 requests per scope mode pass
 *   npm run fuzz -- --suite crash --rounds 10      ten kill -9 / restart rounds
 *   npm run fuzz -- --suite all                    everything, with the bounds given
 */
import { spawn } from 'node:child_process';
import path from 'node:path';

const SUITES: Record<string, string> = {
  leak: 'test/adversarial/leak-fuzz.test.ts',
  pool: 'test/adversarial/pool-poisoning.test.ts',
  crash: 'test/adversarial/crash-restart.test.ts',
  hostile: 'test/adversarial/hostile-input.test.ts',
};

function usage(message: string): never {
  console.error(`fuzz: ${message}
usage: npm run fuzz -- [--suite leak|pool|crash|hostile|all] [--ops N] [--time SECONDS] [--seed N] [--tenants N]
                       [--max-len N] [--layer-ops N] [--requests N] [--rounds N] [--acked N]`);
  process.exit(2);
}

const args = process.argv.slice(2);
const flags = new Map<string, string>();
for (let i = 0; i < args.length; i++) {
  const a = args[i] as string;
  if (!a.startsWith('--')) usage(`unexpected argument ${a}`);
  const [k, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
  const v = inline ?? args[++i];
  if (v === undefined) usage(`--${k} needs a value`);
  flags.set(k, v);
}
const known = ['suite', 'ops', 'layer-ops', 'time', 'seed', 'tenants', 'max-len', 'requests', 'rounds', 'acked'];
for (const k of flags.keys()) if (!known.includes(k)) usage(`unknown flag --${k}`);
const int = (k: string, d?: number): number | undefined => {
  const v = flags.get(k);
  if (v === undefined) return d;
  if (!/^\d+$/.test(v)) usage(`--${k} must be a non-negative integer`);
  return Number(v);
};

const suite = flags.get('suite') ?? 'leak';
const files = suite === 'all' ? Object.values(SUITES) : [SUITES[suite] ?? usage(`unknown suite ${suite}`)];
const env: NodeJS.ProcessEnv = {
  ...process.env,
  FUZZ_OPS: String(int('ops', 20_000)),
  FUZZ_TIME_MS: String((int('time', 600) as number) * 1000),
  FUZZ_TENANTS: String(int('tenants', 3)),
  FUZZ_MAX_LEN: String(int('max-len', 12)),
  POOL_REQUESTS: String(int('requests', 10_000)),
  CRASH_ROUNDS: String(int('rounds', 5)),
  CRASH_ACKED: String(int('acked', 100)),
};
const layerOps = int('layer-ops');
if (layerOps !== undefined) env.FUZZ_LAYER_OPS = String(layerOps);
const seed = int('seed');
if (seed !== undefined) env.FUZZ_SEED = String(seed);

console.log(`fuzz: ${files.join(' ')} (ops ${env.FUZZ_OPS}, time ${env.FUZZ_TIME_MS} ms, tenants ${env.FUZZ_TENANTS}, pool requests ${env.POOL_REQUESTS}, crash rounds ${env.CRASH_ROUNDS})`);
const root = path.resolve(import.meta.dirname, '../..');
const child = spawn(process.execPath, ['--import', 'tsx', 'test/run.ts', ...files], { cwd: root, env, stdio: 'inherit' });
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
