import type { NamedStatement } from './pipelined-query.ts';

interface ConnectionStatements {
  /** text -> statement name, in least-recently-used order (Map keeps insertion order). */
  readonly byText: Map<string, string>;
  /** Names to Close with the next statement sent on this connection. */
  close: string[];
}

/**
 * Server-side prepared statements for tenant-scoped statements, per pooled connection: Parse once, then only
 * Bind/Execute, which saves the server the parse, analysis and RLS rewrite of every statement. Names are never
 * reused, so a statement whose Parse may or may not have happened (an error in its pipeline) is simply closed
 * and prepared again under a new name. The app connections run with plan_cache_mode = force_custom_plan: every
 * execution is still planned for its own tenant parameter (no generic plan shared across tenants, docs/architecture.md).
 */
export class StatementCache {
  readonly #max: number;
  readonly #connections = new WeakMap<object, ConnectionStatements>();
  #counter = 0;

  constructor(maxPerConnection: number) {
    this.#max = maxPerConnection;
  }

  /** The statement to use for `text` on `connection`. */
  acquire(connection: object, text: string): NamedStatement {
    let c = this.#connections.get(connection);
    if (!c) {
      c = { byText: new Map(), close: [] };
      this.#connections.set(connection, c);
    }
    const close = c.close;
    if (close.length > 0) c.close = [];
    const known = c.byText.get(text);
    if (known !== undefined) {
      c.byText.delete(text);
      c.byText.set(text, known);
      return { name: known, parse: false, close };
    }
    return { name: `tenantwall_s${++this.#counter}`, parse: true, close };
  }

  /** The pipeline with `statement` succeeded: remember it (evicting the least recently used). */
  confirm(connection: object, text: string, statement: NamedStatement): void {
    if (!statement.parse) return;
    const c = this.#connections.get(connection);
    if (!c) return;
    c.byText.set(text, statement.name);
    if (c.byText.size > this.#max) {
      const [oldText, oldName] = c.byText.entries().next().value as [string, string];
      c.byText.delete(oldText);
      c.close.push(oldName);
    }
  }

  /** The pipeline failed: whatever the server holds under this name is closed before the next use. */
  discard(connection: object, text: string, statement: NamedStatement): void {
    const c = this.#connections.get(connection);
    if (!c) return;
    if (c.byText.get(text) === statement.name) c.byText.delete(text);
    c.close.push(statement.name);
  }
}
