import pg from 'pg';

/**
 * A pg Query that sends extra statements around the caller's statement in the same extended-protocol
 * pipeline, before ONE Sync, so the whole unit costs one network round trip.
 *
 * - implicit mode: `SELECT set_config(<setting>, $1, true)` then the statement, then Sync. Everything up to a
 *   Sync is one implicit transaction, so the setting is local to it and gone after the Sync, also after an
 *   error (docs/architecture.md).
 * - explicit mode: `BEGIN`, `SET LOCAL <setting> = '<id>'`, the statement, `COMMIT`, then Sync. Citus only
 *   propagates the setting to its workers in this form.
 *
 * The responses of the extra statements (ParseComplete, BindComplete, DataRow, CommandComplete) are swallowed
 * here, so callers see exactly the result of their own statement.
 */

export interface PreparedStep {
  /** Statement name for a per-connection prepared statement, or '' for the unnamed one. */
  readonly name: string;
  readonly text: string;
  readonly values: readonly unknown[];
  /** Whether the step returns one row we must skip (a SELECT). */
  readonly returnsRow: boolean;
}

/** A server-side prepared statement for the caller's statement (see statement-cache.ts). */
export interface NamedStatement {
  readonly name: string;
  /** Not yet prepared on this connection: send Parse. */
  readonly parse: boolean;
  /** Statements to Close first (evicted, or left unknown by an error). */
  readonly close: readonly string[];
}

type Connection = {
  close(msg: { type: 'S' | 'P'; name: string }): void;
  parse(msg: { text: string; name?: string; types?: unknown[] }): void;
  bind(msg: { portal?: string; statement?: string; values?: unknown[]; valueMapper?: unknown }): void;
  execute(msg: { portal?: string; rows?: number | undefined }): void;
  sync(): void;
  stream: { cork?: () => void; uncork?: () => void };
};

// Named prepared statements are per connection; remember which connections already parsed which step.
const parsedOn = new WeakMap<object, Set<string>>();

/**
 * Sends one step; returns the name when its Parse was sent in this pipeline. After an error the server skips
 * every message up to the Sync, including a later step's Parse (the COMMIT of explicit mode), so a name only
 * counts as parsed once its pipeline succeeded (see PipelinedQuery.handleError). Until then it is closed and
 * parsed again: closing a statement that does not exist is not an error.
 */
function sendStep(connection: Connection, step: PreparedStep): string | undefined {
  let parsed = parsedOn.get(connection);
  if (!parsed) {
    parsed = new Set();
    parsedOn.set(connection, parsed);
  }
  let sent: string | undefined;
  if (step.name === '' || !parsed.has(step.name)) {
    if (step.name !== '') {
      connection.close({ type: 'S', name: step.name });
      parsed.add(step.name);
      sent = step.name;
    }
    connection.parse({ text: step.text, name: step.name });
  }
  connection.bind({ statement: step.name, values: [...step.values] });
  connection.execute({});
  return sent;
}

// pg's Query copies a config object with its property descriptors (`cloneQueryConfig`, pg >= 8.21), which cost
// 3-5 µs per statement (measured, more than the guard's cached check); text, values and callback given apart
// take the cheap path, and the few other fields are set after construction.
type QueryCallback = (err: Error | null, result?: pg.QueryResult) => void;
const BaseQuery = pg.Query as unknown as new (text: string, values: unknown[], callback: QueryCallback) => any;
const PgResult = (pg as unknown as { Result: new (rowMode: 'array' | undefined, types: pg.CustomTypesConfig | undefined) => unknown }).Result;

/** Gives a pg Query built from text and values the result shape pg's constructor derives from rowMode and types. */
function applyShape(pgQuery: object, shape: ResultShape | undefined): void {
  if (shape?.rowMode === undefined && shape?.types === undefined) return;
  const query = pgQuery as { types?: unknown; _rowMode?: unknown; _result?: unknown; _results?: unknown };
  query.types = shape.types;
  query._rowMode = shape.rowMode;
  query._result = query._results = new PgResult(shape.rowMode, shape.types);
}

export class PipelinedQuery extends BaseQuery {
  private readonly before: readonly PreparedStep[];
  private readonly after: readonly PreparedStep[];
  /** Number of CommandComplete messages (of extra steps) still to swallow before the caller's own. */
  private skipCompletes: number;
  private skipRows: number;
  private mainDone = false;
  private readonly statement: NamedStatement | undefined;
  /** Step names whose Parse this pipeline sent: unknown to the server if the pipeline fails. */
  private readonly parsedHere: string[] = [];

  constructor(
    text: string,
    values: readonly unknown[],
    before: readonly PreparedStep[],
    after: readonly PreparedStep[],
    callback: QueryCallback,
    statement?: NamedStatement,
    shape?: ResultShape,
  ) {
    super(text, [...values], callback);
    // queryMode 'extended' forces Parse/Bind/Execute even without parameters, so the pipeline shape is fixed.
    this.queryMode = 'extended';
    this.name = statement?.name;
    applyShape(this, shape);
    this.before = before;
    this.after = after;
    this.statement = statement;
    this.skipCompletes = before.length;
    this.skipRows = before.filter((s) => s.returnsRow).length;
  }

  // pg would consult its own per-connection record, which the extra steps' ParseComplete confuses.
  hasBeenParsed(): boolean {
    return this.statement !== undefined && !this.statement.parse;
  }

  prepare(connection: Connection): void {
    // CloseComplete answers are ignored by pg; closing an unknown statement is not an error.
    for (const name of this.statement?.close ?? []) connection.close({ type: 'S', name });
    for (const step of this.before) this.#send(connection, step);
    super.prepare(connection);
  }

  // pg calls _getRows(connection, rows) after Describe to Execute the caller's portal and Sync.
  _getRows(connection: Connection, rows: number | undefined): void {
    connection.execute({ portal: this.portal, rows });
    for (const step of this.after) this.#send(connection, step);
    connection.sync();
  }

  #send(connection: Connection, step: PreparedStep): void {
    const name = sendStep(connection, step);
    if (name !== undefined) this.parsedHere.push(name);
  }

  handleError(err: unknown, connection: Connection): void {
    const parsed = parsedOn.get(connection);
    for (const name of this.parsedHere) parsed?.delete(name);
    super.handleError(err, connection);
  }

  handleDataRow(msg: unknown): void {
    if (this.skipRows > 0 && this.skipCompletes > 0) {
      this.skipRows--;
      return;
    }
    if (this.mainDone) return;
    super.handleDataRow(msg);
  }

  handleCommandComplete(msg: unknown, connection: Connection): void {
    if (this.skipCompletes > 0) {
      this.skipCompletes--;
      return;
    }
    if (this.mainDone) return; // COMMIT of explicit mode
    this.mainDone = true;
    super.handleCommandComplete(msg, connection);
  }
}

/** How the caller's result is parsed: rows as arrays, per-statement type parsers (the extra steps' rows are skipped). */
export interface ResultShape {
  readonly rowMode?: 'array' | undefined;
  readonly types?: pg.CustomTypesConfig | undefined;
}

/** Sends `text` with `before`/`after` steps in one pipeline on `client`; resolves with the statement's result. */
export function runPipelined<R extends pg.QueryResultRow>(
  client: pg.PoolClient | pg.Client,
  text: string,
  values: readonly unknown[],
  before: readonly PreparedStep[],
  after: readonly PreparedStep[] = [],
  statement?: NamedStatement,
  shape?: ResultShape,
): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const query = new PipelinedQuery(
      text,
      values,
      before,
      after,
      (err, result) => {
        if (err) reject(err);
        else resolve(result as pg.QueryResult<R>);
      },
      statement,
      shape,
    );
    client.query(query as unknown as pg.QueryConfig);
  });
}

/**
 * `client.query(text, values)` with a result shape (rowMode, per-statement type parsers), without the copy of a
 * config object that `client.query(config)` makes (see BaseQuery above). Protocol as `client.query`: the simple
 * protocol without values, the extended one with them.
 */
export function queryShaped<R extends pg.QueryResultRow>(client: pg.PoolClient | pg.Client, text: string, values: readonly unknown[], shape: ResultShape): Promise<pg.QueryResult<R>> {
  return new Promise((resolve, reject) => {
    const query = new BaseQuery(text, [...values], (err, result) => {
      if (err) reject(err);
      else resolve(result as pg.QueryResult<R>);
    });
    applyShape(query, shape);
    client.query(query as unknown as pg.QueryConfig);
  });
}
