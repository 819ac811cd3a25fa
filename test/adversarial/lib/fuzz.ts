/**
 * The leak fuzzer. fast-check generates, per tenant, a sequence of API operations (pure data, so shrinking
 * works); the tenants' sequences and an admin lane run concurrently against one app. Every id in an operation
 * is a reference resolved at run time: one of the tenant's own rows, another tenant's, a deleted one, an id of
 * another kind, or a random one. Every response goes through the leak oracle (lib/leak.ts) and a per-tenant
 * model that knows exactly which rows the tenant has, so a 404 that should be a 200, a list that misses or
 * gains a row, or a write that lands elsewhere all fail the run. The endpoint list comes from /openapi.json.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { Ledger, LeakError, errorCode, verifyAgainstDatabase } from './leak.ts';
import type { World, WorldTenant } from './world.ts';

export type Who = 'own' | 'foreign' | 'random' | 'deleted' | 'crosstype';
export interface Ref {
  readonly who: Who;
  readonly pick: number;
}
export interface Op {
  readonly ep: string;
  readonly via: 'key' | 'jwt';
  readonly ref: Ref;
  readonly ref2: Ref;
  readonly v: number;
  readonly n: number;
  readonly tenantIdInBody: boolean;
}

const STATUSES = ['draft', 'issued', 'paid', 'void'] as const;
type Status = (typeof STATUSES)[number];
const TRANSITIONS: Record<Status, readonly Status[]> = { draft: ['draft', 'issued', 'void'], issued: ['issued', 'paid', 'void'], paid: ['paid'], void: ['void'] };

interface CustomerM {
  name: string;
  email: string | null;
  created_at: string;
}
interface InvoiceM {
  status: Status;
  customer: string;
  customer_id: string | null;
  amount: number;
  items: Map<string, { pos: number; amount: number }>;
}

function retotal(inv: InvoiceM): void {
  let sum = 0;
  for (const it of inv.items.values()) sum += it.amount;
  inv.amount = sum;
}
interface TenantModel {
  customers: Map<string, CustomerM>;
  invoices: Map<string, InvoiceM>;
  deleted: { customer: string[]; invoice: string[]; item: string[] };
  cursors: Array<{ path: string; query: string; cursor: string }>;
  bodies: Array<Record<string, unknown>>;
}

export interface FuzzStats {
  runs: number;
  ops: number;
  requests: number;
  byEndpoint: Map<string, number>;
  byStatus: Map<number, number>;
  differentials: number;
  /** Answers 503 transaction_conflict that were sent again. */
  conflicts: number;
  /** Milliseconds spent in the lanes, and in the database checks around them (syncModels, checkDatabase). */
  laneMs: number;
  checkMs: number;
}

/** Endpoints of the OpenAPI document as "METHOD /path/{param}". */
export function openApiEndpoints(doc: { paths: Record<string, Record<string, unknown>> }): string[] {
  const out: string[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const method of Object.keys(ops)) {
      if (['get', 'post', 'put', 'patch', 'delete'].includes(method)) out.push(`${method.toUpperCase()} ${path}`);
    }
  }
  return out.sort();
}

class Fail extends LeakError {}

function must(cond: unknown, msg: () => string): asserts cond {
  if (!cond) throw new Fail(msg());
}

interface Resp {
  status: number;
  body: string;
  json: any;
  code: string | undefined;
}

function hasTenantId(req: InjectOptions): boolean {
  const p = req.payload as Record<string, unknown> | undefined;
  return p !== undefined && typeof p === 'object' && 'tenant_id' in p;
}

const pick = <T>(xs: readonly T[], n: number): T | undefined => (xs.length === 0 ? undefined : xs[n % xs.length]);

export class Fuzzer {
  readonly world: World;
  readonly tenants: readonly WorldTenant[];
  readonly spare: WorldTenant;
  readonly ledger: Ledger;
  readonly models: TenantModel[];
  readonly endpoints: string[];
  readonly stats: FuzzStats = { runs: 0, ops: 0, requests: 0, byEndpoint: new Map(), byStatus: new Map(), differentials: 0, conflicts: 0, laneMs: 0, checkMs: 0 };
  #spareSuspended = false;
  #spareKeys: Array<{ id: string; key: string; revoked: boolean }> = [];
  #adminTokens: string[] = [];
  /** Ids of the lifecycle jobs the admin lane started, and of the last export job. */
  #jobs: string[] = [];
  #lastExport: { job: string; tenant: WorldTenant } | undefined;
  /** Moves the admin lane made of fuzz tenants while their lanes ran (printed by the test). */
  moves = 0;
  readonly #handlers: Record<string, (t: WorldTenant, op: Op) => Promise<void>>;

  /** `world.tenants`: all but the last are fuzz tenants; the last is the spare the admin lane suspends and re-keys. */
  constructor(world: World, endpoints: string[]) {
    this.world = world;
    this.tenants = world.tenants.slice(0, -1);
    this.spare = world.tenants[world.tenants.length - 1] as WorldTenant;
    this.ledger = new Ledger(world.tenants);
    this.models = world.tenants.map(() => ({
      customers: new Map(),
      invoices: new Map(),
      deleted: { customer: [], invoice: [], item: [] },
      cursors: [],
      bodies: [],
    }));
    this.endpoints = endpoints;
    this.#spareKeys.push({ id: this.spare.keyId, key: this.spare.key, revoked: false });
    this.#handlers = this.#makeHandlers();
  }

  /** Endpoints of the document the fuzzer has no generator for (must be empty). */
  uncovered(): string[] {
    return this.endpoints.filter((e) => !(e in this.#handlers));
  }

  opArbitrary(lane: 'tenant' | 'admin' = 'tenant'): fc.Arbitrary<Op> {
    const admin = this.endpoints.filter((e) => e.includes(' /admin/') || e.endsWith('z'));
    const tenant = this.endpoints.filter((e) => !admin.includes(e));
    const [main, side] = lane === 'tenant' ? [tenant, admin] : [admin, tenant];
    const ref = fc.record({
      who: fc.constantFrom<Who>('own', 'own', 'own', 'foreign', 'foreign', 'random', 'deleted', 'crosstype'),
      pick: fc.nat({ max: 1000 }),
    });
    return fc.record({
      ep: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(...main) }, { weight: 1, arbitrary: fc.constantFrom(...side) }),
      via: fc.constantFrom<'key' | 'jwt'>('key', 'jwt'),
      ref,
      ref2: ref,
      v: fc.nat({ max: 99 }),
      n: fc.nat({ max: 1_000_000 }),
      tenantIdInBody: fc.constantFrom(false, false, false, false, false, true),
    });
  }

  /** One run: per tenant a sequence, plus the admin lane, all lanes concurrently. */
  runArbitrary(maxLen: number): fc.Arbitrary<{ lanes: Op[][]; admin: Op[] }> {
    const lane = fc.array(this.opArbitrary(), { maxLength: maxLen });
    return fc.record({ lanes: fc.tuple(...this.tenants.map(() => lane)), admin: fc.array(this.opArbitrary('admin'), { maxLength: Math.ceil(maxLen / 2) }) });
  }

  /** The run in progress: a run that fast-check abandoned at its time limit still has lanes sending requests. */
  #inflight: Promise<void> = Promise.resolve();
  #synced = false;
  /** Print a progress line every this many runs (0: never). */
  progressEvery = 0;

  async run(input: { lanes: Op[][]; admin: Op[] }): Promise<void> {
    // One run at a time: fast-check's interruptAfterTimeLimit stops waiting for a run, not the run itself. The next
    // test's first run used to start (syncModels) while the abandoned run's lanes still wrote, and its checks then
    // saw their rows, e.g. the admin lane's imported copy of a tenant before that lane deleted it.
    const previous = this.#inflight;
    let settled!: () => void;
    this.#inflight = new Promise<void>((resolve) => (settled = resolve));
    try {
      await previous;
      await this.#run(input);
    } finally {
      settled();
    }
  }

  async #run(input: { lanes: Op[][]; admin: Op[] }): Promise<void> {
    this.stats.runs++;
    let t0 = performance.now();
    // The models are the database's truth when the previous run's checkDatabase (which ends with a sync) passed.
    if (!this.#synced) await this.syncModels();
    this.#synced = false;
    const t1 = performance.now();
    this.stats.checkMs += t1 - t0;
    const lanes = input.lanes.map(async (ops, i) => {
      const t = this.tenants[i] as WorldTenant;
      for (const op of ops) await this.step(t, op);
    });
    lanes.push(
      (async () => {
        for (const op of input.admin) await this.adminStep(op);
      })(),
    );
    const settled = await Promise.allSettled(lanes);
    const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    t0 = performance.now();
    this.stats.laneMs += t0 - t1;
    if (failed) throw failed.reason;
    await this.checkDatabase();
    this.#synced = true;
    this.stats.checkMs += performance.now() - t0;
    if (this.progressEvery > 0 && this.stats.runs % this.progressEvery === 0) {
      const s = this.stats;
      console.log(`# leak fuzz progress: ${s.runs} runs, ${s.ops} operations, ${s.requests} requests; ${Math.round(s.laneMs / 1000)} s in the lanes, ${Math.round(s.checkMs / 1000)} s in the database checks`);
    }
  }

  async step(t: WorldTenant, op: Op): Promise<void> {
    this.stats.ops++;
    const h = this.#handlers[op.ep];
    must(h, () => `no generator for ${op.ep}`);
    this.stats.byEndpoint.set(op.ep, (this.stats.byEndpoint.get(op.ep) ?? 0) + 1);
    if (op.ep.includes(' /admin/')) {
      // A tenant credential on an admin route: 401, never the admin data.
      const r = await this.send(t.idx, this.#adminRequest(op), op.via);
      must(r.status === 401 && r.code === 'admin_unauthorized', () => `tenant ${t.idx} on ${op.ep}: ${r.status} ${r.body}`);
      return;
    }
    await h(t, op);
  }

  async adminStep(op: Op): Promise<void> {
    this.stats.ops++;
    this.stats.byEndpoint.set(op.ep, (this.stats.byEndpoint.get(op.ep) ?? 0) + 1);
    // /metrics is admin data outside /admin/ (every tenant's activity): its generator checks both credentials.
    if (!op.ep.includes(' /admin/') && op.ep !== 'GET /metrics') {
      // The admin token is not a tenant credential.
      if (op.ep === 'GET /healthz' || op.ep === 'GET /readyz' || op.ep === 'GET /openapi.json') return void (await this.#handlers[op.ep]?.(this.spare, op));
      const [method, path] = op.ep.split(' ') as [string, string];
      const req: InjectOptions = { method: method as NonNullable<InjectOptions['method']>, url: path.replace(/\{[^}]+\}/g, randomUUID()), headers: this.#adminHeaders() };
      if (method === 'POST' || method === 'PATCH') req.payload = {};
      const r = await this.send(-1, req);
      must(r.status === 401 && r.code === 'unauthenticated', () => `admin token on tenant route ${op.ep}: ${r.status} ${r.body}`);
      return;
    }
    await this.#handlers[op.ep]?.(this.spare, op);
  }

  /** Sends as tenant `observer` (-1 anonymous, -2 admin token already in headers) and checks the response. */
  async send(observer: number, req: InjectOptions, via: 'key' | 'jwt' = 'key'): Promise<Resp> {
    this.stats.requests++;
    const who = this.world.tenants[observer];
    let res = who ? await this.world.as(who, req, via) : await this.world.app.inject(req);
    this.stats.byStatus.set(res.statusCode, (this.stats.byStatus.get(res.statusCode) ?? 0) + 1);
    // 503 transaction_conflict: the request lost a deadlock (e.g. to a move's switch) and nothing of it was applied;
    // it must say so with Retry-After, and is sent again as a client would (a bounded number of times).
    for (let again = 0; res.statusCode === 503 && errorCode(res.body) === 'transaction_conflict' && again < 100; again++) {
      must(res.headers['retry-after'] === '1', () => `transaction_conflict without Retry-After: ${req.method} ${req.url}`);
      this.stats.conflicts++;
      res = who ? await this.world.as(who, req, via) : await this.world.app.inject(req);
      this.stats.byStatus.set(res.statusCode, (this.stats.byStatus.get(res.statusCode) ?? 0) + 1);
    }
    const requestText = req.payload === undefined ? '' : typeof req.payload === 'string' ? req.payload : JSON.stringify(req.payload);
    // A 5xx says only internal_error: the server-side cause goes into the failure message.
    const cause = res.statusCode >= 500 ? this.world.serverErrors.findLast((e) => e.method === String(req.method) && e.url === String(req.url))?.cause : undefined;
    const body = cause === undefined ? res.body : `${res.body} [server-side cause: ${cause}]`;
    if (observer >= -1) {
      this.ledger.check({ observer, method: String(req.method), url: String(req.url), requestText, status: res.statusCode, body });
    } else if (res.statusCode >= 500) {
      throw new Fail(`admin ${req.method} ${req.url} -> ${res.statusCode} ${body}`);
    }
    let json: any;
    try {
      json = body === '' ? undefined : JSON.parse(body);
    } catch {
      json = undefined;
    }
    if (observer >= 0 && res.statusCode < 300) this.ledger.noteSeen(observer, json);
    return { status: res.statusCode, body, json, code: errorCode(body) };
  }

  // ---- references ----

  #ids(t: number, kind: 'customer' | 'invoice' | 'item'): string[] {
    const m = this.models[t] as TenantModel;
    if (kind === 'customer') return [...m.customers.keys()];
    if (kind === 'invoice') return [...m.invoices.keys()];
    return [...m.invoices.values()].flatMap((i) => [...i.items.keys()]);
  }

  /** Resolves a reference; `own` is true only when the id is a live row of the tenant of that kind. */
  resolve(t: WorldTenant, kind: 'customer' | 'invoice' | 'item', ref: Ref): { id: string; own: boolean; who: Who } {
    const others = this.tenants.filter((x) => x.idx !== t.idx);
    switch (ref.who) {
      case 'own': {
        const id = pick(this.#ids(t.idx, kind), ref.pick);
        if (id) return { id, own: true, who: 'own' };
        break;
      }
      case 'foreign': {
        const o = pick(others, ref.pick) as WorldTenant;
        const id = pick(this.#ids(o.idx, kind), Math.floor(ref.pick / 7));
        if (id) return { id, own: false, who: 'foreign' };
        break;
      }
      case 'deleted': {
        const id = pick((this.models[t.idx] as TenantModel).deleted[kind], ref.pick);
        if (id) return { id, own: false, who: 'deleted' };
        break;
      }
      case 'crosstype': {
        const other = kind === 'customer' ? 'invoice' : kind === 'invoice' ? 'customer' : 'invoice';
        const id = pick(this.#ids(t.idx, other), ref.pick);
        if (id) return { id, own: false, who: 'crosstype' };
        break;
      }
      case 'random':
        break;
    }
    return { id: randomUUID(), own: false, who: 'random' };
  }

  /**
   * A request with an id that is not the tenant's: 404 not_found. For another tenant's id, the same request with
   * a random id must answer identically (status, code, field): existence is not revealed.
   */
  async absent(t: WorldTenant, op: Op, build: (id: string) => InjectOptions, ref: { id: string; who: Who }, field?: string): Promise<void> {
    const req = build(ref.id);
    const r = await this.send(t.idx, req, op.via);
    if (hasTenantId(req)) {
      must(r.status === 400 && r.code === 'validation_failed', () => `tenant_id in body: ${r.status} ${r.body}`);
      return;
    }
    must(r.status === 404 && r.code === 'not_found', () => `${op.ep} with a ${ref.who} id ${ref.id} as tenant ${t.idx}: ${r.status} ${r.body}`);
    if (field !== undefined) must(r.json?.error?.details?.field === field, () => `404 names field ${r.json?.error?.details?.field}, expected ${field}`);
    if (ref.who === 'foreign') {
      this.stats.differentials++;
      const control = await this.send(t.idx, build(randomUUID()), op.via);
      must(
        control.status === r.status && control.code === r.code && JSON.stringify(control.json?.error?.details) === JSON.stringify(r.json?.error?.details),
        () => `foreign id and random id answer differently: ${r.status} ${r.body} vs ${control.status} ${control.body}`,
      );
    }
  }

  #withTenantId(body: Record<string, unknown>, op: Op): Record<string, unknown> {
    if (!op.tenantIdInBody) return body;
    const victim = pick(this.tenants, op.n) as WorldTenant;
    return { ...body, tenant_id: victim.id };
  }

  #expectBad(r: Resp, op: Op): boolean {
    if (!op.tenantIdInBody) return false;
    must(r.status === 400 && r.code === 'validation_failed', () => `tenant_id in body of ${op.ep}: ${r.status} ${r.body}`);
    return true;
  }

  #adminRequest(op: Op): InjectOptions {
    const [method, path] = op.ep.split(' ') as [string, string];
    const url = path.replace('{id}', this.spare.id).replace('{keyId}', this.spare.keyId).replace('{jobId}', this.#jobs.at(-1) ?? randomUUID());
    const req: InjectOptions = { method: method as NonNullable<InjectOptions['method']>, url };
    if (method === 'POST' && path.endsWith('/tenants')) req.payload = { slug: `x-${op.n}`, name: 'x' };
    if (method === 'POST' && path.endsWith('/api-keys')) req.payload = { name: 'x' };
    return req;
  }

  // ---- bodies ----

  #lineItems(t: WorldTenant, op: Op, count: number, dupPositions: boolean): Array<Record<string, unknown>> {
    return Array.from({ length: count }, (_, i) => ({
      description: `${t.marker} item ${op.n + i}`,
      quantity: 1 + ((op.n + i) % 5),
      unit_amount_cents: (op.n * (i + 3)) % 100_000,
      ...(dupPositions ? { position: 1 } : op.v % 2 === 0 ? { position: i + 1 } : {}),
    }));
  }

  #email(n: number): string | null {
    // A small pool shared by all tenants: uniqueness is per tenant, so another tenant's email never conflicts.
    return n % 5 === 0 ? null : `p${n % 4}@shared.test`;
  }

  // ---- handlers, one per endpoint of the OpenAPI document ----

  #makeHandlers(): Record<string, (t: WorldTenant, op: Op) => Promise<void>> {
    const m = (t: WorldTenant) => this.models[t.idx] as TenantModel;
    const noteInvoice = (t: WorldTenant, j: any) => {
      this.ledger.own(j.id, t.idx);
      const items = new Map<string, { pos: number; amount: number }>();
      for (const it of j.line_items ?? []) {
        this.ledger.own(it.id, t.idx);
        items.set(it.id, { pos: it.position, amount: it.amount_cents });
      }
      m(t).invoices.set(j.id, { status: j.status, customer: j.customer, customer_id: j.customer_id, amount: j.amount_cents, items });
    };
    const emailTaken = (t: WorldTenant, email: string | null, except?: string) =>
      email !== null && [...m(t).customers].some(([id, c]) => id !== except && c.email === email);

    return {
      'GET /healthz': async () => {
        const r = await this.send(-1, { method: 'GET', url: '/healthz' });
        must(r.status === 200, () => `healthz ${r.status}`);
      },
      'GET /readyz': async () => {
        const r = await this.send(-1, { method: 'GET', url: '/readyz' });
        must(r.status === 200, () => `readyz ${r.status}`);
      },
      'GET /openapi.json': async () => {
        const r = await this.send(-1, { method: 'GET', url: '/openapi.json' });
        must(r.status === 200 && typeof r.json.paths === 'object', () => `openapi.json ${r.status}`);
      },

      // ---- customers ----
      'POST /customers': async (t, op) => {
        const email = this.#email(op.n);
        const body = this.#withTenantId({ name: `${t.marker} c${op.n}`, ...(op.v % 3 === 0 ? {} : { email }) }, op);
        const r = await this.send(t.idx, { method: 'POST', url: '/customers', payload: body }, op.via);
        if (this.#expectBad(r, op)) return;
        const dup = op.v % 3 !== 0 && emailTaken(t, email);
        if (dup) return must(r.status === 409 && r.code === 'conflict', () => `duplicate own email ${email}: ${r.status} ${r.body}`);
        must(r.status === 201, () => `create customer (email ${email} only used by other tenants?): ${r.status} ${r.body}`);
        this.ledger.own(r.json.id, t.idx);
        m(t).customers.set(r.json.id, { name: r.json.name, email: r.json.email, created_at: r.json.created_at });
      },
      'GET /customers': async (t, op) => {
        const q = new URLSearchParams();
        const sort = op.v % 2 === 0 ? 'created_at' : 'name';
        const order = op.v % 3 === 0 ? 'desc' : 'asc';
        const limit = op.v % 4 === 0 ? 100 : 1 + (op.n % 5);
        q.set('limit', String(limit));
        if (sort !== 'created_at') q.set('sort', sort);
        if (order !== 'asc') q.set('order', order);
        const emailFilter = op.v % 5 === 1 ? this.#email(op.n) : null;
        if (emailFilter) q.set('email', emailFilter);
        const cursor = this.#cursor(t, op, '/customers', sort, order, 'customer');
        if (cursor) q.set('cursor', cursor.value);
        const r = await this.send(t.idx, { method: 'GET', url: `/customers?${q}` }, op.via);
        if (cursor?.mayFail && r.status === 400) return must(r.code === 'invalid_cursor' || r.code === 'validation_failed', () => `bad cursor: ${r.body}`);
        must(r.status === 200, () => `list customers: ${r.status} ${r.body}`);
        const ids: string[] = r.json.data.map((c: { id: string }) => c.id);
        for (const id of ids) must(m(t).customers.has(id), () => `customer ${id} listed for tenant ${t.idx} is not one of its customers`);
        if (emailFilter) for (const c of r.json.data) must(c.email === emailFilter, () => `email filter returned ${c.email}`);
        if (!cursor && !emailFilter && limit === 100 && m(t).customers.size <= 100) {
          must(ids.length === m(t).customers.size, () => `tenant ${t.idx} has ${m(t).customers.size} customers, list shows ${ids.length}`);
        }
        if (r.json.next_cursor) m(t).cursors.push({ path: '/customers', query: `${sort}:${order}`, cursor: r.json.next_cursor });
      },
      'GET /customers/{id}': async (t, op) => {
        const ref = this.resolve(t, 'customer', op.ref);
        const build = (id: string): InjectOptions => ({ method: 'GET', url: `/customers/${id}` });
        if (!ref.own) return this.absent(t, op, build, ref);
        const r = await this.send(t.idx, build(ref.id), op.via);
        must(r.status === 200 && r.json.id === ref.id, () => `own customer ${ref.id}: ${r.status} ${r.body}`);
      },
      'PATCH /customers/{id}': async (t, op) => {
        const ref = this.resolve(t, 'customer', op.ref);
        const email = this.#email(op.n);
        const patch = op.v % 2 === 0 ? { name: `${t.marker} renamed ${op.n}` } : { email };
        const build = (id: string): InjectOptions => ({ method: 'PATCH', url: `/customers/${id}`, payload: this.#withTenantId(patch, op) });
        if (!ref.own) return this.absent(t, op, build, ref);
        const r = await this.send(t.idx, build(ref.id), op.via);
        if (this.#expectBad(r, op)) return;
        if ('email' in patch && emailTaken(t, email, ref.id)) return must(r.status === 409, () => `duplicate own email on patch: ${r.status} ${r.body}`);
        must(r.status === 200, () => `patch own customer: ${r.status} ${r.body}`);
        m(t).customers.set(ref.id, { name: r.json.name, email: r.json.email, created_at: r.json.created_at });
      },
      'DELETE /customers/{id}': async (t, op) => {
        const ref = this.resolve(t, 'customer', op.ref);
        const build = (id: string): InjectOptions => ({ method: 'DELETE', url: `/customers/${id}` });
        if (!ref.own) return this.absent(t, op, build, ref);
        const referenced = [...m(t).invoices.values()].some((i) => i.customer_id === ref.id);
        const r = await this.send(t.idx, build(ref.id), op.via);
        if (referenced) return must(r.status === 409 && r.code === 'conflict', () => `delete referenced customer: ${r.status} ${r.body}`);
        must(r.status === 204, () => `delete own customer: ${r.status} ${r.body}`);
        m(t).customers.delete(ref.id);
        m(t).deleted.customer.push(ref.id);
      },

      // ---- invoices ----
      'POST /invoices': async (t, op) => {
        const variant = op.v % 7;
        let body: Record<string, unknown>;
        let custRef: { id: string; own: boolean; who: Who } | undefined;
        if (variant === 6 && this.#foreignBody(t, op)) {
          // Another tenant's request body, replayed: its customer_id (if any) is that tenant's (or random).
          body = this.#foreignBody(t, op) as Record<string, unknown>;
          if (typeof body.customer_id === 'string') {
            const own = m(t).customers.has(body.customer_id);
            custRef = { id: body.customer_id, own, who: own ? 'own' : this.ledger.ownerOf(body.customer_id) !== undefined ? 'foreign' : 'random' };
          }
        } else if (variant === 1 || variant === 5) {
          custRef = this.resolve(t, 'customer', op.ref);
          body = { customer_id: custRef.id, line_items: this.#lineItems(t, op, 1 + (op.n % 3), false) };
        } else if (variant === 2) {
          body = { customer: `${t.marker} dup ${op.n}`, line_items: this.#lineItems(t, op, 2, true) };
        } else if (variant === 3) {
          body = { customer: `${t.marker} issued ${op.n}`, status: 'issued', amount_cents: op.n, currency: 'USD' };
        } else if (variant === 4) {
          body = { customer: `${t.marker} mismatch ${op.n}`, amount_cents: 1, line_items: this.#lineItems(t, op, 1, false).map((i) => ({ ...i, quantity: 2, unit_amount_cents: 5 })) };
        } else {
          body = { customer: `${t.marker} walk-in ${op.n}`, amount_cents: op.n };
        }
        const payload = this.#withTenantId(body, op);
        if (custRef && !custRef.own) {
          return this.absent(t, op, (id) => ({ method: 'POST', url: '/invoices', payload: { ...payload, customer_id: id } }), custRef, 'customer_id');
        }
        m(t).bodies.push(body);
        if (m(t).bodies.length > 50) m(t).bodies.shift();
        const r = await this.send(t.idx, { method: 'POST', url: '/invoices', payload }, op.via);
        if (this.#expectBad(r, op)) return;
        const items = (body.line_items as Array<{ position?: number; quantity: number; unit_amount_cents: number }> | undefined) ?? [];
        const sum = items.reduce((a, i) => a + i.quantity * i.unit_amount_cents, 0);
        if (items.length > 0 && body.amount_cents !== undefined && body.amount_cents !== sum) {
          return must(r.status === 400 && r.code === 'validation_failed', () => `amount mismatch: ${r.status} ${r.body}`);
        }
        const dup = items.filter((i) => i.position === 1).length > 1;
        if (dup) return must(r.status === 409 && r.code === 'conflict', () => `duplicate positions: ${r.status} ${r.body}`);
        must(r.status === 201, () => `create invoice: ${r.status} ${r.body}`);
        must(r.json.line_items.length === items.length, () => `invoice created with ${r.json.line_items.length} of ${items.length} items`);
        noteInvoice(t, r.json);
      },
      'GET /invoices': async (t, op) => {
        const q = new URLSearchParams();
        const sort = op.v % 2 === 0 ? 'created_at' : 'amount_cents';
        const order = op.v % 3 === 0 ? 'asc' : 'desc';
        const limit = op.v % 4 === 0 ? 100 : 1 + (op.n % 5);
        q.set('limit', String(limit));
        if (sort !== 'created_at') q.set('sort', sort);
        if (order !== 'desc') q.set('order', order);
        const f = op.v % 6;
        let filterRef: { id: string; own: boolean } | undefined;
        let foreignName = false;
        if (f === 1) q.set('status', STATUSES[op.n % 4] as string);
        if (f === 2) {
          filterRef = this.resolve(t, 'customer', op.ref2);
          q.set('customer_id', filterRef.id);
        }
        if (f === 3) {
          const o = pick(this.tenants, op.ref2.pick) as WorldTenant;
          const inv = pick([...m(o).invoices.values()], op.n);
          q.set('customer', inv?.customer ?? `${o.marker} nobody`);
          foreignName = o.idx !== t.idx;
        }
        if (f === 4) {
          q.set('issued_from', new Date(Date.now() - (op.n % 3600) * 1000).toISOString());
          q.set('issued_to', new Date(Date.now() + 3_600_000).toISOString());
        }
        const cursor = this.#cursor(t, op, '/invoices', sort, order, 'invoice');
        if (cursor) q.set('cursor', cursor.value);
        const r = await this.send(t.idx, { method: 'GET', url: `/invoices?${q}` }, op.via);
        if (cursor?.mayFail && r.status === 400) return must(r.code === 'invalid_cursor' || r.code === 'validation_failed', () => `bad cursor: ${r.body}`);
        must(r.status === 200, () => `list invoices ${q}: ${r.status} ${r.body}`);
        const data = r.json.data as Array<{ id: string; status: string; customer_id: string | null }>;
        for (const i of data) must(m(t).invoices.has(i.id), () => `invoice ${i.id} listed for tenant ${t.idx} is not one of its invoices`);
        if (filterRef && !filterRef.own) must(data.length === 0, () => `filter by a customer that is not ours returned ${data.length} invoices`);
        if (foreignName) must(data.length === 0, () => `filter by another tenant's customer name returned ${data.length} invoices`);
        if (f === 1) for (const i of data) must(i.status === q.get('status'), () => 'status filter');
        if (!cursor && f === 0 && limit === 100 && m(t).invoices.size <= 100) {
          must(data.length === m(t).invoices.size, () => `tenant ${t.idx} has ${m(t).invoices.size} invoices, list shows ${data.length}`);
        }
        if (r.json.next_cursor) m(t).cursors.push({ path: '/invoices', query: `${sort}:${order}`, cursor: r.json.next_cursor });
      },
      'GET /invoices/{id}': async (t, op) => {
        const ref = this.resolve(t, 'invoice', op.ref);
        const build = (id: string): InjectOptions => ({ method: 'GET', url: `/invoices/${id}` });
        if (!ref.own) return this.absent(t, op, build, ref);
        const r = await this.send(t.idx, build(ref.id), op.via);
        must(r.status === 200 && r.json.id === ref.id, () => `own invoice: ${r.status} ${r.body}`);
        const model = m(t).invoices.get(ref.id) as InvoiceM;
        must(r.json.status === model.status && r.json.amount_cents === model.amount, () => `invoice ${ref.id} differs from model: ${r.body} vs ${JSON.stringify({ ...model, items: model.items.size })}`);
      },
      'GET /invoices/{id}/document': async (t, op) => {
        const ref = this.resolve(t, 'invoice', op.ref);
        const build = (id: string): InjectOptions => ({ method: 'GET', url: `/invoices/${id}/document` });
        if (!ref.own) return this.absent(t, op, build, ref);
        const r = await this.send(t.idx, build(ref.id), op.via);
        const cur = m(t).invoices.get(ref.id) as InvoiceM;
        // A draft was never issued: no document. A void invoice may or may not have been issued before.
        if (cur.status === 'draft') return must(r.status === 409 && r.code === 'conflict', () => `document of a draft: ${r.status} ${r.body}`);
        const allowed = cur.status === 'void' ? [200, 202, 409] : [200, 202];
        must(allowed.includes(r.status), () => `document of a ${cur.status} invoice: ${r.status} ${r.body}`);
        // The PDF (rendered by the world's document worker) names its own invoice; the ledger has checked that
        // the bytes hold no other tenant's marker or id.
        if (r.status === 200) must(r.body.startsWith('%PDF-') && r.body.includes(`Invoice ${ref.id}`), () => `document of ${ref.id} is not its PDF`);
        if (r.status === 202) must(r.json?.invoice_id === ref.id && r.json?.status === 'rendering', () => `pending document: ${r.body}`);
      },
      'PATCH /invoices/{id}': async (t, op) => {
        const ref = this.resolve(t, 'invoice', op.ref);
        const variant = op.v % 4;
        let custRef: { id: string; own: boolean; who: Who } | undefined;
        let patch: Record<string, unknown>;
        if (variant === 0) patch = { status: STATUSES[op.n % 4] };
        else if (variant === 1) patch = { customer: `${t.marker} patched ${op.n}` };
        else if (variant === 2) patch = { amount_cents: op.n };
        else {
          custRef = this.resolve(t, 'customer', op.ref2);
          patch = { customer_id: custRef.id };
        }
        const payload = this.#withTenantId(patch, op);
        if (!ref.own) return this.absent(t, op, (id) => ({ method: 'PATCH', url: `/invoices/${id}`, payload }), ref);
        const r = await this.send(t.idx, { method: 'PATCH', url: `/invoices/${ref.id}`, payload }, op.via);
        if (this.#expectBad(r, op)) return;
        const cur = m(t).invoices.get(ref.id) as InvoiceM;
        if (variant === 0) {
          const ok = TRANSITIONS[cur.status].includes(patch.status as Status);
          must(ok ? r.status === 200 : r.status === 409, () => `${cur.status} -> ${String(patch.status)}: ${r.status} ${r.body}`);
        } else if (cur.status !== 'draft') {
          must(r.status === 409, () => `content change on ${cur.status} invoice: ${r.status} ${r.body}`);
        } else if (variant === 2 && cur.items.size > 0) {
          must(r.status === 409, () => `amount of invoice with items: ${r.status} ${r.body}`);
        } else if (custRef && !custRef.own) {
          must(r.status === 404 && r.code === 'not_found', () => `attach ${custRef.who} customer: ${r.status} ${r.body}`);
        } else {
          must(r.status === 200, () => `patch own draft: ${r.status} ${r.body}`);
        }
        if (r.status === 200) {
          must(r.json.customer_id === null || m(t).customers.has(r.json.customer_id), () => `invoice now points at customer ${r.json.customer_id}, not ours`);
          m(t).invoices.set(ref.id, { status: r.json.status, customer: r.json.customer, customer_id: r.json.customer_id, amount: r.json.amount_cents, items: cur.items });
        }
      },
      'DELETE /invoices/{id}': async (t, op) => {
        const ref = this.resolve(t, 'invoice', op.ref);
        const build = (id: string): InjectOptions => ({ method: 'DELETE', url: `/invoices/${id}` });
        if (!ref.own) return this.absent(t, op, build, ref);
        const r = await this.send(t.idx, build(ref.id), op.via);
        must(r.status === 204, () => `delete own invoice: ${r.status} ${r.body}`);
        const inv = m(t).invoices.get(ref.id) as InvoiceM;
        m(t).deleted.item.push(...inv.items.keys());
        m(t).invoices.delete(ref.id);
        m(t).deleted.invoice.push(ref.id);
      },

      // ---- line items ----
      'GET /invoices/{id}/line-items': async (t, op) => {
        const ref = this.resolve(t, 'invoice', op.ref);
        const limit = op.v % 2 === 0 ? 100 : 1 + (op.n % 3);
        const order = op.v % 3 === 0 ? 'desc' : 'asc';
        const cursor = ref.own ? this.#cursor(t, op, `/invoices/${ref.id}/line-items`, 'position', order, 'item') : undefined;
        const q = `limit=${limit}${order === 'desc' ? '&order=desc' : ''}${cursor ? `&cursor=${cursor.value}` : ''}`;
        const build = (id: string): InjectOptions => ({ method: 'GET', url: `/invoices/${id}/line-items?${q}` });
        if (!ref.own) return this.absent(t, op, build, ref, 'invoice_id');
        const r = await this.send(t.idx, build(ref.id), op.via);
        if (cursor?.mayFail && r.status === 400) return must(r.code === 'invalid_cursor' || r.code === 'validation_failed', () => `bad cursor: ${r.body}`);
        must(r.status === 200, () => `own line items: ${r.status} ${r.body}`);
        const inv = m(t).invoices.get(ref.id) as InvoiceM;
        for (const it of r.json.data) must(inv.items.has(it.id) && it.invoice_id === ref.id, () => `line item ${it.id} is not one of invoice ${ref.id}`);
        if (!cursor && limit === 100) must(r.json.data.length === inv.items.size, () => `invoice has ${inv.items.size} items, list shows ${r.json.data.length}`);
        if (r.json.next_cursor) m(t).cursors.push({ path: `/invoices/${ref.id}/line-items`, query: `position:${order}`, cursor: r.json.next_cursor });
      },
      'POST /invoices/{id}/line-items': async (t, op) => {
        const ref = this.resolve(t, 'invoice', op.ref);
        const item = this.#lineItems(t, op, 1, false)[0] as Record<string, unknown>;
        if (op.v % 3 === 0) item.position = 1 + (op.n % 3);
        const payload = this.#withTenantId(item, op);
        const build = (id: string): InjectOptions => ({ method: 'POST', url: `/invoices/${id}/line-items`, payload });
        if (!ref.own) return this.absent(t, op, build, ref, 'invoice_id');
        const r = await this.send(t.idx, build(ref.id), op.via);
        if (this.#expectBad(r, op)) return;
        const inv = m(t).invoices.get(ref.id) as InvoiceM;
        if (inv.status !== 'draft') return must(r.status === 409, () => `line item on ${inv.status}: ${r.status} ${r.body}`);
        const taken = item.position !== undefined && [...inv.items.values()].some((x) => x.pos === item.position);
        if (taken) return must(r.status === 409, () => `taken position: ${r.status} ${r.body}`);
        must(r.status === 201 && r.json.invoice_id === ref.id, () => `add line item: ${r.status} ${r.body}`);
        this.ledger.own(r.json.id, t.idx);
        inv.items.set(r.json.id, { pos: r.json.position, amount: r.json.amount_cents });
        retotal(inv);
      },
      'GET /invoices/{id}/line-items/{itemId}': async (t, op) => this.#itemOp(t, op, 'GET'),
      'PATCH /invoices/{id}/line-items/{itemId}': async (t, op) => this.#itemOp(t, op, 'PATCH'),
      'DELETE /invoices/{id}/line-items/{itemId}': async (t, op) => this.#itemOp(t, op, 'DELETE'),

      // ---- observability: admin data (every tenant's activity); a tenant key never opens it ----
      'GET /metrics': async (t) => {
        const r = await this.send(t.idx, { method: 'GET', url: '/metrics' });
        must(r.status === 401, () => `a tenant key opened /metrics: ${r.status}`);
        const admin = await this.send(-2, { method: 'GET', url: '/metrics', headers: this.#adminHeaders() });
        must(admin.status === 200 && admin.body.includes('tenantwall_'), () => `admin /metrics: ${admin.status}`);
      },

      // ---- admin (the admin lane works on the spare tenant; tenants calling these get 401, see step()) ----
      'GET /admin/observability/top': async () => {
        const r = await this.send(-2, { method: 'GET', url: '/admin/observability/top', headers: this.#adminHeaders() });
        must(r.status === 200 && Array.isArray(r.json.tenants), () => `admin top: ${r.status} ${r.body.slice(0, 200)}`);
      },
      'POST /admin/tenants': async (_s, op) => {
        const slug = op.v % 5 === 0 ? (pick(this.tenants, op.n) as WorldTenant).slug : `adv-x-${randomUUID().slice(0, 8)}`;
        const r = await this.send(-2, { method: 'POST', url: '/admin/tenants', payload: { slug, name: 'extra' }, headers: this.#adminHeaders() });
        must(op.v % 5 === 0 ? r.status === 409 && r.code === 'tenant_exists' : r.status === 201, () => `admin create tenant ${slug}: ${r.status} ${r.body}`);
      },
      'GET /admin/tenants': async () => {
        const r = await this.send(-2, { method: 'GET', url: '/admin/tenants?limit=100', headers: this.#adminHeaders() });
        must(r.status === 200 && Array.isArray(r.json.data), () => `admin list: ${r.status}`);
        for (const t of this.world.tenants) must(!r.body.includes(t.key), () => 'an API key in the tenant list');
      },
      'GET /admin/tenants/{id}': async (_s, op) => {
        const id = op.v % 4 === 0 ? randomUUID() : this.spare.id;
        const r = await this.send(-2, { method: 'GET', url: `/admin/tenants/${id}`, headers: this.#adminHeaders() });
        must(id === this.spare.id ? r.status === 200 && r.json.status === (this.#spareSuspended ? 'suspended' : 'active') : r.status === 404, () => `admin get: ${r.status} ${r.body}`);
      },
      'POST /admin/tenants/{id}/suspend': async () => {
        const r = await this.send(-2, { method: 'POST', url: `/admin/tenants/${this.spare.id}/suspend`, headers: this.#adminHeaders() });
        must(r.status === 200 && r.json.status === 'suspended', () => `suspend: ${r.status} ${r.body}`);
        this.#spareSuspended = true;
        await this.#spareProbe();
      },
      'POST /admin/tenants/{id}/resume': async () => {
        const r = await this.send(-2, { method: 'POST', url: `/admin/tenants/${this.spare.id}/resume`, headers: this.#adminHeaders() });
        must(r.status === 200 && r.json.status === 'active', () => `resume: ${r.status} ${r.body}`);
        this.#spareSuspended = false;
        await this.#spareProbe();
      },
      'POST /admin/tenants/{id}/api-keys': async () => {
        const r = await this.send(-2, { method: 'POST', url: `/admin/tenants/${this.spare.id}/api-keys`, payload: { name: 'fuzz' }, headers: this.#adminHeaders() });
        must(r.status === 201 && typeof r.json.key === 'string', () => `create key: ${r.status} ${r.body}`);
        this.#spareKeys.push({ id: r.json.id, key: r.json.key, revoked: false });
        await this.#spareProbe();
      },
      'GET /admin/tenants/{id}/api-keys': async () => {
        // Every page: a long run gives the spare tenant more keys than one page holds.
        const listed: string[] = [];
        let cursor: string | undefined;
        do {
          const q = `limit=100${cursor === undefined ? '' : `&cursor=${encodeURIComponent(cursor)}`}`;
          const r = await this.send(-2, { method: 'GET', url: `/admin/tenants/${this.spare.id}/api-keys?${q}`, headers: this.#adminHeaders() });
          must(r.status === 200, () => `list keys: ${r.status} ${r.body}`);
          for (const k of this.#spareKeys) must(!r.body.includes(k.key.slice(-20)), () => 'a key secret in the key list');
          must(!/secret|hash/i.test(r.body), () => `key list shows hashes: ${r.body}`);
          listed.push(...(r.json.data as Array<{ id: string }>).map((k) => k.id));
          cursor = (r.json.next_cursor as string | null) ?? undefined;
        } while (cursor !== undefined);
        const created = this.#spareKeys.map((k) => k.id).sort();
        must(JSON.stringify([...listed].sort()) === JSON.stringify(created), () => `list keys: ${listed.length} listed, ${created.length} created`);
      },
      'DELETE /admin/tenants/{id}/api-keys/{keyId}': async (_s, op) => {
        const k = pick(this.#spareKeys.slice(1), op.n);
        const keyId = op.v % 3 === 0 || !k ? this.world.tenants[0]?.keyId ?? randomUUID() : k.id;
        const r = await this.send(-2, { method: 'DELETE', url: `/admin/tenants/${this.spare.id}/api-keys/${keyId}`, headers: this.#adminHeaders() });
        // Another tenant's key id under the spare tenant: not found (revoking it through the wrong tenant is impossible).
        must(k && keyId === k.id ? r.status === 204 : r.status === 404, () => `revoke ${keyId}: ${r.status} ${r.body}`);
        if (k && keyId === k.id) k.revoked = true;
        await this.#spareProbe();
      },
      'DELETE /admin/tenants/{id}': async (_s, op) => {
        // A throwaway tenant: deleted with its slug typed as confirm, or refused with a wrong one (never a fuzz tenant).
        const slug = `adv-d-${randomUUID().slice(0, 8)}`;
        const c = await this.send(-2, { method: 'POST', url: '/admin/tenants', payload: { slug, name: 'doomed' }, headers: this.#adminHeaders() });
        must(c.status === 201, () => `create doomed: ${c.status} ${c.body}`);
        const confirm = op.v % 2 === 0 ? slug : (pick(this.tenants, op.n) as WorldTenant).slug;
        const r = await this.send(-2, { method: 'DELETE', url: `/admin/tenants/${c.json.id}?confirm=${confirm}`, headers: this.#adminHeaders() });
        must(confirm === slug ? r.status === 200 && r.json.tenant.status === 'deleted' : r.status === 400 && r.code === 'confirmation_required', () => `delete tenant: ${r.status} ${r.body}`);
      },
      // ---- lifecycle jobs: a FUZZ tenant changes placement while its lane keeps reading and writing ----
      'POST /admin/tenants/{id}/move': async (_s, op) => {
        const t = pick(this.tenants, op.n) as WorldTenant;
        const cur = await this.send(-2, { method: 'GET', url: `/admin/tenants/${t.id}`, headers: this.#adminHeaders() });
        must(cur.status === 200, () => `get tenant ${t.idx}: ${cur.status} ${cur.body}`);
        const to = cur.json.placement === 'dedicated' ? 'shared' : 'dedicated';
        const r = await this.send(-2, { method: 'POST', url: `/admin/tenants/${t.id}/move`, payload: { to }, headers: this.#adminHeaders() });
        must(r.status === 202, () => `move tenant ${t.idx} to ${to}: ${r.status} ${r.body}`);
        this.#jobs.push(r.json.id);
        const job = await this.#job(r.json.id);
        // Under load the switch may not get its locks in time, or lose a deadlock to a request: rolled back, journaled,
        // resumable (the next move in the same direction resumes it; the other direction is move_in_progress).
        const retryable = job.error?.code === 'move_in_progress' || job.error?.code === 'transaction_conflict';
        must(job.status === 'succeeded' || retryable, () => `move job of tenant ${t.idx} to ${to}: ${JSON.stringify(job)}`);
        if (job.status === 'succeeded') this.moves++;
        if (job.error?.code === 'move_in_progress') {
          // Finish the journaled move (it resumes), so the tenant does not stay half-way for the rest of the run.
          const resume = await this.send(-2, { method: 'POST', url: `/admin/tenants/${t.id}/move`, payload: { to: to === 'shared' ? 'dedicated' : 'shared' }, headers: this.#adminHeaders() });
          if (resume.status === 202) await this.#job(resume.json.id);
        }
      },
      'POST /admin/tenants/{id}/export': async (_s, op) => {
        const t = pick(this.tenants, op.n) as WorldTenant;
        const r = await this.send(-2, { method: 'POST', url: `/admin/tenants/${t.id}/export`, headers: this.#adminHeaders() });
        must(r.status === 202, () => `export tenant ${t.idx}: ${r.status} ${r.body}`);
        this.#jobs.push(r.json.id);
        const job = await this.#job(r.json.id);
        must(job.status === 'succeeded', () => `export job of tenant ${t.idx}: ${JSON.stringify(job)}`);
        this.#lastExport = { job: r.json.id, tenant: t };
      },
      'GET /admin/jobs/{jobId}': async (_s, op) => {
        const id = op.v % 4 === 0 ? randomUUID() : pick(this.#jobs, op.n) ?? randomUUID();
        const r = await this.send(-2, { method: 'GET', url: `/admin/jobs/${id}`, headers: this.#adminHeaders() });
        must(this.#jobs.includes(id) ? r.status === 200 && r.json.id === id : r.status === 404, () => `get job ${id}: ${r.status} ${r.body}`);
      },
      'GET /admin/jobs/{jobId}/download': async () => {
        const last = this.#lastExport;
        const id = last?.job ?? randomUUID();
        const r = await this.send(-2, { method: 'GET', url: `/admin/jobs/${id}/download`, headers: this.#adminHeaders() });
        if (!last) return void must(r.status === 404, () => `download of no job: ${r.status}`);
        must(r.status === 200, () => `download ${id}: ${r.status} ${r.body.slice(0, 300)}`);
        must(JSON.parse(r.body.slice(0, r.body.indexOf('\n'))).tenant.id === last.tenant.id, () => 'the download is of another tenant');
        this.#onlyMarkersOf(last.tenant, r.body, 'the export download');
      },
      'POST /admin/tenants/import': async (_s, op) => {
        // The last export becomes a throwaway tenant: its rows equal the source's and are nobody else's; then it goes.
        const last = this.#lastExport;
        if (!last) return;
        const dl = await this.send(-2, { method: 'GET', url: `/admin/jobs/${last.job}/download`, headers: this.#adminHeaders() });
        must(dl.status === 200, () => `download for import: ${dl.status}`);
        const slug = `adv-i-${randomUUID().slice(0, 8)}`;
        const placement = op.v % 2 === 0 ? 'dedicated' : 'shared';
        const r = await this.send(-2, { method: 'POST', url: `/admin/tenants/import?slug=${slug}&placement=${placement}`, payload: dl.body, headers: { ...this.#adminHeaders(), 'content-type': 'application/x-ndjson' } });
        must(r.status === 202, () => `import: ${r.status} ${r.body}`);
        this.#jobs.push(r.json.id);
        const job = await this.#job(r.json.id);
        // An import is one transaction: one that lost a deadlock or its lock wait to the lanes (dedicated placement
        // creates partitions while requests write) is rolled back whole, as a move's switch is. Nothing may remain.
        if (job.status === 'failed' && job.error?.code === 'transaction_conflict') {
          const { rows } = await this.world.su.query(`SELECT count(*)::int AS n FROM tenants WHERE slug = $1`, [slug]);
          return must(rows[0].n === 0, () => `a failed import left tenant ${slug} behind`);
        }
        must(job.status === 'succeeded' && job.result.tenant.placement === placement, () => `import job: ${JSON.stringify(job)}`);
        const id = job.result.tenant.id as string;
        const { rows } = await this.world.su.query(`SELECT count(*)::int AS n FROM invoices WHERE tenant_id = $1 AND customer !~ $2`, [id, last.tenant.marker]);
        must(rows[0].n === 0, () => `the imported tenant has invoices without the source tenant's marker`);
        const del = await this.send(-2, { method: 'DELETE', url: `/admin/tenants/${id}?confirm=${slug}`, headers: this.#adminHeaders() });
        must(del.status === 200, () => `delete imported: ${del.status} ${del.body}`);
      },
      'POST /admin/tokens': async () => {
        const r = await this.send(-2, { method: 'POST', url: '/admin/tokens', payload: { name: 'fuzz' }, headers: this.#adminHeaders() });
        must(r.status === 201 && typeof r.json.token === 'string', () => `create admin token: ${r.status} ${r.body}`);
        this.#adminTokens.push(r.json.id);
        const probe = await this.send(-2, { method: 'GET', url: '/admin/tokens?limit=1', headers: { authorization: `Bearer ${r.json.token}` } });
        must(probe.status === 200, () => `named admin token refused: ${probe.status}`);
        // A named admin token is not a tenant credential.
        const asTenant = await this.send(-2, { method: 'GET', url: '/customers', headers: { authorization: `Bearer ${r.json.token}` } });
        must(asTenant.status === 401, () => `admin token on a tenant route: ${asTenant.status}`);
      },
      'GET /admin/tokens': async () => {
        const r = await this.send(-2, { method: 'GET', url: '/admin/tokens?limit=100', headers: this.#adminHeaders() });
        must(r.status === 200 && Array.isArray(r.json.data) && !/twadm_/.test(r.body), () => `list admin tokens: ${r.status} ${r.body}`);
      },
      'DELETE /admin/tokens/{tokenId}': async (_s, op) => {
        const id = pick(this.#adminTokens, op.n) ?? randomUUID();
        const r = await this.send(-2, { method: 'DELETE', url: `/admin/tokens/${id}`, headers: this.#adminHeaders() });
        must(this.#adminTokens.includes(id) ? r.status === 204 : r.status === 404, () => `revoke admin token: ${r.status} ${r.body}`);
      },
    };
  }

  /** Follows a lifecycle job until it is no longer running (a condition: the job's own status). */
  async #job(id: string): Promise<any> {
    for (;;) {
      const r = await this.send(-2, { method: 'GET', url: `/admin/jobs/${id}`, headers: this.#adminHeaders() });
      must(r.status === 200, () => `job ${id}: ${r.status} ${r.body}`);
      if (r.json.status !== 'running') return r.json;
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  /** No marker of any tenant but `owner` in `text` (an export of `owner`). */
  #onlyMarkersOf(owner: WorldTenant, text: string, what: string): void {
    for (const o of this.world.tenants) must(o.idx === owner.idx || !text.includes(o.marker), () => `${what} of tenant ${owner.idx} holds tenant ${o.idx}'s data (${o.marker})`);
  }

  #adminHeaders(): Record<string, string> {
    return { authorization: 'Bearer adversarial-admin-token-0123456789abcdef' };
  }

  /** What the spare tenant's keys can do right now: suspended -> 403, revoked -> 401, else 200. */
  async #spareProbe(): Promise<void> {
    for (const k of this.#spareKeys.slice(-3)) {
      const r = await this.send(this.spare.idx, { method: 'GET', url: '/customers?limit=1', headers: { authorization: `Bearer ${k.key}` } });
      const want = k.revoked ? 401 : this.#spareSuspended ? 403 : 200;
      must(r.status === want, () => `spare key (revoked ${k.revoked}, suspended ${this.#spareSuspended}): ${r.status} ${r.body}`);
    }
  }

  #foreignBody(t: WorldTenant, op: Op): Record<string, unknown> | undefined {
    const o = pick(this.tenants.filter((x) => x.idx !== t.idx), op.n) as WorldTenant;
    const body = pick((this.models[o.idx] as TenantModel).bodies, op.ref.pick);
    if (!body) return undefined;
    // Keep the foreign ids, rewrite the foreign text tag so the row we may create carries only our own tag.
    return JSON.parse(JSON.stringify(body).split(o.marker).join(t.marker)) as Record<string, unknown>;
  }

  /** A cursor for a list: own, another tenant's, forged at another tenant's row, or garbage. */
  #cursor(t: WorldTenant, op: Op, path: string, sort: string, order: string, kind: 'customer' | 'invoice' | 'item'): { value: string; mayFail: boolean } | undefined {
    const c = op.ref2.pick % 6;
    if (c === 0 || c === 1) return undefined;
    if (c === 2) {
      const own = (this.models[t.idx] as TenantModel).cursors.filter((x) => x.path === path && x.query === `${sort}:${order}`);
      const hit = pick(own, op.n);
      return hit ? { value: hit.cursor, mayFail: false } : undefined;
    }
    if (c === 3) {
      // A cursor another tenant received, for the same kind of list.
      const theirs = this.tenants.filter((x) => x.idx !== t.idx).flatMap((x) => (this.models[x.idx] as TenantModel).cursors.filter((k) => k.path.replace(/[0-9a-f-]{36}/, ':id') === path.replace(/[0-9a-f-]{36}/, ':id')));
      const hit = pick(theirs, op.n);
      return hit ? { value: hit.cursor, mayFail: true } : undefined;
    }
    if (c === 4) {
      const foreign = this.resolve(t, kind, { who: 'foreign', pick: op.n });
      const o = this.tenants.find((x) => (this.models[x.idx] as TenantModel).customers.has(foreign.id));
      const value = sort === 'name' ? `${o?.marker ?? 'X'} c` : sort === 'created_at' ? new Date(Date.now() - (op.n % 100_000)).toISOString() : op.n;
      return { value: Buffer.from(JSON.stringify({ s: sort, o: order, v: value, i: foreign.id })).toString('base64url'), mayFail: false };
    }
    const garbage = ["' OR 1=1 --", 'e30', Buffer.from('{"s":"created_at","o":"asc","v":"x","i":"1"}').toString('base64url'), 'A'.repeat(600), '%00'];
    return { value: encodeURIComponent(garbage[op.n % garbage.length] as string), mayFail: true };
  }

  async #itemOp(t: WorldTenant, op: Op, method: 'GET' | 'PATCH' | 'DELETE'): Promise<void> {
    const m = this.models[t.idx] as TenantModel;
    const inv = this.resolve(t, 'invoice', op.ref);
    // The item: one of this invoice's items, another tenant's, another own invoice's, deleted, or random.
    let item: { id: string; own: boolean; who: Who };
    const invModel = inv.own ? m.invoices.get(inv.id) : undefined;
    if (op.ref2.who === 'own' && invModel && invModel.items.size > 0) {
      item = { id: pick([...invModel.items.keys()], op.ref2.pick) as string, own: true, who: 'own' };
    } else {
      const r = this.resolve(t, 'item', op.ref2);
      item = { ...r, own: false };
    }
    const patch = op.v % 2 === 0 ? { quantity: 1 + (op.n % 9) } : { description: `${t.marker} d${op.n}`, position: 1 + (op.n % 4) };
    const payload = method === 'PATCH' ? this.#withTenantId(patch, op) : undefined;
    const build = (invoiceId: string, itemId: string): InjectOptions => ({ method, url: `/invoices/${invoiceId}/line-items/${itemId}`, ...(payload ? { payload } : {}) });
    if (!inv.own) {
      return this.absent(t, op, (id) => build(id, item.id), inv, method === 'GET' ? 'id' : 'invoice_id');
    }
    const draft = invModel?.status === 'draft';
    if (method !== 'GET' && !draft && !(payload && 'tenant_id' in payload)) {
      const r = await this.send(t.idx, build(inv.id, item.id), op.via);
      return must(r.status === 409, () => `${method} item of ${invModel?.status} invoice: ${r.status} ${r.body}`);
    }
    if (!item.own) return this.absent(t, op, (id) => build(inv.id, id), item);
    const r = await this.send(t.idx, build(inv.id, item.id), op.via);
    if (method === 'PATCH' && this.#expectBad(r, op)) return;
    const invM = invModel as InvoiceM;
    if (method === 'GET') return must(r.status === 200 && r.json.id === item.id, () => `get own item: ${r.status} ${r.body}`);
    if (method === 'DELETE') {
      must(r.status === 204, () => `delete own item: ${r.status} ${r.body}`);
      invM.items.delete(item.id);
      retotal(invM);
      m.deleted.item.push(item.id);
      return;
    }
    const pos = (patch as { position?: number }).position;
    const taken = pos !== undefined && [...invM.items].some(([id, p]) => id !== item.id && p.pos === pos);
    if (taken) return must(r.status === 409, () => `patch to taken position: ${r.status} ${r.body}`);
    must(r.status === 200, () => `patch own item: ${r.status} ${r.body}`);
    invM.items.set(item.id, { pos: r.json.position, amount: r.json.amount_cents });
    retotal(invM);
  }

  // ---- the database as the judge ----

  /** Reloads every tenant's rows from the database (as superuser), so each run starts from the truth. */
  async syncModels(): Promise<void> {
    const su = this.world.su;
    const c = await su.query(`SELECT tenant_id::text, id::text, name, email, created_at FROM customers`);
    const i = await su.query(`SELECT tenant_id::text, id::text, status, customer, customer_id::text, amount_cents::float8 AS amount FROM invoices`);
    const li = await su.query(`SELECT tenant_id::text, id::text, invoice_id::text, position, amount_cents::float8 AS amount FROM invoice_line_items`);
    const idx = new Map(this.world.tenants.map((t) => [t.id, t.idx]));
    for (const model of this.models) {
      model.customers.clear();
      model.invoices.clear();
    }
    for (const r of c.rows) {
      const k = idx.get(r.tenant_id);
      if (k === undefined) continue;
      this.ledger.own(r.id, k);
      this.models[k]?.customers.set(r.id, { name: r.name, email: r.email, created_at: (r.created_at as Date).toISOString() });
    }
    for (const r of i.rows) {
      const k = idx.get(r.tenant_id);
      if (k === undefined) continue;
      this.ledger.own(r.id, k);
      this.models[k]?.invoices.set(r.id, { status: r.status, customer: r.customer, customer_id: r.customer_id, amount: r.amount, items: new Map() });
    }
    for (const r of li.rows) {
      const k = idx.get(r.tenant_id);
      if (k === undefined) continue;
      this.ledger.own(r.id, k);
      this.models[k]?.invoices.get(r.invoice_id)?.items.set(r.id, { pos: r.position, amount: r.amount });
    }
  }

  /** After a run: the database holds exactly the rows the model expects, per tenant, and nothing crossed over. */
  async checkDatabase(): Promise<void> {
    const expected = this.models.map((m) => ({
      customers: [...m.customers.keys()].sort(),
      invoices: [...m.invoices.keys()].sort(),
      items: [...m.invoices.values()].flatMap((i) => [...i.items.keys()]).sort(),
      amounts: [...m.invoices].map(([id, i]) => `${id}:${i.amount}`).sort(),
    }));
    await this.syncModels();
    this.models.forEach((m, k) => {
      const e = expected[k] as (typeof expected)[number];
      const got = {
        customers: [...m.customers.keys()].sort(),
        invoices: [...m.invoices.keys()].sort(),
        items: [...m.invoices.values()].flatMap((i) => [...i.items.keys()]).sort(),
        amounts: [...m.invoices].map(([id, i]) => `${id}:${i.amount}`).sort(),
      };
      for (const key of ['customers', 'invoices', 'items', 'amounts'] as const) {
        must(JSON.stringify(e[key]) === JSON.stringify(got[key]), () => `tenant ${k}: ${key} in the database differ from what the API acknowledged:\n  api: ${e[key].join(',')}\n  db:  ${got[key].join(',')}`);
      }
    });
    // An invoice with line items is exactly their sum (kept in the same transaction as the items). Per tenant: an
    // import copies row ids, so the admin lane's imported copy of a fuzz tenant has the same invoice ids (grouped by
    // id alone, the copy's items counted twice). A tenant whose delete is unfinished (journaled: its rows go table
    // by table) is half-way by design and skipped; the failure that left it so is the one to report.
    const journal = (await this.world.su.query(`SELECT to_regclass('tenantwall_lifecycle') IS NOT NULL AS j`)).rows[0].j as boolean;
    const deleting = journal ? (await this.world.su.query(`SELECT subject_tenant::text AS t FROM tenantwall_lifecycle WHERE operation = 'delete'`)).rows.map((r) => r.t as string) : [];
    const { rows } = await this.world.su.query(
      `SELECT i.tenant_id::text AS tenant, i.id::text, i.amount_cents::text AS amount, sum(l.amount_cents)::text AS items
         FROM invoices i JOIN invoice_line_items l ON l.tenant_id = i.tenant_id AND l.invoice_id = i.id
        WHERE NOT (i.tenant_id::text = ANY($1::text[]))
        GROUP BY i.tenant_id, i.id, i.amount_cents HAVING i.amount_cents <> sum(l.amount_cents)`,
      [deleting],
    );
    const tenantOf = new Map(this.world.tenants.map((t) => [t.id, `tenant ${t.idx}`]));
    must(rows.length === 0, () => `invoices whose total is not the sum of their items: ${JSON.stringify(rows.map((r) => ({ ...r, tenant: tenantOf.get(r.tenant) ?? `${r.tenant} (not a fuzz tenant)` })))}`);
    await verifyAgainstDatabase(this.world.su, this.world.tenants, this.ledger);
  }
}

export interface FuzzConfig {
  ops: number;
  timeMs: number;
  seed: number;
  maxLen: number;
}

export function fuzzConfigFromEnv(defaults: { ops: number; timeMs: number }): FuzzConfig {
  const num = (name: string, d: number) => {
    const raw = process.env[name];
    if (raw === undefined || raw === '') return d;
    const n = Number(raw);
    if (!Number.isFinite(n)) throw new Error(`${name} must be a number, got ${raw}`);
    return n;
  };
  return {
    ops: num('FUZZ_OPS', defaults.ops),
    timeMs: num('FUZZ_TIME_MS', defaults.timeMs),
    seed: num('FUZZ_SEED', Math.floor(Math.random() * 2 ** 31)),
    maxLen: num('FUZZ_MAX_LEN', 8),
  };
}
