import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createProgressPrinter } from '../../src/index.ts';

function fakeStream(isTTY: boolean): NodeJS.WriteStream & { text: string } {
  const s = { isTTY, columns: 80, text: '', write(chunk: string) { s.text += chunk; return true; } };
  return s as unknown as NodeJS.WriteStream & { text: string };
}

test('--json: one progress object per line; terminal: a redrawn bar; pipe without --json: silent', () => {
  const json = fakeStream(false);
  const p1 = createProgressPrinter({ json: true, stream: json });
  p1.onProgress({ operation: 'export', phase: 'rows', table: 'invoices', done: 10, total: 40 });
  p1.onProgress({ operation: 'export', phase: 'rows', table: 'invoices', done: 40, total: 40 });
  p1.done();
  const lines = json.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(lines[0], { event: 'progress', operation: 'export', phase: 'rows', table: 'invoices', done: 10, total: 40 });
  assert.equal(lines.length, 2);

  const tty = fakeStream(true);
  const p2 = createProgressPrinter({ json: false, stream: tty });
  p2.onProgress({ operation: 'move', phase: 'copy', table: 'invoices', done: 20, total: 40 });
  p2.onProgress({ operation: 'move', phase: 'copy', table: 'invoices', done: 40, total: 40 });
  p2.done();
  assert.match(tty.text, /^\r\[#{15}\.{15}\] {2}50% move copy invoices 20\/40/);
  assert.match(tty.text, /\r\[#{30}\] 100% move copy invoices 40\/40 *\n$/);
  assert.ok(tty.text.split('\r').every((l) => l.length <= 80), 'fits the terminal width');

  const pipe = fakeStream(false);
  const p3 = createProgressPrinter({ json: false, stream: pipe });
  p3.onProgress({ operation: 'delete', phase: 'rows', done: 1, total: 2 });
  p3.done();
  assert.equal(pipe.text, '');
});
