// The strict JSON body parser of tenantwall/fastify: UTF-8 only, well-formed strings, no duplicate keys.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TenantwallError } from '../errors.ts';

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const badString = (s: string) => s.includes('\u0000') || LONE_SURROGATE.test(s);

/**
 * Counts the members of every object in a parsed JSON value, and whether a key or string PostgreSQL text cannot
 * hold (NUL, lone surrogate) occurs. Iterative: bodies may be nested thousands deep.
 */
function survey(value: unknown): { keys: number; bad: boolean } {
  let keys = 0;
  let bad = false;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      if (!bad && badString(v)) bad = true;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push(v[i]);
    } else if (v !== null && typeof v === 'object') {
      for (const k in v) {
        keys++;
        if (!bad && badString(k)) bad = true;
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return { keys, bad };
}

/** Path (`a.b.0.c`) of the first ill-formed key or string of a parsed value; `''` for the whole body. */
function illFormedPath(value: unknown): string | undefined {
  const stack: Array<[unknown, string]> = [[value, '']];
  while (stack.length > 0) {
    const [v, path] = stack.pop() as [unknown, string];
    if (typeof v === 'string') {
      if (badString(v)) return path;
    } else if (v !== null && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) {
        const p = path ? `${path}.${k}` : k;
        if (badString(k)) return p;
        stack.push([x, p]);
      }
    }
  }
  return undefined;
}

const COLON = 0x3a;

function countColons(text: string): number {
  let n = 0;
  for (let i = text.indexOf(':'); i >= 0; i = text.indexOf(':', i + 1)) n++;
  return n;
}

/**
 * The path of the first key repeated inside one object of `text` (valid JSON), or undefined. A small scanner
 * over the text, since the parsed value no longer holds the repeated member.
 */
export function duplicateKeyPath(text: string): string | undefined {
  interface Frame {
    keys: Set<string> | undefined; // undefined: an array
    path: string;
    index: number;
  }
  const stack: Frame[] = [];
  const at = (f: Frame | undefined, key: string) => (f && f.path ? `${f.path}.${key}` : key);
  let pendingKey: string | undefined;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      let escaped = false;
      for (; j < n; j++) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) {
          j++;
          escaped = true;
        } else if (d === 0x22) break;
      }
      const raw = text.slice(i, j + 1);
      i = j;
      // A key is a string followed (after whitespace) by a colon.
      let k = i + 1;
      while (k < n && (text.charCodeAt(k) === 0x20 || text.charCodeAt(k) === 0x0a || text.charCodeAt(k) === 0x0d || text.charCodeAt(k) === 0x09)) k++;
      if (text.charCodeAt(k) === COLON) {
        const key = escaped ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        const top = stack[stack.length - 1];
        if (top?.keys) {
          if (top.keys.has(key)) return at(top, key);
          top.keys.add(key);
        }
        pendingKey = key;
        i = k;
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const top = stack[stack.length - 1];
      const name = top === undefined ? '' : top.keys ? at(top, pendingKey ?? '') : at(top, String(top.index));
      stack.push({ keys: c === 0x7b ? new Set() : undefined, path: name, index: 0 });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top && !top.keys) top.index++;
    }
  }
  return undefined;
}

type DefaultJsonParser = (req: FastifyRequest, body: string, done: (err: Error | null, value?: unknown) => void) => void;

/**
 * Parses a JSON body strictly; throws the TenantwallError a client should get. `parse` is Fastify's default JSON
 * parser (secure-json-parse: `__proto__` and `constructor.prototype` keys refused).
 */
function strictParse(text: string, parsed: unknown): void {
  const { keys, bad } = survey(parsed);
  // Every member of the text has a colon after its key, and colons elsewhere are inside strings: when the text
  // has no more colons than the parsed value has members, no member was lost, so no key was repeated. Otherwise
  // (a colon inside a string, e.g. a timestamp), scan the text to be sure.
  if (countColons(text) > keys) {
    const dup = duplicateKeyPath(text);
    if (dup !== undefined) {
      throw new TenantwallError('duplicate_json_key', `The key body.${dup} appears more than once in one JSON object.`, { details: { field: dup, location: 'body' } });
    }
  }
  if (bad) {
    const field = illFormedPath(parsed) ?? '';
    const name = field ? `body.${field}` : 'body';
    throw new TenantwallError('validation_failed', `Invalid ${name}: text must be well-formed Unicode without NUL characters.`, {
      details: { field: field || 'body', location: 'body' },
    });
  }
}

/** The charset a Content-Type header declares, lowercased, or undefined. */
function charsetOf(contentType: string | undefined): string | undefined {
  return /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1]?.toLowerCase();
}

/**
 * Replaces the `application/json` body parser of `fastify` (the context the tenantwall plugin is registered
 * in) with a strict one: the body must be UTF-8 (a declared charset other than UTF-8 -> 415
 * `unsupported_media_type`; invalid bytes -> 400 `invalid_json`), a key may appear once per object (400
 * `duplicate_json_key`), strings must be well-formed Unicode without NUL (400 `validation_failed` naming
 * `body.<path>`), and prototype-poisoning keys stay refused (Fastify's secure-json-parse).
 */
export function installStrictJsonParser(fastify: FastifyInstance): void {
  const parseJson = fastify.getDefaultJsonParser('error', 'error') as unknown as DefaultJsonParser;
  if (fastify.hasContentTypeParser('application/json')) fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'buffer' }, (req, body, done) => {
    const charset = charsetOf(req.headers['content-type']);
    if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
      done(new TenantwallError('unsupported_media_type', `Unsupported charset "${charset.slice(0, 40)}": send JSON bodies as UTF-8.`, { details: { field: 'content-type', location: 'headers' } }), undefined);
      return;
    }
    let text: string;
    try {
      text = utf8.decode(body as Buffer);
    } catch (cause) {
      done(new TenantwallError('invalid_json', 'The body is not valid UTF-8.', { cause, details: { field: 'body' } }), undefined);
      return;
    }
    parseJson(req, text, (err, value) => {
      if (err) return done(err, undefined);
      try {
        strictParse(text, value);
      } catch (e) {
        return done(e as Error, undefined);
      }
      done(null, value);
    });
  });
}
