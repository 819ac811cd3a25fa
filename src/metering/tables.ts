import type { DdlContext } from '../schema/ddl.ts';
import { TENANT_KEY_COLUMN_TYPE, quoteIdent, tableSql, tenantKeySql } from '../schema/ddl.ts';
import { defineSchema, globalTable, tenantTable, type TableDecl } from '../schema/declare.ts';
import { TenantwallError } from '../errors.ts';

/**
 * The metering tables. Tenant-owned data (events, counters, plan assignment, outbox) are tenant tables with
 * forced RLS, written by the application role in tenant scope; webhook endpoints and deliveries are global
 * tables the application role cannot touch (only the relay, through the owner handle, reads secrets).
 */
export const meteringTables: readonly TableDecl[] = Object.freeze([
  tenantTable({
    name: 'tw_usage_events',
    columns: {
      event_id: { type: 'text', check: 'length(event_id) BETWEEN 1 AND 200' },
      meter: { type: 'text' },
      quantity: { type: 'numeric', check: 'quantity >= 0' },
      occurred_at: { type: 'timestamptz' },
      properties: { type: 'jsonb', nullable: true },
      received_at: { type: 'timestamptz', default: 'now()' },
    },
    primaryKey: ['event_id'],
    indexes: [{ columns: ['meter', 'occurred_at'] }],
  }),
  tenantTable({
    name: 'tw_tenant_plans',
    columns: {
      // One row per tenant: the declared table API wants a primary key column besides tenant_id.
      slot: { type: 'smallint', default: '1', check: 'slot = 1' },
      plan: { type: 'text' },
      version: { type: 'integer', default: '1' },
      changed_at: { type: 'timestamptz', default: 'now()' },
    },
    primaryKey: ['slot'],
  }),
  tenantTable({
    name: 'tw_plan_history',
    columns: {
      // One row per plan change (the version of tw_tenant_plans it produced): which plan was in force when.
      version: { type: 'integer' },
      plan: { type: 'text' },
      valid_from: { type: 'timestamptz' },
    },
    primaryKey: ['version'],
  }),
  tenantTable({
    name: 'tw_quota_counters',
    columns: {
      quota: { type: 'text' },
      period_start: { type: 'timestamptz' },
      shard: { type: 'smallint' },
      used: { type: 'bigint', default: '0', check: 'used >= 0' },
      // NULL for soft quotas; for hard ones the shard's share of the limit: sum(cap) = limit, so no
      // interleaving of shard increments can admit more than the limit.
      cap: { type: 'bigint', nullable: true },
    },
    primaryKey: ['quota', 'period_start', 'shard'],
  }),
  tenantTable({
    name: 'tw_rate_limits',
    columns: {
      key: { type: 'text' },
      window_start: { type: 'timestamptz' },
      used: { type: 'bigint' },
      last_grant: { type: 'bigint' },
    },
    primaryKey: ['key', 'window_start'],
  }),
  tenantTable({
    name: 'tw_outbox',
    columns: {
      id: { type: 'text', check: 'length(id) BETWEEN 1 AND 300' },
      type: { type: 'text' },
      payload: { type: 'jsonb' },
      status: { type: 'text', default: "'pending'", check: "status IN ('pending', 'dispatched')" },
      created_at: { type: 'timestamptz', default: 'clock_timestamp()' },
      dispatched_at: { type: 'timestamptz', nullable: true },
    },
  }),
  globalTable({
    name: 'tw_webhook_endpoints',
    columns: {
      id: { type: 'uuid', default: 'gen_random_uuid()' },
      url: { type: 'text', check: "url ~ '^https?://'" },
      secret: { type: 'text', check: "secret LIKE 'whsec_%'" },
      scope_tenant_id: { type: TENANT_KEY_COLUMN_TYPE, nullable: true },
      event_types: { type: 'text[]', nullable: true },
      active: { type: 'boolean', default: 'true' },
      created_at: { type: 'timestamptz', default: 'now()' },
    },
    appAccess: 'none',
  }),
  globalTable({
    name: 'tw_webhook_deliveries',
    columns: {
      event_tenant_id: { type: TENANT_KEY_COLUMN_TYPE },
      event_id: { type: 'text' },
      endpoint_id: { type: 'uuid' },
      type: { type: 'text' },
      payload: { type: 'jsonb' },
      event_created_at: { type: 'timestamptz' },
      status: { type: 'text', default: "'pending'", check: "status IN ('pending', 'in_flight', 'delivered', 'dead')" },
      attempts: { type: 'integer', default: '0' },
      next_attempt_at: { type: 'timestamptz', default: 'now()' },
      lease_until: { type: 'timestamptz', nullable: true },
      last_status: { type: 'integer', nullable: true },
      last_error: { type: 'text', nullable: true },
      delivered_at: { type: 'timestamptz', nullable: true },
      created_at: { type: 'timestamptz', default: 'now()' },
    },
    primaryKey: ['event_tenant_id', 'event_id', 'endpoint_id'],
    foreignKeys: [{ columns: ['endpoint_id'], references: 'tw_webhook_endpoints', referencedColumns: ['id'], onDelete: 'cascade' }],
    appAccess: 'none',
  }),
]);

/** Table names, for applications that list them (guards, audits). */
export const METERING_TABLE_NAMES = meteringTables.map((t) => t.name);

/**
 * The functions metering calls in tenant scope (SECURITY INVOKER, they touch only the rows of the tenant they
 * are given): a statement guard must allow them (`createGuard(schema, { allowFunctions: METERING_FUNCTION_NAMES })`).
 */
export const METERING_FUNCTION_NAMES: readonly string[] = Object.freeze(['tw_outbox_write', 'tw_quota_consume', 'tw_quota_release', 'tw_quota_rebalance']);

const FUNCTIONS = String.raw`
-- The one writer of the outbox: writeOutboxEvent (webhooks.ts) and the functions below call it. Idempotent by
-- (tenant, id): ids are deterministic for the fact they describe, so a re-run writes nothing. True when written.
-- Runs as the caller (SECURITY INVOKER): row-level security applies to the insert.
CREATE FUNCTION tw_outbox_write(p_tenant uuid = NULL, p_id text = NULL, p_type text = NULL, p_payload jsonb = NULL)
RETURNS boolean LANGUAGE plpgsql AS $fn$
BEGIN
  IF p_tenant IS NULL OR p_id IS NULL OR p_type IS NULL OR p_payload IS NULL THEN
    RETURN false;
  END IF;
  INSERT INTO tw_outbox (tenant_id, id, type, payload) VALUES (p_tenant, p_id, p_type, p_payload)
  ON CONFLICT (tenant_id, id) DO NOTHING;
  RETURN FOUND;
END
$fn$;

-- Admission against a per-period quota counter sharded over p_shards rows. Hard quotas: every shard holds a
-- cap (its share of the limit) and a unit is admitted only into a shard with room, so concurrent requests
-- never admit more than the limit in total. Far from the limit, requests pick a random unlocked shard
-- (SKIP LOCKED) and do not wait for each other; only when the free shards are all busy do they wait.
-- Runs as the caller (SECURITY INVOKER): row-level security applies to every statement inside.
-- Every argument defaults to NULL and NULLs return nothing: \`tenantwall verify\` can then call the function
-- as the application role and see that it leaks nothing (it only calls functions it can call without arguments).
CREATE FUNCTION tw_quota_consume(p_tenant uuid = NULL, p_quota text = NULL, p_meter text = NULL, p_period timestamptz = NULL,
  p_period_end timestamptz = NULL, p_amount bigint = NULL, p_limit bigint = NULL, p_shards integer = NULL, p_hard boolean = NULL,
  p_thresholds integer[] = NULL)
RETURNS TABLE (admitted boolean, used bigint, quota_limit bigint)
LANGUAGE plpgsql AS $fn$
DECLARE
  v_shard smallint;
  v_total bigint;
  v_limit bigint;
  v_left bigint;
  v_take bigint;
  v_admitted boolean := false;
  v_t integer;
  v_id text;
  r record;
BEGIN
  IF p_tenant IS NULL OR p_quota IS NULL OR p_period IS NULL OR p_amount IS NULL OR p_limit IS NULL OR p_shards IS NULL OR p_hard IS NULL THEN
    RETURN;
  END IF;
  PERFORM 1 FROM tw_quota_counters c WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period LIMIT 1;
  IF NOT FOUND THEN
    INSERT INTO tw_quota_counters AS c (tenant_id, quota, period_start, shard, used, cap)
    SELECT p_tenant, p_quota, p_period, s, 0,
      CASE WHEN p_hard THEN p_limit / p_shards + CASE WHEN s < p_limit % p_shards THEN 1 ELSE 0 END END
    FROM generate_series(0, p_shards - 1) AS s
    ON CONFLICT DO NOTHING;
  END IF;
  IF p_amount > 0 THEN
    IF p_hard THEN
      SELECT c.shard INTO v_shard FROM tw_quota_counters c
       WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.used + p_amount <= c.cap
       ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED;
      IF v_shard IS NULL THEN
        -- Near the limit: wait for the busy shards; the row is re-checked after the wait.
        SELECT c.shard INTO v_shard FROM tw_quota_counters c
         WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.used + p_amount <= c.cap
         ORDER BY c.shard LIMIT 1 FOR UPDATE;
      END IF;
      IF v_shard IS NOT NULL THEN
        UPDATE tw_quota_counters c SET used = c.used + p_amount
         WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.shard = v_shard;
        v_admitted := true;
      ELSIF p_amount > 1 THEN
        -- No single shard has room for p_amount units: spread them, all shards locked in a fixed order.
        SELECT sum(c.cap - c.used) INTO v_left FROM (
          SELECT c2.cap, c2.used FROM tw_quota_counters c2
           WHERE c2.tenant_id = p_tenant AND c2.quota = p_quota AND c2.period_start = p_period ORDER BY c2.shard FOR UPDATE) c;
        IF v_left >= p_amount THEN
          v_left := p_amount;
          FOR r IN SELECT c.shard, c.cap - c.used AS room FROM tw_quota_counters c
                    WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.used < c.cap ORDER BY c.shard LOOP
            v_take := least(r.room, v_left);
            UPDATE tw_quota_counters c SET used = c.used + v_take
             WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.shard = r.shard;
            v_left := v_left - v_take;
            EXIT WHEN v_left = 0;
          END LOOP;
          v_admitted := true;
        END IF;
      END IF;
    ELSE
      UPDATE tw_quota_counters c SET used = c.used + p_amount
       WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period
         AND c.shard = (SELECT c2.shard FROM tw_quota_counters c2
                         WHERE c2.tenant_id = p_tenant AND c2.quota = p_quota AND c2.period_start = p_period
                         ORDER BY random() LIMIT 1);
      v_admitted := true;
    END IF;
  ELSE
    v_admitted := true;
  END IF;
  SELECT coalesce(sum(c.used), 0), CASE WHEN p_hard THEN sum(c.cap) ELSE p_limit END INTO v_total, v_limit
    FROM tw_quota_counters c WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period;
  -- Once per (quota, period, threshold): the deterministic id makes every later attempt a no-op. The insert must
  -- never wait for another transaction inserting the same id while we hold a shard lock (that wait closes
  -- deadlock cycles with requests waiting for shards), hence the try-lock: whoever holds it inserts; if that
  -- transaction rolled back, a later request past the threshold inserts the event.
  IF v_limit > 0 AND p_amount > 0 THEN
    FOREACH v_t IN ARRAY coalesce(p_thresholds, ARRAY[]::integer[]) LOOP
      v_id := format('quota.threshold:%s:%s:%s:%s', p_tenant, p_quota, to_char(p_period AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), v_t);
      -- Nested, not AND: SQL does not promise to evaluate the threshold test before taking the lock.
      IF v_total * 100 >= v_t::bigint * v_limit THEN
       IF pg_try_advisory_xact_lock(hashtextextended(v_id, 0)) THEN
        PERFORM tw_outbox_write(p_tenant, v_id, 'quota.threshold_crossed',
          jsonb_build_object('tenant_id', p_tenant, 'quota', p_quota, 'meter', p_meter, 'threshold_percent', v_t,
            'used', v_total, 'limit', v_limit, 'enforcement', CASE WHEN p_hard THEN 'hard' ELSE 'soft' END,
            'period_start', p_period, 'period_end', p_period_end));
       END IF;
      END IF;
    END LOOP;
  END IF;
  RETURN QUERY SELECT v_admitted, v_total, v_limit;
END
$fn$;

-- Gives back units admitted for work that then failed.
CREATE FUNCTION tw_quota_release(p_tenant uuid = NULL, p_quota text = NULL, p_period timestamptz = NULL, p_amount bigint = NULL)
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE
  v_left bigint := p_amount;
  v_take bigint;
  r record;
BEGIN
  IF p_amount IS NULL THEN RETURN 0; END IF;
  FOR r IN SELECT c.shard, c.used FROM tw_quota_counters c
            WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.used > 0
            ORDER BY c.shard FOR UPDATE LOOP
    v_take := least(r.used, v_left);
    UPDATE tw_quota_counters c SET used = c.used - v_take
     WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.shard = r.shard;
    v_left := v_left - v_take;
    EXIT WHEN v_left = 0;
  END LOOP;
  RETURN p_amount - v_left;
END
$fn$;

-- A plan change: redistributes what is left of the new limit over the shards (all locked, fixed order).
CREATE FUNCTION tw_quota_rebalance(p_tenant uuid = NULL, p_quota text = NULL, p_period timestamptz = NULL, p_limit bigint = NULL, p_hard boolean = NULL)
RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
  v_used bigint;
  v_n integer;
  v_room bigint;
  v_i integer := 0;
  r record;
BEGIN
  IF p_limit IS NULL OR p_hard IS NULL THEN RETURN; END IF;
  SELECT coalesce(sum(c.used), 0), count(*) INTO v_used, v_n FROM (
    SELECT c2.used FROM tw_quota_counters c2
     WHERE c2.tenant_id = p_tenant AND c2.quota = p_quota AND c2.period_start = p_period ORDER BY c2.shard FOR UPDATE) c;
  IF v_n = 0 THEN RETURN; END IF;
  v_room := greatest(0, p_limit - v_used);
  FOR r IN SELECT c.shard, c.used FROM tw_quota_counters c
            WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period ORDER BY c.shard LOOP
    UPDATE tw_quota_counters c
       SET cap = CASE WHEN p_hard THEN r.used + v_room / v_n + CASE WHEN v_i < v_room % v_n THEN 1 ELSE 0 END END
     WHERE c.tenant_id = p_tenant AND c.quota = p_quota AND c.period_start = p_period AND c.shard = r.shard;
    v_i := v_i + 1;
  END LOOP;
END
$fn$;
`;

/**
 * The DDL of the metering tables, indexes and functions, rendered for your roles and tenant setting. Append it
 * to your migrations as a numbered migration of your own:
 * `{ version: 7, name: 'metering', sql: (ctx) => meteringMigrationSql(ctx) }`.
 */
export function meteringMigrationSql(ctx: DdlContext): string {
  if (ctx.schema.tenantColumn !== 'tenant_id') {
    throw new TenantwallError('schema_invalid', 'The metering tables need the default tenant column name tenant_id.');
  }
  const app = quoteIdent(ctx.appRole);
  const key = tenantKeySql(ctx);
  // Rendered against a schema of the metering tables alone (same registry, column and policy form), so the
  // application's own schema and its first migration stay unchanged.
  const own: DdlContext = {
    ...ctx,
    schema: defineSchema({ tables: meteringTables, registryTable: ctx.schema.registryTable, policyForm: ctx.schema.policyForm }),
  };
  return [
    ...meteringTables.map((t) => tableSql(t, own)),
    // The per-row foreign-key trigger to the registry was 60% of the ingestion time of a 1000-event batch
    // (measured, PG 18); the insert statement checks the tenant once per batch instead (Metering.recordBatch).
    `ALTER TABLE "tw_usage_events" DROP CONSTRAINT "tw_usage_events_tenant_id_fkey";`,
    // The relay claims by status; partial indexes keep that a short index scan however large history grows.
    `CREATE INDEX "tw_outbox_pending_idx" ON "tw_outbox" ("created_at") WHERE "status" = 'pending';`,
    `CREATE INDEX "tw_webhook_deliveries_due_idx" ON "tw_webhook_deliveries" ("next_attempt_at") WHERE "status" IN ('pending', 'in_flight');`,
    FUNCTIONS.trim().replaceAll('p_tenant uuid', `p_tenant ${key}`),
    // Functions are executable by PUBLIC by default; narrow that to the application role.
    ...[
      `tw_outbox_write(${key}, text, text, jsonb)`,
      `tw_quota_consume(${key}, text, text, timestamptz, timestamptz, bigint, bigint, integer, boolean, integer[])`,
      `tw_quota_release(${key}, text, timestamptz, bigint)`,
      `tw_quota_rebalance(${key}, text, timestamptz, bigint, boolean)`,
    ].flatMap((f) => [
      `REVOKE ALL ON FUNCTION ${f} FROM PUBLIC;`,
      `GRANT EXECUTE ON FUNCTION ${f} TO ${app};`,
    ]),
  ].join('\n\n');
}
