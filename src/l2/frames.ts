/**
 * Ethernet frames lanplug sends and reads on the LAN: ARP (RFC 826) probes
 * and announcements (RFC 5227), and IPv6 neighbour discovery (RFC 4861)
 * solicitations for duplicate address detection (RFC 4862) and unsolicited
 * advertisements. Pure encode/decode over Buffers, tested against golden
 * bytes; the socket that carries them is packet-socket.ts.
 */
import { addressBytes, addressFromBytes, type IpAddress } from '../net/address';
import { bytesToMac, macToBytes } from '../net/mac';

/** Every protocol: what a packet socket on a parent with macvlan or ipvlan children must ask for. */
export const ETH_P_ALL = 0x0003;
export const ETH_P_ARP = 0x0806;
export const ETH_P_IPV6 = 0x86dd;
const ETH_HEADER = 14;
const BROADCAST = 'ff:ff:ff:ff:ff:ff';
const ZERO_MAC = '00:00:00:00:00:00';

const ARP_REQUEST = 1;
const ARP_REPLY = 2;
const IPPROTO_ICMPV6 = 58;
const ND_NEIGHBOR_SOLICIT = 135;
const ND_NEIGHBOR_ADVERT = 136;
const ND_OPT_SOURCE_LINKADDR = 1;
const ND_OPT_TARGET_LINKADDR = 2;
const NA_FLAG_SOLICITED = 0x40000000;
const NA_FLAG_OVERRIDE = 0x20000000;

function ethernet(destination: string, source: string, type: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(ETH_HEADER);
  macToBytes(destination).copy(header, 0);
  macToBytes(source).copy(header, 6);
  header.writeUInt16BE(type, 12);
  return Buffer.concat([header, payload]);
}

function arp(op: number, senderMac: string, senderIp: Buffer, targetMac: string, targetIp: Buffer): Buffer {
  const b = Buffer.alloc(28);
  b.writeUInt16BE(1, 0); // hardware: Ethernet
  b.writeUInt16BE(0x0800, 2); // protocol: IPv4
  b[4] = 6;
  b[5] = 4;
  b.writeUInt16BE(op, 6);
  macToBytes(senderMac).copy(b, 8);
  senderIp.copy(b, 14);
  macToBytes(targetMac).copy(b, 18);
  targetIp.copy(b, 24);
  return b;
}

/** RFC 5227 §2.1.1 probe: a broadcast ARP request for `candidate` from sender IP 0.0.0.0 (no cache is polluted). */
export function arpProbe(senderMac: string, candidate: IpAddress): Buffer {
  return ethernet(
    BROADCAST,
    senderMac,
    ETH_P_ARP,
    arp(ARP_REQUEST, senderMac, Buffer.alloc(4), ZERO_MAC, addressBytes(candidate)),
  );
}

/** RFC 5227 §2.3 announcement (gratuitous ARP): a broadcast request with sender IP = target IP = the address. */
export function arpAnnouncement(mac: string, address: IpAddress): Buffer {
  const ip = addressBytes(address);
  return ethernet(BROADCAST, mac, ETH_P_ARP, arp(ARP_REQUEST, mac, ip, ZERO_MAC, ip));
}

export interface ArpMessage {
  op: 'request' | 'reply';
  /** The Ethernet source. */
  frameSource: string;
  senderMac: string;
  senderIp: IpAddress;
  targetIp: IpAddress;
}

/** An ARP frame for IPv4 over Ethernet, or null for anything else. */
export function decodeArp(frame: Buffer): ArpMessage | null {
  if (frame.length < ETH_HEADER + 28 || frame.readUInt16BE(12) !== ETH_P_ARP) return null;
  const a = frame.subarray(ETH_HEADER);
  if (a.readUInt16BE(0) !== 1 || a.readUInt16BE(2) !== 0x0800 || a[4] !== 6 || a[5] !== 4) return null;
  const op = a.readUInt16BE(6);
  if (op !== ARP_REQUEST && op !== ARP_REPLY) return null;
  return {
    op: op === ARP_REQUEST ? 'request' : 'reply',
    frameSource: bytesToMac(frame.subarray(6, 12)),
    senderMac: bytesToMac(a.subarray(8, 14)),
    senderIp: addressFromBytes(a.subarray(14, 18)),
    targetIp: addressFromBytes(a.subarray(24, 28)),
  };
}

// ---- IPv6 neighbour discovery ----

/** ff02::1:ffXX:XXXX, the solicited-node multicast group of an address (RFC 4291 §2.7.1). */
export function solicitedNode(address: IpAddress): IpAddress {
  const low = addressBytes(address).subarray(13);
  const bytes = Buffer.from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, low[0] ?? 0, low[1] ?? 0, low[2] ?? 0]);
  return addressFromBytes(bytes);
}

/** 33:33 followed by the group's last four bytes (RFC 2464 §7). */
export function multicastMac(group: IpAddress): string {
  const b = addressBytes(group);
  return bytesToMac(Buffer.from([0x33, 0x33, b[12] ?? 0, b[13] ?? 0, b[14] ?? 0, b[15] ?? 0]));
}

const ALL_NODES = addressFromBytes(Buffer.from('ff020000000000000000000000000001', 'hex'));
const UNSPECIFIED = addressFromBytes(Buffer.alloc(16));

/** The ICMPv6 checksum over the IPv6 pseudo-header (RFC 8200 §8.1) and the message. */
export function icmpv6Checksum(source: IpAddress, destination: IpAddress, message: Buffer): number {
  const pseudo = Buffer.alloc(40);
  addressBytes(source).copy(pseudo, 0);
  addressBytes(destination).copy(pseudo, 16);
  pseudo.writeUInt32BE(message.length, 32);
  pseudo[39] = IPPROTO_ICMPV6;
  const all = Buffer.concat([pseudo, message, Buffer.alloc(message.length % 2)]);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += all.readUInt16BE(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function ipv6Packet(
  frameSource: string,
  destinationMac: string,
  source: IpAddress,
  destination: IpAddress,
  icmp: Buffer,
): Buffer {
  icmp.writeUInt16BE(icmpv6Checksum(source, destination, icmp), 2);
  const header = Buffer.alloc(40);
  header.writeUInt32BE(0x60000000, 0); // version 6
  header.writeUInt16BE(icmp.length, 4);
  header[6] = IPPROTO_ICMPV6;
  header[7] = 255; // hop limit: RFC 4861 drops ND messages with anything else
  addressBytes(source).copy(header, 8);
  addressBytes(destination).copy(header, 24);
  return ethernet(destinationMac, frameSource, ETH_P_IPV6, Buffer.concat([header, icmp]));
}

/** RFC 4862 §5.4.2 DAD probe: an NS for `candidate` from ::, to its solicited-node group, with no source option. */
export function dadSolicitation(senderMac: string, candidate: IpAddress): Buffer {
  const icmp = Buffer.alloc(24);
  icmp[0] = ND_NEIGHBOR_SOLICIT;
  addressBytes(candidate).copy(icmp, 8);
  const group = solicitedNode(candidate);
  return ipv6Packet(senderMac, multicastMac(group), UNSPECIFIED, group, icmp);
}

/** RFC 4861 §7.2.6 unsolicited advertisement: to all nodes, Override set, Solicited clear, our MAC as target option. */
export function unsolicitedAdvertisement(mac: string, address: IpAddress): Buffer {
  const icmp = Buffer.alloc(32);
  icmp[0] = ND_NEIGHBOR_ADVERT;
  icmp.writeUInt32BE(NA_FLAG_OVERRIDE, 4);
  addressBytes(address).copy(icmp, 8);
  icmp[24] = ND_OPT_TARGET_LINKADDR;
  icmp[25] = 1; // length in units of 8 bytes
  macToBytes(mac).copy(icmp, 26);
  return ipv6Packet(mac, multicastMac(ALL_NODES), address, ALL_NODES, icmp);
}

export interface NeighborMessage {
  type: 'solicitation' | 'advertisement';
  frameSource: string;
  source: IpAddress;
  target: IpAddress;
  /** The link-layer address option (target for an NA, source for an NS), else the frame's source. */
  mac: string;
  solicited: boolean;
}

/** An NS or NA in an Ethernet frame (no extension headers), or null. */
export function decodeNeighbor(frame: Buffer): NeighborMessage | null {
  if (frame.length < ETH_HEADER + 40 + 24 || frame.readUInt16BE(12) !== ETH_P_IPV6) return null;
  const ip = frame.subarray(ETH_HEADER);
  if (ip[6] !== IPPROTO_ICMPV6 || ip[7] !== 255) return null;
  const icmp = ip.subarray(40, 40 + ip.readUInt16BE(4));
  const type = icmp[0];
  if ((type !== ND_NEIGHBOR_SOLICIT && type !== ND_NEIGHBOR_ADVERT) || icmp.length < 24) return null;
  let mac = bytesToMac(frame.subarray(6, 12));
  for (let off = 24; off + 8 <= icmp.length;) {
    const length = (icmp[off + 1] ?? 0) * 8;
    if (length === 0) break;
    const option = icmp[off];
    if ((option === ND_OPT_TARGET_LINKADDR || option === ND_OPT_SOURCE_LINKADDR) && length >= 8)
      mac = bytesToMac(icmp.subarray(off + 2, off + 8));
    off += length;
  }
  return {
    type: type === ND_NEIGHBOR_SOLICIT ? 'solicitation' : 'advertisement',
    frameSource: bytesToMac(frame.subarray(6, 12)),
    source: addressFromBytes(ip.subarray(8, 24)),
    target: addressFromBytes(icmp.subarray(8, 24)),
    mac,
    solicited: type === ND_NEIGHBOR_ADVERT && (icmp.readUInt32BE(4) & NA_FLAG_SOLICITED) !== 0,
  };
}
