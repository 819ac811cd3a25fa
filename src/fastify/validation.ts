import { FormatRegistry, Kind, type TSchema } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';
import { Value } from '@sinclair/typebox/value';
import type { FastifySchemaCompiler } from 'fastify';

const UUID_RE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const DATE_TIME_RE = /^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$/;
const DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

function registerFormats(): void {
  if (!FormatRegistry.Has('uuid')) FormatRegistry.Set('uuid', (v) => UUID_RE.test(v));
  if (!FormatRegistry.Has('date-time')) FormatRegistry.Set('date-time', (v) => DATE_TIME_RE.test(v) && !Number.isNaN(Date.parse(v)));
  if (!FormatRegistry.Has('date')) FormatRegistry.Set('date', (v) => DATE_RE.test(v) && !Number.isNaN(Date.parse(v)));
}

/** An Ajv-shaped error, so Fastify's `error.validation` looks the same whichever compiler produced it. */
export interface FieldError {
  instancePath: string;
  message: string;
  keyword: string;
  params: Record<string, unknown>;
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
  const coerce = httpPart === 'querystring' || httpPart === 'params' || httpPart === 'headers';
  // Value.Convert reads "1.5", "1e2" and "1e400" as the integer 1 and "0x10" as 16: only plain decimal integers
  // are converted, anything else stays a string and fails the check.
  const properties = (schema as { properties?: Record<string, TSchema> }).properties ?? {};
  const integerKeys = Object.keys(properties).filter((k) => properties[k]?.[Kind] === 'Integer');
  return (input: unknown) => {
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
