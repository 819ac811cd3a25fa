import { type ParseArgsConfig, parseArgs } from 'node:util';
import { TenantwallError } from '../errors.ts';

type FlagsConfig<O> = { args: string[]; options: O; allowPositionals: true; strict: true };

/** Edit distance (insertions, deletions, substitutions), for "did you mean" hints. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

/** The known flag closest to `flag` (`--app-rol` -> `--app-role`), when it is close enough to be a typo. */
export function nearestFlag(flag: string, known: readonly string[]): string | undefined {
  const name = flag.replace(/^-+/, '').split('=')[0] ?? '';
  let best: { k: string; d: number } | undefined;
  for (const k of known) {
    const d = k.startsWith(name) && name.length >= 3 ? 0 : distance(name, k);
    if (!best || d < best.d) best = { k, d };
  }
  return best && best.d <= Math.max(2, Math.floor(name.length / 3)) ? `--${best.k}` : undefined;
}

/**
 * parseArgs (strict, positionals allowed) with usage errors turned into one readable `config_invalid` line; an
 * unknown flag names the nearest known one, and `doc` (the page documenting the flags) is named in the message.
 */
export function parseFlags<const O extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: O,
  doc?: string,
): ReturnType<typeof parseArgs<FlagsConfig<O>>> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    const e = err as Error & { code?: string };
    const unknown = e.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(-[^']+)'/.exec(e.message)?.[1] : undefined;
    const near = unknown === undefined ? undefined : nearestFlag(unknown, Object.keys(options));
    const message = unknown === undefined ? e.message : `Unknown option ${unknown}.${near ? ` Did you mean ${near}?` : ''}`;
    const hint = `Fix the flag named in the message (${doc ?? 'docs/cli.md'} documents every flag of this command).`;
    throw new TenantwallError('config_invalid', `${message}${doc ? ` (${doc} documents every flag)` : ''}`, { cause: err, hint, details: { field: unknown ?? 'argv' } });
  }
}
