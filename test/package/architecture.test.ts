/**
 * docs/architecture.md stays true: the import rules in its "Which part may import which" table hold for every
 * import in src/ (type imports included), and there is no import cycle between files.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '../..');
const SRC = path.join(ROOT, 'src');

function files(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of a file (static, dynamic, and type-only when `types`), resolved to absolute paths. */
function importsOf(file: string, types: boolean): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(import type|export type|import|export)\s[^;]*?from\s+'(\.[^']+)'|import\(\s*'(\.[^']+)'\s*\)/g)) {
    const spec = m[2] ?? m[3];
    if (spec && (types || !m[1]?.endsWith('type'))) out.push(path.resolve(path.dirname(file), spec));
  }
  return out;
}

/** The part a file belongs to: its folder under src/, or the file name for top-level files (errors, index). */
function partOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length === 1 ? (rel[0] as string).replace(/\.ts$/, '') : (rel[0] as string);
}

/** The allowed imports, read from docs/architecture.md's table. */
function allowed(): Map<string, Set<string>> {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/architecture.md'), 'utf8');
  const section = doc.slice(doc.indexOf('## Which part may import which'), doc.indexOf('## PostgreSQL facts'));
  const map = new Map<string, Set<string>>();
  for (const line of section.split('\n')) {
    const m = /^\| (`[^|]+`) \| ([^|]+) \|$/.exec(line);
    if (!m?.[1] || !m[2]) continue;
    const parts = [...m[1].matchAll(/`(\w+)`/g)].map((x) => x[1] as string);
    const may = m[2].includes('every part above')
      ? new Set([...map.keys()])
      : new Set([...m[2].matchAll(/`(\w+)`/g)].map((x) => x[1] as string));
    for (const p of parts) map.set(p, may);
  }
  return map;
}

const all = files(SRC);
// Layering counts every import, types included; cycles count the imports that exist at run time (a type-only
// import is erased, so two modules that name each other's types do not load each other).
const graph = new Map(all.map((f) => [f, importsOf(f, true)]));
const runtimeGraph = new Map(all.map((f) => [f, importsOf(f, false)]));

test('every import in src/ follows docs/architecture.md', () => {
  const rules = allowed();
  assert.ok(rules.size >= 10, `the table in docs/architecture.md was not found (${rules.size} rows)`);
  const bad: string[] = [];
  for (const [file, deps] of graph) {
    const from = partOf(file);
    if (from === 'index') continue; // the root entry point re-exports every part
    for (const dep of deps) {
      const to = partOf(dep);
      if (to === from) continue;
      if (to === 'index' || (to === 'cli' && from !== 'cli')) bad.push(`${path.relative(ROOT, file)} imports the entry point or CLI ${path.relative(ROOT, dep)}`);
      else if (!rules.get(from)?.has(to)) bad.push(`${path.relative(ROOT, file)} (${from}) imports ${path.relative(ROOT, dep)} (${to})`);
    }
  }
  assert.deepEqual(bad, [], 'imports that docs/architecture.md does not allow');
});

test('no import cycle between files of src/ at run time', () => {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, stack: string[]): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'visiting') {
      cycles.push([...stack.slice(stack.indexOf(f)), f].map((x) => path.relative(SRC, x)).join(' -> '));
      return;
    }
    state.set(f, 'visiting');
    for (const d of runtimeGraph.get(f) ?? []) if (runtimeGraph.has(d)) visit(d, [...stack, f]);
    state.set(f, 'done');
  };
  for (const f of all) visit(f, []);
  assert.deepEqual(cycles, []);
});

test('the import rules can fail: a forbidden import is reported', () => {
  // db may not import guard: the check must see it (guards against a parser that sees no imports at all).
  const rules = allowed();
  assert.equal(rules.get('db')?.has('guard'), false);
  const dbImports = [...graph].filter(([f]) => partOf(f) === 'db').flatMap(([, d]) => d);
  assert.ok(dbImports.length > 10, 'the import parser found the imports of src/db');
});
