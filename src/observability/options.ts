import { bool, defineOptions, int, resolveTable, str } from '../config/resolve.ts';

/**
 * Options of the observability part (metrics, traces, noisy neighbours). Resolved once by
 * `resolveObservabilityOptions`: explicit value > environment variable > default; validated and frozen.
 * docs/observability.md documents each field.
 */
export interface ObservabilityOptions {
  /** Tenants that keep their own metric label (the most active); the rest share `other`. Env `TENANTWALL_METRICS_TENANT_LABELS`. Default 20. */
  tenantLabels?: number | undefined;
  /** Window of the activity ranking (`top`, label choice), ms. Env `TENANTWALL_ACTIVITY_WINDOW_MS`. Default 60000. */
  activityWindowMs?: number | undefined;
  /** Tenants tracked per activity bucket before the rest are counted as `other`. Env `TENANTWALL_ACTIVITY_MAX_TENANTS`. Default 100000. */
  activityMaxTenants?: number | undefined;
  /** A tenant with at least this share (percent) of a resource is flagged as noisy. Env `TENANTWALL_NOISY_SHARE_PERCENT`. Default 30. */
  noisySharePercent?: number | undefined;
  /** Prefix of every metric name. Env `TENANTWALL_METRICS_PREFIX`. Default `tenantwall_`. */
  metricsPrefix?: string | undefined;
  /** Default process metrics of prom-client (CPU, memory, event loop). Env `TENANTWALL_METRICS_PROCESS`. Default `true`. */
  processMetrics?: boolean | undefined;
}

/** `ObservabilityOptions` after resolution. */
export type ResolvedObservabilityOptions = Readonly<{
  tenantLabels: number;
  activityWindowMs: number;
  activityMaxTenants: number;
  noisySharePercent: number;
  metricsPrefix: string;
  processMetrics: boolean;
}>;

const PREFIX_RE = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;

/** The observability options; docs/observability.md documents each. */
export const OBSERVABILITY_OPTIONS = defineOptions('Observability', {
  tenantLabels: { env: 'TENANTWALL_METRICS_TENANT_LABELS', default: 20, type: int(0, 10_000), doc: 'Tenants that keep their own metric label.' },
  activityWindowMs: { env: 'TENANTWALL_ACTIVITY_WINDOW_MS', default: 60_000, type: int(1_000, 86_400_000), doc: 'Window of the activity ranking, ms.' },
  activityMaxTenants: { env: 'TENANTWALL_ACTIVITY_MAX_TENANTS', default: 100_000, type: int(1, 10_000_000), doc: 'Tenants tracked per activity bucket.' },
  noisySharePercent: { env: 'TENANTWALL_NOISY_SHARE_PERCENT', default: 30, type: int(1, 100), doc: 'Share of a resource that flags a tenant as noisy.' },
  metricsPrefix: { env: 'TENANTWALL_METRICS_PREFIX', default: 'tenantwall_', type: str((v) => (PREFIX_RE.test(v) ? undefined : 'must be a Prometheus metric name prefix')), doc: 'Prefix of every metric name.' },
  processMetrics: { env: 'TENANTWALL_METRICS_PROCESS', default: true, type: bool, doc: 'Default process metrics of prom-client.' },
});

/** Resolves the observability options: explicit option, then environment variable, then default. */
export function resolveObservabilityOptions(input: ObservabilityOptions = {}, env: NodeJS.ProcessEnv = process.env): ResolvedObservabilityOptions {
  return resolveTable(OBSERVABILITY_OPTIONS, input, env);
}
