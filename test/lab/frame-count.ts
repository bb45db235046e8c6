// Counting what the LAN hears from one MAC: a packet socket on the LAN bridge (python3, in the LAN
// namespace; independent of lanplug's own packet code) that counts the ARP frames and the ICMPv6
// neighbour advertisements sent from that MAC for a given time. For the announcements a container
// makes when it joins (lanplug's, and Docker ≥ 28's own).

import { spawn } from 'node:child_process';
import type { Lan } from './lan';
import { nsExecArgv } from './ns';
import { cleanEnv } from './proc';

export interface FrameCount {
  arp: number;
  /** The counted ARP frames by the address they speak for (their sender IP): a device's answers, address by address. */
  arpBySender: ReadonlyMap<string, number>;
  /** ICMPv6 neighbour advertisements. */
  na: number;
}

/**
 * Binds to the link argv[3], says "ready", counts for `seconds` or until its stdin closes (the
 * caller's stop()), reads what is still queued, prints "<arp> <na>" and then the ARP frames by
 * sender address as JSON. argv[4], when given: the ARP sender addresses to count
 * (comma-separated); ARP frames from others are left out.
 */
const COUNTER = `
import json, os, select, socket, struct, sys, time
mac = bytes.fromhex(sys.argv[1].replace(':', ''))
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((sys.argv[3], 0))
senders = {socket.inet_aton(a) for a in sys.argv[4].split(',')} if len(sys.argv) > 4 else None
print('ready', flush=True)
end = time.time() + float(sys.argv[2])
arp = na = 0
by_sender = {}
def count(f):
    global arp, na
    if f[6:12] != mac or len(f) < 14:
        return
    kind = struct.unpack('!H', f[12:14])[0]
    if kind == 0x0806 and len(f) >= 32:
        if senders is None or f[28:32] in senders:
            arp += 1
            sender = socket.inet_ntoa(f[28:32])
            by_sender[sender] = by_sender.get(sender, 0) + 1
    elif kind == 0x86dd and len(f) > 54 and f[20] == 58 and f[54] == 136:
        na += 1
while time.time() < end:
    ready = select.select([s, sys.stdin], [], [], 0.1)[0]
    if s in ready:
        count(s.recv(2048))
    if sys.stdin in ready and os.read(sys.stdin.fileno(), 64) == b'':
        break
s.setblocking(False)
while True:
    try:
        count(s.recv(2048))
    except BlockingIOError:
        break
print(arp, na, flush=True)
print(json.dumps(by_sender), flush=True)
`;

/**
 * Starts counting the frames from `mac` on the LAN for `seconds`; resolves `ready` once the
 * socket is bound (start the thing to watch after that) and `result` with the counts. On the
 * LAN's bridge it hears what reaches the bridge itself (broadcasts; a unicast frame the bridge
 * forwards from port to port it never sees): `at` counts on a LAN host's eth0 instead, which
 * sees everything that host sends. `only.arpSenders`: count only the ARP frames that speak for
 * these addresses (a device's answers about them, not about others lanplug asks meanwhile).
 */
export function countFramesFrom(
  lan: Lan,
  mac: string,
  seconds: number,
  at: { ns: string; link: string } = { ns: lan.ns, link: lan.bridge },
  only: { arpSenders?: readonly string[] } = {},
): { ready: Promise<void>; result: Promise<FrameCount>; stop: () => void } {
  const senders = only.arpSenders === undefined ? [] : [only.arpSenders.join(',')];
  const argv = nsExecArgv(at.ns, ['python3', '-c', COUNTER, mac, String(seconds), at.link, ...senders]);
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'], env: cleanEnv({}) });
  let out = '';
  let err = '';
  let onReady: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => (onReady = resolve));
  child.stdout.on('data', (c: Buffer) => {
    out += c.toString();
    if (out.startsWith('ready\n')) onReady();
  });
  child.stderr.on('data', (c: Buffer) => (err += c.toString()));
  const result = new Promise<FrameCount>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      const m = /^ready\n(\d+) (\d+)\n(\{.*\})\n$/.exec(out);
      if (code !== 0 || m === null) {
        reject(new Error(`lab: the frame counter failed (exit ${String(code)}): ${err.trim() || out.trim()}`));
        return;
      }
      const bySender = JSON.parse(m[3] as string) as Record<string, number>;
      resolve({ arp: Number(m[1]), na: Number(m[2]), arpBySender: new Map(Object.entries(bySender)) });
    });
  });
  // a counter that dies before it is ready must not leave the caller waiting on `ready`
  result.catch(() => onReady());
  // Its stdin closing ends the count early: what was heard until then is counted.
  return { ready, result, stop: () => child.stdin.end() };
}
