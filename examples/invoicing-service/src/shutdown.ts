/**
 * SIGINT / SIGTERM of the service's processes: logs `what`, runs each step in order (a failing step does not keep
 * the next one from running), then exits. A second signal while stopping is ignored.
 */
export function stopOnSignals(what: string, steps: ReadonlyArray<(() => Promise<unknown>) | undefined>): void {
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    console.log(`${signal}: ${what}`);
    for (const step of steps) await step?.().catch(() => undefined);
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
}
