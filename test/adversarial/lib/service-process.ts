/**
 * The real service as a child process (`examples/invoicing-service/src/main.ts`, what `npm start` runs), on a test database and a free
 * loopback port, so it can be killed with SIGKILL and started again.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';

export interface ServiceProcess {
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  /** kill -9 and wait for the exit. */
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

export { freePort } from '../../helpers/port.ts';

const ROOT = path.resolve(import.meta.dirname, '../../..');

/**
 * Starts the service and waits until /readyz answers 200 or the process exits. `hangAfterMs` (default 300 s) only
 * guards against a start that never finishes; a loaded machine is given all the time it needs below that.
 */
export async function startService(opts: { databaseUrl: string; port: number; adminToken: string; hangAfterMs?: number; args?: string[] }): Promise<ServiceProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'examples/invoicing-service/src/main.ts', ...(opts.args ?? [])], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATABASE_URL: opts.databaseUrl,
      PORT: String(opts.port),
      HOST: '127.0.0.1',
      TENANTWALL_ADMIN_TOKEN: opts.adminToken,
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (c) => (out = (out + String(c)).slice(-20_000)));
  child.stderr?.on('data', (c) => (out = (out + String(c)).slice(-20_000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const url = `http://127.0.0.1:${opts.port}`;
  const deadline = Date.now() + (opts.hangAfterMs ?? 300_000);
  let ready = false;
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    try {
      const r = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(Math.max(1, deadline - Date.now())) });
      if (r.status === 200) {
        ready = true;
        break;
      }
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  if (!ready) {
    const state = child.exitCode !== null || child.signalCode !== null ? `exited: ${child.exitCode ?? child.signalCode}` : 'still starting at the guard';
    child.kill('SIGKILL');
    await exited;
    throw new Error(`service did not become ready (${state}): ${out.slice(-3000)}`);
  }
  return {
    url,
    child,
    output: () => out,
    async kill9() {
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}
