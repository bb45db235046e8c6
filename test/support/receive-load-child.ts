/**
 * Runs inside a throw-away network namespace (receive-load.ts starts it with
 * nsenter) that holds `parents` veth pairs w<i>/v<i>, and 10.99.0.2/24 on v0:
 * the daemon's LAN watch on every w<i>, then what must not wait behind its
 * receive loops, each timed `samples` times: a libuv thread-pool call
 * (fs.promises.stat), a conflict probe of the address v0 answers for (it must
 * say "in use") and of a free one, a DHCP-like receive on w1 (a UDP frame to
 * port 68 sent from v1) and the close of its socket. Then a burst of numbered
 * frames, which must arrive in order. Prints the figures as JSON on stdout.
 *
 * argv: <parents> <samples> <burst>
 */
import { pbkdf2 } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { PacketChannel } from '../../src/dhcp/channel';
import { PacketSocket, SEND_ONLY } from '../../src/l2/packet-socket';
import { decodeUdpFrame, encodeUdpFrame, ETH_P_IP } from '../../src/l2/udp-frames';
import { probe, type ProbeLink } from '../../src/lan/probe';
import { LanWatch } from '../../src/lan/watch';
import { openRtnl } from '../../src/link/rtnl';
import { silentLogger } from '../../src/log';
import { parseAddress } from '../../src/net/address';

export interface ReceiveLoadFigures {
  parents: number;
  /** ms, one per sample. */
  fsStat: number[];
  probeInUse: number[];
  /** How many of the in-use probes said "in use" (all of them, or a conflict was missed). */
  probeInUseSeen: number;
  probeFree: number[];
  dhcpReceive: number[];
  /** Closing the DHCP-like receive's socket. */
  close: number[];
  /** The numbers of a burst of frames sent from v1, as w1's listener got them. */
  burst: number[];
  /**
   * A probe of the address v0 answers for, while every thread of libuv's pool is busy (the
   * receiving poll cannot run): whether it still said "in use" (the answer waits in its socket).
   */
  probeInUseWhilePoolBusy: boolean;
}

const [parentsText = '16', samplesText = '10', burstText = '200'] = process.argv.slice(2);
const parents = Number(parentsText);
const samples = Number(samplesText);
const burst = Number(burstText);

function since(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e6;
}

async function main(): Promise<ReceiveLoadFigures> {
  const rtnl = openRtnl();
  const linkOf = (name: string): ProbeLink => {
    const link = rtnl.getLink(name);
    if (link === null || link.mac === null) throw new Error(`receive-load: no link ${name}`);
    return { index: link.index, name, mac: link.mac, listenAll: true };
  };
  const watched = Array.from({ length: parents }, (_, i) => linkOf(`w${i}`));
  const lan = linkOf('w0');
  const dhcpLink = linkOf('w1');
  const sender = linkOf('v1');
  rtnl.close();
  const watch = new LanWatch(() => null, { recordSighting: () => undefined, listSightings: () => [] }, silentLogger);
  watch.sync(watched);
  // Every receive loop running, as in a daemon that has been up for a while.
  await new Promise((resolve) => setTimeout(resolve, 300));
  const figures: ReceiveLoadFigures = {
    parents,
    fsStat: [],
    probeInUse: [],
    probeInUseSeen: 0,
    probeFree: [],
    dhcpReceive: [],
    close: [],
    burst: [],
    probeInUseWhilePoolBusy: false,
  };
  const offer = (n: number): Buffer =>
    encodeUdpFrame({
      sourceMac: sender.mac,
      destinationMac: 'ff:ff:ff:ff:ff:ff',
      source: parseAddress('10.99.0.1'),
      destination: parseAddress('255.255.255.255'),
      sourcePort: 67,
      destinationPort: 68,
      payload: Buffer.from(`offer ${n}`),
    });
  for (let i = 0; i < samples; i++) {
    let start = process.hrtime.bigint();
    await stat('/');
    figures.fsStat.push(since(start));

    start = process.hrtime.bigint();
    const verdict = await probe(lan, parseAddress('10.99.0.2'));
    figures.probeInUse.push(since(start));
    if (verdict.inUse) figures.probeInUseSeen++;

    start = process.hrtime.bigint();
    await probe(lan, parseAddress('10.99.0.3'));
    figures.probeFree.push(since(start));

    const channel = PacketChannel.open(dhcpLink.index, 'w1', { family: 4, port: 68 });
    const out = PacketSocket.open(sender.index, SEND_ONLY, 'v1');
    start = process.hrtime.bigint();
    out.send(offer(i));
    const got = await channel.next((d) => d.payload.toString() === `offer ${i}`, Date.now() + 5000);
    figures.dhcpReceive.push(got === null ? Infinity : since(start));
    start = process.hrtime.bigint();
    await channel.close();
    figures.close.push(since(start));
    await out.close();
  }
  const listener = PacketSocket.open(dhcpLink.index, ETH_P_IP, 'w1');
  const out = PacketSocket.open(sender.index, SEND_ONLY, 'v1');
  listener.listen((frame) => {
    const text = decodeUdpFrame(frame)?.payload.toString() ?? '';
    if (text.startsWith('offer ')) figures.burst.push(Number(text.slice(6)));
  });
  // Its socket is polled from a microtask on: sent before, the burst would wait in its buffer (also fine).
  await new Promise((resolve) => setTimeout(resolve, 10));
  for (let n = 0; n < burst; n++) out.send(offer(n));
  for (let waited = 0; figures.burst.length < burst && waited < 3000; waited += 10)
    await new Promise((resolve) => setTimeout(resolve, 10));
  await Promise.all([listener.close(), out.close()]);
  // Four jobs of a second or more take libuv's four threads: the poll waits, the answer sits in the socket.
  const busy = Array.from(
    { length: 4 },
    () => new Promise((resolve) => pbkdf2('lanplug', 'salt', 1_500_000, 64, 'sha512', resolve)),
  );
  figures.probeInUseWhilePoolBusy = (await probe(lan, parseAddress('10.99.0.2'))).inUse;
  await Promise.all(busy);
  await watch.close();
  return figures;
}

main()
  .then((figures) => process.stdout.write(`${JSON.stringify(figures)}\n`))
  .catch((err: unknown) => {
    process.stderr.write(`receive-load: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
