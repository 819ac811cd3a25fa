import { TenantwallError } from '../errors.ts';

// The parser is PostgreSQL's own, compiled to WebAssembly (libpg-query). Neither its module nor the WebAssembly is
// loaded at import: createGuard starts loading, Tenantwall.connect and guard.ready() wait for it, so
// `import 'tenantwall'` pays for neither.
type LibPgQuery = typeof import('libpg-query');
let loading: Promise<void> | undefined;
let lib: LibPgQuery | undefined;

/** Starts loading the parser once; resolves when statements can be parsed. */
export function loadParser(): Promise<void> {
  loading ??= import('libpg-query').then(async (m) => {
    await m.loadModule();
    lib = m;
  });
  return loading;
}

function loaded(): LibPgQuery {
  if (lib === undefined) {
    throw new TenantwallError('guard_not_ready', 'The SQL parser is still loading: await guard.ready() (Tenantwall.connect does) before checking statements.');
  }
  return lib;
}

/** Throws `guard_not_ready` unless the parser is loaded: verification is synchronous and must not guess. */
export function assertParserLoaded(): void {
  loaded();
}

/** The parse tree of `sql` (libpg-query's JSON). */
export function parseSql(sql: string): unknown {
  return loaded().parseSync(sql);
}

/** The tokens of `sql`. */
export function scanSql(sql: string): ReturnType<LibPgQuery['scanSync']> {
  return loaded().scanSync(sql);
}
