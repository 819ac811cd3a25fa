// Project config for the CLI tests: `tenantwall tenants ... --config test/lifecycle/config.ts`.
export { lifecycleSchema as schema, lifecycleMigrations as migrations } from './fixture.ts';
