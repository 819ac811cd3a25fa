import { main } from '../../src/cli/main.ts';

/** Node arguments that run the CLI from source (tests); the consumer check runs the compiled `dist/cli/bin.js`. */
export const CLI: readonly string[] = ['--import', 'tsx', 'src/cli/bin.ts'];

/** Runs the CLI in-process; returns exit code and what it printed. */
export async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const log = console.log;
  const error = console.error;
  const write = process.stdout.write.bind(process.stdout);
  console.log = (...a: unknown[]) => void (out += `${a.join(' ')}\n`);
  console.error = (...a: unknown[]) => void (err += `${a.join(' ')}\n`);
  // The test runner talks to its parent over stdout in binary frames: only text written by the CLI is captured.
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    if (typeof chunk === 'string') {
      out += chunk;
      return true;
    }
    return (write as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    const code = await main(argv);
    return { code, out, err };
  } finally {
    console.log = log;
    console.error = error;
    process.stdout.write = write;
  }
}
