/**
 * Bench servers, each in its own process (bench/http-server.ts), and the data they serve: the reference
 * service's schema seeded with Zipf-sized tenants, an API key each. Shared by the http and observability benches.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { join } from 'node:path';
import { migrations, schema, unpartitionedSchema } from '../examples/invoicing-service/src/schema.ts';
import { serviceGuard } from '../examples/invoicing-service/src/guard.ts';
import { ApiKeyStore } from '../src/fastify/index.ts';
import type { BenchHarness } from './harness.ts';
import type { InjectMessage, InjectResult, StartMessage } from './http-server.ts';
import type { Part } from './profile.ts';

/**
 * Node.js flags of every bench server process (BENCH_SERVER_NODE_FLAGS, space-separated), e.g.
 * `--max-semi-space-size=64` (a larger young generation; docs/benchmarks.md, observability).
 */
const SERVER_NODE_FLAGS = (process.env.BENCH_SERVER_NODE_FLAGS ?? '').split(/\s+/).filter((f) => f !== '');

/** A bench server in its own process. */
export class ServerProcess {
  readonly #child: ChildProcess;
  url = '';
  private constructor(child: ChildProcess) {
    this.#child = child;
  }

  get pid(): number {
    return this.#child.pid as number;
  }

  /** `tree`: the source checkout whose bench/http-server.ts (and library) to run; this one by default. */
  static async start(start: StartMessage, tree?: string): Promise<ServerProcess> {
    const script = tree ? join(tree, 'bench', 'http-server.ts') : new URL('./http-server.ts', import.meta.url);
    const child = fork(script, [], { execArgv: ['--import', 'tsx', '--conditions=tenantwall-source', ...SERVER_NODE_FLAGS], stdio: ['ignore', 'inherit', 'inherit', 'ipc'], ...(tree ? { cwd: tree } : {}) });
    const s = new ServerProcess(child);
    await s.#request(undefined, 'up');
    s.url = (await s.#request(start, 'ready')) as string;
    return s;
  }

  #request(msg: unknown, answer: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`a bench server exited (${code})`));
      const onMessage = (m: Record<string, unknown>) => {
        if ('error' in m) reject(new Error(`bench server: ${String(m.error)}`));
        else if (answer in m) resolve(m[answer]);
        else return;
        this.#child.off('message', onMessage);
        this.#child.off('exit', onExit);
      };
      this.#child.on('message', onMessage);
      this.#child.once('exit', onExit);
      if (msg !== undefined) this.#child.send(msg as object);
    });
  }

  /** This server's CPU and GC time per request (µs) over requests sent through its `app.inject` (bench/http-server.ts). */
  async inject(msg: Omit<InjectMessage, 'type'>): Promise<InjectResult> {
    return (await this.#request({ type: 'inject', ...msg }, 'perRequest')) as InjectResult;
  }

  /** Turns span recording of a `traced` server on or off (its sampler; everything else stays as it is). */
  async recording(on: boolean): Promise<void> {
    await this.#request({ type: 'recording', on }, 'recording');
  }

  async profile(run: () => Promise<number>): Promise<Map<Part, number>> {
    await this.#request({ type: 'profile-start' }, 'profiling');
    const requests = await run();
    return new Map((await this.#request({ type: 'profile-stop', requests }, 'parts')) as Array<[Part, number]>);
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.#child.once('exit', resolve));
    this.#child.send({ type: 'close' });
    await exited;
  }
}

/** Zipf sizes (s = 1) summing to about `total`, largest first, each at least 1. */
export function zipfSizes(n: number, total: number): number[] {
  let h = 0;
  for (let i = 1; i <= n; i++) h += 1 / i;
  return Array.from({ length: n }, (_, i) => Math.max(1, Math.round(total / (i + 1) / h)));
}

export interface Dataset {
  readonly db: Awaited<ReturnType<BenchHarness['createTenantwall']>>;
  readonly ownerUrl: string;
  readonly keyOf: ReadonlyMap<string, string>;
  readonly tenantOfKey: ReadonlyMap<string, string>;
  readonly big: string;
  readonly mixRows: ReadonlyArray<{ tenant_id: string; id: string }>;
  readonly bigRows: ReadonlyArray<{ tenant_id: string; id: string }>;
}

/** A database of the service schema seeded with `sizes` (tenants, a key each, Zipf-sized invoices). */
export async function seed(harness: BenchHarness, sizes: readonly number[], layout: 'partitioned' | 'unpartitioned', sample: number): Promise<Dataset> {
  const db = await harness.createTenantwall(layout === 'partitioned' ? schema : unpartitionedSchema, layout === 'partitioned' ? migrations : migrations.slice(0, 3), { guard: serviceGuard() });
  const tenantIds: string[] = [];
  for (let i = 0; i < sizes.length; i++) tenantIds.push((await db.tenants.create({ slug: `bench-${i}`, name: `Bench ${i}` })).id);
  const store = new ApiKeyStore(db);
  const keyOf = new Map<string, string>();
  const tenantOfKey = new Map<string, string>();
  for (const id of tenantIds) {
    const { key } = await store.create(id, { name: 'bench' });
    keyOf.set(id, key);
    tenantOfKey.set(key, id);
  }
  const owner = db.dangerouslyCrossTenant();
  await owner.query(
    `INSERT INTO invoices (tenant_id, customer, amount_cents, status, issued_at)
     SELECT t.id, 'customer ' || g, (g * 137) % 100000, 'issued', now()
     FROM unnest($1::uuid[], $2::int[]) AS t(id, n), generate_series(1, t.n) AS g`,
    [tenantIds, sizes],
  );
  await owner.query('VACUUM ANALYZE invoices').catch(async () => owner.query('ANALYZE invoices'));
  const { rows: mixRows } = await owner.query<{ tenant_id: string; id: string }>(`SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT $1`, [sample]);
  const big = tenantIds[0] as string;
  const { rows: bigRows } = await owner.query<{ id: string }>(`SELECT id FROM invoices WHERE tenant_id = $1 ORDER BY random() LIMIT $2`, [big, sample]);
  const dbName = new URL(db.options.databaseUrl as string).pathname.slice(1);
  return { db, ownerUrl: harness.urlOf(dbName), keyOf, tenantOfKey, big, mixRows, bigRows: bigRows.map((r) => ({ tenant_id: big, id: r.id })) };
}

