/**
 * The LAN watch on many parents, on the real kernel in a throw-away
 * namespace: with 16 parents watched, nothing else waits behind its receive
 * loops — a conflict probe still hears the device that holds its address
 * within its window, a free one ends on time, a DHCP answer is read at once,
 * a socket closes at once, a call on libuv's thread pool (fs, dns, crypto) is
 * not queued, and a burst of frames arrives whole and in order.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { measureReceiveLoad } from '../support/receive-load';

const PARENTS = 16;
const SAMPLES = 5;
const BURST = 100;
/**
 * Bounds with room for a busy 2-core machine (seen failing at a load average of 11 with the tighter
 * ones): each still sits far below what waiting for the pool cost before (in brackets).
 * The probe's window (QUICK: 200 ms) and what closing its socket may add [635-748 ms].
 */
const PROBE_BOUND_MS = 200 + 250;
/**
 * Under qemu's software emulation (the full-kernel lane sets LANPLUG_EMULATED) every step is several
 * times slower, and this file uses nothing this machine's kernel lacks (veth and packet sockets): its
 * bounds say something only here, so the full-kernel lane leaves it out (46 s there).
 */
const EMULATED = process.env['LANPLUG_EMULATED'] === '1';
/** A receive or a thread-pool call that waits on nothing takes under a millisecond [296-324 ms]. */
const PROMPT_MEDIAN_MS = 50;
const PROMPT_WORST_MS = 250;
/** Closing a packet socket waits for the kernel's RCU grace period (10-20 ms), and for nothing else [307-744 ms]. */
const CLOSE_MEDIAN_MS = 100;
const CLOSE_WORST_MS = 300;

const max = (samples: number[]): number => Math.max(...samples);
const median = (samples: number[]): number => [...samples].sort((a, b) => a - b)[Math.floor(samples.length / 2)] ?? NaN;

test(
  `with ${PARENTS} parents watched, probes hear the LAN in their window and nothing waits for a thread`,
  EMULATED ? { skip: 'timing bounds under emulation: proven on the machine kernel' } : {},
  () => {
    const figures = measureReceiveLoad(PARENTS, SAMPLES, BURST);
    const shown = JSON.stringify(figures);
    assert.equal(figures.probeInUseSeen, SAMPLES, `every probe of the address v0 holds says "in use": ${shown}`);
    assert.ok(max(figures.probeInUse) < PROBE_BOUND_MS, `the in-use probes end within their window: ${shown}`);
    assert.ok(max(figures.probeFree) < PROBE_BOUND_MS, `the free probes end with their window: ${shown}`);
    for (const [what, samples, medianBound, worstBound] of [
      ['a DHCP answer is read at once', figures.dhcpReceive, PROMPT_MEDIAN_MS, PROMPT_WORST_MS],
      ['fs.promises.stat is not queued behind receives', figures.fsStat, PROMPT_MEDIAN_MS, PROMPT_WORST_MS],
      ['a socket closes at once', figures.close, CLOSE_MEDIAN_MS, CLOSE_WORST_MS],
    ] as const) {
      assert.ok(median(samples) < medianBound && max(samples) < worstBound, `${what}: ${shown}`);
    }
    assert.equal(
      figures.probeInUseWhilePoolBusy,
      true,
      "a probe whose answer waits in its socket while libuv's pool is busy still hears it",
    );
    assert.deepEqual(
      figures.burst,
      Array.from({ length: BURST }, (_, n) => n),
      'every frame of the burst, in the order sent',
    );
  },
);
