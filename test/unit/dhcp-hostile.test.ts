/**
 * What a hostile or broken DHCP server's answer may not decide: addresses and
 * prefixes lanplug refuses whatever the server says, lease times it bounds,
 * routers it ignores, and a flood of malformed answers kept to a line a minute.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { acquire, renew } from '../../src/dhcp/client';
import type { BoundBy } from '../../src/dhcp/outcomes';
import { decodeDhcp, encodeDhcp, ipv4Option, OPT, ZERO_V4, type DhcpMessage } from '../../src/dhcp/message';
import { INFINITE_SECONDS, leaseExpiresAt } from '../../src/model/lease';
import { refuseOffered, usableRouter, type NetworkFacts } from '../../src/dhcp/offer-rules';
import { formatPrefix, parseAddress, parsePrefix, type IpAddress } from '../../src/net/address';
import { identity, ScriptedChannel, answerWith, fakeServer6, warnings, FloodedChannel } from '../support/dhcp-fakes';
import { exchangeDeadline } from '../../src/dhcp/channel';

test('the offered prefix itself: its network and broadcast address are refused whatever the host knows; a mask broader than /8 is refused', () => {
  const none: NetworkFacts = { subnets: [], routers: [], heldBy: () => null };
  const hostWide = { ...none, subnets: [parsePrefix('172.16.0.0/16')] };
  const why = (address: string, prefixLength: number, f = none): string | null => {
    // A variable, not a literal: the fields the check reads of the answer, the offered mask among them.
    const by = { server: parseAddress('192.168.1.1'), router: null, prefixLength };
    return refuseOffered(parseAddress(address), by, f)?.why ?? null;
  };
  // A dedicated NIC: the host has no address on the parent, so no subnet is known.
  assert.equal(why('192.168.1.255', 24), 'the network or broadcast address of 192.168.1.0/24');
  assert.equal(why('192.168.1.0', 24), 'the network or broadcast address of 192.168.1.0/24');
  assert.equal(why('192.168.1.5', 24), null);
  // The broadcast of the offered /24 inside the host's /16.
  assert.equal(why('172.16.86.255', 24, hostWide), 'the network or broadcast address of 172.16.86.0/24');
  assert.equal(why('172.16.86.5', 24, hostWide), null);
  // /31 and /32 have no network or broadcast address (RFC 3021).
  assert.equal(why('192.168.1.0', 31), null);
  assert.equal(why('192.168.1.255', 32), null);
  // Mask 0.0.0.0 (read as /0) or 128.0.0.0: the whole Internet on-link.
  assert.equal(why('192.168.1.5', 0), 'a subnet mask broader than /8 (/0)');
  assert.equal(why('192.168.1.5', 1), 'a subnet mask broader than /8 (/1)');
  assert.equal(why('10.1.2.3', 8), null);
});

test('acquire: an ACK with mask 0.0.0.0 goes to the offer check with its prefix, is declined, and the next one taken', async () => {
  let acks = 0;
  const channel = new ScriptedChannel((m) => {
    // The server remembers a declined address as unusable: the next exchange is of another one.
    const address = acks === 0 ? '172.16.86.120' : '172.16.86.121';
    if (m.type === 'discover') return answerWith('offer', m, address);
    if (m.type !== 'request') return null;
    const ack = answerWith('ack', m, address);
    if (acks++ === 0) ack.options.set(OPT.subnetMask, Buffer.from('00000000', 'hex'));
    return ack;
  });
  const facts = { subnets: [], routers: [], heldBy: () => null };
  const lease = await acquire(channel, identity, {
    hint: null,
    deadline: exchangeDeadline(10_000),
    check: (address, _mac, by) => Promise.resolve(refuseOffered(address, by, facts)?.why ?? null),
  });
  const decline = channel.sent.find((m) => m.type === 'decline');
  assert.equal(decline?.options.get(OPT.message)?.toString(), 'address a subnet mask broader than /8 (/0)');
  assert.equal(`${lease.address.address.text}/${lease.address.prefixLength}`, '172.16.86.121/24');
});

test('acquire: a router outside the leased prefix (or the leased address itself) is no router, with one line; unusable DNS servers are dropped', async () => {
  const { log, lines } = warnings();
  const ackWith = (router: string) =>
    new ScriptedChannel((m) => {
      const answer = answerWith(m.type === 'discover' ? 'offer' : 'ack', m, '172.16.86.120');
      answer.options.set(OPT.router, ipv4Option(parseAddress(router)));
      answer.options.set(
        OPT.dnsServers,
        Buffer.concat(
          ['0.0.0.0', '172.16.86.53', '255.255.255.255', '224.0.0.251', '9.9.9.9'].map((a) =>
            ipv4Option(parseAddress(a)),
          ),
        ),
      );
      return answer;
    });
  const outside = await acquire(ackWith('10.9.9.1'), identity, { hint: null, deadline: exchangeDeadline(5000), log });
  assert.equal(outside.router, null);
  assert.deepEqual(
    outside.dns.map((a) => a.text),
    ['172.16.86.53', '9.9.9.9'],
  );
  assert.equal(
    lines.filter((l) => l.startsWith('ignoring the router a DHCP server named')).length,
    1,
    lines.join('\n'),
  );
  assert.match(
    lines.join('\n'),
    /"server":"172\.16\.86\.1","router":"10\.9\.9\.1","why":"outside the leased prefix 172\.16\.86\.0\/24"/,
  );
  const itself = await acquire(ackWith('172.16.86.120'), identity, { hint: null, deadline: exchangeDeadline(5000) });
  assert.equal(itself.router, null);
  const inside = await acquire(ackWith('172.16.86.254'), identity, { hint: null, deadline: exchangeDeadline(5000) });
  assert.equal(inside.router?.text, '172.16.86.254');
});

test('encodeDhcp refuses an option value longer than 255 bytes (its length byte cannot say it) instead of writing a wrong one', () => {
  const m: DhcpMessage = {
    reply: false,
    xid: 1,
    secs: 0,
    broadcast: false,
    ciaddr: ZERO_V4,
    yiaddr: ZERO_V4,
    chaddr: identity.mac,
    type: 'discover',
    options: new Map([[OPT.hostname, Buffer.alloc(256, 0x61)]]),
  };
  assert.throws(() => encodeDhcp(m), { name: 'LanplugError', code: 'Internal' });
  m.options.set(OPT.hostname, Buffer.alloc(255, 0x61));
  assert.equal(decodeDhcp(encodeDhcp(m))?.options.get(OPT.hostname)?.length, 255);
});

test('acquire6: a valid lifetime under a minute keeps its expiry (lanplug never counts an address longer than its server gave it) and only the renewal timers get their floor (T1 30 s, T2 52 s); 136 years counted as 7 days, infinite as infinite; one line when bounded', async () => {
  const { acquire6 } = await import('../../src/dhcp/client6');
  const counted = async (preferredSeconds: number, validSeconds: number) => {
    const { log, lines } = warnings();
    const { channel } = await fakeServer6(() => [
      { address: parseAddress('2001:db8:86::150'), preferredSeconds, validSeconds },
    ]);
    // A variable, not a literal: the options acquire6 reads, its log among them.
    const options = { hint: null, deadline: exchangeDeadline(3000), prefixLength: 64, log };
    const lease = await acquire6(channel, identity, options);
    return {
      times: [lease.leaseSeconds, lease.renewSeconds, lease.rebindSeconds],
      expiresIn: leaseExpiresAt(lease) - lease.boundAt,
      lines,
    };
  };
  const short = await counted(1, 1);
  assert.deepEqual(short.times, [1, 30, 52]);
  assert.equal(short.expiresIn, 1000, 'the lease ends when its server said');
  assert.equal(short.lines.length, 1, short.lines.join('\n'));
  assert.match(
    short.lines[0] ?? '',
    /^dhcp valid lifetime under a minute: renewed as if a minute, expires as given .*"given":1,"renewAfter":30/,
  );
  const half = await counted(20, 45);
  assert.deepEqual(half.times, [45, 30, 52]);
  assert.equal(half.expiresIn, 45_000);
  const long = await counted(0xfffffffe, 0xfffffffe);
  assert.deepEqual(long.times, [604_800, 302_400, 529_200]);
  assert.equal(long.lines.length, 1);
  const infinite = await counted(INFINITE_SECONDS, INFINITE_SECONDS);
  assert.deepEqual(infinite.times, [INFINITE_SECONDS, INFINITE_SECONDS, INFINITE_SECONDS]);
  assert.deepEqual(infinite.lines, []);
  const usual = await counted(3600, 7200);
  assert.deepEqual(usual.times, [7200, 1800, 3150]);
  assert.deepEqual(usual.lines, []);
});

test('usableRouter: a /32 lease keeps its router (off the prefix by nature, reached on-link); a /24 lease drops one outside it', () => {
  const ignored: string[] = [];
  const note = (why: string): void => void ignored.push(why);
  assert.equal(usableRouter(parseAddress('10.128.0.1'), parsePrefix('10.128.0.7/32'), note)?.text, '10.128.0.1');
  assert.deepEqual(ignored, []);
  assert.equal(usableRouter(parseAddress('10.9.9.1'), parsePrefix('172.16.86.7/24'), note), null);
  assert.equal(ignored.length, 1);
});

test('renew: an ACK of the address held with a new mask or router goes through the offer check (a mask of 0.0.0.0 is refused, but the address in use is never declined: the lease keeps its shape and takes the new times, with one line); a router outside the prefix held is ignored and the held one kept, but a /32 lease keeps the router its server names', async () => {
  const held = await acquire(
    new ScriptedChannel((m) => answerWith(m.type === 'discover' ? 'offer' : 'ack', m, '172.16.86.125')),
    identity,
    { hint: null, deadline: exchangeDeadline(5000) },
  );
  const facts = { subnets: [], routers: [], heldBy: () => null };
  const checked: string[] = [];
  const check = (address: IpAddress, _mac: string, by: BoundBy): Promise<string | null> => {
    checked.push(`${address.text}/${by.prefixLength} via ${by.router?.text ?? 'none'}`);
    return Promise.resolve(refuseOffered(address, by, facts)?.why ?? null);
  };
  const reshaped = (mask: string, router: string) =>
    new ScriptedChannel((m) => {
      if (m.type !== 'request') return null;
      const ack = answerWith('ack', m, m.ciaddr.text);
      ack.options.set(OPT.subnetMask, Buffer.from(mask, 'hex'));
      ack.options.set(OPT.router, ipv4Option(parseAddress(router)));
      return ack;
    });

  const everything = reshaped('00000000', '172.16.86.1');
  const refusedShape = warnings();
  const wide = await renew(everything, identity, held, 'renew', exchangeDeadline(5000), check, refusedShape.log);
  assert.equal(wide.kind, 'ack');
  assert.equal(wide.kind === 'ack' ? formatPrefix(wide.lease.address) : null, '172.16.86.125/24', 'the mask held');
  assert.equal(wide.kind === 'ack' ? wide.lease.router?.text : null, '172.16.86.1');
  assert.deepEqual(checked, ['172.16.86.125/0 via 172.16.86.1']);
  assert.deepEqual(
    everything.sent.map((m) => m.type),
    ['request'],
    'no DHCPDECLINE of the address the container uses',
  );
  assert.match(
    refusedShape.lines.join('\n'),
    /keeping the mask and router held.*"offered":"172\.16\.86\.125\/0".*"why":"a subnet mask broader than \/8 \(\/0\)"/,
  );

  // A broader mask would bring a router off the network on-link: the route stays on the prefix held.
  const { log, lines } = warnings();
  const away = await renew(
    reshaped('ffff0000', '172.16.200.1'),
    identity,
    held,
    'renew',
    exchangeDeadline(5000),
    check,
    log,
  );
  assert.equal(away.kind, 'ack');
  assert.equal(away.kind === 'ack' ? away.lease.router?.text : null, '172.16.86.1');
  assert.deepEqual(checked.slice(1), ['172.16.86.125/16 via 172.16.86.1']);
  assert.match(
    lines.join('\n'),
    /ignoring the router a DHCP server named.*"router":"172\.16\.200\.1","why":"outside the prefix held 172\.16\.86\.0\/24"/,
  );

  const moved = await renew(
    reshaped('ffffff00', '172.16.86.254'),
    identity,
    held,
    'renew',
    exchangeDeadline(5000),
    check,
  );
  assert.equal(moved.kind === 'ack' ? moved.lease.router?.text : moved.kind, '172.16.86.254');
  assert.deepEqual(checked.slice(2), ['172.16.86.125/24 via 172.16.86.254'], 'a new router is checked too');

  const single = { ...held, address: parsePrefix('172.16.86.125/32'), router: parseAddress('10.128.0.1') };
  const cloud = await renew(
    reshaped('ffffffff', '10.128.0.9'),
    identity,
    single,
    'renew',
    exchangeDeadline(5000),
    check,
  );
  assert.equal(cloud.kind === 'ack' ? cloud.lease.router?.text : cloud.kind, '10.128.0.9');
});

test('malformed answers at line rate: one line for the first on a network, then one a minute saying how many more came (per network, across exchanges), none in a quiet minute', async () => {
  const { MalformedAnswers } = await import('../../src/dhcp/malformed-log');
  const { log, lines } = warnings();
  const minute = 300; // stands in for the minute
  const reports = new MalformedAnswers(log, minute);
  try {
    const lease = await acquire(new FloodedChannel(200), identity, {
      hint: null,
      deadline: exchangeDeadline(5000),
      log,
      malformed: reports.on('net-a'),
    });
    assert.equal(lease.address.address.text, '172.16.86.140', 'the good answer after the flood is taken');
    const renewed = await renew(
      new FloodedChannel(200),
      identity,
      lease,
      'renew',
      exchangeDeadline(5000),
      undefined,
      log,
      reports.on('net-a'),
    );
    assert.equal(renewed.kind, 'ack');
    await acquire(new FloodedChannel(3), identity, {
      hint: null,
      deadline: exchangeDeadline(5000),
      log,
      malformed: reports.on('net-b'),
    });
    const malformed = (): string[] => lines.filter((l) => /malformed DHCP answer/.test(l));
    assert.equal(malformed().length, 2, malformed().join('\n'));
    assert.match(
      malformed()[0] ?? '',
      /^ignoring a malformed DHCP answer \{"network":"net-a","link":"eth0","server":"172\.16\.87\.0","why":"option \d+ runs past the end of the message"\}$/,
    );
    assert.match(malformed()[1] ?? '', /"network":"net-b"/);
    await new Promise((r) => setTimeout(r, minute * 1.5));
    assert.equal(malformed().length, 4, malformed().join('\n'));
    const summaries = malformed().slice(2).sort();
    assert.match(
      summaries[0] ?? '',
      /^ignoring malformed DHCP answers: more in the last minute \{"network":"net-a","count":599,.*"server":"172\.16\.87\.199"/,
    );
    assert.match(summaries[1] ?? '', /"network":"net-b","count":5,/);
    await new Promise((r) => setTimeout(r, minute * 2));
    assert.equal(malformed().length, 4, 'a quiet minute says nothing');
    await acquire(new FloodedChannel(1), identity, {
      hint: null,
      deadline: exchangeDeadline(5000),
      log,
      malformed: reports.on('net-a'),
    });
    assert.equal(malformed().length, 5, 'after a quiet minute the next one is a first again');
  } finally {
    reports.stop();
  }
});
