// The strict JSON body parser of tenantwall/fastify: UTF-8 only, well-formed strings, no duplicate keys.
import { isUtf8 } from 'node:buffer';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { TenantwallError } from '../errors.ts';

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const badString = (s: string) => s.includes('\u0000') || LONE_SURROGATE.test(s);

interface Survey {
  /** Members of every object. */
  keys: number;
  /** Colons inside the parsed keys and strings. */
  colons: number;
  /** A key or string PostgreSQL text cannot hold (NUL, lone surrogate); only looked for when `checkStrings`. */
  bad: boolean;
}

function colonsIn(s: string): number {
  let n = 0;
  for (let i = s.indexOf(':'); i >= 0; i = s.indexOf(':', i + 1)) n++;
  return n;
}

/** One pass over a parsed JSON value. Iterative: bodies may be nested thousands deep. */
function survey(value: unknown, checkStrings: boolean): Survey {
  let keys = 0;
  let colons = 0;
  let bad = false;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      colons += colonsIn(v);
      if (checkStrings && !bad && badString(v)) bad = true;
    } else if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) stack.push(v[i]);
    } else if (v !== null && typeof v === 'object') {
      for (const k in v) {
        keys++;
        colons += colonsIn(k);
        if (checkStrings && !bad && badString(k)) bad = true;
        stack.push((v as Record<string, unknown>)[k]);
      }
    }
  }
  return { keys, colons, bad };
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
const ESCAPED_COLON = /\\u003a/gi;

interface Frame {
  parent: Frame | undefined;
  /** The key (object member) or index (array element) this container is at in its parent. */
  at: string | number | undefined;
  keys: Set<string> | undefined; // undefined: an array
  index: number;
  lastKey: string | undefined;
}

function framePath(f: Frame | undefined, last: string): string {
  const parts: string[] = [last];
  for (let x = f; x && x.at !== undefined; x = x.parent) parts.push(String(x.at));
  return parts.reverse().join('.');
}

const isSpace = (c: number) => c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;

/**
 * The path of the first key repeated inside one object of `text` (valid JSON), or undefined. A small scanner
 * over the text, since the parsed value no longer holds the repeated member.
 */
export function duplicateKeyPath(text: string): string | undefined {
  let top: Frame | undefined;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      const open = i;
      let escaped = false;
      for (i++; i < n; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) {
          i++;
          escaped = true;
        } else if (d === 0x22) break;
      }
      // A key is a string followed (after whitespace) by a colon, and only objects have keys.
      if (top?.keys) {
        let k = i + 1;
        while (k < n && isSpace(text.charCodeAt(k))) k++;
        if (text.charCodeAt(k) === COLON) {
          const key = escaped ? (JSON.parse(text.slice(open, i + 1)) as string) : text.slice(open + 1, i);
          if (top.keys.has(key)) return framePath(top, key);
          top.keys.add(key);
          top.lastKey = key;
          i = k;
        }
      }
    } else if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      const at = top === undefined ? undefined : top.keys ? top.lastKey : top.index;
      top = { parent: top, at, keys: c === 0x7b ? new Set() : undefined, index: 0, lastKey: undefined };
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      top = top?.parent;
    } else if (c === 0x2c /* , */) {
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
  // Outside strings a colon only separates a key from its value; inside strings the text's characters map to the
  // parsed ones one for one, except `\u003a`, an escaped colon. So for a body without repeated keys:
  //   colons of the text + escaped colons = members of the parsed value + colons in its keys and strings,
  // and a repeated key makes the left side larger (the lost member took its colon, its key and value theirs).
  // Counting `\u003a` textually can only overcount (`\\u003a` is no escape): then the scan below decides.
  // Strings PostgreSQL cannot hold (NUL, lone surrogates) can only come from \u escapes in valid UTF-8.
  const escapes = text.includes('\\u');
  const { keys, colons, bad } = survey(parsed, escapes);
  const escapedColons = escapes ? (text.match(ESCAPED_COLON)?.length ?? 0) : 0;
  const suspect = colonsIn(text) + escapedColons !== keys + colons;
  if (suspect) {
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
  if (contentType === undefined || !contentType.includes(';')) return undefined;
  return /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType)?.[1]?.toLowerCase();
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
    // Invalid bytes are refused, not decoded to U+FFFD (which would store something the client did not send).
    if (!isUtf8(body as Buffer)) {
      done(new TenantwallError('invalid_json', 'The body is not valid UTF-8.', { details: { field: 'body' } }), undefined);
      return;
    }
    const text = (body as Buffer).toString('utf8');
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
