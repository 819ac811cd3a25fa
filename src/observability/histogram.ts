import type * as Prom from 'prom-client';

/**
 * One series of a `FastHistogram`: its labels, its bucket counts (not cumulative; the last one is +Inf), sum
 * and count. The caller keeps the series it observes into (one per label combination, looked up once).
 */
export class HistogramSeries {
  readonly key: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  /** False after a reset of the metric until its next observation (prom-client shows no series then). */
  live = true;

  constructor(key: string, labels: Readonly<Record<string, string>>, buckets: number) {
    this.key = key;
    this.labels = labels;
    this.counts = new Float64Array(buckets + 1);
  }
}

/** What `createFastHistogram` returns: the series by caller key, and observe. */
export interface FastHistogram {
  /** The series of `key` (created with `labels` on first use; the caller derives `key` from the labels). */
  series(key: string, labels: Readonly<Record<string, string>>): HistogramSeries;
  /** Adds one observation to a series: a bucket search and three additions, no allocation. */
  observe(series: HistogramSeries, value: number): void;
}

type Value = { labels: Record<string, string | number>; sharedLabels?: Readonly<Record<string, string>>; value: number; metricName: string; exemplar: null | undefined };

/**
 * A Prometheus histogram that is fed without prom-client's per-observation work (a labels object, its
 * validation and the series' hash string on every `observe`): the series are kept here and rendered by the
 * metric's `get` in exactly the shape of prom-client's own histogram (same exposition text). Registered in
 * `registers` like any prom-client metric.
 */
export function createFastHistogram(
  prom: typeof Prom,
  config: { name: string; help: string; labelNames: readonly string[]; buckets: readonly number[]; registers: Prom.Registry[] },
): FastHistogram {
  const bounds = Float64Array.from([...config.buckets].sort((a, b) => a - b));
  // Every series ever made (callers keep them), and the ones shown: a reset empties the shown ones in place.
  const known = new Map<string, HistogramSeries>();
  const all = new Map<string, HistogramSeries>();
  const name = config.name;
  // The values of prom-client's histogram: cumulative buckets, +Inf, sum, count per series; for the text
  // exposition the series' labels are shared labels (rendered after `le`), for `get()` they are merged in.
  const render = (splay: boolean) => {
    const values: Value[] = [];
    const value = (labels: Record<string, string | number>, s: HistogramSeries, v: number, suffix: string, exemplar: null | undefined): Value =>
      splay ? { labels: { ...labels, ...s.labels }, value: v, metricName: name + suffix, exemplar } : { labels, sharedLabels: s.labels, value: v, metricName: name + suffix, exemplar };
    for (const s of all.values()) {
      let acc = 0;
      for (let i = 0; i < bounds.length; i++) {
        acc += s.counts[i] as number;
        values.push(value({ le: bounds[i] as number }, s, acc, '_bucket', null));
      }
      values.push(value({ le: '+Inf' }, s, s.count, '_bucket', null), value({}, s, s.sum, '_sum', undefined), value({}, s, s.count, '_count', undefined));
    }
    return { name, help: config.help, type: 'histogram' as const, values, aggregator: 'sum' as const };
  };
  // A prom-client Histogram (type, registration, name checks) whose values come from the series kept here.
  class Rendered extends prom.Histogram<string> {
    override async get() {
      return render(true) as unknown as Awaited<ReturnType<Prom.Histogram<string>['get']>>;
    }
    async getForPromString() {
      return render(false);
    }
    override reset(): void {
      for (const s of all.values()) {
        s.counts.fill(0);
        s.sum = 0;
        s.count = 0;
        s.live = false;
      }
      all.clear();
    }
  }
  new Rendered({ name, help: config.help, labelNames: [...config.labelNames], buckets: [...bounds], registers: config.registers });
  const hist: FastHistogram = {
    series(key, labels) {
      let s = known.get(key);
      if (s === undefined) {
        s = new HistogramSeries(key, labels, bounds.length);
        known.set(key, s);
        all.set(key, s);
      }
      return s;
    },
    observe(s, value) {
      if (!Number.isFinite(value)) return;
      if (!s.live) {
        s.live = true;
        all.set(s.key, s);
      }
      let i = 0;
      while (i < bounds.length && value > (bounds[i] as number)) i++;
      (s.counts as Float64Array)[i] = (s.counts[i] as number) + 1;
      s.sum += value;
      s.count++;
    },
  };
  // prom-client shows an unlabelled histogram's series (zeros) before its first observation: so does this one.
  if (config.labelNames.length === 0) hist.series('', {});
  return hist;
}
