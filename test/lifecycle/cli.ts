import { spawn } from 'node:child_process';
import { CLI } from '../helpers/cli.ts';

export interface CliRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

function start(args: string[], databaseUrl: string) {
  return spawn(process.execPath, [...CLI, 'tenants', ...args, '--config', 'test/lifecycle/config.ts'], {
    env: { ...process.env, DATABASE_URL: databaseUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Runs `tenantwall tenants <args>` against `databaseUrl` to completion. */
export function runCli(args: string[], databaseUrl: string): Promise<CliRun> {
  const child = start(args, databaseUrl);
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
}

/**
 * Runs the CLI with `--json` and kill -9s it as soon as a progress event matches `when`: a crash in the middle
 * of the operation, at a point the test chooses, without any test hook inside the library.
 */
export function runCliAndKill(args: string[], databaseUrl: string, when: (event: Record<string, unknown>) => boolean): Promise<CliRun & { events: number }> {
  const child = start([...args, '--json'], databaseUrl);
  let stdout = '';
  let stderr = '';
  let buffered = '';
  let events = 0;
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
    buffered += d.toString();
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (!line.startsWith('{')) continue;
      const event = JSON.parse(line) as Record<string, unknown>;
      events++;
      if (event.event === 'progress' && when(event)) child.kill('SIGKILL');
    }
  });
  return new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr, events })));
}
