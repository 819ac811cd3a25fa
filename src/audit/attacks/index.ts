import type { AttackFamily } from './context.ts';
import { exposureAttacks } from './exposure.ts';
import { functionAttacks } from './functions.ts';
import { probeAttacks } from './probes.ts';
import { roleAttacks } from './roles.ts';
import { settingAttacks } from './setting.ts';
import { privilegeAttacks, rowAttacks } from './tables.ts';
import { viewAttacks } from './views.ts';

/**
 * Every family of verify attacks, in the order they run (a family may rely on what an earlier one found, e.g.
 * `readLeak`). A new family is one module exporting an `AttackFamily` and one line here.
 */
export const ATTACK_FAMILIES: readonly AttackFamily[] = Object.freeze([
  rowAttacks,
  privilegeAttacks,
  settingAttacks,
  probeAttacks,
  roleAttacks,
  viewAttacks,
  functionAttacks,
  exposureAttacks,
]);
