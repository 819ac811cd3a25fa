import { type ParseArgsConfig, parseArgs } from 'node:util';
import { TenantwallError } from '../errors.ts';

/** parseArgs (strict, positionals allowed) with usage errors turned into one readable `config_invalid` line. */
type FlagsConfig<O> = { args: string[]; options: O; allowPositionals: true; strict: true };

export function parseFlags<const O extends NonNullable<ParseArgsConfig['options']>>(
  argv: string[],
  options: O,
): ReturnType<typeof parseArgs<FlagsConfig<O>>> {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (err) {
    throw new TenantwallError('config_invalid', (err as Error).message, { cause: err });
  }
}
