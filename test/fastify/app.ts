import { Writable } from 'node:stream';
import Fastify, { type FastifyInstance } from 'fastify';
import { defineSchema, tenantTable, type Migration, type Tenantwall, TenantwallError } from '../../src/index.ts';
import { Type } from '@sinclair/typebox';
import { TenantwallLogController } from '../../src/fastify/log-controller.ts';
import { type TenantwallFastifyOptions, apiKeysTable, tenantwallPlugin } from '../../src/fastify/index.ts';
import { typeboxValidatorCompiler } from '../../src/fastify/typebox.ts';

/** A minimal schema: the API key table and one tenant table, to exercise the plugin without the service. */
export const pluginSchema = defineSchema({
  tables: [apiKeysTable(), tenantTable({ name: 'notes', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, body: { type: 'text' } } })],
});
export const pluginMigrations: Migration[] = [{ version: 1, name: 'init', sql: (ctx) => ctx.createSchema() }];

export interface PluginApp {
  app: FastifyInstance;
  logs: Array<Record<string, unknown>>;
}

/** A Fastify app with the plugin (its error and not-found handlers on) and a few routes; log lines are captured as parsed JSON. */
export async function pluginApp(db: Tenantwall, options: Omit<TenantwallFastifyOptions, 'db'> = {}, setup?: (app: FastifyInstance) => Promise<void>): Promise<PluginApp> {
  const logs: Array<Record<string, unknown>> = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      for (const line of String(chunk).split('\n')) if (line.trim()) logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const app = Fastify({ logger: { level: 'info', stream }, bodyLimit: 1024, logController: new TenantwallLogController() });
  app.setValidatorCompiler(typeboxValidatorCompiler);
  // The handlers in the tenantwall shape, as the reference service asks for them (off by default, issue 13).
  await app.register(tenantwallPlugin, { db, errorHandler: true, notFoundHandler: true, ...options });
  if (setup) await setup(app);
  // The handler names no tenant: db.query runs in the tenant the plugin resolved (AsyncLocalStorage).
  app.get('/whoami', async (req) => {
    req.log.info('handler ran');
    const setting = await db.query<{ t: string }>(`SELECT current_setting('tenantwall.tenant_id', true) AS t`);
    const notes = await db.query<{ body: string }>(`SELECT body FROM notes WHERE tenant_id = $1 ORDER BY body`, [db.currentTenantId()]);
    return { tenant: req.tenant?.id, slug: req.tenant?.slug, sources: req.tenantAuth?.sources, setting: setting.rows[0]?.t, notes: notes.rows.map((r) => r.body) };
  });
  app.get('/public', { config: { tenant: false } }, async () => ({ tenant: null }));
  app.get('/boom', async () => {
    throw new Error('secret internal detail');
  });
  app.get('/teapot', async () => {
    throw new TenantwallError('tenant_exists', 'Custom refusal.');
  });
  app.post('/echo', { schema: { body: Type.Object({ n: Type.Integer() }, { additionalProperties: false }) } }, async (req) => req.body);
  app.post('/any', async (req) => ({ body: req.body }));
  await app.ready();
  return { app, logs };
}
