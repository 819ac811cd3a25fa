/**
 * Waits for a condition, never for a duration: polls `check` until it holds. The deadline only guards against a
 * hang (a server that never comes back); it is far beyond anything a loaded machine needs, and reaching it fails
 * the test with `what`.
 */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, options: { everyMs?: number; hangAfterMs?: number } = {}): Promise<void> {
  const every = options.everyMs ?? 10;
  const deadline = Date.now() + (options.hangAfterMs ?? 300_000);
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`still waiting after ${Math.round((options.hangAfterMs ?? 300_000) / 1000)} s: ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}
