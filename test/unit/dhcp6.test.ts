/**
 * The DHCPv6 client's wire formats and transactions (RFC 8415), against a
 * fake server on a fake channel (test/support/dhcp-fakes.ts; the Docker lane
 * runs them against dnsmasq on a real LAN).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { internetChecksum } from '../../src/l2/udp-frames';
import { parseAddress, type IpAddress } from '../../src/net/address';
import {
  exchangeOnSteppedClocks,
  identity,
  namedIn,
  RFC8415,
  type FakeStatus,
  fakeServer6,
} from '../support/dhcp-fakes';
import { exchangeDeadline } from '../../src/dhcp/channel';

test('a DHCPv6 message and its IA_NA read back the same; a UDP-over-IPv6 checksum verifies; EUI-64 link-local', async () => {
  const { decodeDhcp6, encodeDhcp6, encodeIaNa, decodeIaNa, OPT6 } = await import('../../src/dhcp/message6');
  const { encodeUdp6Frame, decodeUdp6Frame, linkLocalOf } = await import('../../src/l2/udp-frames');
  const ia = encodeIaNa({
    iaid: 1,
    renewSeconds: 1800,
    rebindSeconds: 2880,
    addresses: [{ address: parseAddress('2001:db8:86::150'), preferredSeconds: 3600, validSeconds: 7200 }],
    status: null,
  });
  const m = { type: 'reply' as const, xid: 0xabcdef, options: [{ code: OPT6.iaNa, value: ia }] };
  const bytes = encodeDhcp6(m);
  assert.deepEqual([...bytes.subarray(0, 4)], [7, 0xab, 0xcd, 0xef]);
  assert.deepEqual(decodeDhcp6(bytes), m);
  assert.equal(decodeIaNa(ia)?.addresses[0]?.address.text, '2001:db8:86::150');
  assert.equal(linkLocalOf('02:00:00:00:00:09').text, 'fe80::ff:fe00:9');
  const frame = encodeUdp6Frame({
    sourceMac: '02:00:00:00:00:09',
    destinationMac: '33:33:00:01:00:02',
    source: linkLocalOf('02:00:00:00:00:09'),
    destination: parseAddress('ff02::1:2'),
    sourcePort: 546,
    destinationPort: 547,
    payload: bytes,
  });
  const pseudo = Buffer.alloc(40);
  frame.copy(pseudo, 0, 22, 54);
  pseudo.writeUInt32BE(frame.length - 54, 32);
  pseudo[39] = 17;
  assert.equal(internetChecksum(Buffer.concat([pseudo, frame.subarray(54)])), 0, 'UDP checksum verifies');
  assert.deepEqual(decodeUdp6Frame(frame)?.payload, bytes);
});

test('acquire6: Solicit with the client DUID and an IA_NA, Request to the advertising server, the Reply as a lease', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const { channel, sent, serverDuid, m6 } = await fakeServer6(() => [
    { address: parseAddress('2001:db8:86::150'), preferredSeconds: 3600, validSeconds: 7200 },
  ]);
  const lease = await acquire6(channel, identity, { hint: null, deadline: exchangeDeadline(3000), prefixLength: 64 });
  assert.deepEqual(
    sent.map((m) => m.type),
    ['solicit', 'request'],
  );
  assert.equal(m6.option(sent[1] ?? sent[0]!, m6.OPT6.serverId)?.toString('hex'), serverDuid.toString('hex'));
  assert.equal(`${lease.address.address.text}/${lease.address.prefixLength}`, '2001:db8:86::150/64');
  assert.equal(lease.serverDuid, serverDuid.toString('hex'));
  assert.deepEqual([lease.leaseSeconds, lease.renewSeconds, lease.rebindSeconds], [7200, 1800, 3150]);
});

test('renew6: an address the server withdraws (valid lifetime 0) is never the lease; its replacement is, and a Reply of only withdrawn ones is a refusal', async () => {
  const { acquire6, renew6 } = await import('../../src/dhcp/client6');
  const old = parseAddress('2001:db8:86::150');
  const moved = parseAddress('2001:db8:86::300');
  let renewing = false;
  let replacement = true;
  const { channel } = await fakeServer6(() =>
    !renewing
      ? [{ address: old, preferredSeconds: 3600, validSeconds: 7200 }]
      : [
          { address: old, preferredSeconds: 0, validSeconds: 0 },
          ...(replacement ? [{ address: moved, preferredSeconds: 3600, validSeconds: 7200 }] : []),
        ],
  );
  const lease = await acquire6(channel, identity, { hint: null, deadline: exchangeDeadline(3000), prefixLength: 64 });
  renewing = true;
  const next = await renew6(channel, identity, lease, 'renew', exchangeDeadline(3000));
  assert.equal(next.kind === 'ack' ? next.lease.address.address.text : next.kind, '2001:db8:86::300');
  replacement = false;
  const refused = await renew6(channel, identity, lease, 'renew', exchangeDeadline(3000));
  assert.deepEqual(refused, {
    kind: 'nak',
    message: 'no address bound (the server withdrew the one asked for)',
  });
});

test('acquire6: a bound address the offer check refuses (this host’s own) is declined to its server (a Decline with the IA_NA holding it) and a new Solicit asks for no address; only refused ones: one line naming them', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const own = parseAddress('2001:db8:86::5');
  const other = parseAddress('2001:db8:86::151');
  let declines = 0;
  const { channel, sent, serverDuid, m6 } = await fakeServer6((m) => {
    if (m.type === 'decline') {
      declines++;
      return [];
    }
    return [{ address: declines === 0 ? own : other, preferredSeconds: 3600, validSeconds: 7200 }];
  });
  const checked: string[] = [];
  const hostOnly = (address: IpAddress, ownMac: string): Promise<string | null> => {
    checked.push(`${address.text} ${ownMac}`);
    return Promise.resolve(address.text === own.text ? 'in use by this host (it holds the address on eth0)' : null);
  };
  const lease = await acquire6(channel, identity, {
    hint: own,
    deadline: exchangeDeadline(5000),
    prefixLength: 64,
    check: hostOnly,
  });
  assert.equal(lease.address.address.text, other.text);
  assert.deepEqual(checked, [`${own.text} ${identity.mac}`, `${other.text} ${identity.mac}`]);
  assert.deepEqual(
    sent.map((m) => m.type),
    ['solicit', 'request', 'decline', 'solicit', 'request'],
  );
  const decline = sent[2];
  assert.ok(decline !== undefined);
  assert.equal(m6.option(decline, m6.OPT6.serverId)?.toString('hex'), serverDuid.toString('hex'));
  assert.equal(m6.option(decline, m6.OPT6.clientId)?.toString('hex'), identity.duid);
  assert.deepEqual(await namedIn(m6.option(decline, m6.OPT6.iaNa)), [own.text]);
  assert.equal(m6.option(decline, m6.OPT6.oro), null, 'a Decline asks for no options');
  const first = sent[0];
  const again = sent[3];
  assert.ok(first !== undefined && again !== undefined);
  assert.deepEqual(await namedIn(m6.option(first, m6.OPT6.iaNa)), [own.text], 'the hint asked for first');
  assert.deepEqual(await namedIn(m6.option(again, m6.OPT6.iaNa)), [], 'the declined address is not asked for again');

  const squatted = await fakeServer6((m) =>
    m.type === 'decline' ? [] : [{ address: own, preferredSeconds: 3600, validSeconds: 7200 }],
  );
  await assert.rejects(
    acquire6(squatted.channel, identity, {
      hint: null,
      deadline: exchangeDeadline(10_000),
      prefixLength: 64,
      check: hostOnly,
    }),
    {
      message:
        'the DHCPv6 server offered only addresses in use on the LAN on eth0 (declined: 2001:db8:86::5, in use by this host (it holds the address on eth0))',
    },
  );
  assert.equal(squatted.sent.filter((m) => m.type === 'decline').length, 3, 'three declines, then it gives up');
});

test('renew6: a Reply that moves the lease onto another address goes through the offer check; refused, it is declined to the server and never the lease; the address held is not checked', async () => {
  const { acquire6, renew6 } = await import('../../src/dhcp/client6');
  const held = parseAddress('2001:db8:86::150');
  const own = parseAddress('2001:db8:86::5');
  let moveTo: IpAddress | null = null;
  const { channel, sent, serverDuid, m6 } = await fakeServer6((m) =>
    m.type === 'decline'
      ? []
      : moveTo === null
        ? [{ address: held, preferredSeconds: 3600, validSeconds: 7200 }]
        : [
            { address: held, preferredSeconds: 0, validSeconds: 0 },
            { address: moveTo, preferredSeconds: 3600, validSeconds: 7200 },
          ],
  );
  const lease = await acquire6(channel, identity, { hint: null, deadline: exchangeDeadline(3000), prefixLength: 64 });
  const checked: string[] = [];
  const hostOnly = (address: IpAddress, ownMac: string): Promise<string | null> => {
    checked.push(`${address.text} ${ownMac}`);
    return Promise.resolve(address.text === own.text ? 'in use by this host (it holds the address on eth0)' : null);
  };
  const same = await renew6(channel, identity, lease, 'renew', exchangeDeadline(3000), hostOnly);
  assert.equal(same.kind, 'ack');
  assert.deepEqual(checked, [], 'the address held needs no check');

  moveTo = own;
  const onHost = await renew6(channel, identity, lease, 'rebind', exchangeDeadline(3000), hostOnly);
  assert.deepEqual(onHost, {
    kind: 'declined',
    message: 'declined 2001:db8:86::5, in use by this host (it holds the address on eth0)',
  });
  assert.deepEqual(checked, [`${own.text} ${identity.mac}`]);
  const decline = sent.at(-1);
  assert.equal(decline?.type, 'decline');
  assert.ok(decline !== undefined);
  assert.equal(m6.option(decline, m6.OPT6.serverId)?.toString('hex'), serverDuid.toString('hex'));
  assert.deepEqual(await namedIn(m6.option(decline, m6.OPT6.iaNa)), [own.text]);

  moveTo = parseAddress('2001:db8:86::300');
  const moved = await renew6(channel, identity, lease, 'renew', exchangeDeadline(3000), hostOnly);
  assert.equal(moved.kind === 'ack' ? moved.lease.address.address.text : moved.kind, '2001:db8:86::300');
});

test('renew6 follows RFC 8415’s status codes: UseMulticast is sent again and then answered; UnspecFail is retried at the back-off gaps and keeps the lease; only NoBinding starts over', async () => {
  const { acquire6, renew6 } = await import('../../src/dhcp/client6');
  const address = parseAddress('2001:db8:86::150');
  let answer: (renewal: number) => FakeStatus | null = () => null;
  let renewals = 0;
  const { channel, sent, sentAt } = await fakeServer6(
    (_m, said) => (said !== null ? [] : [{ address, preferredSeconds: 3600, validSeconds: 7200 }]),
    (m) => (m.type === 'renew' ? answer(renewals++) : null),
  );
  const lease = await acquire6(channel, identity, { hint: null, deadline: exchangeDeadline(3000), prefixLength: 64 });
  const renewsSent = (): number => sent.filter((m) => m.type === 'renew').length;

  answer = (n) => (n === 0 ? { code: RFC8415.useMulticast, text: 'multicast please', inIa: false } : null);
  const afterMulticast = await renew6(channel, identity, lease, 'renew', exchangeDeadline(3000));
  assert.equal(afterMulticast.kind, 'ack', 'answered once sent again');
  assert.equal(renewsSent(), 2);

  renewals = 0;
  answer = () => ({ code: RFC8415.unspecFail, text: 'busy', inIa: false });
  const started = Date.now();
  const failing = await renew6(channel, identity, lease, 'renew', exchangeDeadline(2500));
  assert.deepEqual(failing, { kind: 'silent', message: 'the server answered UnspecFail: busy' });
  const tries = sentAt.slice(-renewals);
  assert.equal(renewals, 2, 'sent again at the next gap (1 s), not at once');
  assert.ok((tries[1] ?? 0) - (tries[0] ?? 0) >= 900 && (tries[0] ?? 0) - started < 100, tries.join(' '));

  answer = () => ({ code: RFC8415.noAddrsAvail, text: 'full', inIa: true });
  assert.deepEqual(await renew6(channel, identity, lease, 'renew', exchangeDeadline(1500)), {
    kind: 'silent',
    message: 'the server answered NoAddrsAvail',
  });
  answer = () => ({ code: RFC8415.noBinding, text: 'unknown lease', inIa: true });
  assert.deepEqual(await renew6(channel, identity, lease, 'renew', exchangeDeadline(1500)), {
    kind: 'nak',
    message: 'NoBinding',
  });
});

test('acquire6: an Advertise without an address is ignored, not answered with a new Solicit at once; NotOnLink asks again for no address in particular, a second later', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const { OPT6, decodeIaNa, option } = await import('../../src/dhcp/message6');
  const full = await fakeServer6(
    () => [],
    () => ({ code: RFC8415.noAddrsAvail, text: 'none left', inIa: false }),
  );
  const refused: unknown = await acquire6(full.channel, identity, {
    hint: null,
    deadline: exchangeDeadline(2500),
    prefixLength: 64,
  }).catch((err: unknown) => err);
  assert.equal(full.sent.length, 2, 'a Solicit, and again after 1 s');
  assert.equal(
    refused instanceof Error ? refused.message : refused,
    'the DHCPv6 server gave no address on eth0 (NoAddrsAvail: none left)',
  );

  const hint = parseAddress('2001:db8:99::5');
  const good = parseAddress('2001:db8:86::151');
  let requests = 0;
  const moved = await fakeServer6(
    (m) => [
      { address: m.type === 'solicit' && requests === 0 ? hint : good, preferredSeconds: 3600, validSeconds: 7200 },
    ],
    (m) =>
      m.type === 'request' && requests++ === 0 ? { code: RFC8415.notOnLink, text: 'wrong link', inIa: true } : null,
  );
  const lease = await acquire6(moved.channel, identity, { hint, deadline: exchangeDeadline(5000), prefixLength: 64 });
  assert.equal(lease.address.address.text, good.text);
  assert.deepEqual(
    moved.sent.map((m) => m.type),
    ['solicit', 'request', 'solicit', 'request'],
  );
  const second = moved.sent[2];
  const ia = second === undefined ? null : option(second, OPT6.iaNa);
  assert.deepEqual(ia === null ? null : decodeIaNa(ia)?.addresses, [], 'no address asked for after NotOnLink');
  assert.ok((moved.sentAt[2] ?? 0) - (moved.sentAt[1] ?? 0) >= 900, 'a second after the refusal');
});

test('T1 and T2 a client can act on: the server’s when sane, else 50 % and 87.5 %; an infinite lease is never renewed', async () => {
  const { leaseTimes, INFINITE_SECONDS } = await import('../../src/model/lease');
  assert.deepEqual(leaseTimes(120, 3, 6), { renewSeconds: 3, rebindSeconds: 6 });
  assert.deepEqual(leaseTimes(3600, null, null), { renewSeconds: 1800, rebindSeconds: 3150 });
  assert.deepEqual(leaseTimes(3600, 0, 0), { renewSeconds: 1800, rebindSeconds: 3150 }, 'a T1 of 0 is no T1');
  assert.deepEqual(leaseTimes(3600, 3000, 2000), { renewSeconds: 3000, rebindSeconds: 3150 }, 'T2 before T1');
  assert.deepEqual(leaseTimes(INFINITE_SECONDS, null, null), {
    renewSeconds: INFINITE_SECONDS,
    rebindSeconds: INFINITE_SECONDS,
  });
});

test("the Information-request of a router advertisement's O flag runs to its deadline on the monotonic clock: a wall clock set forward a day does not end it at its first message, one set back an hour does not keep it resending for the hour", async (t) => {
  const { informationRequest } = await import('../../src/dhcp/client6');
  for (const run of await exchangeOnSteppedClocks(t, (channel, deadline) =>
    informationRequest(channel, identity, deadline),
  )) {
    assert.equal(run.outcome, null, `wall clock stepped by ${run.step} ms`);
    assert.equal(run.sends, 2, `Information-requests sent (at 0 and 1 s), wall clock stepped by ${run.step} ms`);
    assert.ok(run.tookMs >= 1_150, `ended after ${Math.round(run.tookMs)} ms, wall clock stepped by ${run.step} ms`);
  }
});
