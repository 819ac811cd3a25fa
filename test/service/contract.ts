import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import type { FastifyInstance } from 'fastify';

type Json = Record<string, unknown>;
type Doc = Json & { paths: Record<string, Record<string, Operation>>; components: unknown };
type Operation = { operationId: string; responses: Record<string, { content?: Record<string, { schema: Json }>; headers?: Record<string, unknown> }> };

// ajv-formats is CommonJS with a default export.
const addFormats = addFormatsModule as unknown as (ajv: Ajv2020) => void;

/** Headers of HTTP itself or of Fastify/Node, not part of an API contract. */
const TRANSPORT_HEADERS = new Set([
  'content-type', 'content-length', 'date', 'connection', 'keep-alive', 'transfer-encoding',
  // Set on every answer by the tenantwall plugin (no-store, nosniff) and @fastify/helmet (securityHeaders):
  // documented once in docs/fastify.md "Headers", not per operation.
  'cache-control', 'x-content-type-options', 'content-security-policy', 'cross-origin-opener-policy', 'cross-origin-resource-policy',
  'origin-agent-cluster', 'referrer-policy', 'strict-transport-security', 'x-dns-prefetch-control', 'x-download-options',
  'x-frame-options', 'x-permitted-cross-domain-policies', 'x-xss-protection',
]);

/** `/invoices/:id` -> `/invoices/{id}` */
export const openApiPath = (url: string) => url.replace(/:(\w+)/g, '{$1}');

/**
 * Checks responses against the published OpenAPI document: the operation exists, the status is documented,
 * every header beyond transport headers is documented for that status, and the body matches its schema. Every
 * check that fails is a violation: tests fail on any.
 */
export class ContractChecker {
  readonly violations: string[] = [];
  /** "operationId status" of every checked response. */
  readonly seen = new Set<string>();
  readonly #load: () => Json;
  #doc: Doc | undefined;
  readonly #ajv = new Ajv2020({ strict: false, allErrors: true });
  readonly #validators = new Map<string, ReturnType<Ajv2020['compile']>>();

  /** `doc`: the document, or a function giving it (read at the first check: an app has it once ready). */
  constructor(doc: Json | (() => Json)) {
    this.#load = typeof doc === 'function' ? doc : () => doc;
    addFormats(this.#ajv);
  }

  get doc(): Doc {
    if (!this.#doc) {
      this.#doc = this.#load() as Doc;
      this.#ajv.addSchema({ $id: 'openapi', components: this.#doc.components });
    }
    return this.#doc;
  }

  #validator(key: string, schema: Json) {
    let v = this.#validators.get(key);
    if (!v) {
      void this.doc;
      v = this.#ajv.compile(JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi#/components/')) as Json);
      this.#validators.set(key, v);
    }
    return v;
  }

  /** The operation of a route, if the document has one. */
  operation(method: string, url: string): Operation | undefined {
    return this.doc.paths[openApiPath(url)]?.[method.toLowerCase()];
  }

  check(r: { method: string; url: string; status: number; headers: Record<string, unknown>; body: string }): void {
    const label = `${r.method} ${r.url} -> ${r.status}`;
    const op = this.operation(r.method, r.url);
    if (!op) return void this.violations.push(`${label}: no such operation in the document`);
    const doc = op.responses[String(r.status)];
    if (!doc) return void this.violations.push(`${label}: status not documented for ${op.operationId} (documented: ${Object.keys(op.responses).join(', ')})`);
    this.seen.add(`${op.operationId} ${r.status}`);
    const declared = new Set(Object.keys(doc.headers ?? {}).map((h) => h.toLowerCase()));
    for (const h of Object.keys(r.headers)) {
      if (!TRANSPORT_HEADERS.has(h.toLowerCase()) && !declared.has(h.toLowerCase())) this.violations.push(`${label}: header ${h} not documented for ${op.operationId}`);
    }
    const type = String(r.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
    if (!doc.content) {
      if (r.body.length > 0) this.violations.push(`${label}: a body where the document says no content`);
      return;
    }
    const media = doc.content[type];
    if (!media) return void this.violations.push(`${label}: content type "${type}" not documented (${Object.keys(doc.content).join(', ')})`);
    if (type !== 'application/json') return;
    let body: unknown;
    try {
      body = JSON.parse(r.body);
    } catch {
      return void this.violations.push(`${label}: body is not JSON`);
    }
    const validate = this.#validator(`${op.operationId} ${r.status}`, media.schema);
    if (!validate(body)) this.violations.push(`${label}: body does not match the document: ${this.#ajv.errorsText(validate.errors)} in ${r.body.slice(0, 300)}`);
  }

  /**
   * Checks every response of `app` (an onSend hook; add it before `ready()`). Responses of routes outside the
   * document (the documentation UI, unknown URLs, HEAD twins of GET routes) are not checked.
   */
  install(app: FastifyInstance): void {
    app.addHook('onSend', async (req, reply, payload) => {
      const url = req.routeOptions.url;
      if (url === undefined || url.startsWith('/docs') || req.method === 'HEAD' || req.is404) return payload;
      const body = payload === null || payload === undefined ? '' : typeof payload === 'string' ? payload : Buffer.isBuffer(payload) ? payload.toString('utf8') : undefined;
      if (body === undefined) {
        this.violations.push(`${req.method} ${url}: a streamed body cannot be checked`);
        return payload;
      }
      this.check({ method: req.method, url, status: reply.statusCode, headers: reply.getHeaders() as Record<string, unknown>, body });
      return payload;
    });
  }
}
