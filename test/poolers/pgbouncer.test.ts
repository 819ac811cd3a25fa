/**
 * tenantwall behind PgBouncer 1.18 in transaction mode: 64 application clients share 4 server connections while
 * statements time out, are cancelled (pg_cancel_backend, and client cancel requests sent through PgBouncer) and
 * server connections are killed mid-transaction. Invariant: every answer that comes back is the asking
 * tenant's (setting and visible rows), and a connection borrowed without a tenant sees no tenant and no open
 * transaction. POOLER_REQUESTS scales the run (default 2,000 requests in `npm test`, 10,000 in .ci/run; one in five
 * a fault).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { defineSchema, isTenantwallError, tenantTable, Tenantwall, type Migration, type TenantId } from '../../src/index.ts';
import { adminUrl, createTestDatabase, type TestDatabase } from '../helpers/db.ts';
import { startPgBouncer, type PgBouncer } from './pgbouncer.ts';

const REQUESTS = Number(process.env.POOLER_REQUESTS ?? 2000);
const CLIENTS = 64;
const SERVER_CONNECTIONS = 4;
const TENANTS = 8;

const schema = defineSchema({ tables: [tenantTable({ name: 'items', columns: { id: { type: 'uuid', default: 'gen_random_uuid()' }, label: { type: 'text' } } })] });
const migrations: Migration[] = [{ version: 1, name: 'init', sql: (ctx) => ctx.createSchema() }];
const PROBE = `SELECT coalesce(current_setting('tenantwall.tenant_id', true), '') AS setting,
  coalesce((SELECT array_agg(DISTINCT tenant_id::text) FROM items), '{}') AS seen, pg_backend_pid() AS pid`;
const RAW_PROBE = `SELECT coalesce(current_setting('tenantwall.tenant_id', true), '') AS setting, now() <> statement_timestamp() AS in_tx,
  (SELECT count(*)::int FROM items) AS visible`;

describe('through PgBouncer (transaction mode)', () => {
  let database: TestDatabase;
  let bouncer: PgBouncer;
  let db: Tenantwall;
  let owner: pg.Pool;
  const tenants: TenantId[] = [];

  before(async () => {
    database = await createTestDatabase();
    const server = new URL(adminUrl());
    const password = process.env.TENANTWALL_APP_PASSWORD as string;
    bouncer = await startPgBouncer({ serverHost: server.hostname, serverPort: Number(server.port || 5432), users: { tenantwall_app: password }, poolSize: SERVER_CONNECTIONS });
    const appDatabaseUrl = bouncer.url('tenantwall_app', password, database.name);
    db = await Tenantwall.connect({ schema, databaseUrl: database.url, appDatabaseUrl, manageRoles: false, pooler: 'transaction', poolSize: CLIENTS, statementTimeoutMs: 10_000,
      // 64 clients queue for 4 server connections on a loaded machine: waiting for a connection is not a fault here.
      connectTimeoutMs: 300_000 });
    await db.migrate(migrations);
    for (let i = 0; i < TENANTS; i++) {
      const id = (await db.tenants.create({ slug: `t${i}`, name: `T${i}` })).id;
      tenants.push(id);
      await db.forTenant(id).query(`INSERT INTO items (tenant_id, label) SELECT $1, 'x' || g FROM generate_series(1, 3) g`, [id]);
    }
    owner = new pg.Pool({ connectionString: database.url, max: 4 });
  });
  after(async () => {
    await owner?.end();
    await db?.close();
    await bouncer?.stop();
    await database?.drop();
  });

  test('with pooler: \'none\' through PgBouncer, the connection is refused with a hint naming the option', async () => {
    const password = process.env.TENANTWALL_APP_PASSWORD as string;
    await assert.rejects(
      Tenantwall.connect({ schema, databaseUrl: database.url, appDatabaseUrl: bouncer.url('tenantwall_app', password, database.name), manageRoles: false, pooler: 'none' }),
      (e: unknown) => isTenantwallError(e, 'config_invalid') && e.details.field === 'pooler' && /pooler: 'transaction'/.test(e.message),
    );
  });

  test('by default (pooler: auto) PgBouncer is detected and the transaction-mode path is taken; a direct connection is not', async () => {
    const password = process.env.TENANTWALL_APP_PASSWORD as string;
    const behind = await Tenantwall.connect({ schema, databaseUrl: database.url, appDatabaseUrl: bouncer.url('tenantwall_app', password, database.name), manageRoles: false, connectTimeoutMs: 300_000 });
    try {
      assert.equal(behind.options.pooler, 'transaction');
      assert.equal(behind.pooler.source, 'detected');
      assert.match(behind.pooler.evidence ?? '', /announced process id -?\d+, pg_backend_pid\(\) is \d+/ /* PgBouncer's made-up id is a random int32 */);
      // Correct behind the pooler: every tenant sees only its rows, and its own setting, across many transactions
      // on few server connections (named statements would fail here with "prepared statement ... does not exist").
      await Promise.all(
        Array.from({ length: 64 }, async (_, i) => {
          const id = tenants[i % TENANTS] as TenantId;
          const r = await behind.forTenant(id).query<{ setting: string; seen: string[] }>(PROBE);
          assert.equal(r.rows[0]?.setting, id);
          assert.deepEqual(r.rows[0]?.seen, [id]);
        }),
      );
    } finally {
      await behind.close();
    }
    const direct = await Tenantwall.connect({ schema, databaseUrl: database.url, manageRoles: false });
    try {
      assert.deepEqual([direct.options.pooler, direct.pooler.source], ['none', 'detected']);
    } finally {
      await direct.close();
    }
    const told = await Tenantwall.connect({ schema, databaseUrl: database.url, appDatabaseUrl: bouncer.url('tenantwall_app', password, database.name), manageRoles: false, pooler: 'transaction', connectTimeoutMs: 300_000 });
    try {
      assert.deepEqual(told.pooler, { mode: 'transaction', source: 'option' });
    } finally {
      await told.close();
    }
  });

  test(`${CLIENTS} clients share ${SERVER_CONNECTIONS} server connections`, async () => {
    const pids = new Set<number>();
    await Promise.all(
      Array.from({ length: CLIENTS * 2 }, async (_, i) => {
        const id = tenants[i % TENANTS] as TenantId;
        await db.forTenant(id).transaction(async (tx) => {
          pids.add((await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number);
          await tx.query('SELECT pg_sleep(0.01)');
        });
      }),
    );
    assert.ok(pids.size <= SERVER_CONNECTIONS, `${pids.size} server connections`);
    const clients = (await owner.query<{ n: number }>(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = 'tenantwall_app' AND datname = $1`, [database.name])).rows[0]?.n;
    assert.ok((clients ?? 0) <= SERVER_CONNECTIONS, `${clients} application backends`);
  });

  test(`${REQUESTS} requests with timeouts, cancels and killed server connections: no wrong-tenant answer`, async () => {
    const stats = { requests: 0, ok: 0, wrong: [] as string[], faults: new Map<string, number>(), errors: new Map<string, number>() };
    const count = (m: Map<string, number>, k: string) => m.set(k, (m.get(k) ?? 0) + 1);
    const check = (tenant: TenantId, row: { setting?: string; seen?: string[] } | undefined, what: string) => {
      if (!row || row.setting !== tenant || row.seen?.length !== 1 || row.seen[0] !== tenant) {
        stats.wrong.push(`${what}: asked ${tenant}, got ${JSON.stringify(row)}`);
      } else stats.ok++;
    };
    // Waits until `pid` runs a statement (as seen by the server), so a cancel or kill hits it mid-statement.
    const waitActive = async (pid: number) => {
      for (let i = 0; i < 500; i++) {
        const r = await owner.query(`SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'`, [pid]);
        if (r.rowCount) return true;
        await new Promise((r) => setTimeout(r, 5));
      }
      return false;
    };
    const expectError = async (p: Promise<unknown>, fault: string) => {
      try {
        await p;
        count(stats.errors, `${fault}:no error`);
      } catch (err) {
        count(stats.errors, `${fault}:${(err as { code?: string }).code ?? (err as Error).message}`);
      }
    };

    const raw = db.dangerouslyRawAppPool();
    const request = async (i: number): Promise<void> => {
      const tenant = tenants[(i * 7) % TENANTS] as TenantId;
      const scope = db.forTenant(tenant);
      const kind = i % 20;
      stats.requests++;
      switch (kind) {
        case 0: {
          count(stats.faults, 'plan statement_timeout');
          await expectError(db.forTenant(tenant, { limits: { statementTimeoutMs: 20 } }).query('SELECT pg_sleep(0.5)'), 'timeout');
          return;
        }
        case 1: {
          count(stats.faults, 'pg_cancel_backend mid-transaction');
          await expectError(
            scope.transaction(async (tx) => {
              const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number;
              const sleeping = tx.query('SELECT pg_sleep(5)');
              void sleeping.catch(() => undefined);
              if (await waitActive(pid)) await owner.query('SELECT pg_cancel_backend($1)', [pid]);
              await sleeping;
            }),
            'cancel',
          );
          return;
        }
        case 2: {
          count(stats.faults, 'pg_terminate_backend mid-transaction');
          await expectError(
            scope.transaction(async (tx) => {
              check(tenant, (await tx.query(PROBE)).rows[0], 'tx before kill');
              const pid = (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]?.pid as number;
              const sleeping = tx.query('SELECT pg_sleep(5)');
              void sleeping.catch(() => undefined);
              if (await waitActive(pid)) await owner.query('SELECT pg_terminate_backend($1)', [pid]);
              await sleeping;
            }),
            'terminate',
          );
          return;
        }
        case 3: {
          count(stats.faults, 'client cancel request through PgBouncer');
          const c = await raw.connect();
          let broken: Error | undefined;
          try {
            await c.query('BEGIN');
            await c.query(`SELECT set_config('tenantwall.tenant_id', $1, true)`, [tenant]);
            const sleeping = c.query('SELECT pg_sleep(5)');
            void sleeping.catch(() => undefined);
            // The cancel request goes to PgBouncer with PgBouncer's key for this client; it forwards it to the server connection.
            const canceller = new pg.Client({ connectionString: (db.options.appDatabaseUrl as string) });
            (canceller as unknown as { cancel(target: pg.PoolClient, query: unknown): void }).cancel(c, (c as unknown as { activeQuery: unknown }).activeQuery);
            await expectError(sleeping, 'client cancel');
            await c.query('ROLLBACK');
          } catch (err) {
            broken = err as Error;
          } finally {
            c.release(broken);
          }
          return;
        }
        case 4: {
          // A borrower that sets nothing: no tenant, no transaction, no rows.
          const r = (await raw.query(RAW_PROBE)).rows[0];
          if (r?.setting !== '' || r?.in_tx !== false || r?.visible !== 0) stats.wrong.push(`raw borrower saw ${JSON.stringify(r)}`);
          else stats.ok++;
          return;
        }
        case 5:
        case 6: {
          const r = await scope.transaction(async (tx) => {
            const a = (await tx.query(PROBE)).rows[0];
            const b = (await tx.query(PROBE)).rows[0];
            return [a, b];
          });
          check(tenant, r[0], 'tx probe 1');
          check(tenant, r[1], 'tx probe 2');
          return;
        }
        default:
          check(tenant, (await scope.query(PROBE)).rows[0], 'statement probe');
      }
    };

    let next = 0;
    const unexpected: string[] = [];
    await Promise.all(
      Array.from({ length: CLIENTS }, async () => {
        while (next < REQUESTS) {
          const i = next++;
          try {
            await request(i);
          } catch (err) {
            // Normal requests may fail while a server connection dies under them (PgBouncer closes the client),
            // or wait too long for one while the faults hold every connection.
            const code = (err as { code?: string }).code ?? (err as Error).message;
            count(stats.errors, `normal:${code}`);
            if (code !== 'database_unreachable' && code !== 'pool_exhausted' && unexpected.length < 10) unexpected.push(`${i}: ${code} ${(err as Error).message}`);
          }
        }
      }),
    );
    const faults = [...stats.faults.values()].reduce((a, b) => a + b, 0);
    console.log(`# pgbouncer faults: ${stats.requests} requests (${faults} faults: ${JSON.stringify(Object.fromEntries(stats.faults))}), ${stats.ok} answers checked, ${stats.wrong.length} wrong-tenant answers; errors ${JSON.stringify(Object.fromEntries(stats.errors))}`);
    assert.deepEqual(stats.wrong, []);
    assert.ok(stats.requests >= REQUESTS);
    assert.ok(stats.ok >= REQUESTS / 2, `only ${stats.ok} answers checked`);
    assert.deepEqual(unexpected, []);
    // The faults happened: plan timeouts answered plan_limit_exceeded, cancels 57014, kills a lost connection.
    assert.ok((stats.errors.get('timeout:plan_limit_exceeded') ?? 0) > 0);
    assert.ok((stats.errors.get('cancel:57014') ?? 0) > 0);
    assert.ok((stats.errors.get('client cancel:57014') ?? 0) > 0);
    assert.ok((stats.errors.get('terminate:database_unreachable') ?? 0) > 0);
    // After the storm every server connection is clean.
    for (let i = 0; i < SERVER_CONNECTIONS * 2; i++) {
      const r = (await raw.query(RAW_PROBE)).rows[0];
      assert.deepEqual(r, { setting: '', in_tx: false, visible: 0 });
    }
  });
});
