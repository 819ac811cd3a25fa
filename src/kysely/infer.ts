import type { ColumnType } from 'kysely';
import type { ColumnSpec, Schema, TableDecl } from '../schema/declare.ts';
import type { TenantColumn } from './scope.ts';

/**
 * The TypeScript type node-postgres returns for a declared SQL type (lowercase, without length or precision):
 * 64-bit integers and numerics arrive as strings (no precision lost), timestamps and dates as `Date`, JSON parsed.
 * An unknown type is `unknown`, never `any`.
 */
export type SqlSelectType<T extends string> =
  Lowercase<T> extends `${infer Base}[]`
    ? SqlSelectType<Base>[]
    : Lowercase<T> extends `${infer Base}(${string}`
      ? SqlSelectType<Base>
      : Lowercase<T> extends 'smallint' | 'integer' | 'int' | 'int2' | 'int4' | 'real' | 'float4' | 'float8' | 'double precision' | 'serial' | 'smallserial'
        ? number
        : Lowercase<T> extends 'bigint' | 'int8' | 'bigserial' | 'numeric' | 'decimal' | 'money'
          ? string
          : Lowercase<T> extends 'boolean' | 'bool'
            ? boolean
            : Lowercase<T> extends 'timestamptz' | 'timestamp' | 'timestamp with time zone' | 'timestamp without time zone' | 'date'
              ? Date
              : Lowercase<T> extends 'json' | 'jsonb'
                ? unknown
                : Lowercase<T> extends 'bytea'
                  ? Buffer
                  : Lowercase<T> extends 'uuid' | 'tenant_key' | 'text' | 'varchar' | 'character varying' | 'char' | 'character' | 'citext' | 'inet' | 'cidr' | 'interval' | 'time' | 'timetz'
                    ? string
                    : unknown;

/** What an insert or update may pass for a value read back as `S`. */
type WriteType<S> = S extends string ? string | (S extends `${string}` ? number | bigint : never) : S extends Date ? Date | string : S;

type Nullable<C extends ColumnSpec, X> = C['nullable'] extends true ? X | null : X;
/** Insert is optional when the column has a default or may be null. */
type InsertOf<C extends ColumnSpec, W> = C extends { readonly default: string } ? W | undefined : C['nullable'] extends true ? W | undefined : W;

/** The Kysely column type of one declared column. */
export type InferColumn<C extends ColumnSpec> = ColumnType<
  Nullable<C, SqlSelectType<C['type']>>,
  InsertOf<C, Nullable<C, WriteType<SqlSelectType<C['type']>>>>,
  Nullable<C, WriteType<SqlSelectType<C['type']>>>
>;

/** The Kysely table type of one declared table; tenant tables get the tenant column as a `TenantColumn`. */
export type InferTable<T extends TableDecl, TC extends string = 'tenant_id'> = {
  -readonly [K in keyof T['columns'] & string]: InferColumn<T['columns'][K]>;
} & (T extends { readonly kind: 'tenant' } ? { [K in TC]: TenantColumn } : unknown);

/**
 * The Kysely `DB` type of a declared schema, so a table is described once:
 * `type DB = InferDatabase<typeof schema>; const k = createTenantKysely<DB>(db)`. Override single columns (an enum
 * kept in a CHECK, a JSON shape) with an intersection: `InferDatabase<typeof schema> & { invoices: { status: 'draft' | 'paid' } }`
 * or `Omit`/spread as usual.
 */
export type InferDatabase<S extends Schema<readonly TableDecl[], string>> = {
  // A table declared without a literal name (a helper typed as plain TableDecl) is left out rather than
  // turning the whole DB type into an index signature.
  [T in S['tables'][number] as string extends T['name'] ? never : T['name']]: InferTable<T, S['tenantColumn']>;
};
