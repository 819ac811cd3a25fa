import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { TenantwallError } from '../errors.ts';

/**
 * The network side of webhook delivery: which addresses an endpoint may reach (SSRF), and one POST whose outcome
 * is decided on the status line, with the response body capped and discarded.
 */

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/**
 * Refuses every address that is not global unicast (loopback, private, link-local - which holds the cloud
 * metadata address 169.254.169.254 -, unique-local, carrier-grade NAT, unspecified, multicast, reserved,
 * 6to4/Teredo/NAT64 forms that embed another address), IPv4-mapped IPv6 judged as the IPv4 it maps, unless an
 * allow-list CIDR covers it.
 */
export class AddressPolicy {
  readonly #allow: readonly Cidr[];

  constructor(allowNetworks: readonly string[]) {
    this.#allow = allowNetworks.map((c) => {
      try {
        if (c.includes('/')) return ipaddr.parseCIDR(c);
        const ip = ipaddr.parse(c);
        return [ip, ip.kind() === 'ipv4' ? 32 : 128] as Cidr;
      } catch (cause) {
        throw new TenantwallError('config_invalid', `Webhook option allowNetworks: ${JSON.stringify(c)} is not an IP address or CIDR (e.g. 10.0.0.0/8, ::1/128).`, {
          cause,
          details: { field: 'allowNetworks' },
        });
      }
    });
  }

  /** Why `address` may not be reached (its range), or undefined when it may. */
  refusal(address: string): string | undefined {
    let ip: ipaddr.IPv4 | ipaddr.IPv6;
    try {
      ip = ipaddr.process(address);
    } catch {
      return 'not an IP address';
    }
    if (this.#allow.some(([net, bits]) => net.kind() === ip.kind() && ip.match(net as never, bits))) return undefined;
    const range = ip.range();
    return range === 'unicast' ? undefined : range;
  }

  /** Throws `webhook_url_forbidden` unless every address is allowed. */
  check(host: string, addresses: readonly string[]): void {
    for (const a of addresses) {
      const why = this.refusal(a);
      if (why) {
        throw new TenantwallError('webhook_url_forbidden', `Webhook host ${host} resolves to ${a} (${why}).`, { details: { field: 'url', host, address: a, range: why } });
      }
    }
  }

  /** A `net` lookup that refuses forbidden addresses at every connection (DNS rebinding cannot slip through). */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    dns.lookup(hostname, { ...options, all: true }, (err, addresses) => {
      if (err) return callback(err, '', 0);
      try {
        this.check(hostname, addresses.map((a) => a.address));
      } catch (refused) {
        return callback(refused as NodeJS.ErrnoException, '', 0);
      }
      if (options.all) (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, addresses);
      else callback(null, addresses[0]!.address, addresses[0]!.family);
    });
  };

  /** Literal IP hosts never reach `lookup` (net connects to them directly): checked here, before each request. */
  checkLiteral(url: URL): void {
    const host = hostOf(url);
    if (ipaddr.isValid(host)) this.check(host, [host]);
  }

  /** Registration: the URL's host, resolved now, must be allowed. */
  async checkResolved(url: URL): Promise<void> {
    const host = hostOf(url);
    if (ipaddr.isValid(host)) return this.check(host, [host]);
    let addresses: dns.LookupAddress[];
    try {
      addresses = await dns.promises.lookup(host, { all: true });
    } catch (cause) {
      throw new TenantwallError('webhook_url_invalid', `Webhook host ${host} does not resolve (${(cause as NodeJS.ErrnoException).code ?? 'lookup failed'}).`, {
        cause,
        details: { field: 'url', host },
      });
    }
    this.check(host, addresses.map((a) => a.address));
  }
}

/** The host of a URL without IPv6 brackets. The WHATWG parser already turned 0x7f000001 and 2130706433 into 127.0.0.1. */
function hostOf(url: URL): string {
  return url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
}

export interface PostResult {
  readonly status: number;
  /** Retry-After of a 429/503, ms from now (HTTP-date or seconds), unbounded; undefined when absent or unreadable. */
  readonly retryAfterMs: number | undefined;
}

export interface PostOptions {
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
  readonly policy: AddressPolicy;
  readonly agents: { readonly http: http.Agent; readonly https: https.Agent };
}

/**
 * Keep-alive agents whose every new connection goes through the policy's lookup. `maxSockets` is per origin:
 * the relay's whole budget, so endpoints sharing a host never queue behind each other inside the agent (the
 * relay's own per-endpoint counters bound each endpoint).
 */
export function createAgents(policy: AddressPolicy, maxSockets: number): PostOptions['agents'] {
  const o = { keepAlive: true, maxSockets, lookup: policy.lookup };
  return { http: new http.Agent(o), https: new https.Agent(o) };
}

/**
 * POSTs `body`. Resolves with the status as soon as the status line and headers arrived: the outcome does not
 * depend on the body, which is read and thrown away up to `maxResponseBytes` (then the connection is dropped) and
 * never buffered. Rejects on connection errors, refused addresses and the timeout (which covers connecting,
 * sending and the status line).
 */
export function postWebhook(url: URL, headers: Record<string, string>, body: string, o: PostOptions): Promise<PostResult> {
  return new Promise((resolve, reject) => {
    try {
      o.policy.checkLiteral(url);
    } catch (err) {
      return reject(err);
    }
    const secure = url.protocol === 'https:';
    const req = (secure ? https : http).request(url, {
      method: 'POST',
      headers: { ...headers, 'content-length': String(Buffer.byteLength(body)) },
      agent: secure ? o.agents.https : o.agents.http,
      lookup: o.policy.lookup,
    });
    const timer = setTimeout(() => req.destroy(new Error(`timed out after ${o.timeoutMs} ms`)), o.timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.once('response', (res) => {
      const status = res.statusCode ?? 0;
      const ra = status === 429 || status === 503 ? retryAfterMs(res.headers['retry-after']) : undefined;
      resolve({ status, retryAfterMs: ra });
      // The body is discarded. A body over the cap, or one still trickling at the deadline, costs the connection.
      let seen = 0;
      res.on('data', (chunk: Buffer) => {
        seen += chunk.length;
        if (seen > o.maxResponseBytes) res.destroy();
      });
      res.on('error', () => undefined);
      res.once('close', () => clearTimeout(timer));
    });
    req.end(body);
  });
}

/** Retry-After in ms from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3). */
export function retryAfterMs(value: string | undefined, now = Date.now()): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
