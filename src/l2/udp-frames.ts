/**
 * UDP over IPv4 in an Ethernet frame (RFC 791, RFC 768): what a DHCP client
 * sends before it has an address, or from an address the kernel of the
 * sending namespace does not hold. Pure encode/decode over Buffers.
 */
import { addressBytes, addressFromBytes, type IpAddress } from '../net/address';
import { bytesToMac, macToBytes } from '../net/mac';

export const ETH_P_IP = 0x0800;
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

export function encodeUdpFrame(d: UdpDatagram): Buffer {
  const frame = Buffer.alloc(ETH_HEADER + IPV4_HEADER + UDP_HEADER + d.payload.length);
  macToBytes(d.destinationMac).copy(frame, 0);
  macToBytes(d.sourceMac).copy(frame, 6);
  frame.writeUInt16BE(ETH_P_IP, 12);
  const ip = frame.subarray(ETH_HEADER, ETH_HEADER + IPV4_HEADER);
  ip[0] = 0x45; // version 4, 5 words of header
  ip[1] = 0x10; // TOS: low delay, as DHCP clients set it
  ip.writeUInt16BE(IPV4_HEADER + UDP_HEADER + d.payload.length, 2);
  ip[8] = 64; // TTL
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
  const udpLength = Math.min(udp.readUInt16BE(4), udp.length);
  return {
    destinationMac: bytesToMac(frame.subarray(0, 6)),
    sourceMac: bytesToMac(frame.subarray(6, 12)),
    source: addressFromBytes(ip.subarray(12, 16)),
    destination: addressFromBytes(ip.subarray(16, 20)),
    sourcePort: udp.readUInt16BE(0),
    destinationPort: udp.readUInt16BE(2),
    payload: Buffer.from(udp.subarray(UDP_HEADER, udpLength)),
  };
}
