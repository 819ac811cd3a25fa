import { createRequire } from 'node:module';
import { TenantwallError } from '../errors.ts';

const require = createRequire(import.meta.url);

/**
 * Loads an optional peer dependency synchronously, when a feature that needs it is configured (not at import):
 * `import 'tenantwall'` works without it. A missing package is a `config_invalid` naming the option that asked for
 * it and the install command.
 */
export function requireOptional<T>(pkg: string, neededBy: string): T {
  try {
    return require(pkg) as T;
  } catch (cause) {
    if ((cause as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') throw cause;
    throw new TenantwallError('config_invalid', `${neededBy} needs the optional package ${pkg}: npm install ${pkg}.`, { cause, details: { field: neededBy } });
  }
}
