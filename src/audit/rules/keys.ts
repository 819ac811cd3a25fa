import { quoteIdent, quoteLiteral } from '../../schema/ddl.ts';
import { confirmNone, confirmRel, confirmSome } from '../confirm.ts';
import { groupBy, qi, qn } from '../tenant-set.ts';
import { type RuleFamily, rule } from './define.ts';

export const keyRules: RuleFamily = {
  name: 'keys and indexes',
  rules: [
    rule('tenant-column-nullable', 'error', 'isolation', 'Tenant column is nullable', 'A row without tenant belongs to nobody and compares NULL with every tenant; it cannot be isolated or deleted with its tenant.'),
    rule('pk-not-tenant-led', 'error', 'isolation', 'Primary key not led by the tenant column', "Uniqueness is checked across all tenants and ignores RLS: inserting another tenant's key fails and reveals that it exists. Composite keys (tenant_id, id) also enable composite foreign keys."),
    rule('unique-not-tenant-led', 'error', 'isolation', 'Unique constraint not led by the tenant column', "Unique checks ignore RLS: a duplicate-key error reveals another tenant's value (e-mail, invoice number...)."),
    rule('unique-index-not-tenant-led', 'error', 'isolation', 'Unique index not led by the tenant column', "Unique checks ignore RLS: a duplicate-key error reveals another tenant's value."),
    rule('fk-without-tenant', 'error', 'isolation', 'Foreign key between tenant tables without the tenant column', "Referential checks ignore RLS: a row can point at another tenant's row, and the error/success is an existence oracle."),
    rule('no-tenant-index', 'warn', 'performance', 'No index led by the tenant column', 'Every query filters on the tenant; without an index led by it each one scans the table, and slow isolation gets switched off.'),
    rule('sequence-shared', 'warn', 'isolation', 'Sequence shared by all tenants', "Ids drawn from one sequence for all tenants are guessable and reveal other tenants' activity (how many invoices were created since)."),
  ],
  // Partitions clone their parent's keys and indexes, so only tables are checked.
  evaluate({ cat, ts, col, qcol, push }) {
    const consByRel = groupBy(cat.constraints, (c) => c.rel);
    const idxByRel = groupBy(cat.indexes, (i) => i.rel);
    const lead = (def: string) => def.replace(/\(([^()]*)\)/, (_m, inner: string) => `(${qcol}, ${inner})`);
    for (const r of ts.tables) {
      const name = qn(r);
      const ta = r.tenantAttnum;
      if (!r.tenantNotNull) push('tenant-column-nullable', 'table', name, `${name}.${col} allows NULL.`, `ALTER TABLE ${qi(r)} ALTER COLUMN ${qcol} SET NOT NULL;`, {
        confirm: confirmRel(r, `(SELECT a.attnotnull FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = ${quoteLiteral(col)})`),
        details: { table: name, column: col },
      });
      for (const c of consByRel.get(r.oid) ?? []) {
        const cname = `${name}.${c.name}`;
        // Fixed when the constraint is gone or now starts with (contains, for foreign keys) the tenant column.
        const consFixed = (cond: string) =>
          confirmNone(`SELECT 1 FROM pg_constraint k WHERE k.conrelid = to_regclass(${quoteLiteral(qi(r))}) AND k.conname = ${quoteLiteral(c.name)} AND NOT (${cond})`);
        const tenantAttnum = `(SELECT a.attnum FROM pg_attribute a WHERE a.attrelid = k.conrelid AND a.attname = ${quoteLiteral(col)})`;
        if ((c.type === 'p' || c.type === 'u') && c.keys[0] !== ta) {
          push(c.type === 'p' ? 'pk-not-tenant-led' : 'unique-not-tenant-led', 'constraint', cname, `${c.type === 'p' ? 'Primary key' : 'Unique constraint'} ${c.name} on ${name} is ${c.definition}, not led by ${col}.`, `ALTER TABLE ${qi(r)} DROP CONSTRAINT ${quoteIdent(c.name)}, ADD CONSTRAINT ${quoteIdent(c.name)} ${lead(c.definition)};`, {
            confirm: consFixed(`k.conkey[1] = ${tenantAttnum}`),
            details: { table: name, constraint: c.name, definition: c.definition },
          });
        }
        if (c.type === 'f') {
          const target = ts.all.get(c.refRel);
          if (!target) continue;
          const pos = ta === null ? -1 : c.keys.indexOf(ta);
          if (pos < 0 || c.refKeys[pos] !== target.tenantAttnum) {
            const def = c.definition.replace(/FOREIGN KEY \(([^)]*)\) REFERENCES ([^(]+)\(([^)]*)\)/, `FOREIGN KEY (${qcol}, $1) REFERENCES $2(${qcol}, $3)`);
            push('fk-without-tenant', 'constraint', cname, `Foreign key ${c.name} on ${name} (${c.definition}) does not carry ${col}.`, `ALTER TABLE ${qi(r)} DROP CONSTRAINT ${quoteIdent(c.name)}, ADD CONSTRAINT ${quoteIdent(c.name)} ${def}; -- needs UNIQUE (${col}, ...) on ${qn(target)}`, {
              confirm: consFixed(`${tenantAttnum} = ANY (k.conkey)`),
              details: { table: name, constraint: c.name, definition: c.definition, references: qn(target) },
            });
          }
        }
      }
      const idx = idxByRel.get(r.oid) ?? [];
      for (const i of idx) {
        if (i.unique && !i.backsConstraint && i.keys[0] !== ta) {
          push('unique-index-not-tenant-led', 'index', `${r.schema}.${i.name}`, `Unique index ${i.name} on ${name} is not led by ${col}: ${i.definition}.`, `DROP INDEX ${quoteIdent(r.schema)}.${quoteIdent(i.name)};\n${i.definition.replace(/ USING (\w+) \(/, ` USING $1 (${qcol}, `)};`, {
            confirm: confirmNone(`SELECT 1 FROM pg_index i WHERE i.indexrelid = to_regclass(${quoteLiteral(`${quoteIdent(r.schema)}.${quoteIdent(i.name)}`)}) AND i.indkey[0] <> ${ta ?? 0}`),
            details: { table: name, index: i.name, definition: i.definition },
          });
        }
      }
      if (!idx.some((i) => i.keys[0] === ta)) push('no-tenant-index', 'table', name, `No index of ${name} starts with ${col}.`, `CREATE INDEX ON ${qi(r)} (${qcol});`, {
        confirm: confirmSome(`SELECT 1 FROM pg_index i WHERE i.indrelid = to_regclass(${quoteLiteral(qi(r))}) AND i.indkey[0] = ${ta ?? 0}`),
        details: { table: name, column: col },
      });
    }
    for (const s of cat.sequenceColumns) {
      const r = ts.all.get(s.rel);
      if (!r) continue;
      push('sequence-shared', 'sequence', `${qn(r)}.${s.column}`, `${qn(r)}.${s.column} takes its values from ${s.kind === 'identity' ? 'an identity sequence' : `sequence ${s.sequence ?? '?'}`} shared by all tenants.`, `-- use uuid keys: ALTER TABLE ${qi(r)} ALTER COLUMN ${quoteIdent(s.column)} ${s.kind === 'identity' ? 'DROP IDENTITY' : 'DROP DEFAULT'}, ALTER COLUMN ${quoteIdent(s.column)} TYPE uuid ... DEFAULT gen_random_uuid(); or add an exception if the ids are never shown`, {
        confirm: confirmRel(r, `NOT EXISTS (SELECT 1 FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum WHERE a.attrelid = c.oid AND a.attname = ${quoteLiteral(s.column)} AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE 'nextval(%'))`),
        details: { table: qn(r), column: s.column, kind: s.kind, sequence: s.sequence },
      });
    }
  },
};
