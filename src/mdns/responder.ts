/**
 * The mDNS responder (RFC 6762) of `-o lanplug.mdns=true` networks: it
 * answers `<name>.local` A/AAAA for their containers with a name, on the LAN
 * eye of the network's parent (lanplug's own bridge-mode macvlan beside the
 * containers, never the host's interface), in frames from the container's own
 * MAC and IPv4 address, as if the container answered itself.
 *
 * A name is probed before it is answered (§8.1: three probes 250 ms apart),
 * then announced (§8.3: twice, a second apart). A LAN device that answers for
 * the name while it is probed, or wins a simultaneous probe (§8.2), keeps it:
 * lanplug refuses the name (a log line and an event name the device), never
 * steals it. A device that claims the name later (§9: a record of the name
 * with other data) makes lanplug withdraw: a goodbye for its records and no
 * more answers. Either way the container runs on; its name is answered again
 * once it is re-created. Answers go to the group (a querier on port 5353) or
 * back to a legacy resolver's port (§6.7). Only over IPv4 (224.0.0.251): a
 * container without an IPv4 address is not answered.
 *
 * Which names and where: LanCitizen's sync hands over the wanted names; this
 * keeps one packet socket per link while a name needs it.
 */
import { randomInt } from 'node:crypto';
import { decodeUdpFrame, encodeUdpFrame, ETH_P_IP, type UdpDatagram } from '../l2/udp-frames';
import { PacketSocket } from '../l2/packet-socket';
import type { ProbeLink } from '../lan/probe';
import type { Logger } from '../log';
import { recordEvent } from '../metrics/events';
import { shortId } from '../model/network';
import { parseAddress, sameAddress, type IpAddress } from '../net/address';
import {
  addressRecord,
  asks,
  compareProbes,
  decodeMdns,
  encodeMdns,
  knownToQuerier,
  legacyResponse,
  MDNS_GROUP_V4,
  MDNS_MAC_V4,
  MDNS_PORT,
  probeMessage,
  recordAddress,
  responseMessage,
  sameName,
  type MdnsMessage,
  type ResourceRecord,
} from './message';

/** A container's name to answer for, as the store has it now. */
export interface MdnsName {
  /** `<name>.local`. */
  name: string;
  addresses: IpAddress[];
  /** The container's MAC: the frames' source (on ipvlan, the parent's). */
  mac: string;
  link: ProbeLink;
  networkId: string;
  endpointId: string;
}

/** §8.1: three probes, 250 ms apart, the first after a random 0-250 ms. */
const PROBES = 3;
const PROBE_INTERVAL_MS = 250;
/** §8.3: the announcement is sent twice, one second apart. */
const ANNOUNCEMENTS = 2;
const ANNOUNCE_INTERVAL_MS = 1_000;
/** §6: a record is multicast at most once a second, but a probe is defended after 250 ms. */
const MULTICAST_MIN_GAP_MS = 1_000;
const PROBE_DEFENCE_MIN_GAP_MS = 250;
/** §11: a receiver may drop what did not come with IP TTL 255 (sent from the link itself). */
const MDNS_IP_TTL = 255;
const GROUP = parseAddress(MDNS_GROUP_V4);

type State = 'probing' | 'answering' | 'refused';

interface Entry {
  host: MdnsName;
  source: IpAddress;
  records: ResourceRecord[];
  state: State;
  timer: NodeJS.Timeout | null;
  /** When a response was last multicast, on the responder's monotonic clock. */
  lastMulticast: number;
}

interface Listening {
  link: ProbeLink;
  socket: PacketSocket;
}

export class MdnsResponder {
  /** By link index, then by lower-cased name. */
  private readonly entries = new Map<number, Map<string, Entry>>();
  private readonly sockets = new Map<number, Listening>();
  /** Links lanplug could not listen on, said once: sync tries again every 2 s, and would say it each time. */
  private readonly deaf = new Set<number>();

  constructor(
    private readonly log: Logger,
    /**
     * What §6's gaps between multicast responses are measured on: monotonic ms. On the wall clock, one
     * set back an hour muted the name's answers for the hour.
     */
    private readonly monotonic: () => number = () => performance.now(),
  ) {}

  /** The names to answer from now: new ones are probed, gone ones say goodbye, changed ones start over. */
  sync(wanted: readonly MdnsName[]): void {
    const byLink = new Map<number, Map<string, MdnsName>>();
    for (const host of wanted) {
      const source = host.addresses.find((a) => a.family === 4);
      if (source === undefined) continue; // answered over IPv4 only
      const names = byLink.get(host.link.index) ?? new Map<string, MdnsName>();
      names.set(host.name.toLowerCase(), host);
      byLink.set(host.link.index, names);
    }
    for (const [index, entries] of this.entries) {
      for (const [key, entry] of entries) {
        const now = byLink.get(index)?.get(key);
        if (now === undefined || !sameHost(now, entry.host)) this.drop(index, key, entry);
      }
    }
    for (const [index, names] of byLink) {
      for (const [key, host] of names) if (this.entries.get(index)?.get(key) === undefined) this.add(index, key, host);
    }
    for (const index of [...this.sockets.keys()]) if ((this.entries.get(index)?.size ?? 0) === 0) this.unlisten(index);
    for (const index of [...this.deaf]) if (!byLink.has(index)) this.deaf.delete(index);
  }

  /** Goodbyes for every name answered, then the sockets close (daemon shutdown). */
  async close(): Promise<void> {
    for (const [index, entries] of this.entries) for (const [key, entry] of entries) this.drop(index, key, entry);
    await Promise.all([...this.sockets.values()].map((l) => l.socket.close()));
    this.sockets.clear();
  }

  private add(index: number, key: string, host: MdnsName): void {
    const source = host.addresses.find((a) => a.family === 4);
    if (source === undefined) return;
    if (!this.listen(host.link)) return;
    const entry: Entry = {
      host,
      source,
      records: host.addresses.map((a) => addressRecord(host.name, a)),
      state: 'probing',
      timer: null,
      lastMulticast: -Infinity,
    };
    const entries = this.entries.get(index) ?? new Map<string, Entry>();
    entries.set(key, entry);
    this.entries.set(index, entries);
    this.probe(entry, 0, randomInt(PROBE_INTERVAL_MS));
  }

  private drop(index: number, key: string, entry: Entry): void {
    if (entry.timer !== null) clearTimeout(entry.timer);
    // §10.1: caches forget the records at once rather than when their TTL runs out.
    if (entry.state === 'answering')
      this.multicast(entry, responseMessage(entry.records.map((r) => ({ ...r, ttl: 0 }))));
    this.entries.get(index)?.delete(key);
  }

  private probe(entry: Entry, sent: number, delay: number): void {
    entry.timer = setTimeout(() => {
      entry.timer = null;
      if (entry.state !== 'probing') return;
      if (sent === PROBES) return this.claim(entry);
      this.multicast(entry, probeMessage(entry.host.name, entry.host.addresses));
      this.probe(entry, sent + 1, PROBE_INTERVAL_MS);
    }, delay);
    entry.timer.unref();
  }

  /** No one objected to the probes: the name is the container's; announced twice (§8.3). */
  private claim(entry: Entry): void {
    entry.state = 'answering';
    this.log.info('mdns: answering for a name', {
      name: entry.host.name,
      addresses: entry.host.addresses.map((a) => a.text).join(','),
      endpoint: shortId(entry.host.endpointId),
    });
    recordEvent('mdns.answering', { name: entry.host.name, address: entry.source.text });
    const announce = (round: number): void => {
      entry.timer = null;
      if (entry.state !== 'answering') return;
      this.multicast(entry, responseMessage(entry.records));
      if (round + 1 < ANNOUNCEMENTS) {
        entry.timer = setTimeout(() => announce(round + 1), ANNOUNCE_INTERVAL_MS);
        entry.timer.unref();
      }
    };
    announce(0);
  }

  private listen(link: ProbeLink): boolean {
    if (this.sockets.has(link.index)) return true;
    try {
      const socket = PacketSocket.open(link.index, ETH_P_IP, link.name);
      socket.listen((frame) => this.onFrame(link.index, frame));
      this.sockets.set(link.index, { link, socket });
      this.deaf.delete(link.index);
      return true;
    } catch (err) {
      if (!this.deaf.has(link.index))
        this.log.warn('mdns: cannot listen on the LAN link; names there are not answered', {
          link: link.name,
          error: String(err),
        });
      this.deaf.add(link.index);
      return false;
    }
  }

  private unlisten(index: number): void {
    const listening = this.sockets.get(index);
    this.sockets.delete(index);
    this.entries.delete(index);
    void listening?.socket.close();
  }

  private onFrame(index: number, frame: Buffer): void {
    const datagram = decodeUdpFrame(frame);
    if (datagram === null || datagram.destinationPort !== MDNS_PORT) return;
    const message = decodeMdns(datagram.payload);
    const entries = this.entries.get(index);
    if (message === null || entries === undefined) return;
    for (const entry of [...entries.values()]) {
      // The container speaking for itself (its own avahi) is no other device.
      const itself = datagram.sourceMac === entry.host.mac && sameAddress(datagram.source, entry.source);
      if (message.response) {
        if (!itself) this.heardAnswer(entry, message, datagram);
      } else {
        if (!itself) this.heardProbe(entry, message, datagram);
        this.answer(entry, message, datagram);
      }
    }
  }

  /** Another device's response: any record of the name while probing (§8.1), other data once answering (§9). */
  private heardAnswer(entry: Entry, message: MdnsMessage, from: UdpDatagram): void {
    const records = [...message.answers, ...message.additionals].filter((r) => sameName(r.name, entry.host.name));
    if (entry.state === 'probing' && records.length > 0) this.refuse(entry, from, deviceAddress(records, from));
    else if (entry.state === 'answering') {
      const claim = records.find(
        (r) => r.ttl > 0 && recordAddress(r) !== null && !entry.records.some((own) => own.data.equals(r.data)),
      );
      if (claim !== undefined) this.withdraw(entry, from, deviceAddress([claim], from));
    }
  }

  /** Another device probing for the name at the same time (§8.2): the later records win; lanplug yields on a loss. */
  private heardProbe(entry: Entry, message: MdnsMessage, from: UdpDatagram): void {
    if (entry.state !== 'probing') return;
    const theirs = message.authorities.filter((r) => sameName(r.name, entry.host.name));
    if (theirs.length > 0 && compareProbes(entry.records, theirs) < 0)
      this.refuse(entry, from, deviceAddress(theirs, from));
  }

  /** The records a query asks for, but those the querier holds already (§7.1), to the group or a legacy port. */
  private answer(entry: Entry, query: MdnsMessage, from: UdpDatagram): void {
    if (entry.state !== 'answering') return;
    const records = entry.records.filter((r) => query.questions.some((q) => asks(q, r)) && !knownToQuerier(query, r));
    if (records.length === 0) return;
    if (from.sourcePort !== MDNS_PORT) {
      this.send(entry, legacyResponse(query, records), {
        mac: from.sourceMac,
        address: from.source,
        port: from.sourcePort,
      });
      return;
    }
    const probing = query.authorities.length > 0;
    const gap = this.monotonic() - entry.lastMulticast;
    if (gap < (probing ? PROBE_DEFENCE_MIN_GAP_MS : MULTICAST_MIN_GAP_MS)) return;
    this.multicast(entry, responseMessage(records));
  }

  private refuse(entry: Entry, from: UdpDatagram, device: string): void {
    this.stopAnswering(entry);
    const fields = { name: entry.host.name, device, mac: from.sourceMac, network: shortId(entry.host.networkId) };
    this.log.warn('mdns: refusing a name a LAN device already answers for', {
      ...fields,
      endpoint: shortId(entry.host.endpointId),
    });
    recordEvent('mdns.refused', fields);
  }

  private withdraw(entry: Entry, from: UdpDatagram, device: string): void {
    // Goodbyes for lanplug's own records only: the device's stay in the LAN's caches.
    this.multicast(entry, responseMessage(entry.records.map((r) => ({ ...r, ttl: 0 }))));
    this.stopAnswering(entry);
    const fields = { name: entry.host.name, device, mac: from.sourceMac, network: shortId(entry.host.networkId) };
    this.log.warn('mdns: withdrawing a name a LAN device now answers for', {
      ...fields,
      endpoint: shortId(entry.host.endpointId),
    });
    recordEvent('mdns.withdrawn', fields);
  }

  private stopAnswering(entry: Entry): void {
    entry.state = 'refused';
    if (entry.timer !== null) clearTimeout(entry.timer);
    entry.timer = null;
  }

  private multicast(entry: Entry, message: MdnsMessage): void {
    if (message.response) entry.lastMulticast = this.monotonic();
    this.send(entry, message, { mac: MDNS_MAC_V4, address: GROUP, port: MDNS_PORT });
  }

  private send(entry: Entry, message: MdnsMessage, to: { mac: string; address: IpAddress; port: number }): void {
    const listening = this.sockets.get(entry.host.link.index);
    if (listening === undefined) return;
    const frame = encodeUdpFrame(
      {
        sourceMac: entry.host.mac,
        destinationMac: to.mac,
        source: entry.source,
        destination: to.address,
        sourcePort: MDNS_PORT,
        destinationPort: to.port,
        payload: encodeMdns(message),
      },
      MDNS_IP_TTL,
    );
    try {
      listening.socket.send(frame);
    } catch (err) {
      this.log.warn('mdns: could not send', { link: listening.link.name, name: entry.host.name, error: String(err) });
    }
  }
}

/** The device's address as its records give it (a responder may answer from another), else the frame's source. */
function deviceAddress(records: readonly ResourceRecord[], from: UdpDatagram): string {
  for (const r of records) {
    const address = recordAddress(r);
    if (address !== null) return address.text;
  }
  return from.source.text;
}

function sameHost(a: MdnsName, b: MdnsName): boolean {
  return (
    a.endpointId === b.endpointId &&
    a.mac === b.mac &&
    a.addresses.length === b.addresses.length &&
    a.addresses.every((x, i) => {
      const y = b.addresses[i];
      return y !== undefined && sameAddress(x, y);
    })
  );
}
