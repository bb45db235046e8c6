/**
 * What the LAN's DHCP server sees and answers, with the kernel's receive
 * timestamps: a packet socket on the LAN bridge (python3, in the LAN
 * namespace; independent of lanplug's own packet code, as
 * test/lab/frame-count.ts) writes one line per DHCPv4 frame to a file. The
 * bench reads from it when each client's lease was bound and renewed: the
 * renewal latency as a client sees it (its T1 to its ACK) for any client
 * (the reference `dhcp` daemon logs its renewals to the second only).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import type { Lan } from '../lab/lan';
import { nsExecArgv } from '../lab/ns';
import { cleanEnv } from '../lab/proc';
import { quantile, sleep } from './stats';

/**
 * argv: <link> <file>. One line per DHCPv4 frame (UDP 67/68, BOOTP magic cookie):
 * "<s.ns since the epoch, kernel timestamp> <message type> <xid hex> <chaddr> <ciaddr> <yiaddr> <T1 s or -1>".
 */
const CAPTURE = `
import socket, struct, sys, signal
SO_TIMESTAMPNS = 35
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL: a socket of one protocol misses what the host sends
s.bind((sys.argv[1], 0))
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
out = open(sys.argv[2], 'w', buffering=1)
signal.signal(signal.SIGTERM, lambda *a: (out.close(), sys.exit(0)))
print('ready', flush=True)
while True:
    f, anc, _, _ = s.recvmsg(4096, 64)
    if len(f) < 14 + 20 + 8 + 240 or f[12:14] != b'\\x08\\x00' or f[23] != 17:
        continue
    ihl = (f[14] & 15) * 4
    udp = 14 + ihl
    ports = struct.unpack('!HH', f[udp:udp + 4])
    if not (67 in ports or 68 in ports):
        continue
    b = udp + 8
    if f[b + 236:b + 240] != b'\\x63\\x82\\x53\\x63':
        continue
    t = 0.0
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
            sec, nsec = struct.unpack('qq', data[:16])
            t = sec + nsec / 1e9
    xid = f[b + 4:b + 8].hex()
    ciaddr = socket.inet_ntoa(f[b + 12:b + 16])
    yiaddr = socket.inet_ntoa(f[b + 16:b + 20])
    chaddr = ':'.join('%02x' % x for x in f[b + 28:b + 34])
    mtype = 0
    t1 = -1
    i = b + 240
    while i < len(f) and f[i] != 255:
        if f[i] == 0:
            i += 1
            continue
        code, ln = f[i], f[i + 1]
        if code == 53:
            mtype = f[i + 2]
        elif code == 58 and ln == 4:
            t1 = struct.unpack('!I', f[i + 2:i + 6])[0]
        i += 2 + ln
    out.write('%.6f %d %s %s %s %s %d\\n' % (t, mtype, xid, chaddr, ciaddr, yiaddr, t1))
`;

const DHCPREQUEST = 3;
const DHCPACK = 5;
const DHCPNAK = 6;

export interface DhcpFrame {
  /** ms since the epoch (the kernel's receive time on the bridge). */
  at: number;
  type: number;
  xid: string;
  mac: string;
  ciaddr: string;
  yiaddr: string;
  /** The ACK's renewal time (option 58), s; -1 when absent. */
  t1: number;
}

/** A capture of the LAN's DHCPv4 frames into `file`, from start() to stop(). */
export class DhcpCapture {
  private child: ChildProcess | null = null;

  constructor(
    private readonly lan: Lan,
    readonly file: string,
  ) {}

  async start(): Promise<void> {
    const argv = nsExecArgv(this.lan.ns, ['python3', '-c', CAPTURE, this.lan.bridge, this.file]);
    const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: cleanEnv({}) });
    this.child = child;
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (err += c.toString()));
    for (let waited = 0; !out.startsWith('ready'); waited += 20) {
      if (child.exitCode !== null || waited > 10_000)
        throw new Error(`bench: the DHCP capture did not start: ${err.trim() || out.trim()}`);
      await sleep(20);
    }
  }

  /** Stops the capture; the frames it saw. */
  async stop(): Promise<DhcpFrame[]> {
    const child = this.child;
    this.child = null;
    if (child !== null && child.exitCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
    }
    return parseFrames(readFileSync(this.file, 'utf8'));
  }
}

export function parseFrames(text: string): DhcpFrame[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => {
      const [at = '', type = '', xid = '', mac = '', ciaddr = '', yiaddr = '', t1 = ''] = l.split(' ');
      return { at: Number(at) * 1000, type: Number(type), xid, mac, ciaddr, yiaddr, t1: Number(t1) };
    });
}

export interface Renewals {
  /** Leases bound in the window (their first ACK in it). */
  held: number;
  /** Of those, renewed: a REQUEST from the bound address (RENEWING: ciaddr set) answered with an ACK. */
  renewed: number;
  /** Leases not renewed by the window's end: no renewal sent, none answered, or a NAK. */
  failed: number;
  /** Renewals per second over the span from the first renewal's REQUEST to the last one's ACK. */
  perSecond: number;
  /** Each lease: its T1 (bound + option 58) to the renewal's ACK, ms. */
  t1ToAck: { p50: number; p99: number };
  /** Each renewal: its REQUEST to its ACK on the wire, ms. */
  requestToAck: { p50: number; p99: number };
}

/**
 * The renewals of the leases bound in [from, to] (ms since the epoch), as the capture saw them: for
 * each client, its first ACK in the window binds it; its first REQUEST after that with ciaddr set
 * is the renewal, and the ACK or NAK of the same xid its answer.
 */
export function renewalsIn(frames: readonly DhcpFrame[], from: number, to: number): Renewals {
  const byClient = new Map<string, DhcpFrame[]>();
  for (const f of frames) if (f.at >= from && f.at <= to) byClient.set(f.mac, [...(byClient.get(f.mac) ?? []), f]);
  const t1ToAck: number[] = [];
  const requestToAck: number[] = [];
  let held = 0;
  let failed = 0;
  let firstRequest = Infinity;
  let lastAck = -Infinity;
  for (const seen of byClient.values()) {
    const bound = seen.find((f) => f.type === DHCPACK);
    if (bound === undefined) continue;
    held++;
    const request = seen.find((f) => f.at > bound.at && f.type === DHCPREQUEST && f.ciaddr !== '0.0.0.0');
    const answer =
      request === undefined
        ? undefined
        : seen.find((f) => f.at >= request.at && f.xid === request.xid && (f.type === DHCPACK || f.type === DHCPNAK));
    // The window ends well past every lease's T1: a lease not renewed by then failed to.
    if (request === undefined || answer === undefined || answer.type !== DHCPACK) {
      failed++;
      continue;
    }
    if (bound.t1 >= 0) t1ToAck.push(answer.at - (bound.at + bound.t1 * 1000));
    requestToAck.push(answer.at - request.at);
    firstRequest = Math.min(firstRequest, request.at);
    lastAck = Math.max(lastAck, answer.at);
  }
  const span = (lastAck - firstRequest) / 1000;
  return {
    held,
    renewed: requestToAck.length,
    failed,
    perSecond: requestToAck.length > 1 && span > 0 ? requestToAck.length / span : NaN,
    t1ToAck: { p50: quantile(t1ToAck, 0.5), p99: quantile(t1ToAck, 0.99) },
    requestToAck: { p50: quantile(requestToAck, 0.5), p99: quantile(requestToAck, 0.99) },
  };
}
