/**
 * `npm run bench -- json`: the strict JSON body parser of tenantwall/fastify (UTF-8, duplicate keys, NUL) against
 * Fastify's default JSON parser (secure-json-parse), both called directly on the same bodies. Ratio = strict /
 * default throughput; the default parser run twice shows the noise.
 */
import Fastify, { type FastifyInstance } from 'fastify';
import type { BenchHarness } from './harness.ts';
import { installStrictJsonParser } from '../src/fastify/json.ts';

type Parser = (req: unknown, body: Buffer, done: (err: Error | null, value?: unknown) => void) => void;

/** The parser function installStrictJsonParser registers, captured from a stand-in instance. */
function strictParser(app: FastifyInstance): Parser {
  let captured: Parser | undefined;
  const standIn = {
    getDefaultJsonParser: app.getDefaultJsonParser.bind(app),
    hasContentTypeParser: () => false,
    addContentTypeParser: (_type: string, _opts: unknown, fn: Parser) => void (captured = fn),
  } as unknown as FastifyInstance;
  installStrictJsonParser(standIn);
  if (!captured) throw new Error('no parser captured');
  return captured;
}

function defaultParser(app: FastifyInstance): Parser {
  const parse = app.getDefaultJsonParser('error', 'error') as unknown as (req: unknown, body: string, done: (err: Error | null, value?: unknown) => void) => void;
  return (req, body, done) => parse(req, body.toString('utf8'), done);
}

const item = (i: number) => ({ description: `Line ${i}`, quantity: i % 7, unit_amount_cents: 1000 + i });
const BODIES: Record<string, unknown> = {
  'small invoice (no colon in strings)': { customer: 'Initech', amount_cents: 1200, currency: 'EUR' },
  'invoice with timestamps': { customer: 'Initech', amount_cents: 1200, issued_at: '2026-02-03T10:11:12Z', due_at: '2026-03-03T10:11:12Z' },
  'invoice, 100 line items': { customer: 'Initech', line_items: Array.from({ length: 100 }, (_, i) => item(i)) },
  '100 line items + timestamps': { customer: 'Initech', issued_at: '2026-02-03T10:11:12Z', line_items: Array.from({ length: 100 }, (_, i) => ({ ...item(i), at: '2026-02-03T10:11:12Z' })) },
};
/** Bodies as some clients write them (Python's json.dumps escapes non-ASCII): \u escapes, checked for NUL and lone surrogates. */
const RAW: Record<string, string> = {
  'invoice, \\u escapes': '{"customer":"Caf\\u00e9 M\\u00fcller","amount_cents":1200,"issued_at":"2026-02-03T10:11:12Z"}',
  '100 line items, \\u escapes': JSON.stringify({ customer: 'Initech', line_items: Array.from({ length: 100 }, (_, i) => ({ ...item(i), description: `Caf\u00e9 ${i}` })) }).replaceAll('\u00e9', '\\u00e9'),
};

function opsPerSecond(parse: Parser, body: Buffer, ms: number): number {
  const req = { headers: { 'content-type': 'application/json' } };
  let n = 0;
  let failed: Error | null = null;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    for (let i = 0; i < 200; i++) {
      parse(req, body, (err) => {
        if (err) failed = err;
      });
    }
    n += 200;
    now = performance.now();
  }
  if (failed) throw failed;
  return (n * 1000) / (now - start);
}

export default async function jsonBench(_h: BenchHarness): Promise<void> {
  const app = Fastify();
  const strict = strictParser(app);
  const plain = defaultParser(app);
  const ROUNDS = 5;
  const MS = 300;
  console.log(`\nJSON body parsing, strict / Fastify default (median of ${ROUNDS} rounds x ${MS} ms, single thread)`);
  const bodies = [...Object.entries(BODIES).map(([k, v]) => [k, JSON.stringify(v)] as const), ...Object.entries(RAW)];
  for (const [name, text] of bodies) {
    const body = Buffer.from(text);
    const ratios: number[] = [];
    const noise: number[] = [];
    let strictOps = 0;
    for (let r = 0; r < ROUNDS; r++) {
      const a = opsPerSecond(plain, body, MS);
      const s = opsPerSecond(strict, body, MS);
      const b = opsPerSecond(plain, body, MS);
      ratios.push(s / ((a + b) / 2));
      noise.push(b / a);
      strictOps = s;
    }
    const med = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)] as number;
    console.log(`  ${name.padEnd(42)} ${String(body.length).padStart(5)} B  strict ${Math.round(strictOps).toString().padStart(8)} ops/s  ratio ${med(ratios).toFixed(3)}  (default vs default ${med(noise).toFixed(3)})`);
  }
  await app.close();
}
