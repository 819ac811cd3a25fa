// The project config the `tenantwall` CLI loads by default: the reference service's schema and migrations.
export { schema, migrations } from './examples/invoicing-service/src/schema.ts';
