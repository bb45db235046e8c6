/**
 * The netlink notification socket (src/netlink/events.ts) takes what the
 * kernel sends, and only that: any process of the namespace may send a
 * datagram to the socket's port id (a container's, for the socket the SLAAC
 * watch opens in its namespace), and a forged RTM_DELADDR would read as an
 * address whose DAD failed. Kernel notifications themselves are the e2e
 * lane's (dualstack.test.ts, DAD failure).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { MAX_DRAINED, NetlinkEvents, RTNLGRP_IPV6_IFADDR } from '../../src/netlink/events';
import { IFA_ADDRESS, IFA_F_DADFAILED, RTM_DELADDR } from '../../src/netlink/codec';
import { libc } from '../../src/sys/libc';

const AF_NETLINK = 16;
const AF_INET6 = 10;
const SOCK_RAW = 3;

/** The port id the kernel gave the socket on `fd`, from /proc/self/net/netlink by its inode. */
function portIdOf(fd: number): number {
  const inode = /socket:\[(\d+)\]/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  const row = fs
    .readFileSync('/proc/self/net/netlink', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[cols.length - 1] === inode);
  assert.ok(row !== undefined, `no netlink socket with inode ${inode}`);
  return Number(row[2]);
}

/** An RTM_DELADDR of 2001:db8::c/64 on link `index`, flagged dadfailed, as the kernel would send it. */
function forgedDelAddr(index: number): Buffer {
  const m = Buffer.alloc(16 + 8 + 20);
  m.writeUInt32LE(m.length, 0);
  m.writeUInt16LE(RTM_DELADDR, 4);
  m[16] = AF_INET6;
  m[17] = 64;
  m[18] = IFA_F_DADFAILED;
  m[19] = 0;
  m.writeUInt32LE(index, 20);
  m.writeUInt16LE(20, 24);
  m.writeUInt16LE(IFA_ADDRESS, 26);
  Buffer.from('20010db800000000000000000000000c', 'hex').copy(m, 28);
  return m;
}

test('a notification another process sends to the socket (not the kernel) is dropped: no forged address deletion reads as a DAD failure', () => {
  const events = NetlinkEvents.open([RTNLGRP_IPV6_IFADDR]);
  const c = libc();
  const sender = c.socket(AF_NETLINK, SOCK_RAW, 0);
  assert.ok(sender >= 0);
  try {
    const to = Buffer.alloc(12);
    to.writeUInt16LE(AF_NETLINK, 0);
    to.writeUInt32LE(portIdOf((events as unknown as { fd: number }).fd), 4);
    const forged = forgedDelAddr(7);
    assert.equal(c.sendto(sender, forged, forged.length, 0, to, to.length), forged.length);
    assert.deepEqual(
      events.messages().filter((m) => m.type === RTM_DELADDR),
      [],
    );
  } finally {
    c.close(sender);
    events.close();
  }
});

/** The socket's receive queue in bytes (/proc/self/net/netlink's Rmem), by its inode. */
function queuedBytes(fd: number): number {
  const inode = /socket:\[(\d+)\]/.exec(fs.readlinkSync(`/proc/self/fd/${fd}`))?.[1];
  const row = fs
    .readFileSync('/proc/self/net/netlink', 'utf8')
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .find((cols) => cols[cols.length - 1] === inode);
  assert.ok(row !== undefined, `no netlink socket with inode ${inode}`);
  return Number(row[4]);
}

/** A socket that sends datagrams to `events`'s port id, as a process with NET_ADMIN in its namespace can. */
function senderTo(events: NetlinkEvents): { send(n: number): void; close(): void } {
  const c = libc();
  const sender = c.socket(AF_NETLINK, SOCK_RAW, 0);
  assert.ok(sender >= 0);
  const to = Buffer.alloc(12);
  to.writeUInt16LE(AF_NETLINK, 0);
  to.writeUInt32LE(portIdOf((events as unknown as { fd: number }).fd), 4);
  const forged = forgedDelAddr(7);
  return {
    send(n) {
      for (let i = 0; i < n; i++)
        assert.equal(c.sendto(sender, forged, forged.length, 0, to, to.length), forged.length);
    },
    close: () => c.close(sender),
  };
}

test("changed() does not count a datagram another process sends (a container's process cannot make the daemon read its flags again at will)", () => {
  const events = NetlinkEvents.open([RTNLGRP_IPV6_IFADDR]);
  const sender = senderTo(events);
  try {
    sender.send(1);
    assert.equal(events.changed(), false);
  } finally {
    sender.close();
    events.close();
  }
});

test('changed() reads a bounded number of datagrams per call: a sender that keeps the queue full cannot hold the daemon in it', () => {
  const events = NetlinkEvents.open([RTNLGRP_IPV6_IFADDR]);
  const fd = (events as unknown as { fd: number }).fd;
  const sender = senderTo(events);
  try {
    sender.send(MAX_DRAINED + 40);
    events.changed();
    assert.ok(queuedBytes(fd) > 0, 'the call returned with datagrams still queued');
    // What is left goes at the next calls.
    events.changed();
    assert.equal(queuedBytes(fd), 0);
  } finally {
    sender.close();
    events.close();
  }
});

test('messages() too reads a bounded number of datagrams per call, the rest at the next calls', () => {
  const events = NetlinkEvents.open([RTNLGRP_IPV6_IFADDR]);
  const fd = (events as unknown as { fd: number }).fd;
  const sender = senderTo(events);
  try {
    sender.send(MAX_DRAINED + 40);
    events.messages();
    assert.ok(queuedBytes(fd) > 0, 'the call returned with datagrams still queued');
    events.messages();
    assert.equal(queuedBytes(fd), 0);
  } finally {
    sender.close();
    events.close();
  }
});
