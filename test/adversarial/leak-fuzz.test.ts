/**
 * Leak fuzzer, bounded run (npm test). `npm run fuzz` runs the same property longer (FUZZ_OPS, FUZZ_TIME_MS,
 * FUZZ_SEED, FUZZ_TENANTS). On failure the seed and the shrunk counterexample are printed; rerun with
 * FUZZ_SEED=<seed> to reproduce.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import fc from 'fast-check';
import { Fuzzer, fuzzConfigFromEnv, openApiEndpoints } from './lib/fuzz.ts';
import { createWorld, type World } from './lib/world.ts';

const config = fuzzConfigFromEnv({ ops: 400, timeMs: 40_000 });
const TENANTS = Number(process.env.FUZZ_TENANTS ?? 3);
let world: World;
let fuzzer: Fuzzer;

before(async () => {
  // One spare tenant on top: the admin lane suspends it and rotates its keys while the others are fuzzed.
  world = await createWorld({ tenants: TENANTS + 1, db: { poolSize: 6 } });
  const doc = (await world.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  fuzzer = new Fuzzer(world, openApiEndpoints(doc));
});
after(() => world?.close());

test('every endpoint of the OpenAPI document has an operation generator', () => {
  assert.ok(fuzzer.endpoints.length >= 20, `only ${fuzzer.endpoints.length} endpoints in /openapi.json`);
  assert.deepEqual(fuzzer.uncovered(), [], 'endpoints in /openapi.json that the fuzzer cannot generate');
});

test(`random operation sequences of ${TENANTS} concurrent tenants never show one tenant another's data`, async () => {
  const avgOpsPerRun = (config.maxLen / 2) * (TENANTS + 0.5);
  const numRuns = Math.max(1, Math.ceil(config.ops / avgOpsPerRun));
  console.log(`# leak fuzz: seed=${config.seed} runs=${numRuns} (~${config.ops} ops, at most ${config.timeMs} ms) tenants=${TENANTS}; reproduce with FUZZ_SEED=${config.seed}`);
  const started = Date.now();
  const details = await fc.check(
    fc.asyncProperty(fuzzer.runArbitrary(config.maxLen), (input) => fuzzer.run(input)),
    { seed: config.seed, numRuns, interruptAfterTimeLimit: config.timeMs, markInterruptAsFailure: false, endOnFailure: false, maxSkipsPerRun: 0 },
  );
  const s = fuzzer.stats;
  const statuses = [...s.byStatus].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(' ');
  console.log(
    `# leak fuzz: ${s.runs} runs, ${s.ops} operations, ${s.requests} requests, ${s.differentials} foreign-vs-random comparisons, ${fuzzer.ledger.checked} responses checked in ${Date.now() - started} ms; statuses ${statuses}`,
  );
  if (details.failed) {
    console.log(`# leak fuzz FAILED: seed=${details.seed} path=${details.counterexamplePath} after ${details.numRuns} runs, ${details.numShrinks} shrinks`);
    console.log(`# counterexample: ${fc.stringify(details.counterexample)}`);
    throw details.errorInstance;
  }
  // Every endpoint was actually exercised (the bounded run is long enough for that with high probability).
  const unexercised = fuzzer.endpoints.filter((e) => !s.byEndpoint.has(e));
  if (s.ops >= 300) assert.deepEqual(unexercised, [], 'endpoints the run never called');
});
