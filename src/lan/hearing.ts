/**
 * Whether anything on the LAN uses an address now, for the reclaim of an
 * absent host's addresses (ipam/reclaim.ts): asked afresh, whatever is
 * remembered, and never taken from a probe another device's probe ended.
 */
import { randomInt } from 'node:crypto';
import type { LanHearing } from '../ipam/reclaim';
import type { ProbeVerdict } from './probe';

/** Contended probes (see hearAddress) before the answer is 'unknown'. */
export const CONTENDED_TRIES = 3;
/** A contended probe is asked again after U(min, max) ms, so that two probers fall out of step. */
export const CONTENDED_PAUSE_MS = { min: 250, max: 750 } as const;

/**
 * What the LAN says about an address now: two silent probes (`ask` probes once, whatever is
 * remembered) make it silent, an answer at any probe keeps it. A probe that ended because another
 * device probed for the same address ("contended") proves nothing either way: the holder's answer
 * may not have come yet, and counted as silent it freed live addresses when two hosts probed at
 * once. It is asked again after a random pause; after CONTENDED_TRIES contended probes the answer
 * is 'unknown', and nothing is reclaimed this time.
 */
export async function hearAddress(
  ask: () => Promise<ProbeVerdict>,
  pause: (ms: number) => Promise<void> = sleep,
): Promise<LanHearing> {
  let silent = 0;
  let contended = 0;
  while (silent < 2) {
    const verdict = await ask();
    if (!verdict.inUse) silent++;
    else if (verdict.contended !== true) return 'answers';
    else if (++contended >= CONTENDED_TRIES) return 'unknown';
    else await pause(randomInt(CONTENDED_PAUSE_MS.min, CONTENDED_PAUSE_MS.max + 1));
  }
  return 'silent';
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
