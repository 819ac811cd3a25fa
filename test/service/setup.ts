import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import { buildApp, type AppOptions } from '../../service/app.ts';
import { migrations, schema } from '../../service/schema.ts';
import { createTestTenantwall, type TestTenantwall } from '../helpers/db.ts';
import type { Tenantwall } from '../../src/index.ts';

export const ADMIN_TOKEN = 'test-admin-token-0123456789abcdef';

export interface TenantFixture {
  id: string;
  slug: string;
  key: string;
  keyId: string;
}

export interface ServiceFixture {
  app: FastifyInstance;
  db: Tenantwall;
  t: TestTenantwall;
  a: TenantFixture;
  b: TenantFixture;
  /** inject with tenant `who`'s API key. */
  as(who: TenantFixture, opts: InjectOptions): Promise<LightMyRequestResponse>;
  admin(opts: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

/** A fresh database with the service schema, the app, and two tenants (A, B) with one API key each. */
export async function startService(appOptions: Partial<AppOptions> = {}): Promise<ServiceFixture> {
  const t = await createTestTenantwall(schema, migrations);
  const app = await buildApp({ db: t.db, adminToken: ADMIN_TOKEN, ...appOptions });
  await app.ready();
  const admin = (opts: InjectOptions) => app.inject({ ...opts, headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...opts.headers } });
  async function tenant(slug: string): Promise<TenantFixture> {
    const created = await admin({ method: 'POST', url: '/admin/tenants', payload: { slug, name: slug.toUpperCase() } });
    if (created.statusCode !== 201) throw new Error(`tenant create: ${created.statusCode} ${created.body}`);
    const id = created.json().id as string;
    const key = await admin({ method: 'POST', url: `/admin/tenants/${id}/api-keys`, payload: { name: 'test' } });
    if (key.statusCode !== 201) throw new Error(`key create: ${key.statusCode} ${key.body}`);
    return { id, slug, key: key.json().key, keyId: key.json().id };
  }
  const a = await tenant('tenant-a');
  const b = await tenant('tenant-b');
  return {
    app,
    db: t.db,
    t,
    a,
    b,
    as: (who, opts) => app.inject({ ...opts, headers: { authorization: `Bearer ${who.key}`, ...opts.headers } }),
    admin,
    async close() {
      await app.close();
      await t.close();
    },
  };
}
