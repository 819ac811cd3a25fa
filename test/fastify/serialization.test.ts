import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Type } from '@sinclair/typebox';
import fastJson from 'fast-json-stringify';
import { serializationSchema, typeboxSerializerCompiler } from '../../src/fastify/typebox.ts';
import * as S from '../../examples/invoicing-service/src/schemas.ts';

const serialize = (schema: unknown) => typeboxSerializerCompiler({ schema: schema as never, method: 'GET', url: '/', httpStatus: '200' });

test('nullable and literal unions are rewritten; other unions and the original schema are left alone', () => {
  const schema = Type.Object({
    a: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
    s: Type.Union([Type.Literal('x'), Type.Literal('y')]),
    mixed: Type.Union([Type.String(), Type.Number()]),
    nested: Type.Array(Type.Object({ n: Type.Union([Type.Integer(), Type.Null()]) })),
  });
  const before = JSON.stringify(schema);
  const out = serializationSchema(schema) as { properties: Record<string, Record<string, unknown>> };
  assert.deepEqual(out.properties.a, { type: 'string', format: 'uuid', nullable: true });
  assert.deepEqual(out.properties.s, { type: 'string', enum: ['x', 'y'] });
  assert.deepEqual(out.properties.mixed, { anyOf: [{ type: 'string' }, { type: 'number' }] });
  assert.deepEqual((out.properties.nested?.items as { properties: Record<string, unknown> }).properties.n, { type: 'integer', nullable: true });
  assert.equal(JSON.stringify(schema), before, 'the route schema itself is not modified');
});

test("the service's response schemas serialize every value exactly as fast-json-stringify does with the original", () => {
  const invoices = [
    { id: '0b5e7c2e-4f7a-4b8e-9b1a-1c2d3e4f5a6b', customer: 'Ada "Lovelace"', customer_id: null, amount_cents: 0, currency: 'EUR', status: 'draft', issued_at: null, created_at: '2026-11-27T00:00:00.000Z', updated_at: '2026-11-27T00:00:00.000Z' },
    { id: '0b5e7c2e-4f7a-4b8e-9b1a-1c2d3e4f5a6c', customer: 'é\u2028x', customer_id: '0b5e7c2e-4f7a-4b8e-9b1a-1c2d3e4f5a6d', amount_cents: 9007199254740991, currency: 'USD', status: 'void', issued_at: '2026-01-01T10:00:00.123Z', created_at: '2026-11-27T00:00:00.000Z', updated_at: '2026-11-27T00:00:00.000Z' },
  ];
  const single = serialize(S.Invoice);
  const reference = fastJson(S.Invoice as never);
  for (const inv of invoices) assert.equal(single(inv), reference(inv));
  const page = S.Page(S.Invoice);
  const pageRef = fastJson(page as never);
  for (const next_cursor of [null, 'abc']) assert.equal(serialize(page)({ data: invoices, next_cursor }), pageRef({ data: invoices, next_cursor }));
});
