import { type ChildProcess, fork } from 'node:child_process';
import { postgresCpu, postgresCpuSince } from './harness.ts';

export interface LoadRequest {
  url: string;
  /** Request paths, cycled. */
  paths: readonly string[];
  headers: Record<string, string>;
  connections: number;
  durationS: number;
}

type LoadFigures = { rps: number; p50: number; p99: number; failures: number; statuses: Record<string, number>; requests: number; cpuUs: number };
export type LoadResult = LoadFigures | { error: string };

export const cpuUs = (u: NodeJS.CpuUsage): number => u.user + u.system;

/** One server of a comparison: its base URL, the paths to cycle over and the request headers. */
export interface LoadTarget {
  readonly name: string;
  readonly url: string;
  readonly paths: readonly string[];
  readonly headers?: Record<string, string>;
}

export interface TargetFigures {
  name: string;
  rps: number;
  p99: number;
  failures: number;
  /** Count of every non-2xx status over the rounds. */
  statuses: Record<string, number>;
  cpu: { server: number; postgres: number; client: number };
}

export interface Comparison {
  /**
   * Per target: mean req/s over the rounds, worst p99 (ms), failed requests (errors, non-2xx, timeouts), and the
   * CPU time per request (µs) of this process (the servers), of the PostgreSQL processes and of the load generator.
   */
  readonly figures: ReadonlyArray<TargetFigures>;
  /** Per round: req/s of the first target / req/s of the second. */
  readonly ratios: readonly number[];
  readonly median: number;
}

/**
 * Drives the targets with autocannon from a separate process (bench/load-worker.ts), alternately, round after
 * round, so machine noise hits all of them; a warm-up run of each comes first and is not counted (JIT, pools,
 * statement caches). The throughput ratio is taken per round (first target / second) and reported as the median.
 */
export async function compareAlternating(targets: readonly [LoadTarget, LoadTarget], options: { connections: number; durationS: number; rounds: number; warmupS: number }): Promise<Comparison> {
  const child: ChildProcess = fork(new URL('./load-worker.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`the load generator exited (${code}) before it was ready`)));
  });
  const run = (t: LoadTarget, durationS: number) =>
    new Promise<LoadFigures>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the load generator exited (${code})`));
      child.once('exit', onExit);
      child.once('message', (r: LoadResult) => {
        child.off('exit', onExit);
        if ('error' in r) reject(new Error(`autocannon: ${r.error}`));
        else resolve(r);
      });
      const req: LoadRequest = { url: t.url, paths: t.paths, headers: t.headers ?? {}, connections: options.connections, durationS };
      child.send(req);
    });
  try {
    for (const t of targets) await run(t, options.warmupS);
    const acc: TargetFigures[] = targets.map((t) => ({ name: t.name, rps: 0, p99: 0, failures: 0, statuses: {}, cpu: { server: 0, postgres: 0, client: 0 } }));
    const ratios: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      const rps: number[] = [];
      for (const [i, t] of targets.entries()) {
        const server0 = process.cpuUsage();
        const pg0 = postgresCpu();
        const r = await run(t, options.durationS);
        const server = cpuUs(process.cpuUsage(server0));
        const pgUs = postgresCpuSince(pg0);
        const a = acc[i] as TargetFigures;
        const share = (us: number) => us / Math.max(1, r.requests) / options.rounds;
        a.cpu.server += share(server);
        a.cpu.postgres += share(pgUs);
        a.cpu.client += share(r.cpuUs);
        a.rps += r.rps / options.rounds;
        a.p99 = Math.max(a.p99, r.p99);
        a.failures += r.failures;
        for (const [code, n] of Object.entries(r.statuses)) a.statuses[code] = (a.statuses[code] ?? 0) + n;
        rps.push(r.rps);
      }
      ratios.push((rps[0] as number) / (rps[1] as number));
    }
    const sorted = [...ratios].sort((a, b) => a - b);
    const mid = Math.floor(sorted.length / 2);
    const median = sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
    return { figures: acc, ratios, median };
  } finally {
    child.kill();
  }
}

/** One line of figures for a target: throughput, p99, failures and where the CPU went per request. */
export function describe(f: TargetFigures): string {
  const c = f.cpu;
  return `${f.rps.toFixed(0).padStart(7)} req/s  p99 ${f.p99.toFixed(1)} ms  errors/non-2xx ${f.failures}${Object.keys(f.statuses).length > 0 ? ` (${JSON.stringify(f.statuses)})` : ''}  CPU per request: server ${c.server.toFixed(0)} µs, postgres ${c.postgres.toFixed(0)} µs, load generator ${c.client.toFixed(0)} µs`;
}
