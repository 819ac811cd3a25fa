/**
 * The HTTP load generator of the benchmarks, in its own process (bench/load.ts forks it): a client sharing the
 * server's event loop would take CPU from the server it measures. Each message is one autocannon run.
 */
import autocannon from 'autocannon';
import { type LoadRequest, type LoadResult, cpuUs } from './load.ts';

process.on('message', (msg: LoadRequest) => {
  let n = 0;
  const cpu0 = process.cpuUsage();
  autocannon(
    {
      url: msg.url,
      connections: msg.connections,
      duration: msg.durationS,
      headers: msg.headers,
      requests: [
        {
          method: 'GET',
          setupRequest: (req) => {
            const i = n++ % msg.paths.length;
            const extra = msg.pathHeaders?.[i];
            return { ...req, path: msg.paths[i] as string, ...(extra ? { headers: { ...req.headers, ...extra } } : {}) };
          },
        },
      ],
    },
    (err, r) => {
      if (err) {
        process.send?.({ error: String(err) } satisfies LoadResult);
        return;
      }
      // Counts per status code (autocannon keeps them but does not type them); only the non-2xx ones are reported.
      const byStatus = (r as unknown as { statusCodeStats: Record<string, { count: number }> }).statusCodeStats;
      const statuses = Object.fromEntries(Object.entries(byStatus).filter(([code]) => !code.startsWith('2')).map(([code, v]) => [code, v.count]));
      const reply: LoadResult = {
        rps: r.requests.average,
        p50: r.latency.p50,
        p99: r.latency.p99,
        failures: r.errors + r.non2xx + r.timeouts,
        statuses,
        requests: r.requests.total,
        cpuUs: cpuUs(process.cpuUsage(cpu0)),
      };
      process.send?.(reply);
    },
  );
});

// Messages sent before a listener exists are lost: tell the parent when it may send.
process.send?.('ready');
