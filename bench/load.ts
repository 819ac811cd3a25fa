import { type ChildProcess, fork } from 'node:child_process';
import { postgresCpu, postgresCpuSince, processCpuUs } from './harness.ts';

export interface LoadRequest {
  url: string;
  /** Request paths, cycled. */
  paths: readonly string[];
  headers: Record<string, string>;
  /** Extra headers of each path (same index), e.g. one API key per tenant. */
  pathHeaders?: ReadonlyArray<Record<string, string>> | undefined;
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
  /** Extra headers of each path (same index as `paths`). */
  readonly pathHeaders?: ReadonlyArray<Record<string, string>>;
  /** The server's process when it is not this one: its CPU is read from /proc. */
  readonly pid?: number;
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
  /** Per round: req/s of the first target / req/s of the last (the baseline). */
  readonly ratios: readonly number[];
  readonly median: number;
  /** Per target (same order): its per-round ratios to the last target and their median, and its server CPU per request (µs) per round. */
  readonly byTarget: ReadonlyArray<{ readonly ratios: readonly number[]; readonly median: number; readonly serverCpu: readonly number[] }>;
  /** The warm-up run of each target (the first, from cold caches when the servers are new). */
  readonly warmup?: ReadonlyArray<{ readonly rps: number; readonly p99: number }>;
}

/** The load generator process (bench/load-worker.ts): one autocannon run per `run` call. */
export class LoadGenerator {
  readonly #child: ChildProcess;
  private constructor(child: ChildProcess) {
    this.#child = child;
  }

  static async start(): Promise<LoadGenerator> {
    const child: ChildProcess = fork(new URL('./load-worker.ts', import.meta.url), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`the load generator exited (${code}) before it was ready`)));
    });
    return new LoadGenerator(child);
  }

  run(t: LoadTarget, connections: number, durationS: number): Promise<LoadFigures> {
    const child = this.#child;
    return new Promise<LoadFigures>((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`the load generator exited (${code})`));
      child.once('exit', onExit);
      child.once('message', (r: LoadResult) => {
        child.off('exit', onExit);
        if ('error' in r) reject(new Error(`autocannon: ${r.error}`));
        else resolve(r);
      });
      const req: LoadRequest = { url: t.url, paths: t.paths, headers: t.headers ?? {}, pathHeaders: t.pathHeaders, connections, durationS };
      child.send(req);
    });
  }

  close(): void {
    this.#child.kill();
  }
}

/**
 * Drives the targets with autocannon from a separate process (bench/load-worker.ts), alternately, round after
 * round (the order turning by one each round), so machine noise hits all of them; a warm-up run of each comes first and is not counted (JIT, pools,
 * statement caches). The throughput ratio is taken per round against the LAST target (the baseline) and
 * reported as the median; `ratios`/`median` are those of the first target.
 */
export async function compareAlternating(targets: readonly LoadTarget[], options: { connections: number; durationS: number; rounds: number; warmupS: number; load?: LoadGenerator }): Promise<Comparison> {
  const load = options.load ?? (await LoadGenerator.start());
  try {
    const warmup: LoadFigures[] = [];
    for (const t of targets) warmup.push(await load.run(t, options.connections, options.warmupS));
    const acc: TargetFigures[] = targets.map((t) => ({ name: t.name, rps: 0, p99: 0, failures: 0, statuses: {}, cpu: { server: 0, postgres: 0, client: 0 } }));
    const perTarget: number[][] = targets.map(() => []);
    const cpuPerRound: number[][] = targets.map(() => []);
    for (let round = 0; round < options.rounds; round++) {
      const rps: number[] = [];
      // The order turns by one target each round: no target always runs first or right after the same other one.
      for (let k = 0; k < targets.length; k++) {
        const i = (k + round) % targets.length;
        const t = targets[i] as LoadTarget;
        const server0 = process.cpuUsage();
        const child0 = t.pid === undefined ? 0 : processCpuUs(t.pid);
        const pg0 = postgresCpu();
        const r = await load.run(t, options.connections, options.durationS);
        const server = t.pid === undefined ? cpuUs(process.cpuUsage(server0)) : processCpuUs(t.pid) - child0;
        const pgUs = postgresCpuSince(pg0);
        const a = acc[i] as TargetFigures;
        const share = (us: number) => us / Math.max(1, r.requests) / options.rounds;
        a.cpu.server += share(server);
        (cpuPerRound[i] as number[]).push(server / Math.max(1, r.requests));
        a.cpu.postgres += share(pgUs);
        a.cpu.client += share(r.cpuUs);
        a.rps += r.rps / options.rounds;
        a.p99 = Math.max(a.p99, r.p99);
        a.failures += r.failures;
        for (const [code, n] of Object.entries(r.statuses)) a.statuses[code] = (a.statuses[code] ?? 0) + n;
        rps[i] = r.rps;
      }
      const base = rps[rps.length - 1] as number;
      for (let i = 0; i < targets.length; i++) (perTarget[i] as number[]).push((rps[i] as number) / base);
    }
    const ratiosByTarget = perTarget.map((ratios, i) => ({ ratios, median: median(ratios), serverCpu: cpuPerRound[i] as number[] }));
    const first = ratiosByTarget[0] as { ratios: number[]; median: number };
    return { figures: acc, ratios: first.ratios, median: first.median, byTarget: ratiosByTarget, warmup };
  } finally {
    if (!options.load) load.close();
  }
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2;
}

/** One line of figures for a target: throughput, p99, failures and where the CPU went per request. */
export function describe(f: TargetFigures): string {
  const c = f.cpu;
  return `${f.rps.toFixed(0).padStart(7)} req/s  p99 ${f.p99.toFixed(1)} ms  errors/non-2xx ${f.failures}${Object.keys(f.statuses).length > 0 ? ` (${JSON.stringify(f.statuses)})` : ''}  CPU per request: server ${c.server.toFixed(0)} µs, postgres ${c.postgres.toFixed(0)} µs, load generator ${c.client.toFixed(0)} µs`;
}
