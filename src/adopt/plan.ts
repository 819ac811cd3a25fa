import { type DdlContext, quoteIdent as q, quoteLiteral, registrySql, rlsSql } from '../schema/ddl.ts';
import { type TableDecl, defineSchema } from '../schema/declare.ts';
import type { DbColumn, DbConstraint, DbTable } from './introspect.ts';

/** What `planAdoption` needs besides the catalog. */
export interface AdoptOptions {
  /** The tenant column to add (default `tenant_id`). */
  readonly tenantColumn?: string | undefined;
  /** The registry tenantwall creates (default `tenants`). */
  readonly registryTable?: string | undefined;
  /** The existing table whose rows are the tenants (default: found by name, e.g. `organizations`). */
  readonly tenantTable?: string | undefined;
  /** Per table, a column holding the tenant table's key without a foreign key (`--tenant-key table=column`). */
  readonly tenantKeys?: Readonly<Record<string, string>> | undefined;
  /** Tables to keep global even if a foreign key path reaches a tenant. */
  readonly globalTables?: readonly string[] | undefined;
  readonly appRole: string;
  readonly settingName: string;
  /**
   * SQL type of tenant ids (the `tenantKey` option, default `uuid`). `uuid`: every tenant gets a new uuid.
   * `bigint` / `text`: the tenant table's own key becomes the tenant id (`organizations.id` 42 is tenant 42).
   */
  readonly tenantKey?: 'uuid' | 'bigint' | 'text' | undefined;
  /** Module the declaration imports from (default `tenantwall`). */
  readonly importFrom?: string | undefined;
  /** Rows per backfill batch (default 1000). */
  readonly batchSize?: number | undefined;
}

/** Something adopt could not decide: the table is left as it is until a flag or a schema change settles it. */
export interface Undecided {
  readonly table: string;
  readonly reason: string;
  /** The flag or change that settles it. */
  readonly fix: string;
}

/** The result of planning: the decisions, the online migration and the matching declaration. */
export interface AdoptPlan {
  readonly tenantTable: string | undefined;
  /** Tenant tables with the foreign key column their tenant is found through (the tenant table itself: none). */
  /** `schema` only when it is not `public`; `via.column` is `via.columns` joined with `, ` (a multi-column foreign key). */
  readonly tenantTables: readonly { table: string; schema?: string; via?: { column: string; columns: readonly string[]; parent: string } }[];
  readonly globalTables: readonly string[];
  readonly undecided: readonly Undecided[];
  /** Decisions that change behaviour (a global unique becomes unique per tenant, ...). */
  readonly notes: readonly { table: string; note: string }[];
  /** The online migration (`-- tenantwall:online`); empty when there is nothing to adopt. */
  readonly migrationSql: string;
  /** TypeScript source of the matching `defineSchema` declaration. */
  readonly declaration: string;
}

const ROOT_NAMES = ['tenants', 'organizations', 'organisations', 'orgs', 'accounts', 'workspaces', 'companies', 'teams', 'customers'];
const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

const cols = (names: readonly string[]) => names.map(q).join(', ');

/** The index name the DDL generator gives a tenant-led index (src/schema/ddl.ts). */
export function tenantIndexName(table: string, tenantColumn: string, columns: readonly string[], unique: boolean): string {
  return `${table}_${tenantColumn}_${columns.join('_').replace(/[^a-z0-9_]/g, '')}_${unique ? 'key' : 'idx'}`;
}

function onDeleteSql(fk: DbConstraint): string {
  switch (fk.onDelete) {
    case 'r': return ' ON DELETE RESTRICT';
    case 'c': return ' ON DELETE CASCADE';
    // Only the referencing columns: nulling the tenant column too would break NOT NULL.
    case 'n': return ` ON DELETE SET NULL (${cols(fk.columns)})`;
    case 'd': return ` ON DELETE SET DEFAULT (${cols(fk.columns)})`;
    default: return '';
  }
}

const pkOf = (t: DbTable) => t.constraints.find((c) => c.kind === 'p');

/**
 * Decides, from the catalog, which tables become tenant tables (through which foreign key their tenant is
 * found) and which stay global, and renders the online migration and the `defineSchema` declaration. Pure: it
 * reads nothing and writes nothing.
 */
export function planAdoption(catalog: readonly DbTable[], options: AdoptOptions): AdoptPlan {
  const tc = options.tenantColumn ?? 'tenant_id';
  const registry = options.registryTable ?? 'tenants';
  const batch = options.batchSize ?? 1000;
  const undecided: Undecided[] = [];
  const notes: { table: string; note: string }[] = [];

  // 0. Declared tables are named unqualified and found through the search_path (as the app's own unqualified
  // queries find them): a table its unqualified name does not reach is left alone.
  for (const t of catalog) {
    if (t.visible) continue;
    const shadow = catalog.find((o) => o.visible && o.name === t.name);
    undecided.push({
      table: `${t.schema}.${t.name}`,
      reason: shadow ? `left as it is: its name is taken on the search_path by ${shadow.schema}.${shadow.name} (declared tables are named unqualified)` : `left as it is: schema ${t.schema} is not on the search_path (declared tables are named unqualified and found through it)`,
      fix: shadow ? `rename one of the two tables, or adopt only one schema (--schemas)` : `put ${t.schema} on the search_path of every connection (ALTER DATABASE <db> SET search_path = ..., ${t.schema}), or leave it out (--schemas)`,
    });
  }
  // Foreign keys to a table that is not adopted under that name (another schema's namesake, an invisible
  // table) get a dotted refTable that matches no table: they are kept in the database and not followed.
  const visibleSchema = new Map(catalog.filter((t) => t.visible).map((t) => [t.name, t.schema]));
  const tables: DbTable[] = catalog.filter((t) => t.visible).map((t) => ({
    ...t,
    constraints: t.constraints.map((c) => (c.kind === 'f' && visibleSchema.get(c.refTable as string) !== c.refSchema ? { ...c, refTable: `${c.refSchema}.${c.refTable}` } : c)),
  }));
  const byName = new Map(tables.map((t) => [t.name, t]));
  /** The table's name, schema-qualified: the migration does not depend on the search_path it runs under. */
  const qt = (name: string) => {
    const t = byName.get(name) as DbTable;
    return `${q(t.schema)}.${q(t.name)}`;
  };
  /** A name in the schema of `table` (trigger functions, indexes to drop). */
  const inSchema = (table: string, name: string) => `${q((byName.get(table) as DbTable).schema)}.${q(name)}`;
  const empty = (): AdoptPlan => ({ tenantTable: undefined, tenantTables: [], globalTables: [], undecided, notes, migrationSql: '', declaration: '' });

  // 1. The tenant table (its rows are the tenants).
  let root = options.tenantTable;
  if (root === undefined) {
    const found = ROOT_NAMES.filter((n) => byName.has(n));
    if (found.length === 1) root = found[0];
    else {
      undecided.push({ table: '(schema)', reason: found.length === 0 ? 'no table looks like the tenants table' : `several tables could be the tenants table: ${found.join(', ')}`, fix: '--tenant-table <table>' });
      return empty();
    }
  }
  const rootTable = byName.get(root as string);
  if (!rootTable) {
    undecided.push({ table: root as string, reason: 'the tenant table does not exist', fix: '--tenant-table <table>' });
    return empty();
  }
  if (rootTable.name === registry || byName.has(registry)) {
    undecided.push({ table: registry, reason: `a table named ${registry} already exists and is not a tenantwall registry`, fix: '--registry-table <new name>' });
    return empty();
  }

  // 2. Tables adopt cannot take over as they are.
  const excluded = new Set<string>(options.globalTables ?? []);
  const unusable = new Set<string>();
  for (const t of tables) {
    const why = !IDENT.test(t.name) ? 'its name is not a lowercase identifier'
      : t.partitioned ? 'it is partitioned (adopt takes over plain tables)'
      : !pkOf(t) ? 'it has no primary key'
      : t.columns.some((c) => c.name === tc) ? `it already has a ${tc} column`
      : t.columns.find((c) => !IDENT.test(c.name)) ? 'a column name is not a lowercase identifier'
      : undefined;
    if (why) unusable.add(t.name);
    if (why && t.name === rootTable.name) {
      undecided.push({ table: t.name, reason: `the tenant table cannot be adopted: ${why}`, fix: 'fix the table or pass another --tenant-table' });
      return empty();
    }
    if (why) undecided.push({ table: t.name, reason: `left as it is: ${why}`, fix: t.partitioned || !pkOf(t) ? 'adopt it by hand (docs/adopting.md)' : 'rename the column or table' });
  }

  const key = options.tenantKey ?? 'uuid';
  const rootKey = pkOf(rootTable)?.columns ?? [];
  const rootKeyType = rootTable.columns.find((c) => c.name === rootKey[0])?.type ?? '';
  if (key !== 'uuid' && (rootKey.length !== 1 || (key === 'bigint' && !['bigint', 'integer', 'smallint'].includes(rootKeyType)))) {
    undecided.push({ table: rootTable.name, reason: `tenant key type ${key} needs a single-column ${key === 'bigint' ? 'integer ' : ''}primary key on the tenant table (it is ${rootKey.join(', ')}: ${rootKeyType})`, fix: 'TENANTWALL_TENANT_KEY=uuid (new uuid tenant ids)' });
    return empty();
  }

  // 3. The path to the tenant: shortest chain of NOT NULL foreign keys, single- or multi-column (or --tenant-key
  // columns). A multi-column foreign key is a link when all its columns are NOT NULL (MATCH SIMPLE: one NULL
  // column and the row references nothing).
  type Edge = { columns: string[]; parent: string; refColumns: string[]; nullable: boolean };
  const edgesOf = (t: DbTable): Edge[] => {
    const out: Edge[] = [];
    const key = options.tenantKeys?.[t.name];
    const rootPk = pkOf(rootTable)?.columns ?? [];
    if (key !== undefined) {
      const c = t.columns.find((x) => x.name === key);
      if (c && rootPk.length === 1) out.push({ columns: [key], parent: rootTable.name, refColumns: [rootPk[0] as string], nullable: !c.notNull });
      else undecided.push({ table: t.name, reason: `--tenant-key column ${key} does not exist (or the tenant table's key has several columns)`, fix: '--tenant-key table=column' });
    }
    for (const fk of t.constraints) {
      if (fk.kind !== 'f' || fk.refTable === t.name || !byName.has(fk.refTable as string)) continue;
      const nullable = fk.columns.some((name) => !t.columns.find((x) => x.name === name)?.notNull);
      out.push({ columns: [...fk.columns], parent: fk.refTable as string, refColumns: [...(fk.refColumns ?? [])], nullable });
    }
    return out;
  };
  const dist = new Map<string, number>([[rootTable.name, 0]]);
  const via = new Map<string, Edge>();
  const nullableOnly = new Map<string, Edge>();
  const candidates = tables.filter((t) => t.name !== rootTable.name && !unusable.has(t.name) && !excluded.has(t.name));
  const edges = new Map(candidates.map((t) => [t.name, edgesOf(t)]));
  for (let changed = true; changed; ) {
    changed = false;
    for (const t of candidates) {
      for (const e of edges.get(t.name) ?? []) {
        const d = dist.get(e.parent);
        if (d === undefined) continue;
        if (e.nullable) {
          if (!nullableOnly.has(t.name)) nullableOnly.set(t.name, e);
          continue;
        }
        const cur = dist.get(t.name);
        if (cur === undefined || d + 1 < cur) {
          dist.set(t.name, d + 1);
          via.set(t.name, e);
          changed = true;
        }
      }
    }
  }
  const tenant = [rootTable, ...candidates.filter((t) => dist.has(t.name)).sort((a, b) => (dist.get(a.name) ?? 0) - (dist.get(b.name) ?? 0) || a.name.localeCompare(b.name))];
  const tenantNames = new Set(tenant.map((t) => t.name));
  for (const [name, e] of nullableOnly) {
    if (tenantNames.has(name)) continue;
    unusable.add(name);
    const what = e.columns.length === 1 ? `the nullable column ${e.columns[0]}` : `the foreign key (${e.columns.join(', ')}) with a nullable column`;
    undecided.push({ table: name, reason: `reaches a tenant only through ${what} (-> ${e.parent}): rows with NULL belong to no tenant`, fix: `make ${e.columns.map((c) => `${name}.${c}`).join(', ')} NOT NULL, or --tenant-key ${name}=<column>, or --global-tables ${name}` });
  }
  const globals = tables.filter((t) => !tenantNames.has(t.name) && !unusable.has(t.name));
  for (const g of globals) {
    for (const fk of g.constraints) {
      if (fk.kind === 'f' && tenantNames.has(fk.refTable as string)) {
        notes.push({ table: g.name, note: `global table referencing tenant table ${fk.refTable} through nullable ${fk.columns.join(', ')}: the foreign key is dropped from the declaration` });
      }
    }
  }

  for (const t of [...tenant, ...globals]) {
    if (t.schema !== 'public') notes.push({ table: t.name, note: `lives in schema ${t.schema}: declared as ${t.name} (unqualified), so every connection's search_path must include ${t.schema}, as it does for this session` });
  }

  // 4. The online migration.
  const schema = declare(tenant, globals, tenantNames, tc, registry, notes);
  const ctx: DdlContext = { schema, appRole: options.appRole, settingName: options.settingName, tenantKey: key };
  const rootPk = pkOf(rootTable)?.columns ?? [];
  const steps: string[] = [];
  const step = (kind: 'transaction' | 'concurrently' | 'batch', label: string, sql: string[]) => {
    if (sql.length > 0) steps.push(`-- tenantwall:step ${kind} ${label}\n${sql.join('\n')}`);
  };

  const first: string[] = [registrySql(ctx)];
  for (const t of tenant) {
    first.push(`ALTER TABLE ${qt(t.name)} ADD COLUMN ${q(tc)} ${key};`);
    const e = via.get(t.name);
    if (t === rootTable && key === 'uuid') {
      first.push(`ALTER TABLE ${qt(t.name)} ALTER COLUMN ${q(tc)} SET DEFAULT gen_random_uuid();`);
    } else if (t === rootTable) {
      // The tenant table's own key is the tenant id: new rows take it too.
      const fn = inSchema(t.name, `tenantwall_fill_${t.name}`);
      first.push(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.${q(tc)} IS NULL THEN
    NEW.${q(tc)} := NEW.${q(rootKey[0] as string)}::${key};
  END IF;
  RETURN NEW;
END $fn$;`);
      first.push(`CREATE TRIGGER ${q(`tenantwall_fill_${tc}`)} BEFORE INSERT ON ${qt(t.name)} FOR EACH ROW EXECUTE FUNCTION ${fn}();`);
    } else if (e) {
      // Rows written while the backfill runs (and later writes that leave the column out) take the parent's tenant.
      const fn = inSchema(t.name, `tenantwall_fill_${t.name}`);
      first.push(`CREATE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  IF NEW.${q(tc)} IS NULL THEN
    SELECT p.${q(tc)} INTO NEW.${q(tc)} FROM ${qt(e.parent)} p WHERE ${e.columns.map((c, i) => `p.${q(e.refColumns[i] as string)} = NEW.${q(c)}`).join(' AND ')};
  END IF;
  RETURN NEW;
END $fn$;`);
      first.push(`CREATE TRIGGER ${q(`tenantwall_fill_${tc}`)} BEFORE INSERT OR UPDATE OF ${cols(e.columns)} ON ${qt(t.name)} FOR EACH ROW EXECUTE FUNCTION ${fn}();`);
    }
  }
  step('transaction', 'add the tenant column and the registry', first);

  for (const t of tenant) {
    const pk = pkOf(t)?.columns ?? [];
    const e = via.get(t.name);
    const pick = (extra: string) => `SELECT ${cols(pk)} FROM ${qt(t.name)} WHERE ${q(tc)} IS NULL${extra} ORDER BY ${cols(pk)} LIMIT ${batch} FOR UPDATE`;
    if (t === rootTable) {
      const value = key === 'uuid' ? 'gen_random_uuid()' : `${q(rootKey[0] as string)}::${key}`;
      step('batch', `backfill ${t.name}`, [`UPDATE ${qt(t.name)} SET ${q(tc)} = ${value} WHERE (${cols(pk)}) IN (${pick('')});`]);
    } else if (e) {
      step('batch', `backfill ${t.name} from ${e.parent}`, [
        `UPDATE ${qt(t.name)} c SET ${q(tc)} = p.${q(tc)} FROM ${qt(e.parent)} p WHERE ${e.columns.map((c, i) => `p.${q(e.refColumns[i] as string)} = c.${q(c)}`).join(' AND ')} AND p.${q(tc)} IS NOT NULL AND (${pk.map((c) => `c.${q(c)}`).join(', ')}) IN (${pick(e.columns.map((c) => ` AND ${q(c)} IS NOT NULL`).join(''))});`,
      ]);
    }
  }

  const slugCol = rootTable.columns.find((c) => c.name === 'slug' && /text|character/.test(c.type));
  const nameCol = rootTable.columns.find((c) => c.name === 'name' && /text|character/.test(c.type));
  const fallbackSlug = `${quoteLiteral(`${rootTable.name.replace(/_/g, '-')}-`)} || ${cols(rootPk)}::text`;
  const slug = slugCol ? `CASE WHEN ${q(slugCol.name)} ~ '^[a-z0-9][a-z0-9-]{0,62}$' THEN ${q(slugCol.name)} ELSE ${fallbackSlug} END` : fallbackSlug;
  const name = nameCol ? `left(coalesce(nullif(${q(nameCol.name)}, ''), ${slug}), 200)` : slug;
  if (!slugCol) notes.push({ table: rootTable.name, note: `no slug column: registry slugs are ${rootTable.name.replace(/_/g, '-')}-<id>` });
  const registerSql = `INSERT INTO ${q(registry)} ("id", "slug", "name") SELECT ${q(tc)}, ${slug}, ${name} FROM ${qt(rootTable.name)} WHERE ${q(tc)} IS NOT NULL ON CONFLICT DO NOTHING;`;
  notes.push({ table: rootTable.name, note: `its rows were copied into the registry ${registry}; from now on create tenants with \`tenantwall tenants create\`` });

  const notValid: string[] = [registerSql];
  for (const t of tenant) {
    notValid.push(`ALTER TABLE ${qt(t.name)} ADD CONSTRAINT ${q(`${t.name}_${tc}_not_null`)} CHECK (${q(tc)} IS NOT NULL) NOT VALID;`);
    notValid.push(`ALTER TABLE ${qt(t.name)} ADD CONSTRAINT ${q(`${t.name}_${tc}_fkey`)} FOREIGN KEY (${q(tc)}) REFERENCES ${q(registry)} ("id") NOT VALID;`);
  }
  step('transaction', 'register the tenants; tenant column constraints NOT VALID', notValid);
  for (const t of tenant) {
    step('transaction', `validate ${t.name}.${tc}`, [
      `ALTER TABLE ${qt(t.name)} VALIDATE CONSTRAINT ${q(`${t.name}_${tc}_not_null`)};`,
      `ALTER TABLE ${qt(t.name)} VALIDATE CONSTRAINT ${q(`${t.name}_${tc}_fkey`)};`,
      // The validated CHECK lets SET NOT NULL skip its table scan.
      `ALTER TABLE ${qt(t.name)} ALTER COLUMN ${q(tc)} SET NOT NULL;`,
      `ALTER TABLE ${qt(t.name)} DROP CONSTRAINT ${q(`${t.name}_${tc}_not_null`)};`,
    ]);
  }

  // Tenant-led keys: built concurrently, then swapped in one short transaction.
  const build: string[] = [];
  const swap: string[] = [];
  const validate: string[] = [];
  const dropLater: string[] = [];
  for (const t of tenant) {
    for (const fk of t.constraints) {
      if (fk.kind === 'f' && tenantNames.has(fk.refTable as string)) swap.push(`ALTER TABLE ${qt(t.name)} DROP CONSTRAINT ${q(fk.name)};`);
    }
  }
  for (const t of tenant) {
    const pk = pkOf(t) as DbConstraint;
    build.push(`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ${q(`${t.name}_pkey_tw`)} ON ${qt(t.name)} (${cols([tc, ...pk.columns])});`);
    swap.push(`ALTER TABLE ${qt(t.name)} DROP CONSTRAINT ${q(pk.name)};`, `ALTER TABLE ${qt(t.name)} ADD CONSTRAINT ${q(`${t.name}_pkey`)} PRIMARY KEY USING INDEX ${q(`${t.name}_pkey_tw`)};`);
    for (const u of t.constraints.filter((c) => c.kind === 'u')) {
      const ix = tenantIndexName(t.name, tc, u.columns, true);
      build.push(`CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ${q(ix)} ON ${qt(t.name)} (${cols([tc, ...u.columns])});`);
      swap.push(`ALTER TABLE ${qt(t.name)} DROP CONSTRAINT ${q(u.name)};`);
      notes.push({ table: t.name, note: `unique (${u.columns.join(', ')}) is now unique per tenant (${tc}, ${u.columns.join(', ')})` });
    }
    for (const ix of t.indexes) {
      if (!ix.columns) {
        notes.push({ table: t.name, note: `index ${ix.name} (expressions, predicate or not btree) kept as it is: ${ix.definition}` });
        if (ix.unique) undecided.push({ table: t.name, reason: `unique index ${ix.name} is not led by ${tc} and adopt cannot rewrite it: ${ix.definition}`, fix: `recreate it with ${tc} as its first column` });
        continue;
      }
      if (ix.columns[0] === tc) continue;
      const name = tenantIndexName(t.name, tc, ix.columns, ix.unique);
      build.push(`CREATE ${ix.unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY IF NOT EXISTS ${q(name)} ON ${qt(t.name)} (${cols([tc, ...ix.columns])});`);
      if (ix.unique) {
        swap.push(`DROP INDEX ${inSchema(t.name, ix.name)};`);
        notes.push({ table: t.name, note: `unique index ${ix.name} (${ix.columns.join(', ')}) is now unique per tenant` });
      } else dropLater.push(`DROP INDEX CONCURRENTLY IF EXISTS ${inSchema(t.name, ix.name)};`);
    }
  }
  for (const t of tenant) {
    for (const fk of t.constraints) {
      if (fk.kind !== 'f' || !tenantNames.has(fk.refTable as string)) continue;
      const name = `${t.name}_${fk.columns.join('_')}_fkey`;
      swap.push(`ALTER TABLE ${qt(t.name)} ADD CONSTRAINT ${q(name)} FOREIGN KEY (${cols([tc, ...fk.columns])}) REFERENCES ${qt(fk.refTable as string)} (${cols([tc, ...(fk.refColumns ?? [])])})${onDeleteSql(fk)} NOT VALID;`);
      validate.push(`ALTER TABLE ${qt(t.name)} VALIDATE CONSTRAINT ${q(name)};`);
    }
  }
  step('concurrently', 'build the tenant-led keys and indexes', build);
  step('transaction', 'swap in the tenant-led keys; composite foreign keys NOT VALID', swap);
  for (const v of validate) step('transaction', 'validate a composite foreign key', [v]);

  const secure: string[] = [];
  for (const t of tenant) {
    // rlsSql names the relation unqualified: qualify it (ALTER TABLE "x" / ON "x" FOR), the policy text is unchanged.
    secure.push(...rlsSql(t.name, ctx).map((stmt) => stmt.replace(`TABLE ${q(t.name)} `, `TABLE ${qt(t.name)} `).replace(` ON ${q(t.name)} FOR `, ` ON ${qt(t.name)} FOR `)));
    secure.push(`GRANT SELECT, INSERT, UPDATE, DELETE ON ${qt(t.name)} TO ${q(options.appRole)};`);
  }
  for (const g of globals) secure.push(`GRANT SELECT ON ${qt(g.name)} TO ${q(options.appRole)};`);
  // The application role resolves the tables of other schemas through its search_path: it needs USAGE there.
  for (const schemaName of [...new Set([...tenant, ...globals].map((t) => t.schema))].filter((n) => n !== 'public').sort()) {
    secure.push(`GRANT USAGE ON SCHEMA ${q(schemaName)} TO ${q(options.appRole)};`);
  }
  for (const t of tenant) {
    for (const c of t.columns) if (c.sequence) secure.push(`GRANT USAGE, SELECT ON SEQUENCE ${c.sequence} TO ${q(options.appRole)};`);
  }
  step('transaction', 'row-level security, policies and grants', secure);
  step('concurrently', 'drop the indexes replaced by tenant-led ones', dropLater);

  const migrationSql = `-- tenantwall:online
-- Written by \`tenantwall adopt\`: brings an existing database under tenantwall. Applied by \`tenantwall migrate\`
-- step by step (docs/adopting.md); a run stopped at any point resumes where it stopped.

${steps.join('\n\n')}
`;
  return {
    tenantTable: rootTable.name,
    tenantTables: tenant.map((t) => {
      const e = via.get(t.name);
      return e ? { table: t.name, ...(t.schema === 'public' ? {} : { schema: t.schema }), via: { column: e.columns.join(', '), columns: e.columns, parent: e.parent } } : { table: t.name, ...(t.schema === 'public' ? {} : { schema: t.schema }) };
    }),
    globalTables: globals.map((g) => g.name),
    undecided,
    notes,
    migrationSql,
    declaration: renderDeclaration(tenant, globals, tenantNames, tc, registry, options.importFrom ?? 'tenantwall'),
  };
}

type DeclFk = { columns: string[]; references: string; referencedColumns?: string[]; onDelete?: 'restrict' | 'cascade' | 'no action' };
type DeclTable = {
  kind: 'tenant' | 'global';
  name: string;
  columns: Record<string, { type: string; nullable?: boolean; default?: string }>;
  primaryKey: string[];
  foreignKeys: DeclFk[];
  indexes: { columns: string[]; unique?: boolean; name?: string }[];
};

function declTables(tenant: readonly DbTable[], globals: readonly DbTable[], tenantNames: ReadonlySet<string>, tc: string, notes: { table: string; note: string }[] | undefined): DeclTable[] {
  const declared = new Set([...tenant, ...globals].map((t) => t.name));
  const column = (c: DbColumn) => ({
    type: c.type,
    ...(c.notNull ? {} : { nullable: true }),
    ...(c.default !== undefined ? { default: c.default } : {}),
  });
  return [...globals, ...tenant].map((t) => {
    const isTenant = tenantNames.has(t.name);
    const pk = (pkOf(t) as DbConstraint).columns;
    const foreignKeys: DeclFk[] = [];
    for (const fk of t.constraints.filter((c) => c.kind === 'f')) {
      const target = fk.refTable as string;
      if (!declared.has(target) || (!isTenant && tenantNames.has(target))) continue;
      const targetPk = pkOf([...tenant, ...globals].find((x) => x.name === target) as DbTable)?.columns ?? [];
      const onDelete = fk.onDelete === 'c' ? 'cascade' : fk.onDelete === 'r' ? 'restrict' : fk.onDelete === 'a' ? undefined : undefined;
      if ((fk.onDelete === 'n' || fk.onDelete === 'd') && notes) notes.push({ table: t.name, note: `${fk.name}: ON DELETE SET ${fk.onDelete === 'n' ? 'NULL' : 'DEFAULT'} (${fk.columns.join(', ')}) is kept in the database; defineSchema cannot declare it` });
      foreignKeys.push({
        columns: [...fk.columns],
        references: target,
        ...(JSON.stringify(fk.refColumns) !== JSON.stringify(targetPk) ? { referencedColumns: [...(fk.refColumns ?? [])] } : {}),
        ...(onDelete ? { onDelete } : {}),
      });
    }
    const indexes: DeclTable['indexes'] = [];
    for (const u of t.constraints.filter((c) => c.kind === 'u')) indexes.push(isTenant ? { columns: [...u.columns], unique: true } : { columns: [...u.columns], unique: true, name: u.name });
    for (const ix of t.indexes) {
      if (!ix.columns || ix.columns[0] === tc) continue;
      indexes.push(isTenant ? { columns: [...ix.columns], ...(ix.unique ? { unique: true } : {}) } : { columns: [...ix.columns], ...(ix.unique ? { unique: true } : {}), name: ix.name });
    }
    return {
      kind: isTenant ? 'tenant' : 'global',
      name: t.name,
      columns: Object.fromEntries(t.columns.map((c) => [c.name, column(c)])),
      primaryKey: [...pk],
      foreignKeys,
      indexes,
    };
  });
}

function declare(tenant: readonly DbTable[], globals: readonly DbTable[], tenantNames: ReadonlySet<string>, tc: string, registry: string, notes: { table: string; note: string }[]) {
  const tables = declTables(tenant, globals, tenantNames, tc, notes).map((d) => {
    const spec = { name: d.name, columns: d.columns, primaryKey: d.primaryKey, foreignKeys: d.foreignKeys, indexes: d.indexes };
    return Object.freeze({ ...spec, kind: d.kind }) as TableDecl;
  });
  return defineSchema({ tables, tenantColumn: tc, registryTable: registry });
}

/** TypeScript source of the `defineSchema` declaration matching the adopted database. */
function renderDeclaration(tenant: readonly DbTable[], globals: readonly DbTable[], tenantNames: ReadonlySet<string>, tc: string, registry: string, from: string): string {
  const lit = (v: unknown) => JSON.stringify(v).replace(/"([a-z_][a-z0-9_]*)":/g, '$1: ');
  const body = declTables(tenant, globals, tenantNames, tc, undefined).map((d) => {
    const lines = [`  ${d.kind === 'tenant' ? 'tenantTable' : 'globalTable'}({`, `    name: ${JSON.stringify(d.name)},`, '    columns: {'];
    for (const [n, c] of Object.entries(d.columns)) lines.push(`      ${n}: ${lit(c)},`);
    lines.push('    },');
    if (JSON.stringify(d.primaryKey) !== '["id"]') lines.push(`    primaryKey: ${lit(d.primaryKey)},`);
    if (d.foreignKeys.length > 0) lines.push(`    foreignKeys: ${lit(d.foreignKeys)},`);
    if (d.indexes.length > 0) lines.push(`    indexes: ${lit(d.indexes)},`);
    lines.push('  }),');
    return lines.join('\n');
  });
  const opts = [tc !== 'tenant_id' ? `  tenantColumn: ${JSON.stringify(tc)},` : '', registry !== 'tenants' ? `  registryTable: ${JSON.stringify(registry)},` : ''].filter((x) => x !== '');
  return `// Written by \`tenantwall adopt\`: the declaration matching the adopted database. Edit it, then run
// \`tenantwall migrate generate\` to write the migration for the change (docs/adopting.md).
import { defineSchema, globalTable, tenantTable } from ${JSON.stringify(from)};

export const schema = defineSchema({
${opts.length > 0 ? `${opts.join('\n')}\n` : ''}  tables: [
${body.join('\n').replace(/^/gm, '  ')}
  ],
});
`;
}
