import { type CompiledQuery, type Compilable, type Kysely, type QueryResult, createQueryId } from 'kysely';
import type { QueryOptions } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { QUERY_OPTIONS } from './dialect.ts';

/** Values a prepared query's parameters can take: what a driver sends as one bind parameter. */
export type PreparedValue = string | number | bigint | boolean | Date | null;

/** Stands for one named parameter while the query is built and compiled; never sent. */
class Placeholder {
  readonly name: string;

  constructor(name: string) {
    this.name = name;
  }

  // Kysely puts values in the parameter list; anything that turns one into SQL text (sql.lit, sql.raw) would
  // bake the placeholder into the statement: refuse that when the query is prepared.
  toString(): never {
    throw new TenantwallError('config_invalid', `Prepared query parameter "${this.name}" was used as SQL text; it can only be a value.`);
  }

  toPostgres(): never {
    throw new TenantwallError('config_invalid', `Prepared query parameter "${this.name}" reached a driver without a value.`);
  }
}

/** A query compiled once, run with new parameter values (see `prepareQuery`). */
export interface PreparedQuery<P extends Record<string, PreparedValue>, O> {
  /** The SQL text every execution sends (tenant-scoped by the plugins of the Kysely instance it was built on). */
  readonly sql: string;
  /** Runs the query with `params` on `on` (a transaction of the same Kysely instance) or on that instance. */
  execute(params: P, on?: Kysely<any>): Promise<O[]>;
  /** The first row, or undefined. */
  executeTakeFirst(params: P, on?: Kysely<any>): Promise<O | undefined>;
  /** The whole driver result (rows and, for writes, numAffectedRows). */
  executeResult(params: P, on?: Kysely<any>): Promise<QueryResult<O>>;
}

/**
 * Builds and compiles a Kysely query once, with named parameters, and runs it later with values: the query
 * builder, the plugins (the tenant plugin included) and the compiler run once instead of on every call.
 *
 * ```ts
 * const getInvoice = prepareQuery(k, (db, param: Param<{ id: string }>) =>
 *   db.selectFrom('invoices').selectAll().where('id', '=', param('id')));
 * const row = await getInvoice.executeTakeFirst({ id });
 * ```
 *
 * Nothing about scoping changes: the compiled statement still carries the tenant placeholder that the
 * tenantwall driver binds to the tenant of the scope it runs in, the guard still checks the statement text
 * (a cache hit after the first run), and RLS still applies. A parameter can only stand for a value; used where
 * Kysely would write SQL text it is refused when the query is prepared. Every declared parameter must be used
 * and every execution must give all of them (`config_invalid` otherwise).
 *
 * `options` are the statement options of `forTenant(id).query` (e.g. `{ plan: 'generic' }` for a lookup by a
 * tenant-leading primary key); they apply when the query runs outside a transaction.
 */
export function prepareQuery<DB, P extends Record<string, PreparedValue>, O>(
  db: Kysely<DB>,
  build: (db: Kysely<DB>, param: Param<P>) => Compilable<O>,
  options?: QueryOptions,
): PreparedQuery<P, O> {
  const placeholders = new Map<string, Placeholder>();
  const param = ((name: string) => {
    let p = placeholders.get(name);
    if (!p) {
      p = new Placeholder(name);
      placeholders.set(name, p);
    }
    return p;
  }) as unknown as Param<P>;
  const compiled = build(db, param).compile();
  // Each parameter position either holds a fixed value (kept) or a placeholder (filled on every execution).
  const slots = compiled.parameters.map((v) => (v instanceof Placeholder ? v.name : undefined));
  for (const name of placeholders.keys()) {
    if (!slots.includes(name)) throw new TenantwallError('config_invalid', `Prepared query parameter "${name}" does not appear in the compiled statement.`);
  }
  const names = [...placeholders.keys()];

  const bind = (params: P): CompiledQuery<O> => {
    for (const name of names) {
      if (params[name] === undefined) throw new TenantwallError('config_invalid', `Prepared query parameter "${name}" has no value.`, { details: { field: name } });
    }
    const parameters = compiled.parameters.map((v, i) => {
      const slot = slots[i];
      return slot === undefined ? v : params[slot];
    });
    return { ...compiled, parameters, queryId: createQueryId(), ...(options ? { [QUERY_OPTIONS]: options } : {}) };
  };

  const run = (params: P, on: Kysely<any> | undefined) => (on ?? db).executeQuery<O>(bind(params));
  return Object.freeze({
    sql: compiled.sql,
    executeResult: run,
    execute: async (params: P, on?: Kysely<any>) => (await run(params, on)).rows,
    executeTakeFirst: async (params: P, on?: Kysely<any>) => (await run(params, on)).rows[0],
  });
}

/** The parameter function of `prepareQuery`: `param('id')` stands for the value of `params.id`. */
export type Param<P extends Record<string, PreparedValue>> = <K extends keyof P & string>(name: K) => P[K];
