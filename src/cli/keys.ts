import { Tenantwall } from '../db/tenantwall.ts';
import { TenantwallError } from '../errors.ts';
import { ApiKeyStore } from '../fastify/api-keys.ts';
import { loadProjectConfig } from './config.ts';
import { parseFlags } from './flags.ts';
import { tenantArg } from './tenant-ref.ts';

const USAGE = `usage: tenantwall keys <subcommand> [options]

  create <tenant> --name <name>   issue an API key; the key is printed once (only its hash is stored)
  list <tenant>                   the tenant's keys: id, name, created, revoked (never a secret)
  revoke <tenant> <key-id>        revoke a key (idempotent)

<tenant> is a tenant id or slug. Every subcommand takes --config <file> (default ./tenantwall.config.ts, whose
schema declares apiKeysTable()), --database-url <url>, --table <name> (default api_keys) and --json.
See docs/cli.md.`;

export async function keysCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseFlags(
    argv,
    {
      config: { type: 'string' },
      'database-url': { type: 'string' },
      name: { type: 'string' },
      table: { type: 'string', default: 'api_keys' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    'docs/cli.md',
  );
  const [sub, ref, keyId, ...extra] = positionals;
  if (values.help || sub === undefined) {
    console.log(USAGE);
    return sub === undefined && !values.help ? 2 : 0;
  }
  if (!['create', 'list', 'revoke'].includes(sub)) throw new TenantwallError('config_invalid', `Unknown keys subcommand ${JSON.stringify(sub)}.\n\n${USAGE}`);
  if (ref === undefined) throw new TenantwallError('config_invalid', `keys ${sub} needs <tenant> (an id or a slug).\n\n${USAGE}`);
  if (sub === 'create' && (values.name === undefined || values.name.trim() === '' || values.name.length > 200)) {
    throw new TenantwallError('config_invalid', 'keys create needs --name <name> (1-200 characters).', { details: { field: 'name' } });
  }
  if (sub === 'revoke' && keyId === undefined) throw new TenantwallError('config_invalid', `keys revoke needs <tenant> <key-id>.\n\n${USAGE}`);
  if (extra.length > 0 || (sub !== 'revoke' && keyId !== undefined)) {
    throw new TenantwallError('config_invalid', `Unexpected argument ${JSON.stringify(sub === 'revoke' ? extra[0] : keyId)}.\n\n${USAGE}`);
  }
  const cfg = await loadProjectConfig(values.config);
  const table = values.table;
  if (!cfg.schema.isTenantTable(table)) {
    throw new TenantwallError('config_invalid', `The schema declares no tenant table ${table}: add apiKeysTable() to it (or pass --table).`, { details: { field: 'table' } });
  }
  const db = await Tenantwall.connect({ ...cfg.options, schema: cfg.schema, ...(values['database-url'] ? { databaseUrl: values['database-url'] } : {}) });
  try {
    const tenant = await tenantArg(db, ref);
    const store = new ApiKeyStore(db, { table });
    if (sub === 'create') {
      const created = await store.create(tenant.id, { name: (values.name as string).trim() });
      if (values.json) console.log(JSON.stringify({ tenant_id: tenant.id, slug: tenant.slug, id: created.id, name: created.name, created_at: created.createdAt, key: created.key }));
      else console.log(`${created.key}\n\nAPI key ${created.id} (${created.name}) of tenant ${tenant.slug}. Shown once: store it now, only its hash is kept.`);
      return 0;
    }
    if (sub === 'list') {
      const keys = await store.list(tenant.id);
      if (values.json) console.log(JSON.stringify(keys.map((k) => ({ id: k.id, name: k.name, created_at: k.createdAt, revoked_at: k.revokedAt }))));
      else console.log(keys.map((k) => `${k.id}  ${k.revokedAt ? `revoked ${k.revokedAt.toISOString()}` : 'active'}  ${k.createdAt.toISOString()}  ${k.name}`).join('\n') || '(none)');
      return 0;
    }
    if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(keyId as string)) {
      throw new TenantwallError('config_invalid', `Key id ${JSON.stringify(String(keyId).slice(0, 80))} is not a key id (a UUID, as keys list shows).`, { details: { field: 'key-id' } });
    }
    const revoked = await store.revoke(tenant.id, keyId as string);
    if (values.json) console.log(JSON.stringify({ tenant_id: tenant.id, id: keyId, revoked }));
    else console.log(revoked ? `revoked ${keyId}` : `tenant ${tenant.slug} has no key ${keyId}`);
    return revoked ? 0 : 1;
  } finally {
    await db.close();
  }
}
