/**
 * Adding a worker and rebalancing while the leak fuzzer runs (CITUS_URL): the reference service on a database that
 * starts with one worker, its tenants fuzzed through the API (test/adversarial/lib/fuzz.ts: every response checked
 * by the leak oracle, the database compared with what the API acknowledged after each run) while the second worker
 * joins and `rebalanceCluster` (what `tenantwall cluster rebalance` runs) spreads the shards online.
 * Bounded (FUZZ_SEED reproduces the operations): the fuzz runs until the rebalance is over and at least 4 runs
 * are done.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import fc from 'fast-check';
import pg from 'pg';
import { rebalanceCluster } from '../../src/index.ts';
import { Fuzzer, fuzzConfigFromEnv, openApiEndpoints } from '../adversarial/lib/fuzz.ts';
import { createWorld, type World } from '../adversarial/lib/world.ts';
import { skipWithoutCitus } from './cluster.ts';

const config = fuzzConfigFromEnv({ ops: 200, timeMs: 120_000 });

describe('Citus: adding a worker and rebalancing while the leak fuzzer runs', { skip: skipWithoutCitus }, () => {
  let world: World;
  let fuzzer: Fuzzer;

  before(async () => {
    world = await createWorld({ tenants: 4, db: { poolSize: 6 }, guard: true, contract: true, citus: { registerWorkers: 1, shardCount: 4 } });
    fuzzer = new Fuzzer(world, openApiEndpoints((await world.app.inject({ method: 'GET', url: '/openapi.json' })).json()));
  });
  after(() => world?.close());

  test('0 leaks, 0 5xx, every acknowledged write in the database; the shards end up on both workers', async () => {
    const su = world.su;
    const registered = await su.query<{ port: number }>(`SELECT nodeport AS port FROM pg_dist_node WHERE groupid <> 0 AND isactive`);
    assert.equal(registered.rows.length, 1, 'the database starts with one worker');
    // Tenant moves are not part of this run (Citus serializes them with the rebalance; test/citus/lifecycle.test.ts).
    const inputs = fc
      .sample(fuzzer.runArbitrary(config.maxLen), { seed: config.seed, numRuns: 50 })
      .map((input) => ({ ...input, admin: input.admin.filter((op) => op.ep !== 'POST /admin/tenants/{id}/move') }));
    console.log(`# rebalance fuzz: seed=${config.seed}; reproduce with FUZZ_SEED=${config.seed}`);
    let rebalanced = false;
    let runs = 0;
    const fuzzing = (async () => {
      for (let i = 0; !rebalanced || runs < 4; i++) {
        await fuzzer.run(inputs[i % inputs.length] as (typeof inputs)[number]);
        runs++;
      }
    })();
    let result: Awaited<ReturnType<typeof rebalanceCluster>> | undefined;
    try {
      // Let the fuzz get going, then add the worker and rebalance under it.
      while (runs < 1) await new Promise((r) => setTimeout(r, 50));
      // The second worker of the cluster: the database exists there (test/citus/cluster.ts), not registered yet.
      const second = await secondWorker(su);
      await su.query(`SELECT citus_add_node($1, $2)`, [second.host, second.port]);
      result = await rebalanceCluster(world.db);
    } finally {
      rebalanced = true;
      await fuzzing;
    }
    assert.ok(result);
    const s = fuzzer.stats;
    const statuses = [...s.byStatus].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(' ');
    console.log(`# rebalance fuzz: ${runs} runs, ${s.ops} operations, ${s.requests} requests, ${fuzzer.ledger.checked} responses checked; statuses ${statuses}; ${result.moves.length} shard moves in ${result.ms.toFixed(0)} ms`);
    assert.deepEqual([...s.byStatus.keys()].filter((code) => code >= 500), [], 'no 5xx');
    assert.ok(result.moves.length > 0, 'the rebalance moved shards');
    assert.deepEqual(result.workers.map((w) => w.shards > 0), [true, true], `shards on both workers: ${JSON.stringify(result.workers)}`);
    // A last full check after everything settled: each tenant's rows are exactly what the API acknowledged.
    await fuzzer.checkDatabase();
  });
});

/** The worker of the cluster that this database has not registered yet. */
async function secondWorker(su: World['su']): Promise<{ host: string; port: number }> {
  const { rows } = await su.query<{ host: string; port: number }>(`SELECT nodename AS host, nodeport AS port FROM pg_dist_node WHERE groupid <> 0 AND isactive`);
  const known = new Set(rows.map((r) => `${r.host}:${r.port}`));
  // The cluster's workers, as the metadata of the cluster's own database (CITUS_URL) lists them.
  const c = new pg.Client({ connectionString: process.env.CITUS_URL });
  await c.connect();
  try {
    const all = await c.query<{ host: string; port: number }>(`SELECT nodename AS host, nodeport AS port FROM pg_dist_node WHERE groupid <> 0 AND isactive ORDER BY nodeport`);
    const next = all.rows.find((r) => !known.has(`${r.host}:${r.port}`));
    if (!next) throw new Error('the cluster has no second worker');
    return { host: next.host, port: Number(next.port) };
  } finally {
    await c.end();
  }
}
