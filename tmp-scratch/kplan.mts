import { Kysely, DummyDriver, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from 'kysely';
import { defineSchema, tenantTable, createGuard } from '/work/main/src/index.ts';
import { TenantScopePlugin } from '/work/main/src/kysely/index.ts';
import { loadParser } from '/work/main/src/guard/parser.ts';
const schema = defineSchema({ tables: [tenantTable({ name: 'invoices', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, customer: { type: 'text' }, amount_cents: { type: 'bigint' }, customer_id: { type: 'uuid', nullable: true } } })] });
const k = new Kysely<any>({ dialect: { createAdapter: () => new PostgresAdapter(), createDriver: () => new DummyDriver(), createIntrospector: (db) => new PostgresIntrospector(db), createQueryCompiler: () => new PostgresQueryCompiler() }, plugins: [new TenantScopePlugin(schema)] });
const c = k.selectFrom('invoices').selectAll().where('id', '=', 'x').compile();
console.log(c.sql, c.parameters);
await (g0 => g0)(null); await loadParser();
const g = createGuard(schema) as any;
console.log(Object.keys(g));
for (const sql of [c.sql, 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2']) { try { console.log(JSON.stringify(g.analyze(sql))); } catch (e) { console.log('err', e.message); } }
