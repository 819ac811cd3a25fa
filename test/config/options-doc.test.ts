/**
 * Every option of every component's option table (src/config/resolve.ts) is documented: a row
 * `| \`name\` | <environment variable> | <default> | ... |` in the component's doc page, naming the same
 * environment variable and the same default. Adding an option without docs, or changing a default or a variable
 * name in one place only, fails here.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { CORE_OPTIONS } from '../../src/config/options.ts';
import { type OptionTable, componentOf } from '../../src/config/resolve.ts';
import { FASTIFY_OPTIONS } from '../../src/fastify/options.ts';
import { OBSERVABILITY_OPTIONS } from '../../src/observability/options.ts';

const ROOT = path.resolve(import.meta.dirname, '../..');
const TABLES: Array<{ table: OptionTable; doc: string }> = [
  { table: CORE_OPTIONS, doc: 'docs/configuration.md' },
  { table: FASTIFY_OPTIONS, doc: 'docs/fastify.md' },
  { table: OBSERVABILITY_OPTIONS, doc: 'docs/observability.md' },
];

for (const { table, doc } of TABLES) {
  test(`${componentOf(table)} options are documented in ${doc} with their environment variable and default`, () => {
    const text = fs.readFileSync(path.join(ROOT, doc), 'utf8');
    const problems: string[] = [];
    for (const [name, spec] of Object.entries(table)) {
      const row = new RegExp(`^\\| \`${name}\` \\| ([^|]*) \\| ([^|]*) \\|`, 'm').exec(text);
      if (!row) {
        problems.push(`${name}: no row`);
        continue;
      }
      const [, envCell = '', defaultCell = ''] = row;
      if (spec.env !== undefined ? !envCell.includes(`\`${spec.env}\``) : envCell.trim() !== '-') problems.push(`${name}: environment variable ${spec.env ?? '-'} not in "${envCell.trim()}"`);
      const d = spec.default;
      if (d !== undefined && typeof d !== 'function' && !defaultCell.includes(`\`${String(d)}\``)) problems.push(`${name}: default ${String(d)} not in "${defaultCell.trim()}"`);
    }
    assert.deepEqual(problems, []);
  });
}
