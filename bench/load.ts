import { type ChildProcess, fork } from 'node:child_process';

export interface LoadRequest {
  url: string;
  /** Request paths, cycled. */
  paths: readonly string[];
  headers: Record<string, string>;
  connections: number;
  durationS: number;
}

export type LoadResult = { rps: number; p50: number; p99: number; failures: number } | { error: string };

/** One server of a comparison: its base URL, the paths to cycle over and the request headers. */
export interface LoadTarget {
  readonly name: string;
  readonly url: string;
  readonly paths: readonly string[];
  readonly headers?: Record<string, string>;
}

export interface Comparison {
  /**
   * Per target: mean req/s over the rounds, worst p99 (ms), failed requests (errors, non-2xx, timeouts), and the
   * CPU time this process (the servers) spent per request, in microseconds.
   */
  readonly figures: ReadonlyArray<{ name: string; rps: number; p99: number; failures: number; cpuUsPerRequest: number }>;
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
  const run = (t: LoadTarget, durationS: number) =>
    new Promise<{ rps: number; p50: number; p99: number; failures: number }>((resolve, reject) => {
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
    const acc = targets.map((t) => ({ name: t.name, rps: 0, p99: 0, failures: 0, cpuUsPerRequest: 0 }));
    const ratios: number[] = [];
    for (let round = 0; round < options.rounds; round++) {
      const rps: number[] = [];
      for (const [i, t] of targets.entries()) {
        const cpu0 = process.cpuUsage();
        const r = await run(t, options.durationS);
        const cpu = process.cpuUsage(cpu0);
        const a = acc[i] as (typeof acc)[number];
        a.cpuUsPerRequest += (cpu.user + cpu.system) / (r.rps * options.durationS) / options.rounds;
        a.rps += r.rps / options.rounds;
        a.p99 = Math.max(a.p99, r.p99);
        a.failures += r.failures;
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
