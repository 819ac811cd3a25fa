/**
 * Where a server's CPU goes, by part: an in-process V8 CPU profile (node:inspector) taken while a load runs,
 * with every sample's self time assigned to the part its code belongs to (by script URL). The parts answer
 * "what does tenancy cost per request": API-key and tenant resolution, the tenant context, the guard, the
 * driver, serialization, the framework, and Node's own HTTP and network code.
 */
import { Session } from 'node:inspector/promises';

export type Part =
  | 'resolution (tenantwall/fastify)'
  | 'context + scoped query (tenantwall/db, tenant)'
  | 'guard'
  | 'observability (metrics, tracing)'
  | 'kysely'
  | 'driver (pg)'
  | 'serialization + validation (generated)'
  | 'fastify + router'
  | 'logging (pino)'
  | 'route code'
  | 'async context (AsyncLocalStorage, promise hooks)'
  | 'node http/net/streams'
  | 'garbage collection'
  | 'other';

const RULES: ReadonlyArray<[RegExp, Part]> = [
  [/\/src\/observability\/|\/src\/fastify\/observability\.ts|node_modules\/(prom-client|@opentelemetry|tdigest|bintrees)\//, 'observability (metrics, tracing)'],
  [/\/src\/fastify\//, 'resolution (tenantwall/fastify)'],
  [/\/src\/(db|tenant|util|config)\//, 'context + scoped query (tenantwall/db, tenant)'],
  [/\/src\/guard\/|libpg-query/, 'guard'],
  [/\/src\/kysely\/|node_modules\/kysely\//, 'kysely'],
  [/node_modules\/(pg|pg-protocol|pg-pool|pg-types|postgres-[a-z]+|buffer-writer|packet-reader)\//, 'driver (pg)'],
  [/node_modules\/(fast-json-stringify|ajv|fast-uri|@sinclair|json-schema-resolver|@fastify\/ajv-compiler|@fastify\/fast-json-stringify-compiler)\//, 'serialization + validation (generated)'],
  [/node_modules\/(fastify|find-my-way|avvio|light-my-request|@fastify|fast-querystring|content-type|secure-json-parse|toad-cache|process-warning|abstract-logging|rfdc|safe-regex2|ret|proxy-addr|forwarded|ipaddr\.js|fast-decode-uri-component|fast-deep-equal)\//, 'fastify + router'],
  [/node_modules\/(pino|pino-std-serializers|sonic-boom|thread-stream|on-exit-leak-free|quick-format-unescaped|atomic-sleep|fast-redact|safe-stable-stringify)\//, 'logging (pino)'],
  [/\/bench\/|\/examples\//, 'route code'],
  [/async_hooks|async_local_storage|async_context_frame/, 'async context (AsyncLocalStorage, promise hooks)'],
  [/^node:|^internal\//, 'node http/net/streams'],
];

interface ProfileNode {
  id: number;
  callFrame: { url: string; functionName: string };
  children?: number[];
}

/** Starts a CPU profile of this process; the returned function stops it and gives CPU µs by part per request. */
export async function startProfile(): Promise<(requests: number) => Promise<Map<Part, number>>> {
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 200 });
  await session.post('Profiler.start');
  return async (requests) => {
    try {
      const { profile } = (await session.post('Profiler.stop')) as { profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] } };
      return partsOf(profile, requests);
    } finally {
      await session.post('Profiler.disable').catch(() => undefined);
      session.disconnect();
    }
  };
}

function partsOf(profile: { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }, requests: number): Map<Part, number> {
  const byNode = new Map<number, ProfileNode>(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, ProfileNode>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n);
  const partOf = new Map<number, Part | undefined>();
  // Built-ins (JSON, RegExp, crypto, promises) have no script URL: their time belongs to the part that called them.
  const resolvePart = (node: ProfileNode): Part | undefined => {
    if (partOf.has(node.id)) return partOf.get(node.id);
    let part = classify(node.callFrame);
    if (part === 'inherit') {
      const up = parent.get(node.id);
      part = up && up.callFrame.functionName !== '(root)' ? resolvePart(up) : 'other';
    }
    partOf.set(node.id, part);
    return part;
  };
  const us = new Map<Part, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byNode.get(profile.samples[i] as number);
    if (!node) continue;
    const part = resolvePart(node);
    if (part === undefined) continue;
    us.set(part, (us.get(part) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  for (const [p, v] of us) us.set(p, v / Math.max(1, requests));
  if (process.env.BENCH_PROFILE_FUNCTIONS) printFunctions(profile, byNode, resolvePart, process.env.BENCH_PROFILE_FUNCTIONS, requests);
  return us;
}

/**
 * `BENCH_PROFILE_FUNCTIONS=<text>`: also prints, for the parts whose name contains the text, the 20 functions with
 * the most self time (µs per request), to see what a part's time is made of.
 */
function printFunctions(
  profile: { samples: number[]; timeDeltas: number[] },
  byNode: Map<number, ProfileNode>,
  resolvePart: (node: ProfileNode) => Part | undefined,
  filter: string,
  requests: number,
): void {
  const us = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byNode.get(profile.samples[i] as number);
    if (!node || !resolvePart(node)?.includes(filter)) continue;
    const { functionName, url } = node.callFrame as { functionName: string; url: string; lineNumber?: number };
    const key = `${functionName || '(anonymous)'} ${url.replace(/^.*node_modules\//, '').replace(/^.*\/(src|bench|examples)\//, '$1/')}:${(node.callFrame as { lineNumber?: number }).lineNumber ?? ''}`;
    us.set(key, (us.get(key) ?? 0) + (profile.timeDeltas[i] ?? 0));
  }
  const top = [...us].sort((a, b) => b[1] - a[1]).slice(0, 20);
  console.log(`  functions of the parts matching "${filter}" (pid ${process.pid}), self time per request:`);
  for (const [key, t] of top) console.log(`    ${(t / Math.max(1, requests)).toFixed(2).padStart(8)} µs  ${key}`);
}

// Code compiled at run time by fast-json-stringify (serializers) and Ajv (validators) has no URL either.
const GENERATED = /^(anonymous|validate\d*|\$?main|\$?asString|\$?asInteger|\$?asNumber|\$?asDateTime|anonymous\d+|\w*[Ss]erializ\w*)$/;

function classify(frame: { url: string; functionName: string }): Part | 'inherit' | undefined {
  const fn = frame.functionName;
  if (fn === '(idle)' || fn === '(root)') return undefined;
  if (fn === '(garbage collector)') return 'garbage collection';
  if (fn === '(program)') return 'other';
  if (frame.url === '') return GENERATED.test(fn) ? 'serialization + validation (generated)' : 'inherit';
  for (const [re, part] of RULES) if (re.test(frame.url)) return part;
  return 'other';
}

/** The parts side by side, µs per request, one column per target. */
export function formatParts(columns: ReadonlyArray<{ name: string; perRequest: Map<Part, number> }>): string {
  const parts = new Set<Part>();
  for (const c of columns) for (const p of c.perRequest.keys()) parts.add(p);
  const rows = [...parts].sort((a, b) => Math.max(...columns.map((c) => c.perRequest.get(b) ?? 0)) - Math.max(...columns.map((c) => c.perRequest.get(a) ?? 0)));
  const w = Math.max(14, ...columns.map((c) => c.name.length + 2));
  const head = `  ${'server CPU per request, µs'.padEnd(48)}${columns.map((c) => c.name.padStart(w)).join('')}`;
  const lines = rows.map((p) => `  ${p.padEnd(48)}${columns.map((c) => (c.perRequest.get(p) ?? 0).toFixed(1).padStart(w)).join('')}`);
  const total = `  ${'total'.padEnd(48)}${columns.map((c) => [...c.perRequest.values()].reduce((a, b) => a + b, 0).toFixed(1).padStart(w)).join('')}`;
  return [head, ...lines, total].join('\n');
}
