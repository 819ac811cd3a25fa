import { configurationRules } from './configuration.ts';
import type { RuleFamily } from './define.ts';
import { exposureRules } from './exposure.ts';
import { functionRules } from './functions.ts';
import { grantRules } from './grants.ts';
import { keyRules } from './keys.ts';
import { objectRules } from './objects.ts';
import { policyRules } from './policies.ts';
import { roleRules } from './role.ts';
import { rowSecurityRules } from './row-security.ts';
import { settingRules } from './settings.ts';
import { usageRules } from './usage.ts';

/**
 * Every family of catalog rules, in report order. A new family (e.g. Citus-specific rules) is one module
 * exporting a `RuleFamily` and one line here; docs/audit.md documents its rules (test/audit/docs.test.ts).
 */
export const RULE_FAMILIES: readonly RuleFamily[] = Object.freeze([
  configurationRules,
  rowSecurityRules,
  policyRules,
  roleRules,
  grantRules,
  objectRules,
  functionRules,
  keyRules,
  settingRules,
  exposureRules,
  usageRules,
]);
