import { TenantwallError } from '../errors.ts';

/**
 * The one option resolver. Every component (core, Fastify plugin, metering, audit) declares its options as a
 * table of `OptionSpec`s (environment variable, default, type with validation, doc line) and resolves them with
 * `resolveTable`: the explicit option, then the environment variable, then the default; validated and frozen.
 * docs/configuration.md is checked against these tables by test/config/options-doc.test.ts.
 */

/** How a value of type T is read from the environment and validated (whichever source it came from). */
export interface OptionType<T> {
  /** Short description for docs and errors, e.g. `integer 0..100000`. */
  readonly describe: string;
  /** Parses an environment string; returns an error reason instead of throwing. */
  fromEnv(raw: string): { value: T } | { error: string };
  /** Validates a value (explicit or parsed); returns an error reason or undefined. `field` names the source. */
  check(value: T, field: string): string | undefined;
}

export interface OptionSpec<T> {
  /** Environment variable read when the option is not given; none for options that only make sense in code. */
  readonly env?: string | undefined;
  /** Default, or a function of the options resolved so far (declaration order); undefined = no default. */
  readonly default?: T | ((resolved: Record<string, unknown>) => T | undefined) | undefined;
  readonly type: OptionType<T>;
  /** One line for docs/configuration.md. */
  readonly doc: string;
}

export type OptionTable = Readonly<Record<string, OptionSpec<any>>>;
type ValueOf<S> = S extends OptionSpec<infer T> ? T : never;
/** The resolved values of a table: options without a default may be undefined. */
export type Resolved<S extends OptionTable> = {
  readonly [K in keyof S]: S[K]['default'] extends undefined ? ValueOf<S[K]> | undefined : ValueOf<S[K]>;
};
export type Input<S extends OptionTable> = { [K in keyof S]?: ValueOf<S[K]> | undefined };

/** The component name of each declared table (kept beside it, so a table lists options only). */
const components = new WeakMap<object, string>();

/** Declares a component's option table (keeps the literal keys and types). */
export function defineOptions<const S extends OptionTable>(component: string, specs: S): S {
  const table = Object.freeze({ ...specs });
  components.set(table, component);
  return table;
}

/** The component name of a table (for error messages and the docs test). */
export function componentOf(table: OptionTable): string {
  return components.get(table) ?? 'option';
}

/** The `config_invalid` error naming the option (and its environment variable when it came from there). */
export function invalidOption(component: string, field: string, why: string): TenantwallError {
  return new TenantwallError('config_invalid', `${component} option ${field} ${why}.`, { details: { field } });
}

export function resolveTable<S extends OptionTable>(table: S, input: Input<S>, env: NodeJS.ProcessEnv = process.env): Resolved<S> {
  const component = componentOf(table);
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(table)) {
    let value: unknown = input[name];
    let field = name;
    if (value === undefined && spec.env !== undefined) {
      const raw = env[spec.env];
      if (raw !== undefined && raw !== '') {
        field = `${name} (${spec.env})`;
        const parsed = spec.type.fromEnv(raw);
        if ('error' in parsed) throw invalidOption(component, field, parsed.error);
        value = parsed.value;
      }
    }
    if (value === undefined) value = typeof spec.default === 'function' ? (spec.default as (r: Record<string, unknown>) => unknown)(out) : spec.default;
    if (value !== undefined) {
      const why = spec.type.check(value, field);
      if (why !== undefined) throw invalidOption(component, field, why);
    }
    out[name] = value;
  }
  return Object.freeze(out) as Resolved<S>;
}

// ---------------------------------------------------------------------------------------------------------------
// Types. One reader per kind, so every component parses the environment the same way.

export function str(check: (v: string) => string | undefined = () => undefined, describe = 'string'): OptionType<string> {
  return { describe, fromEnv: (raw) => ({ value: raw }), check: (v) => (typeof v !== 'string' ? 'must be a string' : check(v)) };
}

const IDENT_RE = /^[a-z_][a-z0-9_]{0,62}$/;
/** A lowercase SQL identifier. */
export const ident: OptionType<string> = str((v) => (IDENT_RE.test(v) ? undefined : 'must be a lowercase SQL identifier ([a-z_][a-z0-9_]*)'), 'SQL identifier');

/** An integer in min..max; from the environment only plain digits (no `1e3`, no sign, no fraction). */
export function int(min: number, max: number): OptionType<number> {
  return {
    describe: `integer ${min}..${max}`,
    fromEnv: (raw) => (/^\d+$/.test(raw) ? { value: Number(raw) } : { error: `must be a non-negative integer, got ${JSON.stringify(raw)}` }),
    check: (v) => (Number.isInteger(v) && v >= min && v <= max ? undefined : `must be an integer in ${min}..${max}`),
  };
}

/** A finite number in min..max (fractions allowed); from the environment a plain decimal. */
export function num(min: number, max: number): OptionType<number> {
  return {
    describe: `number ${min}..${max}`,
    fromEnv: (raw) => (/^\d+(\.\d+)?$/.test(raw) ? { value: Number(raw) } : { error: `must be a non-negative decimal number, got ${JSON.stringify(raw)}` }),
    check: (v) => (typeof v === 'number' && Number.isFinite(v) && v >= min && v <= max ? undefined : `must be a number in ${min}..${max}`),
  };
}

export const bool: OptionType<boolean> = {
  describe: 'true/false',
  fromEnv: (raw) => (raw === 'true' || raw === '1' ? { value: true } : raw === 'false' || raw === '0' ? { value: false } : { error: `must be true or false, got ${JSON.stringify(raw)}` }),
  check: (v) => (typeof v === 'boolean' ? undefined : 'must be true or false'),
};

export function oneOf<const V extends string>(values: readonly V[]): OptionType<V> {
  const list = values.map((v) => JSON.stringify(v)).join(', ');
  return {
    describe: values.join(' | '),
    fromEnv: (raw) => ({ value: raw as V }),
    check: (v) => (values.includes(v) ? undefined : `must be one of ${list}`),
  };
}

/** A list of distinct values from `values`; from the environment comma separated. */
export function listOf<const V extends string>(values: readonly V[]): OptionType<readonly V[]> {
  return {
    describe: `comma-separated ${values.join(', ')}`,
    fromEnv: (raw) => ({ value: raw.split(',').map((s) => s.trim()) as V[] }),
    check: (v) => {
      if (!Array.isArray(v)) return 'must be a list';
      for (const x of v) if (!values.includes(x)) return `has unknown value ${JSON.stringify(x)} (known: ${values.join(', ')})`;
      if (new Set(v).size !== v.length) return 'lists a value twice';
      return v.length === 0 ? 'must name at least one value' : undefined;
    },
  };
}
