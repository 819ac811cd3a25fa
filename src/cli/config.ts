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

export const DEFAULT_CONFIG = 'tenantwall.config.ts';

/** Loads the project config module (`--config`, default ./tenantwall.config.ts). */
export async function loadProjectConfig(file: string | undefined): Promise<ProjectConfig> {
  const resolved = path.resolve(file ?? DEFAULT_CONFIG);
  if (!fs.existsSync(resolved)) {
    throw new TenantwallError('config_invalid', `Config module ${resolved} not found; pass --config <file> exporting schema and migrations.`);
  }
  const mod = (await import(pathToFileURL(resolved).href)) as Partial<ProjectConfig> & { default?: Partial<ProjectConfig> };
  const cfg = mod.schema ? mod : (mod.default ?? {});
  if (!cfg.schema || !Array.isArray(cfg.migrations)) {
    throw new TenantwallError('config_invalid', `Config module ${resolved} must export \`schema\` and \`migrations\`.`);
  }
  return cfg as ProjectConfig;
}
