import fs from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { TenantwallError } from '../errors.ts';
import type { TenantwallOptions } from '../config/options.ts';
import type { Schema } from '../schema/declare.ts';
import type { Migration } from '../schema/migrations.ts';

/** What a project's tenantwall.config.ts exports. */
export interface ProjectConfig {
  schema: Schema;
  migrations: readonly Migration[];
  options?: TenantwallOptions;
}

/** Looked for in this order when no --config is given. */
export const DEFAULT_CONFIGS = ['tenantwall.config.ts', 'tenantwall.config.mts', 'tenantwall.config.js', 'tenantwall.config.mjs'];

/**
 * Imports a config module. Plain Node imports .js/.mjs; a TypeScript config is loaded through tsx when Node
 * cannot strip types itself (tsx is then needed in the project: `npm i -D tsx`).
 */
async function importConfig(file: string): Promise<unknown> {
  const url = pathToFileURL(file).href;
  try {
    return await import(url);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_UNKNOWN_FILE_EXTENSION') throw err;
  }
  let register: (() => unknown) | undefined;
  try {
    ({ register } = (await import('tsx/esm/api')) as { register: () => unknown });
  } catch (cause) {
    throw new TenantwallError('config_invalid', `Config module ${file} is TypeScript and this Node.js cannot load it: install tsx (npm i -D tsx) or write the config as .js/.mjs.`, { cause });
  }
  register();
  return import(url);
}

/** Loads the project config module (`--config`, default ./tenantwall.config.{ts,mts,js,mjs}). */
export async function loadProjectConfig(file: string | undefined): Promise<ProjectConfig> {
  const resolved = file !== undefined ? path.resolve(file) : (DEFAULT_CONFIGS.map((f) => path.resolve(f)).find((f) => fs.existsSync(f)) ?? path.resolve(DEFAULT_CONFIGS[0] as string));
  if (!fs.existsSync(resolved)) {
    throw new TenantwallError('config_invalid', `Config module ${resolved} not found; pass --config <file> exporting schema and migrations.`);
  }
  const mod = (await importConfig(resolved)) as Partial<ProjectConfig> & { default?: Partial<ProjectConfig> };
  const cfg = mod.schema ? mod : (mod.default ?? {});
  if (!cfg.schema || !Array.isArray(cfg.migrations)) {
    throw new TenantwallError('config_invalid', `Config module ${resolved} must export \`schema\` and \`migrations\`.`);
  }
  return cfg as ProjectConfig;
}
