/**
 * Audit of a large catalog: 500 tenant tables hash-partitioned 10 ways (5,000 partitions), every relation with
 * forced RLS and the tenant policy, plus views and functions over them. Prints how long `runAudit` takes.
 */
import pg from 'pg';
import { runAudit } from '../src/index.ts';
import type { BenchHarness } from './harness.ts';

const TABLES = 500;
const PARTITIONS = 10;
const PER_TRANSACTION = 20;
const PRED = `tenant_id = (SELECT nullif(current_setting('tenantwall.tenant_id', true), '')::uuid)`;

function tableDdl(i: number): string {
  const t = `t${String(i).padStart(3, '0')}`;
  const rls = (rel: string) =>
    `ALTER TABLE ${rel} ENABLE ROW LEVEL SECURITY; ALTER TABLE ${rel} FORCE ROW LEVEL SECURITY;
     CREATE POLICY tenant_isolation ON ${rel} FOR ALL USING (${PRED}) WITH CHECK (${PRED});`;
  const parts = Array.from({ length: PARTITIONS }, (_, p) => `CREATE TABLE ${t}_p${p} PARTITION OF ${t} FOR VALUES WITH (MODULUS ${PARTITIONS}, REMAINDER ${p}); ${rls(`${t}_p${p}`)}`);
  const fk = i > 0 ? `, parent_id uuid, FOREIGN KEY (tenant_id, parent_id) REFERENCES t${String(i - 1).padStart(3, '0')} (tenant_id, id)` : '';
  return `CREATE TABLE ${t} (tenant_id uuid NOT NULL REFERENCES tenants (id), id uuid NOT NULL DEFAULT gen_random_uuid(), name text NOT NULL,
      created_at timestamptz NOT NULL DEFAULT now()${fk}, PRIMARY KEY (tenant_id, id)) PARTITION BY HASH (tenant_id);
    CREATE UNIQUE INDEX ${t}_name_key ON ${t} (tenant_id, name);
    ${parts.join('\n')}
    ${rls(t)}
    GRANT SELECT, INSERT, UPDATE, DELETE ON ${t} TO tenantwall_app;
    ${i % 10 === 0 ? `CREATE VIEW ${t}_names WITH (security_invoker = true) AS SELECT tenant_id, name FROM ${t}; GRANT SELECT ON ${t}_names TO tenantwall_app;
      CREATE FUNCTION ${t}_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM ${t}';` : ''}`;
}

export default async function auditBench(harness: BenchHarness): Promise<void> {
  const db = await harness.createDatabase();
  const url = harness.urlOf(db);
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  // Only the schema build is relaxed; the audit itself runs on a default connection.
  await client.query('SET synchronous_commit = off');
  const t0 = performance.now();
  try {
    await client.query(`CREATE TABLE tenants (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), slug text NOT NULL UNIQUE);
      GRANT SELECT ON tenants TO tenantwall_app;`);
    for (let i = 0; i < TABLES; i += PER_TRANSACTION) {
      const batch = Array.from({ length: Math.min(PER_TRANSACTION, TABLES - i) }, (_, k) => tableDdl(i + k));
      await client.query(`BEGIN; ${batch.join('\n')} COMMIT;`);
    }
    await client.query('ANALYZE');
  } finally {
    await client.end();
  }
  console.log(`schema: ${TABLES} tenant tables, ${TABLES * PARTITIONS} partitions, ${TABLES / 10} views, ${TABLES / 10} functions (built in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  for (const run of ['first run', 'second run']) {
    const started = performance.now();
    const report = await runAudit({ databaseUrl: url, appRole: 'tenantwall_app' });
    const ms = performance.now() - started;
    const bySeverity = ['error', 'warn', 'info'].map((s) => `${report.findings.filter((f) => f.severity === s).length} ${s}`).join(', ');
    console.log(
      `audit ${run}: ${(ms / 1000).toFixed(2)} s for ${report.stats.tenantTables} tenant tables + ${report.stats.partitions} partitions, ${report.stats.policies} policies (${bySeverity}) [target < 10 s; parser ${report.stats.parserMs} ms, catalog ${report.stats.catalogMs} ms, rules ${report.stats.rulesMs} ms]`,
    );
  }
}
