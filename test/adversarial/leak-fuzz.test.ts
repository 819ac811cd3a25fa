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

const config = fuzzConfigFromEnv({ ops: 500, timeMs: 40_000 });
const TENANTS = Number(process.env.FUZZ_TENANTS ?? 3);
let world: World;
let fuzzer: Fuzzer;

/**
 * Runs that make about `ops` operations: the mean size of a run is measured on a sample of the generator (its
 * arrays are shorter than half their maximum length on average, so an estimate from maxLen ran too few).
 */
function runsFor(f: Fuzzer, ops: number): number {
  const sample = fc.sample(f.runArbitrary(config.maxLen), { seed: config.seed, numRuns: 200 });
  const mean = sample.reduce((n, r) => n + r.admin.length + r.lanes.reduce((m, l) => m + l.length, 0), 0) / sample.length;
  return Math.max(1, Math.ceil(ops / Math.max(1, mean)));
}

before(async () => {
  // One spare tenant on top: the admin lane suspends it and rotates its keys while the others are fuzzed.
  // Every answer of the fuzzer is also checked against the OpenAPI document.
  world = await createWorld({ tenants: TENANTS + 1, db: { poolSize: 6 }, guard: true, contract: true });
  const doc = (await world.app.inject({ method: 'GET', url: '/openapi.json' })).json();
  fuzzer = new Fuzzer(world, openApiEndpoints(doc));
});
after(() => world?.close());

test('every endpoint of the OpenAPI document has an operation generator', () => {
  assert.ok(fuzzer.endpoints.length >= 20, `only ${fuzzer.endpoints.length} endpoints in /openapi.json`);
  assert.deepEqual(fuzzer.uncovered(), [], 'endpoints in /openapi.json that the fuzzer cannot generate');
});

test(`random operation sequences of ${TENANTS} concurrent tenants never show one tenant another's data`, async () => {
  const numRuns = runsFor(fuzzer, config.ops);
  console.log(`# leak fuzz: seed=${config.seed} runs=${numRuns} (~${config.ops} ops, at most ${config.timeMs} ms) tenants=${TENANTS}; reproduce with FUZZ_SEED=${config.seed}`);
  const started = Date.now();
  // A long run (npm run fuzz) says how far it got as it goes.
  fuzzer.progressEvery = numRuns >= 1000 ? 100 : 0;
  const details = await fc.check(
    fc.asyncProperty(fuzzer.runArbitrary(config.maxLen), (input) => fuzzer.run(input)),
    { seed: config.seed, numRuns, interruptAfterTimeLimit: config.timeMs, markInterruptAsFailure: false, endOnFailure: false, maxSkipsPerRun: 0 },
  );
  const s = fuzzer.stats;
  const statuses = [...s.byStatus].sort((a, b) => a[0] - b[0]).map(([k, v]) => `${k}:${v}`).join(' ');
  console.log(
    `# leak fuzz: ${s.runs} runs, ${s.ops} operations, ${s.requests} requests, ${s.differentials} foreign-vs-random comparisons, ${fuzzer.ledger.checked} responses checked in ${Date.now() - started} ms; statuses ${statuses} (${s.conflicts} transaction_conflict answers sent again); ${Math.round(s.laneMs / 1000)} s in the lanes, ${Math.round(s.checkMs / 1000)} s in the database checks`,
  );
  if (details.failed) {
    console.log(`# leak fuzz FAILED: seed=${details.seed} path=${details.counterexamplePath} after ${details.numRuns} runs, ${details.numShrinks} shrinks`);
    console.log(`# counterexample: ${fc.stringify(details.counterexample)}`);
    throw details.errorInstance;
  }
  // Every endpoint is exercised: what the random run missed (rare) gets one operation of each lane now.
  const missed = fuzzer.endpoints.filter((e) => !s.byEndpoint.has(e));
  for (const ep of missed) {
    const op = { ep, via: 'key' as const, ref: { who: 'foreign' as const, pick: 1 }, ref2: { who: 'own' as const, pick: 0 }, v: 1, n: 7, tenantIdInBody: false };
    await fuzzer.run({ lanes: fuzzer.tenants.map((_, i) => (i === 0 ? [op] : [])), admin: [op] });
  }
  if (missed.length > 0) console.log(`# leak fuzz: swept ${missed.length} endpoint(s) the random run missed: ${missed.join(', ')}`);
  assert.deepEqual(fuzzer.endpoints.filter((e) => !s.byEndpoint.has(e)), [], 'endpoints never called');
});

test('tenants move between shared and dedicated placement while every lane keeps fuzzing them', async () => {
  // Random tenant lanes (as above), and an admin lane that does nothing but move fuzz tenants back and forth (and
  // export one, checking that its download holds no other tenant's marker). Each move runs while the lanes read
  // and write the moving tenant; checkDatabase then compares every tenant's rows with what the API acknowledged.
  const before = fuzzer.moves;
  const lanes = fc.sample(fuzzer.runArbitrary(config.maxLen), { seed: config.seed, numRuns: 3 });
  let n = 0;
  for (const input of lanes) {
    const moveOp = (i: number) => ({ ep: 'POST /admin/tenants/{id}/move', via: 'key' as const, ref: { who: 'own' as const, pick: 0 }, ref2: { who: 'own' as const, pick: 0 }, v: i, n: n++, tenantIdInBody: false });
    const exportOp = { ...moveOp(0), ep: 'POST /admin/tenants/{id}/export' };
    const download = { ...moveOp(0), ep: 'GET /admin/jobs/{jobId}/download' };
    await fuzzer.run({ lanes: input.lanes, admin: [moveOp(0), moveOp(1), exportOp, download, moveOp(2), moveOp(3)] });
  }
  const moves = fuzzer.moves - before;
  console.log(`# leak fuzz with moving tenants: ${moves} moves during ${lanes.length} runs`);
  assert.ok(moves >= 3, `only ${moves} moves succeeded`);
});

// Each layer alone must stop a leak (docs/architecture.md): the same property with row-level security disabled on every
// table (the guard alone), and with the guard off (row-level security alone).
for (const layer of ['guard alone (RLS disabled)', 'RLS alone (no guard)'] as const) {
  test(`one layer at a time: ${layer}`, async () => {
    const rlsOff = layer.startsWith('guard');
    const w = await createWorld({ tenants: TENANTS + 1, guard: rlsOff, rlsOff });
    try {
      if (rlsOff) {
        const rls = await w.su.query(`SELECT count(*)::int AS n FROM pg_class WHERE relrowsecurity OR relforcerowsecurity`);
        assert.equal(rls.rows[0].n, 0, 'row-level security is still on somewhere');
      } else {
        await assert.doesNotReject(w.db.forTenant(w.tenants[0]?.id as string).query('SELECT count(*) FROM invoices'), 'the guard is on');
      }
      const f = new Fuzzer(w, openApiEndpoints((await w.app.inject({ method: 'GET', url: '/openapi.json' })).json()));
      const ops = process.env.FUZZ_LAYER_OPS ? Number(process.env.FUZZ_LAYER_OPS) : Math.max(50, Math.floor(config.ops / 2.5));
      const numRuns = runsFor(f, ops);
      const details = await fc.check(fc.asyncProperty(f.runArbitrary(config.maxLen), (input) => f.run(input)), { seed: config.seed, numRuns, interruptAfterTimeLimit: config.timeMs, markInterruptAsFailure: false });
      console.log(`# leak fuzz, ${layer}: ${f.stats.ops} operations, ${f.stats.requests} requests, ${f.stats.differentials} foreign-vs-random comparisons (seed ${config.seed})`);
      if (details.failed) {
        console.log(`# counterexample: ${fc.stringify(details.counterexample)}`);
        throw details.errorInstance;
      }
    } finally {
      await w.close();
    }
  });
}

test('the fuzzer finds a planted existence oracle (403 for another tenant\'s customer) and shrinks it', async () => {
  // The same app with one planted bug: GET /customers/:id answers 403 instead of 404 when the customer exists in
  // another tenant. The property must fail, and fast-check must shrink the counterexample to a few operations.
  const leaky = await createWorld({
    tenants: TENANTS + 1,
    extend: (app, db) => {
      app.addHook('onSend', async (req, reply, payload) => {
        if (reply.statusCode === 404 && req.routeOptions.url === '/customers/:id') {
          const { rowCount } = await db.dangerouslyCrossTenant().query('SELECT 1 FROM customers WHERE id = $1', [(req.params as { id: string }).id]);
          if (rowCount) void reply.code(403);
        }
        return payload;
      });
    },
  });
  try {
    const doc = (await leaky.app.inject({ method: 'GET', url: '/openapi.json' })).json();
    const f = new Fuzzer(leaky, openApiEndpoints(doc));
    const details = await fc.check(
      fc.asyncProperty(f.runArbitrary(8), (input) => f.run(input)),
      // No time limit: it would also cut the shrinking short, and how far a loaded machine got in a fixed time
      // (a 50-tenant run stopped at 36 operations) is not what this test checks. numRuns bounds the search.
      { seed: config.seed, numRuns: 300 },
    );
    assert.ok(details.failed, `the planted bug was not found in ${details.numRuns} runs (seed ${config.seed})`);
    const ce = details.counterexample?.[0] as { lanes: unknown[][]; admin: unknown[] };
    const size = ce.lanes.reduce((s, l) => s + l.length, 0) + ce.admin.length;
    console.log(`# planted oracle found after ${details.numRuns} runs, shrunk ${details.numShrinks} times to ${size} operation(s): ${String(details.errorInstance).slice(0, 200)}`);
    assert.match(String(details.errorInstance), /403/);
    assert.ok(size <= 3, `counterexample not shrunk: ${fc.stringify(ce)}`);
  } finally {
    await leaky.close();
  }
});
