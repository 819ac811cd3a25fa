/**
 * Kysely: Node.js CPU per query of building, scoping (the tenant plugin) and compiling, against the same query
 * built and compiled without the plugin (process.cpuUsage, no database; the minimum over rounds, so other load
 * on the machine inflates it least). `npm run bench -- kysely`.
 */
import { DummyDriver, Kysely, PostgresAdapter, PostgresIntrospector, PostgresQueryCompiler } from 'kysely';
import { defineSchema, tenantTable } from '../src/index.ts';
import { TenantScopePlugin } from '../src/kysely/index.ts';

const schema = defineSchema({ tables: [tenantTable({ name: 'invoices', columns: { id: { type: 'uuid' }, customer: { type: 'text' } } })] });
const COLS = ['id', 'customer', 'customer_id', 'amount_cents', 'currency', 'status', 'issued_at', 'created_at', 'updated_at'];
const N = 20_000;
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);

export default async function run(): Promise<void> {
  const dialect = {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db: Kysely<any>) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  };
  const variants = { 'without plugin': new Kysely<any>({ dialect }), 'tenant plugin': new Kysely<any>({ dialect, plugins: [new TenantScopePlugin(schema)] }) };
  const cpu = (f: () => void) => {
    const c0 = process.cpuUsage();
    f();
    const c = process.cpuUsage(c0);
    return (c.user + c.system) / N;
  };
  const best = new Map<string, number>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, k] of Object.entries(variants)) {
      const q = (i: number) => k.selectFrom('invoices').select(COLS).where('id', '=', `x${i}`);
      const build = cpu(() => { for (let i = 0; i < N; i++) q(i).toOperationNode(); });
      const all = cpu(() => { for (let i = 0; i < N; i++) q(i).compile(); });
      best.set(`${name}: build (+ scope)`, Math.min(best.get(`${name}: build (+ scope)`) ?? Infinity, build));
      best.set(`${name}: build (+ scope) + compile`, Math.min(best.get(`${name}: build (+ scope) + compile`) ?? Infinity, all));
    }
  }
  console.log(`point lookup (9 columns), CPU per query, min of ${ROUNDS} rounds x ${N}`);
  for (const [k, v] of best) console.log(`  ${k.padEnd(44)} ${v.toFixed(2)} µs`);
}
