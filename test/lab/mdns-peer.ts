// A device on the lab's LAN that speaks mDNS (RFC 6762) by hand, as a small Node script run in a
// LAN host's namespace: query() asks 224.0.0.251:5353 for `<name>.local` A records and returns the
// addresses answered; respond() answers for a name as a device that owns it would, until stopped.
// Its own DNS code, written apart from lanplug's (src/mdns/), so that the two check each other.

import { spawn, type ChildProcess } from 'node:child_process';
import type { LanHost } from './lan';
import { nsExecArgv } from './ns';
import { cleanEnv, isAlive, sleep, terminateSync } from './proc';

/** Shared by both scripts: the DNS name in wire format, and the A records of a message's answers. */
const COMMON = `
const dgram = require('node:dgram');
const wire = (name) => Buffer.concat([...name.split('.').map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])), Buffer.from([0])]);
function skipName(b, off) {
  for (;;) {
    const len = b[off];
    if (len === 0) return off + 1;
    if ((len & 0xc0) === 0xc0) return off + 2;
    off += len + 1;
  }
}
function readName(b, off) {
  const labels = [];
  for (let hops = 0; hops < 20; hops++) {
    const len = b[off];
    if (len === 0) break;
    if ((len & 0xc0) === 0xc0) { off = ((len & 0x3f) << 8) | b[off + 1]; continue; }
    labels.push(b.subarray(off + 1, off + 1 + len).toString());
    off += len + 1;
  }
  return labels.join('.').toLowerCase();
}
function records(b) {
  const out = { questions: [], answers: [] };
  let off = 12;
  for (let i = 0; i < b.readUInt16BE(4); i++) { out.questions.push(readName(b, off)); off = skipName(b, off) + 4; }
  const count = b.readUInt16BE(6) + b.readUInt16BE(8) + b.readUInt16BE(10);
  for (let i = 0; i < count; i++) {
    const name = readName(b, off);
    off = skipName(b, off);
    const type = b.readUInt16BE(off);
    const len = b.readUInt16BE(off + 8);
    const data = b.subarray(off + 10, off + 10 + len);
    if (type === 1 && len === 4) out.answers.push({ name, address: [...data].join('.') });
    off += 10 + len;
  }
  return out;
}
const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
`;

/** Queries every 300 ms for `ms`, prints each A record for NAME as "address". */
const QUERY = `${COMMON}
const [name, ownAddress, ms] = process.argv.slice(1);
const seen = new Set();
socket.on('message', (b) => {
  try {
    if ((b.readUInt16BE(2) & 0x8000) === 0) return;
    for (const a of records(b).answers) if (a.name === name && !seen.has(a.address)) { seen.add(a.address); console.log(a.address); }
  } catch {}
});
socket.bind(5353, () => {
  socket.setMulticastInterface(ownAddress);
  socket.addMembership('224.0.0.251', ownAddress);
  const query = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]), wire(name), Buffer.from([0, 1, 0, 1])]);
  const send = () => socket.send(query, 5353, '224.0.0.251');
  send();
  const timer = setInterval(send, 300);
  setTimeout(() => { clearInterval(timer); socket.close(); }, Number(ms));
});
`;

/** Answers every query and probe for NAME with ADDRESS (multicast, as RFC 6762 §6), and prints "ready". */
const RESPOND = `${COMMON}
const [name, ownAddress] = process.argv.slice(1);
const answer = () => {
  const head = Buffer.from([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0]);
  const rr = Buffer.from([0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, ...ownAddress.split('.').map(Number)]);
  return Buffer.concat([head, wire(name), rr]);
};
socket.on('message', (b) => {
  try {
    if ((b.readUInt16BE(2) & 0x8000) !== 0) return;
    if (records(b).questions.includes(name)) socket.send(answer(), 5353, '224.0.0.251');
  } catch {}
});
socket.bind(5353, () => {
  socket.setMulticastInterface(ownAddress);
  socket.addMembership('224.0.0.251', ownAddress);
  socket.send(answer(), 5353, '224.0.0.251');
  console.log('ready');
});
`;

function ownAddress(host: LanHost): string {
  const v4 = host.addresses.find((a) => !a.includes(':'));
  if (v4 === undefined) throw new Error(`lab: LAN host ${host.name} has no IPv4 address for mDNS`);
  return v4.split('/')[0] ?? '';
}

/** The IPv4 addresses answered for `name` (e.g. 'web1.local') within `ms`, as a LAN host's querier hears them. */
export function mdnsQuery(host: LanHost, name: string, ms = 2_000): string[] {
  const out = host.execOk([process.execPath, '-e', QUERY, name, ownAddress(host), String(ms)], {
    timeoutMs: ms + 10_000,
  });
  return out.split('\n').filter((l) => l !== '');
}

/** A LAN device answering for `name` with its own address until stop(). */
export class MdnsResponderPeer {
  private constructor(private readonly child: ChildProcess) {}

  static async start(host: LanHost, name: string): Promise<MdnsResponderPeer> {
    const argv = nsExecArgv(host.ns, [process.execPath, '-e', RESPOND, name, ownAddress(host)]);
    const child = spawn(argv[0] ?? '', argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'], env: cleanEnv() });
    child.on('error', () => undefined);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const deadline = Date.now() + 10_000;
    while (!out.includes('ready')) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error('lab: the mDNS responder did not start');
      await sleep(25);
    }
    return new MdnsResponderPeer(child);
  }

  stop(): void {
    const pid = this.child.pid;
    if (pid !== undefined && isAlive(pid)) terminateSync(pid, 2_000);
  }
}
