/**
 * Starts PgBouncer (Debian's `pgbouncer`, 1.18 on bookworm) on a free loopback port in front of a PostgreSQL
 * server, in transaction pool mode, for tests and benchmarks. Every database name is forwarded (`*`), so the
 * per-test databases need no configuration. Users authenticate with SCRAM from a plain-text auth file in a
 * temporary folder (test-only credentials).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { freePort } from '../helpers/port.ts';

export interface PgBouncer {
  readonly port: number;
  /** postgres:// URL of `database` through PgBouncer as `user`. */
  url(user: string, password: string, database: string): string;
  stop(): Promise<void>;
}

export interface PgBouncerOptions {
  /** The server PgBouncer connects to. */
  serverHost: string;
  serverPort: number;
  users: Record<string, string>;
  /** Server connections per (database, user). Default 4. */
  poolSize?: number;
  poolMode?: 'transaction' | 'session';
  maxClientConn?: number;
}

export function pgbouncerBinary(): string | undefined {
  for (const p of ['/usr/sbin/pgbouncer', '/usr/bin/pgbouncer']) if (fs.existsSync(p)) return p;
  try {
    return execFileSync('sh', ['-c', 'command -v pgbouncer'], { encoding: 'utf8' }).trim() || undefined;
  } catch {
    return undefined;
  }
}

async function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const c = net.connect({ host: '127.0.0.1', port }, () => {
      c.end();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  const bin = pgbouncerBinary();
  if (!bin) throw new Error('pgbouncer is not installed (apt-get install -y pgbouncer)');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tenantwall-pgbouncer-'));
  // Writable by the unprivileged user PgBouncer switches to when started as root (its log file lives here).
  fs.chmodSync(dir, 0o777);
  const port = await freePort();
  const quote = (s: string) => `"${s.replace(/"/g, '""')}"`;
  fs.writeFileSync(path.join(dir, 'userlist.txt'), Object.entries(options.users).map(([u, p]) => `${quote(u)} ${quote(p)}`).join('\n') + '\n', { mode: 0o644 });
  fs.writeFileSync(
    path.join(dir, 'pgbouncer.ini'),
    `[databases]
* = host=${options.serverHost} port=${options.serverPort}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = ${port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${path.join(dir, 'userlist.txt')}
pool_mode = ${options.poolMode ?? 'transaction'}
default_pool_size = ${options.poolSize ?? 4}
max_client_conn = ${options.maxClientConn ?? 1000}
ignore_startup_parameters = extra_float_digits
server_reset_query =
logfile = ${path.join(dir, 'pgbouncer.log')}
log_connections = 0
log_disconnections = 0
`,
    { mode: 0o644 },
  );
  // PgBouncer refuses to run as root; -u switches to an unprivileged user after start.
  const asRoot = process.getuid?.() === 0;
  const child: ChildProcess = spawn(bin, [...(asRoot ? ['-u', 'nobody'] : []), path.join(dir, 'pgbouncer.ini')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d) => (stderr += String(d)));
  let exited = false;
  child.once('exit', () => (exited = true));
  while (!(await accepts(port))) {
    if (exited) {
      const log = fs.existsSync(path.join(dir, 'pgbouncer.log')) ? fs.readFileSync(path.join(dir, 'pgbouncer.log'), 'utf8') : '';
      throw new Error(`pgbouncer exited: ${stderr}${log}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    port,
    url: (user, password, database) => `postgres://${encodeURIComponent(user)}:${encodeURIComponent(password)}@127.0.0.1:${port}/${database}`,
    async stop() {
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
