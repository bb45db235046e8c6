/**
 * The lease's state machine (dhcp/lease-state.ts): where the clock and the
 * servers' answers move a lease, what each state asks the server, when a
 * failed step is tried again; the state as the store keeps it and as
 * `lanplug status` shows it. The Docker lane runs the same machine against
 * dnsmasq (test/e2e/dhcp.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeLease } from '../../src/cli/status';
import {
  afterAnswer,
  clockState,
  dueState,
  exchangeFor,
  RETRY_MIN_MS,
  retryAt,
  stateAt,
} from '../../src/dhcp/lease-state';
import { INFINITE_SECONDS, type Lease, type LeaseRecord, type LeaseState } from '../../src/model/lease';
import { parseAddress, parsePrefix } from '../../src/net/address';
import { decodeLease, encodeLease } from '../../src/state/records';

const BOUND_AT = 1_700_000_000_000;
const S = 1000;

/** A lease of 1000 s with T1 at 500 s and T2 at 875 s (RFC 2131's 50 % and 87.5 %). */
function lease(state: LeaseState = 'bound', leaseSeconds = 1000): Lease {
  return {
    family: 4,
    address: parsePrefix('172.16.86.50/24'),
    router: parseAddress('172.16.86.1'),
    dns: [],
    serverId: parseAddress('172.16.86.1'),
    serverMac: '02:00:00:00:00:01',
    serverDuid: null,
    leaseSeconds,
    renewSeconds: leaseSeconds === INFINITE_SECONDS ? INFINITE_SECONDS : 500,
    rebindSeconds: leaseSeconds === INFINITE_SECONDS ? INFINITE_SECONDS : 875,
    boundAt: BOUND_AT,
    state,
  };
}

function record(held: Lease): LeaseRecord {
  return {
    networkId: 'n'.repeat(64),
    endpointId: 'e'.repeat(64),
    identity: {
      mac: '02:00:00:00:00:09',
      clientId: '0102000000000009',
      duid: '00030001020000000009',
      iaid: 1,
      stable: true,
      hostname: null,
      broadcast: false,
    },
    leases: [held],
    dockerAddresses: [held.address.address],
    sandboxKey: null,
    renewedAt: null,
    failures: 0,
    lastError: null,
  };
}

test('the clock moves a bound lease to renewing at T1, rebinding at T2, expired at its end; an infinite lease stays bound', () => {
  const at = (seconds: number): number => BOUND_AT + seconds * S;
  assert.deepEqual(
    [0, 499, 500, 874, 875, 999, 1000, 5000].map((s) => clockState(lease(), at(s))),
    ['bound', 'bound', 'renewing', 'renewing', 'rebinding', 'rebinding', 'expired', 'expired'],
  );
  assert.equal(stateAt(lease('bound', INFINITE_SECONDS), at(10 ** 9)), 'bound');
});

test('a recorded state moves forward with the clock, never back; a refused lease stays refused until a new lease replaces it', () => {
  const at = (seconds: number): number => BOUND_AT + seconds * S;
  assert.equal(stateAt(lease('renewing'), at(900)), 'rebinding', 'a renewing lease past T2 is rebinding');
  assert.equal(stateAt(lease('rebinding'), at(600)), 'rebinding', 'the clock never moves a lease back');
  assert.equal(stateAt(lease('expired'), at(10)), 'expired');
  for (const seconds of [10, 600, 900, 5000]) assert.equal(stateAt(lease('refused'), at(seconds)), 'refused');
});

test('a timer that fires finds a bound lease renewing (its timer is T1), and every other as the clock says', () => {
  assert.equal(dueState(lease(), BOUND_AT + 500 * S - 1), 'renewing', 'a timer a hair early');
  assert.equal(dueState(lease(), BOUND_AT + 900 * S), 'rebinding', 'a daemon that slept past T2');
  assert.equal(dueState(lease('renewing'), BOUND_AT + 2000 * S), 'expired');
  assert.equal(dueState(lease('refused'), BOUND_AT + 600 * S), 'refused');
});

test('each state asks as RFC 2131 says: renew with the server, rebind with any, ask anew (for the same address only when it merely expired)', () => {
  assert.deepEqual(exchangeFor('renewing'), { kind: 'renew' });
  assert.deepEqual(exchangeFor('rebinding'), { kind: 'rebind' });
  assert.deepEqual(exchangeFor('expired'), { kind: 'ask-anew', sameAddress: true });
  assert.deepEqual(exchangeFor('refused'), { kind: 'ask-anew', sameAddress: false });
});

test('an ACK binds a lease from any state, a refusal makes it refused, no answer leaves it where it was', () => {
  const states: LeaseState[] = ['renewing', 'rebinding', 'expired', 'refused'];
  assert.deepEqual(
    states.map((s) => afterAnswer(s, 'ack')),
    ['bound', 'bound', 'bound', 'bound'],
  );
  assert.deepEqual(
    states.map((s) => afterAnswer(s, 'refusal')),
    ['refused', 'refused', 'refused', 'refused'],
  );
  assert.deepEqual(
    states.map((s) => afterAnswer(s, 'none')),
    states,
  );
});

test('a failed step is tried again at half the time left until T2 (or, from T2 on, until the end), never sooner than a minute', () => {
  const at = (seconds: number): number => BOUND_AT + seconds * S;
  assert.equal(retryAt(lease(), at(500), at(501)), at(501) + ((875 - 501) / 2) * S, 'renewing: towards T2');
  assert.equal(retryAt(lease(), at(800), at(801)), at(801) + RETRY_MIN_MS, 'close to T2: a minute');
  assert.equal(retryAt(lease(), at(900), at(901)), at(901) + RETRY_MIN_MS, 'rebinding with 99 s left: a minute');
  const long = { ...lease(), leaseSeconds: 10_000, rebindSeconds: 8750, renewSeconds: 5000 };
  assert.equal(retryAt(long, at(8750), at(8751)), at(8751) + ((10_000 - 8751) / 2) * S, 'rebinding: towards the end');
  assert.equal(retryAt(lease(), at(2000), at(2001)), at(2001) + RETRY_MIN_MS, 'expired: a minute');
});

test('the store keeps each lease’s state; a row from before states were kept reads as bound (the clock moves it on); an unknown state is an error', () => {
  const held = record(lease('rebinding'));
  assert.equal(decodeLease(encodeLease(held)).leases[0]?.state, 'rebinding');
  const older = JSON.parse(encodeLease(held)) as { leases: Record<string, unknown>[] };
  delete older.leases[0]?.['state'];
  assert.equal(decodeLease(JSON.stringify(older)).leases[0]?.state, 'bound');
  const unknown = JSON.parse(encodeLease(held)) as { leases: Record<string, unknown>[] };
  (unknown.leases[0] ?? {})['state'] = 'selecting';
  assert.throws(() => decodeLease(JSON.stringify(unknown)), /unknown lease state selecting/);
});

test('lanplug status shows the state a lease is in now: a lease recorded bound whose T1 passed while lanplug was down is renewing', () => {
  const now = Date.now();
  const held: Lease = { ...lease(), boundAt: now - 600 * S };
  assert.match(describeLease(record(held), held), / {2}state=renewing {2}bound=/);
  const refused: Lease = { ...lease('refused'), boundAt: now - 10 * S };
  assert.match(describeLease(record(refused), refused), / {2}state=refused {2}/);
});
