// tenantwall/fastify/typebox: validator and serializer compilers for TypeBox route schemas (peer dependency
// @sinclair/typebox).
import { FormatRegistry, Kind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifySchemaCompiler, FastifySerializerCompiler } from 'fastify';
import fastJson from 'fast-json-stringify';
import type { FieldError } from './http-errors.ts';

export type { FieldError };

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

/** A real calendar day and time of day: Date.parse rolls 2026-02-30 over to March 2, PostgreSQL refuses it. */
function realDateTime(v: string): boolean {
  const [y, mo, d, h = 0, mi = 0, s = 0] = (v.match(/\d+/g) ?? []).map(Number) as number[];
  if (y === undefined || mo === undefined || d === undefined || mo < 1 || mo > 12 || h > 23 || mi > 59 || s > 59) return false;
  return d >= 1 && d <= new Date(Date.UTC(y, mo, 0)).getUTCDate();
}

function registerFormats(): void {
  if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (v) => UUID_RE.test(v));
  if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (v) => DATE_TIME_RE.test(v) && realDateTime(v) && !Number.isNaN(Date.parse(v)));
  if (!FormatRegistry.Has('date')) FormatRegistry.Set('date', (v) => DATE_RE.test(v) && realDateTime(v));
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * The first query-string, path or header value PostgreSQL text cannot hold (NUL, lone surrogate), as a field
 * error: such a value must be refused naming its parameter, not reach the database as an encoding error.
 */
function illFormedParameter(input: unknown): FieldError | undefined {
  if (typeof input !== 'object' || input === null) return undefined;
  for (const [k, v] of Object.entries(input)) {
    for (const x of Array.isArray(v) ? v : [v]) {
      if (typeof x === 'string' && (x.includes('\u0000') || LONE_SURROGATE.test(x))) {
        return { instancePath: `/${k}`, message: 'text must be well-formed Unicode without NUL characters', keyword: 'pattern', params: {} };
      }
    }
  }
  return undefined;
}


/**
 * Validator compiler for TypeBox route schemas. JSON bodies are checked as sent: no type coercion (a string is
 * never silently turned into a number) and unknown properties refused when the schema says
 * `additionalProperties: false`. Query strings and path parameters are strings on the wire, so they are
 * converted to the schema's types and defaults are applied before the check.
 */
export const typeboxValidatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  registerFormats();
  if (!(Kind in schema)) {
    throw new Error(`typeboxValidatorCompiler: the ${httpPart ?? 'route'} schema is not a TypeBox schema`);
  }
  const check = TypeCompiler.Compile(schema);
  // Strings on the wire need converting only where the schema has something other than strings, or defaults.
  const coerce = (httpPart === 'querystring' || httpPart === 'params' || httpPart === 'headers') && !onlyPlainStrings(schema);
  // Value.Convert reads "1.5", "1e2" and "1e400" as the integer 1 and "0x10" as 16: only plain decimal integers
  // are converted, anything else stays a string and fails the check.
  const properties = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
  const integerKeys = Object.keys(properties).filter((k) => properties[k]?.[Kind] === 'Integer');
  const wire = httpPart === 'querystring' || httpPart === 'params';
  return (input: unknown) => {
    const bad = wire ? illFormedParameter(input) : undefined;
    if (bad) return { error: Object.assign(new Error(bad.message), { validation: [bad] }) as unknown as Error };
    // Convert works in place on the input object: take the raw strings first.
    const raw = coerce && typeof input === 'object' && input !== null ? integerKeys.map((k) => [k, (input as Record<string, unknown>)[k]] as const) : [];
    const value = coerce ? Value.Default(schema, Value.Convert(schema, input)) : input;
    if (typeof value === 'object' && value !== null) {
      for (const [k, v] of raw) if (typeof v === 'string' && !/^-?[0-9]+$/.test(v)) (value as Record<string, unknown>)[k] = v;
    }
    if (check.Check(value)) return { value };
    const errors: FieldError[] = [];
    for (const e of check.Errors(value)) {
      errors.push({ instancePath: e.path, message: e.message, keyword: String(e.type), params: {} });
      if (errors.length >= 5) break;
    }
    return { error: Object.assign(new Error(errors[0]?.message ?? 'invalid'), { validation: errors }) as unknown as Error };
  };
};

/** An object schema whose properties are all strings without defaults: wire values need no conversion. */
function onlyPlainStrings(schema: TSchema): boolean {
  const properties = (schema as { properties?: Record<string, TSchema> }).properties;
  if (schema[Kind] !== 'Object' || !properties) return false;
  return Object.values(properties).every((p) => p[Kind] === 'String' && p.default === undefined);
}

type JsonSchema = Record<string, unknown>;

const isNull = (s: unknown): boolean => typeof s === 'object' && s !== null && (s as JsonSchema).type === 'null' && Object.keys(s).length === 1;
const isStringConst = (s: unknown): s is { const: string } => typeof s === 'object' && s !== null && typeof (s as JsonSchema).const === 'string';

/**
 * The form of a response schema fast-json-stringify writes without a validator: `anyOf: [X, null]` becomes X
 * with `nullable: true`, and a union of string literals a string enum. fast-json-stringify picks an anyOf branch
 * by validating the value against each branch with Ajv (formats included) on every response; for these two
 * shapes the choice is plain (null or not; always a string), so the check only costs time. Anything else is
 * left as it is. Only the serializer sees the rewritten schema: validation and the OpenAPI document keep TypeBox's.
 */
export function serializationSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(serializationSchema);
  if (typeof schema !== 'object' || schema === null) return schema;
  const s = schema as JsonSchema;
  const out: JsonSchema = {};
  for (const [k, v] of Object.entries(s)) out[k] = k === 'properties' || k === 'patternProperties' ? mapValues(v as JsonSchema) : serializationSchema(v);
  const union = (out.anyOf ?? out.oneOf) as unknown[] | undefined;
  if (!Array.isArray(union)) return out;
  const rest = { ...out };
  delete rest.anyOf;
  delete rest.oneOf;
  const nonNull = union.filter((b) => !isNull(b));
  if (union.length === 2 && nonNull.length === 1) {
    const only = nonNull[0] as JsonSchema;
    if (only.anyOf === undefined && only.oneOf === undefined && typeof only.type === 'string') return { ...rest, ...only, nullable: true };
  }
  if (union.length > 0 && union.every(isStringConst)) return { ...rest, type: 'string', enum: union.map((b) => b.const) };
  return out;
}

function mapValues(o: JsonSchema): JsonSchema {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, serializationSchema(v)]));
}

/**
 * Serializer compiler for TypeBox (or any JSON Schema) response schemas: fast-json-stringify, as Fastify's default,
 * on the schema rewritten by `serializationSchema`. `app.setSerializerCompiler(typeboxSerializerCompiler)`.
 */
export const typeboxSerializerCompiler: FastifySerializerCompiler<TSchema> = ({ schema }) => fastJson(serializationSchema(schema) as Parameters<typeof fastJson>[0]);
