import { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { Webhooks, type WebhooksOptions } from '../metering/webhooks.ts';
import { loadProjectConfig } from './config.ts';
import { parseFlags } from './flags.ts';
import { tenantArg } from './tenant-ref.ts';

const USAGE = `usage: tenantwall webhooks <subcommand> [options]

  replay [--event <webhook-id>] [--tenant <tenant>] [--endpoint <id>] [--status dead,delivered,pending]
  deliveries [--status pending|in_flight|delivered|dead] [--event <webhook-id>] [--endpoint <id>]
  endpoints list
  endpoints add <url> [--tenant <tenant>] [--types type1,type2]
  endpoints disable <endpoint id>
  endpoints enable <endpoint id>
  relay [--once]

replay puts matching deliveries (default: the dead-lettered ones) of active endpoints back to pending with a
fresh attempt budget; they are sent again with the same webhook-id, so receivers that dedup by it bill nothing
twice. The project config (--config, default ./tenantwall.config.ts) needs schema and migrations; it may export
\`webhooks\` (options such as allowNetworks). Every subcommand takes --config <file>, --database-url <url> and
--json. See docs/webhooks.md.`;

const STATUSES = new Set(['dead', 'delivered', 'pending']);

/** Connects and builds the Webhooks of the project config (`webhooks` export optional; no metering needed). */
async function openWebhooks(config: string | undefined, databaseUrl: string | undefined): Promise<{ db: Tenantwall; hooks: Webhooks }> {
  const cfg = (await loadProjectConfig(config)) as Awaited<ReturnType<typeof loadProjectConfig>> & { webhooks?: WebhooksOptions };
  const db = await Tenantwall.connect({ ...cfg.options, schema: cfg.schema, ...(databaseUrl ? { databaseUrl } : {}) });
  try {
    return { db, hooks: new Webhooks(db, cfg.webhooks) };
  } catch (err) {
    await db.close();
    throw err;
  }
}

export async function webhooksCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(argv, {
    config: { type: 'string' },
    'database-url': { type: 'string' },
    event: { type: 'string' },
    tenant: { type: 'string' },
    endpoint: { type: 'string' },
    status: { type: 'string' },
    types: { type: 'string' },
    once: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  });
  const [sub, ...args] = positionals;
  if (values.help || sub === undefined) {
    console.log(USAGE);
    return sub === undefined && !values.help ? 2 : 0;
  }
  if (!['replay', 'deliveries', 'endpoints', 'relay'].includes(sub)) throw new TenantwallError('config_invalid', `Unknown webhooks subcommand ${JSON.stringify(sub)}.\n\n${USAGE}`);
  const { db, hooks } = await openWebhooks(values.config, values['database-url']);
  const out = (human: string, json: unknown) => console.log(values.json ? JSON.stringify(json) : human);
  try {
    switch (sub) {
      case 'replay': {
        const statuses = (values.status ?? 'dead').split(',').map((s) => s.trim());
        for (const s of statuses) if (!STATUSES.has(s)) throw new TenantwallError('config_invalid', `--status takes dead, delivered or pending (got ${JSON.stringify(s)}).`);
        const n = await hooks.replay({
          statuses: statuses as ('dead' | 'delivered' | 'pending')[],
          ...(values.event ? { eventId: values.event } : {}),
          ...(values.tenant ? { tenantId: (await tenantArg(db, values.tenant)).id } : {}),
          ...(values.endpoint ? { endpointId: values.endpoint } : {}),
        });
        out(`${n} deliver${n === 1 ? 'y' : 'ies'} queued for replay`, { replayed: n });
        return 0;
      }
      case 'deliveries': {
        const rows = await hooks.deliveries({
          ...(values.status ? { status: values.status } : {}),
          ...(values.event ? { eventId: values.event } : {}),
          ...(values.endpoint ? { endpointId: values.endpoint } : {}),
        });
        const line = (r: (typeof rows)[number]) =>
          `${r.createdAt}  ${r.status.padEnd(9)} ${String(r.attempts).padStart(2)}  ${r.type.padEnd(23)} ${r.webhookId}  ${r.endpointId} ${r.endpoint}  ${r.lastError ?? ''}`.trimEnd();
        out(rows.map(line).join('\n') || '(none)', rows);
        return 0;
      }
      case 'endpoints': {
        const [action, arg] = args;
        if (action === 'list') {
          const eps = await hooks.listEndpoints();
          // Secrets are shown only when an endpoint is created; URLs never hold credentials.
          const shown = eps.map(({ secret: _secret, ...e }) => e);
          out(shown.map((e) => `${e.id}  ${e.active ? 'active  ' : 'disabled'}  ${e.url}  tenant=${e.tenantId ?? '*'}  types=${e.eventTypes?.join(',') ?? '*'}`).join('\n') || '(none)', shown);
          return 0;
        }
        if (action === 'add' && arg) {
          const ep = await hooks.addEndpoint({
            url: arg,
            ...(values.tenant ? { tenantId: (await tenantArg(db, values.tenant)).id } : {}),
            ...(values.types ? { eventTypes: values.types.split(',').map((s) => s.trim()) } : {}),
          });
          out(`endpoint ${ep.id}\nsecret (shown once): ${ep.secret}`, ep);
          return 0;
        }
        if ((action === 'disable' || action === 'enable') && arg) {
          const ok = action === 'disable' ? await hooks.disableEndpoint(arg) : await hooks.enableEndpoint(arg);
          if (!ok) throw new TenantwallError('webhook_endpoint_not_found', `No webhook endpoint ${arg}.`, { details: { field: 'endpointId' } });
          out(`endpoint ${arg} ${action}d`, { [`${action}d`]: true });
          return 0;
        }
        throw new TenantwallError('config_invalid', `endpoints needs list, add <url>, disable <id> or enable <id>.\n\n${USAGE}`);
      }
      default: {
        const relay = hooks.relay();
        if (values.once) {
          const r = await relay.runOnce();
          await relay.stop();
          out(`dispatched ${r.dispatched}, delivered ${r.delivered}, failed ${r.failed}, dead ${r.dead}`, r);
          return 0;
        }
        relay.start((err) => console.error(`tenantwall webhooks relay: ${(err as Error).message}`));
        console.error('relay running; Ctrl-C stops it');
        await new Promise<void>((resolve) => {
          process.once('SIGINT', resolve);
          process.once('SIGTERM', resolve);
        });
        await relay.stop();
        return 0;
      }
    }
  } finally {
    await db.close();
  }
}
