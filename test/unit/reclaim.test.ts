/**
 * How the reclaim of an absent host's addresses reads the LAN (ipam/reclaim.ts
 * hearAddress), with stand-in probe verdicts (the Docker lane probes a real LAN,
 * contention included): an answer keeps the address, two silent probes free it,
 * and a probe that another device's probe for the same address ended proves
 * nothing.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CONTENDED_PAUSE_MS, hearAddress } from '../../src/lan/hearing';
import type { ProbeVerdict } from '../../src/lan/probe';

const SILENT: ProbeVerdict = { inUse: false };
const ANSWERS: ProbeVerdict = { inUse: true, mac: '02:00:00:00:00:0b', how: 'it answered an ARP probe on eth0' };
const CONTENDED: ProbeVerdict = {
  inUse: true,
  mac: '02:00:00:00:00:0c',
  how: 'it is probing for the same address on eth0',
  contended: true,
};

/** Records the pauses instead of waiting them out. */
function pauses(): { pause: (ms: number) => Promise<void>; taken: number[] } {
  const taken: number[] = [];
  return { pause: (ms) => (taken.push(ms), Promise.resolve()), taken };
}

/** The verdicts in turn (the last one again once they run out), and how many probes were asked. */
function verdicts(...answers: ProbeVerdict[]): { ask: () => Promise<ProbeVerdict>; asked: () => number } {
  let n = 0;
  return {
    ask: () => Promise.resolve(answers[Math.min(n++, answers.length - 1)] ?? SILENT),
    asked: () => n,
  };
}

test('two silent probes: silent; an answer at any probe: answers', async () => {
  const silent = verdicts(SILENT, SILENT);
  assert.equal(await hearAddress(silent.ask), 'silent');
  assert.equal(silent.asked(), 2);
  assert.equal(await hearAddress(verdicts(SILENT, ANSWERS).ask), 'answers');
});

test("another device probing for the same address every time: 'unknown' after three contended probes (nothing is reclaimed), never 'silent'", async () => {
  const contended = verdicts(CONTENDED);
  const { pause, taken } = pauses();
  assert.equal(await hearAddress(contended.ask, pause), 'unknown');
  assert.equal(contended.asked(), 3);
  assert.equal(taken.length, 2, 'a random pause before each probe again');
  for (const ms of taken) assert.ok(ms >= CONTENDED_PAUSE_MS.min && ms <= CONTENDED_PAUSE_MS.max, `${ms} ms`);
});

test('a contended probe does not count: asked again, the holder answers; or two silent probes besides', async () => {
  assert.equal(await hearAddress(verdicts(CONTENDED, ANSWERS).ask, pauses().pause), 'answers');
  const mixed = verdicts(CONTENDED, SILENT, CONTENDED, SILENT);
  assert.equal(await hearAddress(mixed.ask, pauses().pause), 'silent');
  assert.equal(mixed.asked(), 4);
});
