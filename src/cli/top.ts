import { TenantwallError } from '../errors.ts';
import { ACTIVITY_RESOURCES, type ActivityCounts, type ActivityResource, type TopReport, rankActivity } from '../observability/activity.ts';
import { parseFlags } from './flags.ts';

const USAGE = `usage: tenantwall top --url <service URL> [--url <another process>] [options]

  --url <url>        base URL of a service running the observability plugin (repeat for every process;
                     env TENANTWALL_TOP_URL, comma separated); the report path /admin/observability/top is added
                     unless the URL has a path
  --token <token>    admin token (env TENANTWALL_ADMIN_TOKEN)
  --by <resource>    rank by dbMs (default), statements, rows or requests
  --limit <n>        tenants shown (default 20)
  --share <percent>  flag tenants at or above this share (default: the service's noisySharePercent)
  --json             one JSON report per refresh
  --watch            refresh until interrupted (--interval seconds, default 2; --iterations n to stop)

Tenants ranked by database time, statements, rows and requests over the service's activity window, with each
one's share; noisy tenants come with the suggested action and the command that does it. See docs/observability.md.`;

/** Reads and merges the activity reports of every process; ranks them again over the sum. */
export async function readTop(urls: readonly string[], token: string | undefined, o: { by: ActivityResource; limit: number; share?: number | undefined }): Promise<TopReport> {
  const totals = new Map<string, ActivityCounts>();
  let first: TopReport | undefined;
  for (const raw of urls) {
    const url = new URL(raw);
    if (url.pathname === '/' || url.pathname === '') url.pathname = '/admin/observability/top';
    url.searchParams.set('by', o.by);
    url.searchParams.set('limit', '100000');
    let res: Response;
    try {
      res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
    } catch (cause) {
      throw new TenantwallError('activity_source_unreachable', `${url.origin} did not answer (${(cause as Error).message}).`, { cause, details: { url: url.origin } });
    }
    if (!res.ok) throw new TenantwallError('activity_source_unreachable', `${url.origin}${url.pathname} answered ${res.status}.`, { details: { url: url.origin, status: res.status } });
    const report = (await res.json()) as TopReport;
    if (!Array.isArray(report.tenants)) throw new TenantwallError('activity_source_unreachable', `${url.origin}${url.pathname} did not answer an activity report.`, { details: { url: url.origin } });
    first ??= report;
    for (const t of report.tenants) {
      const c = totals.get(t.tenantId) ?? { dbMs: 0, statements: 0, rows: 0, requests: 0, refusals: 0 };
      c.dbMs += t.dbMs;
      c.statements += t.statements;
      c.rows += t.rows;
      c.requests += t.requests;
      c.refusals += t.refusals;
      totals.set(t.tenantId, c);
    }
  }
  const base = first as TopReport;
  return rankActivity(totals, { by: o.by, limit: o.limit, noisySharePercent: o.share ?? base.noisySharePercent, windowMs: base.windowMs, now: Date.parse(base.to) });
}

const pct = (x: number) => `${(x * 100).toFixed(1)}%`.padStart(6);

/** The report as a table with the suggestions of the noisy tenants. */
export function formatTop(r: TopReport): string {
  const lines = [
    `tenants by ${r.by} over the last ${Math.round(r.windowMs / 1000)} s (${r.activeTenants} active; noisy at >= ${r.noisySharePercent}% of a resource)`,
    `${'#'.padStart(3)}  ${'tenant'.padEnd(36)}  ${'db ms'.padStart(10)} share  ${'stmts'.padStart(8)} share  ${'rows'.padStart(9)} share  ${'reqs'.padStart(8)} share`,
  ];
  r.tenants.forEach((t, i) => {
    lines.push(
      `${String(i + 1).padStart(3)}  ${t.tenantId.padEnd(36)}  ${t.dbMs.toFixed(1).padStart(10)} ${pct(t.share.dbMs)}  ${String(t.statements).padStart(8)} ${pct(t.share.statements)}  ${String(t.rows).padStart(9)} ${pct(t.share.rows)}  ${String(t.requests).padStart(8)} ${pct(t.share.requests)}${t.noisy ? `  NOISY (${t.noisyOn.join(', ')})` : ''}`,
    );
  });
  for (const t of r.tenants.filter((x) => x.noisy)) {
    lines.push('', `${t.tenantId} is noisy on ${t.noisyOn.join(', ')}:`);
    for (const s of t.suggestions) lines.push(`  - ${s.action}: ${s.command}`);
  }
  if (r.tenants.length === 0) lines.push('  (no tenant activity in the window)');
  return lines.join('\n');
}

export async function topCommand(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      url: { type: 'string', multiple: true },
      token: { type: 'string' },
      by: { type: 'string', default: 'dbMs' },
      limit: { type: 'string', default: '20' },
      share: { type: 'string' },
      json: { type: 'boolean', default: false },
      watch: { type: 'boolean', default: false },
      interval: { type: 'string', default: '2' },
      iterations: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    'docs/cli.md',
  );
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const urls = values.url ?? (process.env.TENANTWALL_TOP_URL ?? '').split(',').filter((u) => u.trim() !== '');
  if (urls.length === 0) throw new TenantwallError('config_invalid', `top needs --url <service URL>.\n\n${USAGE}`, { details: { field: 'url' } });
  for (const u of urls) {
    if (!URL.canParse(u) || !/^https?:$/.test(new URL(u).protocol)) throw new TenantwallError('config_invalid', `--url ${JSON.stringify(u)} is not an http(s) URL.`, { details: { field: 'url' } });
  }
  const by = values.by as ActivityResource;
  if (!ACTIVITY_RESOURCES.includes(by)) throw new TenantwallError('config_invalid', `--by must be one of ${ACTIVITY_RESOURCES.join(', ')}.`, { details: { field: 'by' } });
  const positive = (v: string | undefined, name: string, max: number): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!/^\d+$/.test(v) || n < 1 || n > max) throw new TenantwallError('config_invalid', `--${name} must be an integer 1..${max}.`, { details: { field: name } });
    return n;
  };
  const limit = positive(values.limit, 'limit', 100_000) as number;
  const share = positive(values.share, 'share', 100);
  const interval = positive(values.interval, 'interval', 3600) as number;
  const iterations = positive(values.iterations, 'iterations', 1_000_000);
  const token = values.token ?? process.env.TENANTWALL_ADMIN_TOKEN;
  for (let i = 0; ; i++) {
    const report = await readTop(urls, token, { by, limit, share });
    if (values.json) console.log(JSON.stringify(report));
    else {
      if (values.watch && process.stdout.isTTY) process.stdout.write('\x1b[2J\x1b[H');
      console.log(formatTop(report));
    }
    if (!values.watch || (iterations !== undefined && i + 1 >= iterations)) return 0;
    await new Promise((r) => setTimeout(r, interval * 1000));
  }
}
