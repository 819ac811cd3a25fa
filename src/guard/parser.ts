import { loadModule } from 'libpg-query';
import { TenantwallError } from '../errors.ts';

// The parser is PostgreSQL's own, compiled to WebAssembly. It is loaded on demand (createGuard starts it,
// Tenantwall.connect and guard.ready() wait for it), so `import 'tenantwall'` costs no WebAssembly compile.
let loading: Promise<void> | undefined;
let loaded = false;

/** Starts loading the parser once; resolves when statements can be parsed. */
export function loadParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    loaded = true;
  });
  return loading;
}

/** Throws `guard_not_ready` unless the parser is loaded: verification is synchronous and must not guess. */
export function assertParserLoaded(): void {
  if (!loaded) {
    throw new TenantwallError('guard_not_ready', 'The SQL parser is still loading: await guard.ready() (Tenantwall.connect does) before checking statements.');
  }
}
