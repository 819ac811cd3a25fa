// Project config for the CLI tests: the metering fixture's schema, migrations and metering declaration.
export { schema, migrations, spec as metering } from './fixture.ts';
export { LOOPBACK_RECEIVERS as webhooks } from './fixture.ts';
