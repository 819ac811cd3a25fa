import { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { Metering } from '../metering/metering.ts';
import { type UsageRow, usageToCsv } from '../metering/usage.ts';
import type { MeteringSpec } from '../metering/spec.ts';
import { loadProjectConfig } from './config.ts';
import { parseFlags } from './flags.ts';
import { tenantArg } from './tenant-ref.ts';

const USAGE = `usage: tenantwall usage <subcommand> [options]

  query [--tenant <tenant>] [--meter a,b] [--from <iso>] [--to <iso>] [--granularity minute|hour|day|month] [--format table|csv|json]
  close-period [--period month|day|hour] [--at <iso instant in the period>] [--tenant <tenant>]
  set-plan <tenant> <plan>

<tenant> is a tenant id or slug.
Every subcommand takes --config <file> (default ./tenantwall.config.ts, which must also export \`metering\`:
meters, plans and defaultPlan) and --database-url <url>. Runs on the owner connection. See docs/metering.md.`;

/** Connects and builds the Metering of the project config (which exports `metering`). */
export async function openMetering(config: string | undefined, databaseUrl: string | undefined): Promise<{ db: Tenantwall; metering: Metering }> {
  const cfg = (await loadProjectConfig(config)) as Awaited<ReturnType<typeof loadProjectConfig>> & { metering?: MeteringSpec };
  if (!cfg.metering) {
    throw new TenantwallError('config_invalid', 'The project config must export `metering` ({ meters, plans, defaultPlan }) for the usage commands.');
  }
  const db = await Tenantwall.connect({ ...cfg.options, schema: cfg.schema, ...(databaseUrl ? { databaseUrl } : {}) });
  try {
    return { db, metering: new Metering(db, { spec: cfg.metering }) };
  } catch (err) {
    await db.close();
    throw err;
  }
}

function table(rows: readonly UsageRow[]): string {
  const head = ['tenant_id', 'meter', 'aggregation', 'bucket', 'value', 'events'];
  const cells = rows.map((r) => [r.tenant_id, r.meter, r.aggregation, r.bucket, String(r.value), String(r.events)]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => (c[i] ?? '').length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(head), ...cells.map(line)].join('\n');
}

export async function usageCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    config: { type: 'string' },
    'database-url': { type: 'string' },
    tenant: { type: 'string' },
    meter: { type: 'string' },
    from: { type: 'string' },
    to: { type: 'string' },
    granularity: { type: 'string' },
    format: { type: 'string', default: 'table' },
    period: { type: 'string', default: 'month' },
    at: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  const [sub, ...args] = positionals;
  if (values.help || sub === undefined) {
    console.log(USAGE);
    return sub === undefined && !values.help ? 2 : 0;
  }
  if (!['query', 'close-period', 'set-plan'].includes(sub)) throw new TenantwallError('config_invalid', `Unknown usage subcommand ${JSON.stringify(sub)}.\n\n${USAGE}`);
  const { db, metering } = await openMetering(values.config, values['database-url']);
  try {
    if (sub === 'query') {
      const format = values.json ? 'json' : values.format;
      if (format !== 'table' && format !== 'csv' && format !== 'json') throw new TenantwallError('config_invalid', '--format must be table, csv or json.');
      const rows = await metering.adminUsage({
        meters: values.meter?.split(',').map((s) => s.trim()).filter(Boolean),
        from: values.from,
        to: values.to,
        granularity: values.granularity as never,
        tenantId: values.tenant === undefined ? undefined : (await tenantArg(db, values.tenant)).id,
      });
      if (format === 'csv') process.stdout.write(usageToCsv(rows));
      else if (format === 'json') console.log(JSON.stringify(rows));
      else console.log(table(rows));
      return 0;
    }
    if (sub === 'close-period') {
      const period = values.period;
      if (period !== 'month' && period !== 'day' && period !== 'hour') throw new TenantwallError('config_invalid', '--period must be month, day or hour.');
      const at = values.at === undefined ? previousPeriodInstant(period) : new Date(values.at);
      if (Number.isNaN(at.getTime())) throw new TenantwallError('config_invalid', '--at must be an ISO 8601 instant.');
      const r = await metering.closePeriod({ period, at, ...(values.tenant ? { tenantIds: [(await tenantArg(db, values.tenant)).id] } : {}) });
      if (values.json) console.log(JSON.stringify(r));
      else console.log(`period.closed events: ${r.written} written, ${r.existing} already written (re-runs bill nothing twice)`);
      return 0;
    }
    const [ref, plan] = args;
    if (ref === undefined || plan === undefined) throw new TenantwallError('config_invalid', `set-plan needs <tenant> <plan> (tenant id or slug).\n\n${USAGE}`);
    const tenant = (await tenantArg(db, ref)).id;
    const r = await metering.setPlan(tenant, plan);
    if (values.json) console.log(JSON.stringify({ tenant_id: tenant, plan, ...r }));
    else console.log(r.changed ? `tenant ${ref}: plan ${plan} (version ${r.version})` : `tenant ${ref} is already on ${plan}`);
    return 0;
  } finally {
    await metering.close();
    await db.close();
  }
}

/** Default for close-period: the period before the current one (the one that just ended). */
function previousPeriodInstant(period: 'month' | 'day' | 'hour'): Date {
  const now = new Date();
  if (period === 'month') return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - 1, 15));
  return new Date(now.getTime() - (period === 'day' ? 86_400_000 : 3_600_000));
}
