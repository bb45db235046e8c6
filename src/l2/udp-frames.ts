/**
 * UDP over IPv4 or IPv6 in an Ethernet frame (RFC 768, RFC 791, RFC 8200):
 * what a DHCP client sends before it has an address, or from an address the
 * kernel of the sending namespace does not hold. Pure encode/decode over Buffers.
 */
import { addressBytes, addressFromBytes, type IpAddress } from '../net/address';
import { bytesToMac, macToBytes } from '../net/mac';

export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;
const IPV6_HEADER = 40;
const ETH_HEADER = 14;
const IPV4_HEADER = 20;
const UDP_HEADER = 8;
const IPPROTO_UDP = 17;

export interface UdpDatagram {
  sourceMac: string;
  destinationMac: string;
  source: IpAddress;
  destination: IpAddress;
  sourcePort: number;
  destinationPort: number;
  payload: Buffer;
}

/** The Internet checksum (RFC 1071) of `data`, an odd last byte padded with zero. */
export function internetChecksum(data: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += data.readUInt16BE(i);
  if (data.length % 2 === 1) sum += (data[data.length - 1] ?? 0) << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** `ttl`: the IP TTL; mDNS sends 255 (RFC 6762 §11: a receiver may check it came from the link). */
export function encodeUdpFrame(d: UdpDatagram, ttl = 64): Buffer {
  const frame = Buffer.alloc(ETH_HEADER + IPV4_HEADER + UDP_HEADER + d.payload.length);
  macToBytes(d.destinationMac).copy(frame, 0);
  macToBytes(d.sourceMac).copy(frame, 6);
  frame.writeUInt16BE(ETH_P_IP, 12);
  const ip = frame.subarray(ETH_HEADER, ETH_HEADER + IPV4_HEADER);
  ip[0] = 0x45; // version 4, 5 words of header
  ip[1] = 0x10; // TOS: low delay, as DHCP clients set it
  ip.writeUInt16BE(IPV4_HEADER + UDP_HEADER + d.payload.length, 2);
  ip[8] = ttl;
  ip[9] = IPPROTO_UDP;
  addressBytes(d.source).copy(ip, 12);
  addressBytes(d.destination).copy(ip, 16);
  ip.writeUInt16BE(internetChecksum(ip), 10);
  const udp = frame.subarray(ETH_HEADER + IPV4_HEADER);
  udp.writeUInt16BE(d.sourcePort, 0);
  udp.writeUInt16BE(d.destinationPort, 2);
  udp.writeUInt16BE(UDP_HEADER + d.payload.length, 4);
  d.payload.copy(udp, UDP_HEADER);
  const pseudo = Buffer.alloc(12);
  addressBytes(d.source).copy(pseudo, 0);
  addressBytes(d.destination).copy(pseudo, 4);
  pseudo[9] = IPPROTO_UDP;
  pseudo.writeUInt16BE(udp.length, 10);
  // 0 means "no checksum" in UDP over IPv4: a computed 0 is sent as 0xffff.
  udp.writeUInt16BE(internetChecksum(Buffer.concat([pseudo, udp])) || 0xffff, 6);
  return frame;
}

/** A UDP datagram in an unfragmented IPv4 frame, or null for anything else. */
export function decodeUdpFrame(frame: Buffer): UdpDatagram | null {
  if (frame.length < ETH_HEADER + IPV4_HEADER + UDP_HEADER || frame.readUInt16BE(12) !== ETH_P_IP) return null;
  const ip = frame.subarray(ETH_HEADER);
  const headerLength = ((ip[0] ?? 0) & 0x0f) * 4;
  if ((ip[0] ?? 0) >> 4 !== 4 || headerLength < IPV4_HEADER || ip[9] !== IPPROTO_UDP) return null;
  // More fragments, or a fragment offset: not a whole datagram.
  if ((ip.readUInt16BE(6) & 0x3fff) !== 0) return null;
  const total = Math.min(ip.readUInt16BE(2), ip.length);
  const udp = ip.subarray(headerLength, total);
  if (udp.length < UDP_HEADER) return null;
  return datagramOf(frame, ip.subarray(12, 16), ip.subarray(16, 20), udp);
}

/** The UDP checksum over the IPv6 pseudo-header (RFC 8200 §8.1); mandatory in IPv6. */
function udp6Checksum(d: UdpDatagram, udp: Buffer): number {
  const pseudo = Buffer.alloc(40);
  addressBytes(d.source).copy(pseudo, 0);
  addressBytes(d.destination).copy(pseudo, 16);
  pseudo.writeUInt32BE(udp.length, 32);
  pseudo[39] = IPPROTO_UDP;
  return internetChecksum(Buffer.concat([pseudo, udp])) || 0xffff;
}

export function encodeUdp6Frame(d: UdpDatagram): Buffer {
  const udpLength = UDP_HEADER + d.payload.length;
  const frame = Buffer.alloc(ETH_HEADER + IPV6_HEADER + udpLength);
  macToBytes(d.destinationMac).copy(frame, 0);
  macToBytes(d.sourceMac).copy(frame, 6);
  frame.writeUInt16BE(ETH_P_IPV6, 12);
  const ip = frame.subarray(ETH_HEADER, ETH_HEADER + IPV6_HEADER);
  ip.writeUInt32BE(0x60000000, 0); // version 6
  ip.writeUInt16BE(udpLength, 4);
  ip[6] = IPPROTO_UDP;
  ip[7] = 64; // hop limit; link-scope destinations never leave the link anyway
  addressBytes(d.source).copy(ip, 8);
  addressBytes(d.destination).copy(ip, 24);
  const udp = frame.subarray(ETH_HEADER + IPV6_HEADER);
  udp.writeUInt16BE(d.sourcePort, 0);
  udp.writeUInt16BE(d.destinationPort, 2);
  udp.writeUInt16BE(udpLength, 4);
  d.payload.copy(udp, UDP_HEADER);
  udp.writeUInt16BE(udp6Checksum(d, udp), 6);
  return frame;
}

/** A UDP datagram in an IPv6 frame without extension headers, or null for anything else. */
export function decodeUdp6Frame(frame: Buffer): UdpDatagram | null {
  if (frame.length < ETH_HEADER + IPV6_HEADER + UDP_HEADER || frame.readUInt16BE(12) !== ETH_P_IPV6) return null;
  const ip = frame.subarray(ETH_HEADER);
  if ((ip[0] ?? 0) >> 4 !== 6 || ip[6] !== IPPROTO_UDP) return null;
  const udp = ip.subarray(IPV6_HEADER, IPV6_HEADER + ip.readUInt16BE(4));
  if (udp.length < UDP_HEADER) return null;
  return datagramOf(frame, ip.subarray(8, 24), ip.subarray(24, 40), udp);
}

/** The EUI-64 link-local address of a MAC (RFC 4291 §2.5.1, appendix A): what a link derives by default. */
export function linkLocalOf(mac: string): IpAddress {
  const m = macToBytes(mac);
  const b = Buffer.alloc(16);
  b[0] = 0xfe;
  b[1] = 0x80;
  b[8] = (m[0] ?? 0) ^ 0x02;
  b[9] = m[1] ?? 0;
  b[10] = m[2] ?? 0;
  b[11] = 0xff;
  b[12] = 0xfe;
  b[13] = m[3] ?? 0;
  b[14] = m[4] ?? 0;
  b[15] = m[5] ?? 0;
  return addressFromBytes(b);
}

/** The datagram of a frame whose IP addresses and UDP part (header and payload) the caller found. */
function datagramOf(frame: Buffer, source: Buffer, destination: Buffer, udp: Buffer): UdpDatagram {
  const udpLength = Math.min(udp.readUInt16BE(4), udp.length);
  return {
    destinationMac: bytesToMac(frame.subarray(0, 6)),
    sourceMac: bytesToMac(frame.subarray(6, 12)),
    source: addressFromBytes(source),
    destination: addressFromBytes(destination),
    sourcePort: udp.readUInt16BE(0),
    destinationPort: udp.readUInt16BE(2),
    payload: Buffer.from(udp.subarray(UDP_HEADER, udpLength)),
  };
}
