/**
 * OperationRegistry (docs/lifecycle.md): background operations with their progress, result or error, their
 * directories, the tracker and retention. No database: the work functions are controlled by the test.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { OperationRegistry, type OperationTracker, type Progress, TenantwallError } from '../../src/index.ts';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

const progress = (done: number): Progress => ({ operation: 'export', phase: 'copy', table: 'invoices', done, total: 10 });

test('an operation runs in the background: progress while it runs, its result, the tracker told both', async () => {
  const seen: string[] = [];
  const tracker: OperationTracker = { onProgress: (p) => seen.push(`progress ${p.done}`), end: (o) => seen.push(`end ${o}`) };
  const ops = new OperationRegistry<'export'>({ metrics: { trackOperation: (kind, tenantId) => (seen.push(`track ${kind} ${tenantId}`), tracker) } });
  const gate = deferred<void>();
  let report!: (p: Progress) => void;
  const op = ops.start('export', { id: 't1', slug: 'acme' }, async ({ onProgress }) => {
    report = onProgress;
    await gate.promise;
    return { rows: 10 };
  });
  assert.equal(op.status, 'running');
  assert.equal(op.slug, 'acme');
  assert.equal(ops.runningFor('t1')?.id, op.id);
  await new Promise((resolve) => setImmediate(resolve)); // the work starts in a later microtask
  report(progress(4));
  assert.deepEqual(ops.get(op.id)?.progress, { phase: 'copy', table: 'invoices', done: 4, total: 10 });
  assert.equal(ops.get(op.id)?.reports, 1);
  gate.resolve();
  await ops.close();
  assert.equal(op.status, 'succeeded');
  assert.deepEqual(op.result, { rows: 10 });
  assert.notEqual(op.finishedAt, null);
  assert.deepEqual(seen, ['track export t1', 'progress 4', 'end succeeded']);
});

test('a failure: a tenantwall error as it is, anything else internal_error without its cause; its directory goes', async () => {
  const ops = new OperationRegistry<'move' | 'export'>({ dir: os.tmpdir() });
  const dirA = ops.makeDir();
  const dirB = ops.makeDir();
  fs.writeFileSync(path.join(dirA, 'part.ndjson'), '{}\n');
  const busy = new TenantwallError('tenant_busy', 'busy');
  const a = ops.start('export', { id: 't1' }, async () => {
    throw busy;
  }, { dir: dirA, keepDir: true });
  const b = ops.start('move', { id: 't2' }, async () => {
    throw new Error('password=secret in a driver message');
  }, { dir: dirB });
  await waitUntil(() => a.status !== 'running' && b.status !== 'running');
  assert.deepEqual([a.status, a.error?.code, a.error?.message], ['failed', 'tenant_busy', busy.message]);
  assert.equal(b.error?.code, 'internal_error');
  assert.doesNotMatch(b.error?.message ?? '', /secret/);
  await waitUntil(() => !fs.existsSync(dirA) && !fs.existsSync(dirB));
  assert.equal(ops.runningFor('t1'), undefined);
  await ops.close();
});

test('describeError decides what a failure shows', async () => {
  const ops = new OperationRegistry({ describeError: (err) => ({ code: 'custom', message: String((err as Error).message) }) });
  const op = ops.start('move', { id: 't1' }, async () => {
    throw new Error('lost a lock');
  });
  await ops.close();
  assert.deepEqual(op.error, { code: 'custom', message: 'lost a lock' });
});

test('a directory is kept after success only with keepDir, and dropped with the operation', async () => {
  const ops = new OperationRegistry<'export' | 'move'>({ retentionMs: 0 });
  const kept = ops.makeDir();
  const temp = ops.makeDir();
  const e = ops.start('export', { id: 't1' }, async ({ dir }) => {
    fs.writeFileSync(path.join(dir as string, 'manifest.json'), '{}');
    return {};
  }, { dir: kept, keepDir: true });
  const m = ops.start('move', { id: 't2' }, async () => ({}), { dir: temp });
  await waitUntil(() => e.finishedAt !== null && m.finishedAt !== null);
  assert.ok(fs.existsSync(path.join(kept, 'manifest.json')), 'the export kept its files');
  assert.ok(!fs.existsSync(temp), 'the move removed its directory');
  assert.deepEqual(ops.of('t1').map((o) => o.id), [e.id]);
  // retentionMs 0: the next start drops every finished operation, and the export's files with it.
  const next = ops.start('move', { id: 't3' }, async () => ({}));
  assert.equal(ops.get(e.id), undefined);
  assert.ok(!fs.existsSync(kept), 'the dropped export took its files');
  assert.equal(ops.get(next.id)?.id, next.id);
  await ops.close();
});

test('close waits for the running operations, then drops them and their directories', async () => {
  const ops = new OperationRegistry();
  const gate = deferred<void>();
  const dir = ops.makeDir();
  const op = ops.start('export', { id: 't1' }, async () => {
    await gate.promise;
    return { ok: true };
  }, { dir, keepDir: true });
  let closed = false;
  const closing = ops.close().then(() => (closed = true));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(closed, false, 'close returned while an operation was running');
  gate.resolve();
  await closing;
  assert.equal(op.status, 'succeeded');
  assert.equal(ops.get(op.id), undefined);
  assert.ok(!fs.existsSync(dir));
});

/** Waits for a condition of the operations (they end in later microtasks and timers), not for a duration. */
async function waitUntil(cond: () => boolean): Promise<void> {
  for (let turn = 0; !cond(); turn++) {
    if (turn > 1_000_000) throw new Error('the condition never held');
    await new Promise((resolve) => setImmediate(resolve));
  }
}
