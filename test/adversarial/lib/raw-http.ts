/**
 * HTTP/1.1 over a bare TCP socket, for what a well-behaved client cannot send: repeated headers, raw bytes
 * that are not UTF-8, conflicting framing. Loopback only; every request is bounded in time.
 */
import net from 'node:net';

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

export function rawRequest(port: number, head: string | Buffer, body: Buffer | string = '', timeoutMs = 5_000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`raw request timed out after ${timeoutMs} ms: ${head.toString().split('\r\n')[0]}`));
    }, timeoutMs);
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err) => {
      // A server that answers and closes at once may reset the connection after its answer.
      if (chunks.length === 0) {
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parse(Buffer.concat(chunks)));
      } catch (err) {
        reject(err);
      }
    });
    socket.write(Buffer.concat([typeof head === 'string' ? Buffer.from(head, 'utf8') : head, typeof body === 'string' ? Buffer.from(body) : body]));
  });
}

function parse(buf: Buffer): RawResponse {
  const text = buf.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`);
  const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '')?.[1]);
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(Buffer.byteLength(text.slice(0, end + 4), 'latin1'));
  if (headers['transfer-encoding'] === 'chunked') {
    const out: Buffer[] = [];
    let rest = body;
    while (rest.length > 0) {
      const nl = rest.indexOf('\r\n');
      const size = parseInt(rest.subarray(0, nl).toString('latin1'), 16);
      if (!size) break;
      out.push(rest.subarray(nl + 2, nl + 2 + size));
      rest = rest.subarray(nl + 2 + size + 2);
    }
    body = Buffer.concat(out);
  }
  return { status, headers, body: body.toString('utf8') };
}

/** A request head with the given header lines (repeats allowed), Connection: close. */
export function head(method: string, path: string, headers: Array<[string, string]>, bodyLength?: number): string {
  const lines = [`${method} ${path} HTTP/1.1`, ...headers.map(([k, v]) => `${k}: ${v}`)];
  if (!headers.some(([k]) => k.toLowerCase() === 'host')) lines.push('Host: 127.0.0.1');
  if (bodyLength !== undefined) lines.push(`Content-Length: ${bodyLength}`);
  lines.push('Connection: close');
  return `${lines.join('\r\n')}\r\n\r\n`;
}
