/**
 * The bench's eyes inside the daemon, loaded with `node --require` (through
 * NODE_OPTIONS) only when the scale bench starts it; the product never loads
 * it. It watches what can hold a request back inside the process: the event
 * loop's delay (perf_hooks.monitorEventLoopDelay at 1 ms resolution, finer
 * than prom-client's 10 ms) and V8's GC pauses (PerformanceObserver 'gc'),
 * and answers GET / on the unix socket named by LANPLUG_BENCH_PROBE with what
 * it saw since the last GET (then starts over). The histogram records the time
 * between two ticks, 1 ms apart when nothing holds the loop: the delay is what
 * is beyond that.
 *
 * `node --require loop-probe.js loop-probe.js` with nothing else to do is the
 * machine's floor: what an idle process on this machine sees at the same time.
 */
import { createServer } from 'node:http';
import { rmSync } from 'node:fs';
import { monitorEventLoopDelay, PerformanceObserver } from 'node:perf_hooks';

/** What the probe saw over one window, in ms. */
export interface ProbeWindow {
  loopDelay: { p50: number; p99: number; max: number; samples: number };
  gc: { count: number; totalMs: number; maxMs: number; over1ms: number };
}

const RESOLUTION_MS = 1;

function start(socketPath: string): void {
  const loop = monitorEventLoopDelay({ resolution: RESOLUTION_MS });
  loop.enable();
  let gcCount = 0;
  let gcTotal = 0;
  let gcMax = 0;
  let gcOver1 = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gcCount++;
      gcTotal += entry.duration;
      gcMax = Math.max(gcMax, entry.duration);
      if (entry.duration > 1) gcOver1++;
    }
  }).observe({ entryTypes: ['gc'] });
  const server = createServer((_req, res) => {
    const ms = (ns: number): number => Math.max(0, ns / 1e6 - RESOLUTION_MS);
    const window: ProbeWindow = {
      loopDelay: {
        p50: ms(loop.percentile(50)),
        p99: ms(loop.percentile(99)),
        max: ms(loop.max),
        samples: loop.count,
      },
      gc: { count: gcCount, totalMs: gcTotal, maxMs: gcMax, over1ms: gcOver1 },
    };
    loop.reset();
    gcCount = gcTotal = gcMax = gcOver1 = 0;
    res.end(JSON.stringify(window));
  });
  rmSync(socketPath, { force: true });
  server.listen(socketPath);
  // Never what keeps the daemon alive at stop.
  server.unref();
}

const socketPath = process.env['LANPLUG_BENCH_PROBE'];
if (socketPath !== undefined && socketPath !== '') start(socketPath);
// Run as the main module (the floor): stay alive, doing nothing, until killed.
if (require.main === module) setInterval(() => undefined, 1 << 30);
