import type { ColumnType } from 'kysely';
import { Session } from 'node:inspector/promises';
import { Tenantwall, createGuard, defineSchema, tenantTable, type Migration, type TenantId } from '../src/index.ts';
import { type Param, createTenantKysely, prepareQuery } from '../src/kysely/index.ts';
import type { BenchHarness } from './harness.ts';

const schema = defineSchema({ tables: [tenantTable({ name: 'invoices', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, customer: { type: 'text' }, amount_cents: { type: 'bigint' } } })] });
const migrations: Migration[] = [{ version: 1, name: 'init', sql: (ctx) => ctx.createSchema() }];
interface DB { invoices: { tenant_id: ColumnType<string, never, never>; id: string; customer: string; amount_cents: string } }

export default async function run(h: BenchHarness): Promise<void> {
  const seeded = await h.createTenantwall(schema, migrations, { poolSize: 8 });
  const guarded = await Tenantwall.connect({ schema, databaseUrl: seeded.options.databaseUrl as string, manageRoles: false, appPassword: seeded.options.appPassword, poolSize: 8, guard: createGuard(schema) });
  const tenants: TenantId[] = [];
  for (let i = 0; i < 20; i++) tenants.push((await seeded.tenants.create({ slug: `t${i}`, name: `T${i}` })).id);
  const admin = seeded.dangerouslyCrossTenant();
  await admin.query(`INSERT INTO invoices (tenant_id, customer, amount_cents) SELECT t.id, 'c' || g, g FROM tenants t, generate_series(1, 200) g`);
  const keys = (await admin.query<{ tenant_id: TenantId; id: string }>('SELECT tenant_id, id FROM invoices ORDER BY random() LIMIT 2000')).rows;
  const key = (i: number) => keys[i % keys.length]!;
  const lookup = 'SELECT * FROM invoices WHERE tenant_id = $1 AND id = $2';
  const kysely = createTenantKysely<DB>(guarded);
  const fixed = new Map(tenants.map((t) => [t, createTenantKysely<DB>(guarded, { tenantId: t })]));
  const byId = prepareQuery(kysely, (k, param: Param<{ id: string }>) => k.selectFrom('invoices').selectAll().where('id', '=', param('id')));
  const variants: Record<string, (i: number) => Promise<unknown>> = {
    raw: (i) => guarded.forTenant(key(i).tenant_id).query(lookup, [key(i).tenant_id, key(i).id]),
    percall: (i) => fixed.get(key(i).tenant_id)!.selectFrom('invoices').selectAll().where('id', '=', key(i).id).execute(),
    prepared: (i) => byId.execute({ id: key(i).id }, fixed.get(key(i).tenant_id)),
    compileonly: async (i) => fixed.get(key(i).tenant_id)!.selectFrom('invoices').selectAll().where('id', '=', key(i).id).compile(),
  };
  const N = Number(process.env.N ?? 20000);
  const conc = 16;
  async function loop(op: (i: number) => Promise<unknown>, n: number) {
    let next = 0;
    await Promise.all(Array.from({ length: conc }, async () => { while (next < n) await op(next++); }));
  }
  for (const op of Object.values(variants)) await loop(op, 5000);
  for (let r = 0; r < 5; r++) {
    const line: string[] = [];
    for (const [name, op] of Object.entries(variants)) {
      const c0 = process.cpuUsage(); const t0 = performance.now();
      await loop(op, N);
      const c = process.cpuUsage(c0); const ms = performance.now() - t0;
      line.push(`${name} ${((c.user + c.system) / N).toFixed(1)}us ${(N / ms * 1000).toFixed(0)}/s`);
    }
    console.log(line.join(' | '));
  }
  if (process.env.PROF) {
    const s = new Session(); s.connect(); await s.post('Profiler.enable'); await s.post('Profiler.setSamplingInterval', { interval: 100 }); await s.post('Profiler.start');
    await loop(variants[process.env.PROF]!, 60000);
    const { profile } = (await s.post('Profiler.stop')) as any;
    const self = new Map<number, number>();
    const byId2 = new Map<number, any>(profile.nodes.map((n: any) => [n.id, n]));
    profile.samples.forEach((id: number, k: number) => self.set(id, (self.get(id) ?? 0) + (profile.timeDeltas[k] ?? 0)));
    const agg = new Map<string, number>();
    for (const [id, t] of self) { const n = byId2.get(id); const f = `${n.callFrame.functionName || '(anon)'} ${n.callFrame.url.replace(/.*node_modules\//, '').replace(/.*\/work\/main\//, '')}:${n.callFrame.lineNumber}`; agg.set(f, (agg.get(f) ?? 0) + t); }
    const total = [...agg.values()].reduce((a, b) => a + b, 0);
    for (const [f, t] of [...agg].sort((a, b) => b[1] - a[1]).slice(0, 45)) console.log(`${(t / 60000).toFixed(2).padStart(6)}us ${(100 * t / total).toFixed(1).padStart(5)}% ${f}`);
  }
  await guarded.close();
}
